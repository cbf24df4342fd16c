"""Every index the store's queries rely on, created idempotently at start-up.

Each leaf collection is keyed by (gatewayId, natural key): the unique index serves every
per-gateway query through its gatewayId prefix and makes re-inserting a document after an
activity retry a no-op instead of a duplicate.

Conditional writes select `{gatewayId, phase: {$in: [...]}}`, `{gatewayId, state}` or
`{gatewayId, state, phase}`: each has a compound index on exactly those fields, so every
server plans it without a scan (docs/dev-server.md). tests/test_store.py explains every
query the store sends and fails on a collection scan.
"""

from pymongo import ASCENDING, IndexModel

from gatewayflow.store.client import Db


def _index(*fields: str, unique: bool = False) -> IndexModel:
    keys = [(field, ASCENDING) for field in fields]
    return IndexModel(keys, name="_".join(fields), unique=unique)


def _unique(*fields: str) -> IndexModel:
    return _index(*fields, unique=True)


def _per_gateway() -> list[IndexModel]:
    """A collection with one document per gateway and a phase."""
    return [_unique("gatewayId"), _index("gatewayId", "phase")]


INDEXES: dict[str, list[IndexModel]] = {
    "ApiGateway": [
        *_per_gateway(),
        # set_state_if: a compare-and-set of the intent.
        _index("gatewayId", "state"),
        # begin, remove_deleted, a request's set_state: intent and phase compared at once.
        _index("gatewayId", "state", "phase"),
        # The sweep: gateways with work left, by (state, phase).
        _index("state", "phase"),
        # The reaper's regions (distinct).
        _index("region"),
    ],
    "RuntimeDomain": _per_gateway(),
    "Database": _per_gateway(),
    "Stage": [_unique("gatewayId", "name")],
    "Environment": [_unique("gatewayId", "name")],
    "ClientApp": [_unique("gatewayId", "environment", "name")],
    "CloudFunction": [_unique("gatewayId", "name")],
    "CronTrigger": [_unique("gatewayId", "triggerId")],
    # The reaper's sightings, per region.
    "OrphanSighting": [_index("region", "gatewayId")],
    # The deletion guard's conditional writes: a region's document at the version read.
    "DeletionGuard": [_index("_id", "version")],
    # DispatcherState and DeletionPermits are read by _id only.
}


def ensure_indexes(db: Db) -> None:
    """Create every index; a no-op for indexes that already exist with the same options."""
    for collection, models in INDEXES.items():
        db[collection].create_indexes(models)
