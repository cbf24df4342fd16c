"""What a deletion would remove, step by step: what a gateway owns (gatewayflow/ownership.py)
that exists now, in the order of the deletion's steps (workflows/operations.py).

Read-only. Kubernetes objects found by label (CronJobs) are listed as metadata only.
"""

from typing import Any

from gatewayflow.deps import Deps
from gatewayflow.domain import naming
from gatewayflow.domain.documents import LEAF_COLLECTIONS
from gatewayflow.inventory import Item, PlanStep
from gatewayflow.ownership import Owner, Ownership, Part
from workflows import operations as ops
from workflows.operations import Step


def _parts(owned: Ownership) -> dict[Step[Any], Part]:
    """The part of a gateway each step of the deletion removes."""
    return {
        ops.DELETE_TRIGGERS: owned.triggers,
        ops.DELETE_FUNCTIONS: owned.functions,
        ops.DELETE_STAGES: owned.stages,
        ops.DOMAIN_DELETED: owned.domain,
        ops.REMOVE_INSTANCE: owned.instance,
        ops.DELETE_DATABASE: owned.database,
        ops.DELETE_NAMESPACE: owned.base,
    }


def plan(deps: Deps, gateway_id: str) -> list[PlanStep]:
    """Every document and object the deletion would remove, in its order; changes nothing."""
    gw = deps.gateways.require(gateway_id)
    parts = _parts(deps.ownership)
    delete = ops.DELETE
    steps = []
    for step in delete.steps:
        part = parts.get(step)
        if part is None:  # the last step: the gateway's own document
            items = [Item("mongo", "ApiGateway", deps.settings.db_name, gateway_id)]
        else:
            items = _present(deps, part, gateway_id, gw.placed_region)
        steps.append(PlanStep(delete.number(step), step.name, step.title, items))
    return steps


def _present(deps: Deps, part: Part, gateway_id: str, region: str) -> list[Item]:
    """What of `part` exists: the runtime database, the objects, then the documents."""
    items = []
    if part.runtime_database and deps.runtime.owned(gateway_id):
        items.append(Item("runtime-db", "database+user", None, naming.runtime_database(gateway_id)))
    cluster = deps.cluster(region)
    refs = [
        ref
        for kind, namespace in part.labelled(gateway_id)
        for ref in cluster.owned_refs(gateway_id, kind, namespace)
    ]
    refs += [
        ref
        for ref in part.removed(Owner(gateway_id))
        if ref not in refs and cluster.get(ref) is not None
    ]
    items += [Item("kubernetes", ref.kind.name, ref.namespace, ref.name) for ref in refs]
    for collection in part.documents:
        items += _documents(deps, collection, gateway_id)
    return items


def _documents(deps: Deps, collection: str, gateway_id: str) -> list[Item]:
    db = deps.settings.db_name
    if collection not in LEAF_COLLECTIONS:  # one document per gateway, named by its id
        found = deps.children.count(collection, gateway_id)
        return [Item("mongo", collection, db, gateway_id)] if found else []
    return [
        Item("mongo", collection, db, str(doc.get("name") or doc.get("triggerId") or gateway_id))
        for doc in deps.children.list(collection, gateway_id)
    ]
