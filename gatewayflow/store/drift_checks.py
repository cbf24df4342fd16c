"""When the drift check last looked at each region: one document per region and round.

`{_id: "<region>", checkedAt}`. Stamping the time on every converged gateway instead
was an update of every document (10,000 writes a round, and as many change events for
the dispatcher, with 10,000 gateways); `gatewayflow status` reads it from here.
"""

from collections.abc import Iterable
from datetime import datetime

from gatewayflow.store.client import Db

COLLECTION = "DriftChecks"


class DriftCheckRepository:
    def __init__(self, db: Db) -> None:
        self._col = db[COLLECTION]

    def mark(self, regions: Iterable[str], checked_at: datetime) -> None:
        for region in regions:
            self._col.update_one({"_id": region}, {"$set": {"checkedAt": checked_at}}, upsert=True)

    def last(self, region: str) -> datetime | None:
        doc = self._col.find_one({"_id": region})
        return None if doc is None else doc.get("checkedAt")
