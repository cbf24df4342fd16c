"""Deletion permits, one document per region: who deletes now, who waits, in order.

`{_id: region, holders: [gatewayId...], queue: [gatewayId...]}`. Every change is one
conditional update that returns the document it leaves, so any number of workers share a
region's limit in as few round trips as the change needs (an uncontended deletion: two to
get its permit, one to give it back), and a crashed worker loses nothing: the permit
belongs to the gateway, and its deletion (resumed by Temporal on another worker) asks
again and finds it already holds one. A holder whose ApiGateway document is gone has
finished (the deletion removes the document last) and is dropped.
"""

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from gatewayflow.domain.messages import PermitPlace
from gatewayflow.store.client import Db, RawDoc

COLLECTION = "DeletionPermits"
GATEWAYS = "ApiGateway"


class PermitRepository:
    def __init__(self, db: Db) -> None:
        self._col = db[COLLECTION]
        self._gateways = db[GATEWAYS]

    def acquire(self, region: str, gateway_id: str, limit: int) -> PermitPlace:
        """A permit if one is free and nobody queued earlier; otherwise a place in line."""
        doc, promoted = self._promote(region, limit, self._join(region, gateway_id))
        return _place(doc, gateway_id, limit, promoted)

    def release(self, region: str, gateway_id: str, limit: int) -> PermitPlace:
        """Give the permit back; the heads of the queue get the free permits."""
        doc = self._col.find_one_and_update(
            {"_id": region},
            {"$pull": {"holders": gateway_id, "queue": gateway_id}},
            return_document=ReturnDocument.AFTER,
        )
        doc, promoted = self._promote(region, limit, doc or {})
        return _place(doc, gateway_id, limit, promoted)

    def place(self, region: str, gateway_id: str, limit: int) -> PermitPlace:
        return _place(self._read(region), gateway_id, limit, [])

    def regions(self) -> list[RawDoc]:
        """Every region's holders and queue (for `gatewayflow status`)."""
        return list(self._col.find({}).sort("_id", 1))

    def _read(self, region: str) -> RawDoc:
        return self._col.find_one({"_id": region}) or {}

    def _join(self, region: str, gateway_id: str) -> RawDoc:
        """Last in the queue, unless holding a permit or queued already; the region's
        document is made by the first deletion that asks."""
        for _ in range(2):
            try:
                joined = self._col.find_one_and_update(
                    {"_id": region, "holders": {"$ne": gateway_id}},
                    {"$addToSet": {"queue": gateway_id}, "$setOnInsert": {"holders": []}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
                if joined is not None:
                    return joined
            except DuplicateKeyError:
                # Holds a permit already (the update matched nothing, the insert met the
                # region's document), or another worker made the document first: again.
                continue
        return self._read(region)

    def _promote(self, region: str, limit: int, doc: RawDoc) -> tuple[RawDoc, list[str]]:
        """Free permits to the heads of the queue, from `doc` (the region as last
        written); the region as left, and who got a permit."""
        promoted: list[str] = []
        for _ in range(limit + 10):
            holders, queue = list(doc.get("holders") or []), list(doc.get("queue") or [])
            if len(holders) >= limit:
                dropped = self._drop_finished(region, holders)
                if dropped is None:
                    break
                doc = dropped
                continue
            if not queue:
                break
            head = queue[0]
            moved = self._col.find_one_and_update(
                # Only while the head is still first and a permit is still free.
                {"_id": region, "queue.0": head, f"holders.{limit - 1}": {"$exists": False}},
                {"$pop": {"queue": -1}, "$push": {"holders": head}},
                return_document=ReturnDocument.AFTER,
            )
            if moved is None:  # another worker changed the region first
                doc = self._read(region)
            else:
                promoted.append(head)
                doc = moved
        return doc, promoted

    def _drop_finished(self, region: str, holders: list[str]) -> RawDoc | None:
        """Drop holders whose gateway is gone (a release lost to a terminated workflow);
        the region as left, None when every holder is live."""
        live = {
            doc["gatewayId"]
            for doc in self._gateways.find({"gatewayId": {"$in": holders}}, {"gatewayId": 1})
        }
        finished = [h for h in holders if h not in live]
        if not finished:
            return None
        return (
            self._col.find_one_and_update(
                {"_id": region},
                {"$pull": {"holders": {"$in": finished}}},
                return_document=ReturnDocument.AFTER,
            )
            or {}
        )


def _place(doc: RawDoc, gateway_id: str, limit: int, promoted: list[str]) -> PermitPlace:
    holders, queue = list(doc.get("holders") or []), list(doc.get("queue") or [])
    return PermitPlace(
        granted=gateway_id in holders,
        ahead=queue.index(gateway_id) if gateway_id in queue else 0,
        running=len(holders),
        queued=len(queue),
        limit=limit,
        promoted=promoted,
    )
