"""What a gateway owns right now: the leak check, and the shape of a deletion's plan.

Read-only. `leftovers` looks everywhere (every collection, every kind a gateway owns in its
namespace, the runtime database) so that "nothing is left behind" is checked, not
assumed; `orphans` does so for every gateway that is gone, in every region. Kubernetes is
read by label selector and as metadata only. The plan itself, which follows the order of
the deletion, is control/plan.py.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gatewayflow.cluster.kinds import Kind
from gatewayflow.deps import Deps
from gatewayflow.domain import naming
from gatewayflow.domain.documents import COLLECTIONS
from gatewayflow.domain.messages import Orphan

OnProgress = Callable[[str], None]
"""Called as a long scan goes on, with what it has just done."""


def _quiet(_done: str) -> None:
    pass


@dataclass(frozen=True)
class Item:
    where: str  # "mongo", "kubernetes" or "runtime-db"
    kind: str
    namespace: str | None
    name: str
    region: str | None = None  # of a Kubernetes object

    def __str__(self) -> str:
        place = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {place}{self.name}"


@dataclass
class PlanStep:
    """One step of a deletion and what it would remove."""

    number: int
    name: str
    title: str
    items: list[Item] = field(default_factory=list)


def leftovers(deps: Deps, gateway_id: str, region: str = "local") -> list[Item]:
    """Everything of this gateway that still exists anywhere; empty after a deletion.

    Kubernetes is read by the ownership labels only, as metadata: the gateway's Namespace
    and its objects of every kind it owns inside it (where all of them are created). The
    runtime database is the gateway's while registered to it.
    """
    found = [
        Item("mongo", collection, deps.settings.db_name, f"{count} document(s)")
        for collection, count in deps.children.counts(gateway_id).items()
        if count and collection in COLLECTIONS
    ]
    # An invalid id names nothing outside MongoDB: it is never looked up there.
    if not naming.is_valid_gateway_id(gateway_id):
        return found
    cluster = deps.cluster(region)
    namespaces = cluster.owned_refs(gateway_id, Kind.NAMESPACE)
    found += [Item("kubernetes", "Namespace", None, ref.name, region) for ref in namespaces]
    if namespaces:  # the worker may only look inside a gateway's own namespace
        for kind in deps.ownership.kinds():
            if not kind.namespaced:
                continue
            for ref in cluster.owned_refs(gateway_id, kind, naming.namespace(gateway_id)):
                found.append(Item("kubernetes", kind.name, ref.namespace, ref.name, region))
    if deps.runtime.owned(gateway_id):
        found.append(Item("runtime-db", "database", None, naming.runtime_database(gateway_id)))
    return found


def audit_regions(deps: Deps) -> list[str]:
    """Every configured region: GATEWAYFLOW_REGIONS, else every context of the kubeconfig."""
    return sorted(deps.settings.regions) or deps.regions.known_contexts()


def orphans(
    deps: Deps, regions: list[str] | None = None, on_progress: OnProgress = _quiet
) -> dict[str, list[Item]]:
    """Resources of this installation's gateways that have no ApiGateway document any
    more: leaks.

    Looks in every region (by the ownership labels of the namespaces: this installation's
    only), in every collection of the control database and on the runtime MongoDB (the
    databases and users registered to this installation). Nothing a tenant writes in its
    own database counts: a database's owner is its registration. `on_progress` is called
    after each region's list and each gateway looked at: an activity heartbeats there, so
    a slow cluster slows the scan but never times it out.
    """
    regions = audit_regions(deps) if regions is None else regions
    ids: set[str] = set()
    for collection in COLLECTIONS:
        if collection != "ApiGateway":
            ids.update(str(v) for v in deps.db[collection].distinct("gatewayId"))
    for region in regions:
        ids.update(deps.cluster(region).gateway_namespaces().values())
        on_progress(f"listed the gateway namespaces of {region}")
    databases: dict[str, list[Item]] = {}
    for name, owner in deps.runtime.registered().items():
        users = ", ".join(deps.runtime.users(name)) or "no users"
        databases.setdefault(owner, []).append(
            Item("runtime-db", "database+users", None, f"{name} ({users})")
        )
    ids.update(databases)
    found: dict[str, list[Item]] = {}
    for n, gateway_id in enumerate(sorted(ids), start=1):
        on_progress(f"looking at gateway {n} of {len(ids)}")
        if deps.db["ApiGateway"].find_one({"gatewayId": gateway_id}, {"_id": 1}) is not None:
            continue
        items = [
            item
            for item in leftovers_everywhere(deps, gateway_id, regions, on_progress)
            if item.where != "runtime-db"
        ]
        items += databases.get(gateway_id, [])
        if items:
            found[gateway_id] = items
    return found


def reapable(found: dict[str, list[Item]]) -> dict[str, list[Item]]:
    """The orphans the reaper may take: those with objects, databases or users. Documents
    alone (a leaf written before its gateway's, or junk) are the user's; the audit lists
    them and nothing removes them."""
    return {gid: items for gid, items in found.items() if any(i.where != "mongo" for i in items)}


def described_orphans(
    found: dict[str, list[Item]],
    first_seen: dict[str, datetime],
    grace: timedelta,
    now: datetime,
) -> list[Orphan]:
    """`orphans` as the reaper shows and hands them over: when first seen, whether due.

    An orphan's deletion runs in the region of its Kubernetes objects (the first, when it
    left some in several: the next reaper run finds what remains elsewhere).
    """
    fallback = "local"
    described = []
    for gid, items in found.items():
        seen = first_seen.get(gid)
        described.append(
            Orphan(
                gateway_id=gid,
                region=next((item.region for item in items if item.region), fallback),
                items=[f"{item.where}: {item}" for item in items],
                kinds=dict(Counter(item.kind for item in items)),
                first_seen=seen.isoformat(timespec="seconds") if seen else "",
                due=seen is not None and now - seen >= grace,
            )
        )
    return described


def leftovers_everywhere(
    deps: Deps, gateway_id: str, regions: list[str], on_progress: OnProgress = _quiet
) -> list[Item]:
    """`leftovers` in every region, the Mongo and runtime-database items once."""
    found: list[Item] = []
    for n, region in enumerate(regions):
        items = leftovers(deps, gateway_id, region)
        found += [item for item in items if n == 0 or item.where == "kubernetes"]
        on_progress(f"looked for {gateway_id} in {region}")
    return found
