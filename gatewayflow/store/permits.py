"""Deletion permits, one document per region: who deletes now, who waits, in order.

`{_id: region, holders: [gatewayId...], queue: [gatewayId...]}`. Every change is one
conditional update, so any number of workers share a region's limit, and a crashed worker
loses nothing: the permit belongs to the gateway, and its deletion (resumed by Temporal on
another worker) asks again and finds it already holds one. A holder whose ApiGateway
document is gone has finished (the deletion removes the document last) and is dropped.
"""

import contextlib

from pymongo.errors import DuplicateKeyError

from gatewayflow.domain.messages import PermitPlace
from gatewayflow.store.client import Db, RawDoc

COLLECTION = "DeletionPermits"
GATEWAYS = "ApiGateway"


class PermitRepository:
    def __init__(self, db: Db) -> None:
        self._col = db[COLLECTION]
        self._gateways = db[GATEWAYS]

    def _doc(self, region: str) -> RawDoc:
        doc = self._col.find_one({"_id": region})
        if doc is None:
            with contextlib.suppress(DuplicateKeyError):  # another worker made it first
                self._col.insert_one({"_id": region, "holders": [], "queue": []})
            doc = self._col.find_one({"_id": region}) or {}
        return doc

    def acquire(self, region: str, gateway_id: str, limit: int) -> PermitPlace:
        """A permit if one is free and nobody queued earlier; otherwise a place in line."""
        doc = self._doc(region)
        if gateway_id not in doc.get("holders", []):
            self._col.update_one(
                {"_id": region, "holders": {"$ne": gateway_id}, "queue": {"$ne": gateway_id}},
                {"$push": {"queue": gateway_id}},
            )
        promoted = self._promote(region, limit)
        return self.place(region, gateway_id, limit, promoted)

    def release(self, region: str, gateway_id: str, limit: int) -> PermitPlace:
        """Give the permit back; the heads of the queue get the free permits."""
        self._col.update_one(
            {"_id": region}, {"$pull": {"holders": gateway_id, "queue": gateway_id}}
        )
        promoted = self._promote(region, limit)
        return self.place(region, gateway_id, limit, promoted)

    def place(
        self, region: str, gateway_id: str, limit: int, promoted: list[str] | None = None
    ) -> PermitPlace:
        doc = self._col.find_one({"_id": region}) or {}
        holders, queue = list(doc.get("holders", [])), list(doc.get("queue", []))
        return PermitPlace(
            granted=gateway_id in holders,
            ahead=queue.index(gateway_id) if gateway_id in queue else 0,
            running=len(holders),
            queued=len(queue),
            limit=limit,
            promoted=promoted or [],
        )

    def regions(self) -> list[RawDoc]:
        """Every region's holders and queue (for `gatewayflow status`)."""
        return list(self._col.find({}).sort("_id", 1))

    def _promote(self, region: str, limit: int) -> list[str]:
        promoted: list[str] = []
        for _ in range(limit + 10):
            doc = self._col.find_one({"_id": region}) or {}
            holders, queue = list(doc.get("holders", [])), list(doc.get("queue", []))
            if len(holders) >= limit:
                if not self._drop_finished(region, holders):
                    break
                continue
            if not queue:
                break
            head = queue[0]
            self._col.update_one(
                # Only while the head is still first and a permit is still free.
                {"_id": region, "queue.0": head, f"holders.{limit - 1}": {"$exists": False}},
                {"$pop": {"queue": -1}, "$push": {"holders": head}},
            )
            if head in ((self._col.find_one({"_id": region}) or {}).get("holders") or []):
                promoted.append(head)
        return promoted

    def _drop_finished(self, region: str, holders: list[str]) -> bool:
        """Drop holders whose gateway is gone (a release lost to a terminated workflow)."""
        live = {
            doc["gatewayId"]
            for doc in self._gateways.find({"gatewayId": {"$in": holders}}, {"gatewayId": 1})
        }
        finished = [h for h in holders if h not in live]
        if finished:
            self._col.update_one({"_id": region}, {"$pull": {"holders": {"$in": finished}}})
        return bool(finished)
