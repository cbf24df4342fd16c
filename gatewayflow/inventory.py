"""What a gateway owns right now, step by step: the deletion plan and the leak check.

Read-only. `plan` follows the order of GatewayDeletion; `leftovers` looks everywhere
(every collection, every owned kind in every namespace, the runtime database) so that
"nothing is left behind" is checked, not assumed.
"""

from dataclasses import dataclass, field
from typing import Any

from activities.deletion import stage_route_refs
from activities.domain import all_refs
from activities.instance import instance_refs
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.deps import Deps
from gatewayflow.domain import naming
from gatewayflow.domain.documents import COLLECTIONS
from workflows import operations as ops
from workflows.operations import Step


@dataclass(frozen=True)
class Item:
    where: str  # "mongo", "kubernetes" or "runtime-db"
    kind: str
    namespace: str | None
    name: str

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
    region, gid, ns = gw.region, gateway_id, naming.namespace(gateway_id)
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
    """Everything of this gateway that still exists anywhere; empty after a deletion."""
    found = [
        Item("mongo", collection, deps.settings.db_name, f"{count} document(s)")
        for collection, count in deps.children.counts(gateway_id).items()
        if count and collection in COLLECTIONS
    ]
    cluster = deps.cluster(region)
    for kind in Kind:
        for obj in cluster.list_owned(gateway_id, kind):
            ref = ObjectRef.of(obj)
            found.append(Item("kubernetes", kind.value, ref.namespace, ref.name))
    if deps.runtime.exists(gateway_id):
        found.append(Item("runtime-db", "database", None, naming.runtime_database(gateway_id)))
    return found


def orphans(deps: Deps, region: str = "local") -> dict[str, list[Item]]:
    """Resources of gateways that have no ApiGateway document any more: leaks."""
    ids: set[str] = set()
    for collection in COLLECTIONS:
        if collection != "ApiGateway":
            ids.update(str(v) for v in deps.db[collection].distinct("gatewayId"))
    cluster = deps.cluster(region)
    for kind in Kind:
        for obj in cluster.list_all(kind):
            owner = (obj.get("metadata", {}).get("labels") or {}).get(naming.OWNER_LABEL)
            if owner:
                ids.add(owner)
    found: dict[str, list[Item]] = {}
    for gateway_id in sorted(ids):
        if deps.db["ApiGateway"].find_one({"gatewayId": gateway_id}, {"_id": 1}) is None:
            items = leftovers(deps, gateway_id, region)
            if items:
                found[gateway_id] = items
    return found
