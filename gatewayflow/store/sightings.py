"""When the reaper first saw each orphan: an orphan is reaped only after a grace period.

`{_id: "<gatewayId>", gatewayId, firstSeen, lastSeen}`; a gateway that is no longer an
orphan (its document came back, or its leftovers are gone) loses its record.
"""

from datetime import datetime

from gatewayflow.domain.documents import utcnow
from gatewayflow.store.client import Db

COLLECTION = "OrphanSighting"


class SightingRepository:
    def __init__(self, db: Db) -> None:
        self._col = db[COLLECTION]

    def seen(self, gateway_ids: list[str]) -> dict[str, datetime]:
        """Record this sighting of each orphan, forget the others; returns when each was
        first seen."""
        now = utcnow()
        for gid in gateway_ids:
            self._col.update_one(
                {"_id": gid},
                {
                    "$set": {"lastSeen": now},
                    "$setOnInsert": {"gatewayId": gid, "firstSeen": now},
                },
                upsert=True,
            )
        self._col.delete_many({"gatewayId": {"$nin": gateway_ids}})
        return self.first_seen()

    def first_seen(self) -> dict[str, datetime]:
        return {
            doc["gatewayId"]: doc["firstSeen"]
            for doc in self._col.find({}, {"gatewayId": 1, "firstSeen": 1})
        }

    def forget(self, gateway_id: str) -> None:
        self._col.delete_one({"_id": gateway_id})
