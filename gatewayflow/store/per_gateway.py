"""A collection holding one document per gateway with its own state and phase.

RuntimeDomain and Database documents are handled alike: created once, then moved
through their phases by the workflow that owns them.
"""

from collections.abc import Collection
from enum import StrEnum
from typing import Generic, TypeVar

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from gatewayflow.domain.documents import Document, utcnow
from gatewayflow.store.client import Db, RawDoc
from gatewayflow.store.parsing import collection_of, parse

M = TypeVar("M", bound=Document)
S = TypeVar("S", bound=StrEnum)
P = TypeVar("P", bound=StrEnum)


class PerGatewayRepository(Generic[M, S, P]):
    def __init__(self, db: Db, model: type[M]) -> None:
        self._model = model
        self._col = db[collection_of(model)]

    def upsert(self, doc: M) -> M:
        """Insert `doc` unless the gateway already has one; returns the stored document.

        The stored document wins, so a retried create never rewinds its state or phase.
        """
        query = {"gatewayId": doc.gateway_id}
        try:
            raw = self._col.find_one_and_update(
                query,
                {"$setOnInsert": doc.to_mongo()},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # a concurrent upsert inserted it first
            raw = self._col.find_one(query)
        assert raw is not None, "an upsert returns the document"
        return parse(self._model, raw)

    def get(self, gateway_id: str) -> M | None:
        """The document, None if absent; MalformedDocument if it does not validate."""
        raw = self._col.find_one({"gatewayId": gateway_id})
        return None if raw is None else parse(self._model, raw)

    def set_state(self, gateway_id: str, state: S) -> bool:
        """Write the intent; whether the document exists."""
        update = {"$set": {"state": state.value, "updatedAt": utcnow()}}
        return self._col.update_one({"gatewayId": gateway_id}, update).matched_count == 1

    def set_phase(
        self, gateway_id: str, phase: P, *, expected: Collection[P] | None = None
    ) -> bool:
        """Move the phase, only from one of `expected` when given; whether it matched."""
        query: RawDoc = {"gatewayId": gateway_id}
        if expected is not None:
            query["phase"] = {"$in": [p.value for p in expected]}
        update = {"$set": {"phase": phase.value, "updatedAt": utcnow()}}
        return self._col.update_one(query, update).matched_count == 1

    def moved(
        self,
        gateway_id: str,
        *,
        state: S | None = None,
        phase: P | None = None,
        unless_state: S | None = None,
    ) -> M | None:
        """Write the state and/or the phase and read the document back, in one round trip;
        None when there is no document (or, with `unless_state`, when its state is that:
        then nothing is written)."""
        query: RawDoc = {"gatewayId": gateway_id}
        if unless_state is not None:
            query["state"] = {"$ne": unless_state.value}
        to_set: RawDoc = {"updatedAt": utcnow()}
        if state is not None:
            to_set["state"] = state.value
        if phase is not None:
            to_set["phase"] = phase.value
        raw = self._col.find_one_and_update(
            query, {"$set": to_set}, return_document=ReturnDocument.AFTER
        )
        return None if raw is None else parse(self._model, raw)

    def delete(self, gateway_id: str) -> bool:
        return self._col.delete_one({"gatewayId": gateway_id}).deleted_count == 1
