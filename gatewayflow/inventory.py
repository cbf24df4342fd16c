"""What a gateway owns right now, step by step: the deletion plan and the leak check.

Read-only. `plan` follows the order of GatewayDeletion; `leftovers` looks everywhere
(every collection, every owned kind in the gateway's namespace, the runtime database) so
that "nothing is left behind" is checked, not assumed; `orphans` does so for every gateway
that is gone, in every region. Kubernetes is read by label selector and as metadata only.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from activities.deletion import stage_route_refs
from activities.domain import all_refs
from activities.instance import instance_refs
from gatewayflow.cluster.kinds import NAMESPACED_KINDS, Kind, ObjectRef
from gatewayflow.deps import Deps
from gatewayflow.domain import naming
from gatewayflow.domain.documents import COLLECTIONS
from gatewayflow.domain.messages import Orphan
from workflows import operations as ops
from workflows.operations import Step


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
    number: int
    name: str
    title: str
    items: list[Item] = field(default_factory=list)


def _docs(deps: Deps, collection: str, gateway_id: str) -> list[Item]:
    return [
        Item(
            "mongo",
            collection,
            deps.settings.db_name,
            str(doc.get("name") or doc.get("triggerId") or doc.get("gatewayId")),
        )
        for doc in deps.children.list(collection, gateway_id)
    ]


def _live(deps: Deps, region: str, refs: list[ObjectRef]) -> list[Item]:
    cluster = deps.cluster(region)
    return [
        Item("kubernetes", ref.kind.value, ref.namespace, ref.name)
        for ref in refs
        if cluster.get(ref) is not None
    ]


def plan(deps: Deps, gateway_id: str) -> list[PlanStep]:
    """Every document and object the deletion would remove, in its order; changes nothing."""
    gw = deps.gateways.require(gateway_id)
    region, gid, ns = gw.placed_region, gateway_id, naming.namespace(gateway_id)
    cluster = deps.cluster(region)
    db = deps.settings.db_name
    cron_jobs = [ObjectRef.of(obj) for obj in cluster.list_owned(gid, Kind.CRON_JOB, ns)]
    domain = _live(deps, region, all_refs(gid))
    if deps.domains.get(gid) is not None:
        domain.append(Item("mongo", "RuntimeDomain", db, gid))
    database = []
    if deps.runtime.exists(gid):
        database.append(Item("runtime-db", "database+user", None, naming.runtime_database(gid)))
    database += _live(deps, region, [ObjectRef(Kind.SECRET, ns, naming.db_secret(gid))])
    if deps.databases.get(gid) is not None:
        database.append(Item("mongo", "Database", db, gid))
    items: dict[Step[Any], list[Item]] = {
        ops.DELETE_TRIGGERS: [*_live(deps, region, cron_jobs), *_docs(deps, "CronTrigger", gid)],
        ops.DELETE_FUNCTIONS: _docs(deps, "CloudFunction", gid),
        ops.DELETE_STAGES: [
            *_live(deps, region, stage_route_refs(gid)),
            *(
                item
                for coll in ("ClientApp", "Environment", "Stage")
                for item in _docs(deps, coll, gid)
            ),
        ],
        ops.DOMAIN_DELETED: domain,
        ops.REMOVE_INSTANCE: _live(deps, region, instance_refs(gid)),
        ops.DELETE_DATABASE: database,
        ops.DELETE_NAMESPACE: _live(
            deps,
            region,
            [
                ObjectRef(Kind.CONFIG_MAP, ns, naming.config_map(gid)),
                ObjectRef(Kind.NAMESPACE, None, ns),
            ],
        ),
        ops.FINALIZE: [Item("mongo", "ApiGateway", db, gid)],
    }
    delete = ops.DELETE
    return [
        PlanStep(delete.number(step), step.name, step.title, items[step]) for step in delete.steps
    ]


def leftovers(deps: Deps, gateway_id: str, region: str = "local") -> list[Item]:
    """Everything of this gateway that still exists anywhere; empty after a deletion.

    Kubernetes is read by the ownership label only, as metadata: the gateway's Namespace
    and the owned objects of every kind inside it (where all of them are created).
    """
    found = [
        Item("mongo", collection, deps.settings.db_name, f"{count} document(s)")
        for collection, count in deps.children.counts(gateway_id).items()
        if count and collection in COLLECTIONS
    ]
    if not _valid(gateway_id):  # names nothing outside MongoDB: never looked up there
        return found
    cluster = deps.cluster(region)
    namespaces = cluster.owned_refs(gateway_id, Kind.NAMESPACE)
    found += [Item("kubernetes", "Namespace", None, ref.name, region) for ref in namespaces]
    if namespaces:  # the worker may only look inside a gateway's own namespace
        for kind in NAMESPACED_KINDS:
            for ref in cluster.owned_refs(gateway_id, kind, naming.namespace(gateway_id)):
                found.append(Item("kubernetes", kind.value, ref.namespace, ref.name, region))
    if deps.runtime.exists(gateway_id):
        found.append(Item("runtime-db", "database", None, naming.runtime_database(gateway_id)))
    return found


def audit_regions(deps: Deps) -> list[str]:
    """Every configured region: GATEWAYFLOW_REGIONS, else every context of the kubeconfig."""
    return sorted(deps.settings.regions) or deps.regions.known_contexts()


def orphans(deps: Deps, regions: list[str] | None = None) -> dict[str, list[Item]]:
    """Resources of gateways that have no ApiGateway document any more: leaks.

    Looks in every region (by the ownership label of the namespaces), in every collection
    and on the runtime MongoDB (`gw_*` databases and their users, by their owner marker).
    """
    regions = audit_regions(deps) if regions is None else regions
    ids: set[str] = set()
    for collection in COLLECTIONS:
        if collection != "ApiGateway":
            ids.update(str(v) for v in deps.db[collection].distinct("gatewayId"))
    for region in regions:
        ids.update(deps.cluster(region).gateway_namespaces().values())
    databases: dict[str, list[Item]] = {}
    for name in deps.runtime.names():
        owner = deps.runtime.owner(name) or name.removeprefix("gw_").replace("_", "-")
        users = ", ".join(deps.runtime.users(name)) or "no users"
        databases.setdefault(owner, []).append(
            Item("runtime-db", "database+users", None, f"{name} ({users})")
        )
    ids.update(databases)
    found: dict[str, list[Item]] = {}
    for gateway_id in sorted(ids):
        if deps.db["ApiGateway"].find_one({"gatewayId": gateway_id}, {"_id": 1}) is not None:
            continue
        items = [
            item
            for item in leftovers_everywhere(deps, gateway_id, regions)
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


def leftovers_everywhere(deps: Deps, gateway_id: str, regions: list[str]) -> list[Item]:
    """`leftovers` in every region, the Mongo and runtime-database items once."""
    found: list[Item] = []
    for n, region in enumerate(regions):
        items = leftovers(deps, gateway_id, region)
        found += [item for item in items if n == 0 or item.where == "kubernetes"]
    return found


def _valid(gateway_id: str) -> bool:
    try:
        naming.validate_gateway_id(gateway_id)
    except naming.InvalidGatewayId:
        return False
    return True
