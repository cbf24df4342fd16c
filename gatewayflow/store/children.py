"""The leaf collections of a gateway (Stage, Environment, ClientApp, CloudFunction, CronTrigger)."""

from collections.abc import Sequence

from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from gatewayflow.domain.documents import COLLECTIONS, LEAF_COLLECTIONS, Document
from gatewayflow.store.client import Db, RawDoc
from gatewayflow.store.parsing import D, OnMalformed, collection_of, log_malformed, parse_all

DUPLICATE_KEY = 11000


class ChildRepository:
    def __init__(self, db: Db) -> None:
        self._db = db

    def _leaf(self, name: str) -> Collection[RawDoc]:
        if name not in LEAF_COLLECTIONS:
            raise ValueError(f"{name!r} is not a leaf collection: {', '.join(LEAF_COLLECTIONS)}")
        return self._db[name]

    def insert_many(self, docs: Sequence[Document]) -> int:
        """Insert leaf documents; one whose natural key exists is kept as stored.

        So an activity that is retried after a partial insert converges instead of
        duplicating. Returns how many documents were new.
        """
        by_collection: dict[str, list[RawDoc]] = {}
        for doc in docs:
            by_collection.setdefault(collection_of(type(doc)), []).append(doc.to_mongo())
        inserted = 0
        for name, raws in by_collection.items():
            try:
                inserted += len(self._leaf(name).insert_many(raws, ordered=False).inserted_ids)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(err.get("code") != DUPLICATE_KEY for err in errors):
                    raise
                inserted += int(exc.details.get("nInserted", 0))
        return inserted

    def load(
        self, model: type[D], gateway_id: str, on_malformed: OnMalformed = log_malformed
    ) -> list[D]:
        """One gateway's documents of `model`'s collection; malformed ones are skipped."""
        cursor = self._leaf(collection_of(model)).find({"gatewayId": gateway_id})
        return parse_all(model, cursor, on_malformed)

    def delete_all(self, collection: str, gateway_id: str) -> int:
        return self._leaf(collection).delete_many({"gatewayId": gateway_id}).deleted_count

    def count(self, collection: str, gateway_id: str) -> int:
        if collection not in COLLECTIONS:
            known = ", ".join(COLLECTIONS)
            raise ValueError(f"{collection!r} is not a gateway collection: {known}")
        return self._db[collection].count_documents({"gatewayId": gateway_id})

    def counts(self, gateway_id: str) -> dict[str, int]:
        """Documents left in every collection, ApiGateway included: proof nothing is left."""
        return {name: self.count(name, gateway_id) for name in COLLECTIONS}

    # Defined last: below it, `list` in this class body would name the method.
    def list(self, collection: str, gateway_id: str) -> list[RawDoc]:
        """The raw documents of one gateway in one leaf collection."""
        return list(self._leaf(collection).find({"gatewayId": gateway_id}))
