"""The deletion guard, one document per region: the deletions it admitted lately, with
when, the ones it holds, and the ones an operator cancelled that are not given back yet.

`{_id: region, version: n, admitted: [{gatewayId, at, by}], held: [{gatewayId, at}],
cancelled: [{gatewayId, at, reason}]}`

A deletion asks before its first step and is admitted when it was admitted already, when
it began already (a retry: holding it now would not be before its first step), or when
admitting it keeps the region within the guard: no more than `count` deletions admitted
by the guard within the window, or no more than `share` of the region's gateways. Past
both it is held, and while any deletion of the region is held every new one is held
too, so a script that goes on deleting is not let through in slices. Only an operator
moves a held deletion on: released (admitted, `by: operator`, not counted against the
guard) or cancelled.

Every change increments `version`, and every read-modify-write is conditional on the
version it read, so any number of workers share one count; a loser reads again.
"""

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo.errors import DuplicateKeyError

from gatewayflow.domain.documents import utcnow
from gatewayflow.domain.errors import TransientError
from gatewayflow.domain.messages import Admission, GuardVerdict
from gatewayflow.store.client import Db, RawDoc

COLLECTION = "DeletionGuard"
GATEWAYS = "ApiGateway"
BY_GUARD = "guard"
BY_OPERATOR = "operator"
# A released deletion is admitted for this long even if it has not begun by then (its
# workers were down): past it, it would ask afresh.
RELEASE_KEPT = timedelta(days=1)
_ATTEMPTS = 50


@dataclass(frozen=True)
class GuardLimits:
    """Held past both: more than `count` deletions and more than `share` of the region's
    gateways within `window` seconds."""

    count: int
    share: float
    window: float


class GuardContention(TransientError):
    """Other workers kept changing the region's guard first; the activity tries again."""


class DeletionGuardRepository:
    def __init__(self, db: Db) -> None:
        self._col = db[COLLECTION]
        self._gateways = db[GATEWAYS]

    def decide(
        self,
        region: str,
        gateway_id: str,
        limits: GuardLimits,
        *,
        began: bool,
        now: datetime | None = None,
    ) -> GuardVerdict:
        """Admit or hold this deletion (the same answer every time it asks), or say that
        an operator cancelled it."""
        now = now or utcnow()
        for _ in range(_ATTEMPTS):
            doc = self._read(region)
            recent = _recent(doc, now, limits.window)
            known = _verdict_of(doc, gateway_id, len(recent), limits.window)
            if known is not None:
                return known
            held = len(_held(doc))
            if began:
                return _verdict(Admission.ADMITTED, held, len(recent), limits.window)
            if held or self._past_limits(region, recent, gateway_id, limits):
                entry = {"gatewayId": gateway_id, "at": now}
                if self._write(doc, {"$push": {"held": entry}}):
                    return _verdict(Admission.HELD, held + 1, len(recent), limits.window)
                continue
            entry = {"gatewayId": gateway_id, "at": now, "by": BY_GUARD}
            admitted = [*_kept(doc, now, limits.window), entry]
            if self._write(doc, {"$set": {"admitted": admitted}}):
                return _verdict(Admission.ADMITTED, held, len(recent) + 1, limits.window)
        raise GuardContention(f"the deletion guard of region {region} kept changing; again")

    def release(self, region: str, window: float, now: datetime | None = None) -> list[str]:
        """Every deletion held in the region, admitted by an operator; their ids."""
        now = now or utcnow()
        for _ in range(_ATTEMPTS):
            doc = self._find(region)
            ids = _ids(_held(doc))
            if not ids:
                return []
            released = [{"gatewayId": gid, "at": now, "by": BY_OPERATOR} for gid in ids]
            admitted = [*_kept(doc, now, window), *released]
            if self._write(doc, {"$set": {"held": [], "admitted": admitted}}):
                return ids
        raise GuardContention(f"the deletion guard of region {region} kept changing; again")

    def cancel(self, region: str, reason: str, now: datetime | None = None) -> list[str]:
        """Every deletion held in the region, marked cancelled with `reason` (each one's
        workflow gives its intent back); their ids."""
        now = now or utcnow()
        for _ in range(_ATTEMPTS):
            doc = self._find(region)
            ids = _ids(_held(doc))
            if not ids:
                return []
            cancelled = [{"gatewayId": gid, "at": now, "reason": reason} for gid in ids]
            update = {"$set": {"held": [], "cancelled": [*_cancelled(doc), *cancelled]}}
            if self._write(doc, update):
                return ids
        raise GuardContention(f"the deletion guard of region {region} kept changing; again")

    def forget(self, region: str, gateway_id: str) -> None:
        """A finished deletion stays counted in its window, without its id: nothing of a
        deleted gateway is kept that names it."""
        for _ in range(_ATTEMPTS):
            doc = self._find(region)
            admitted = doc.get("admitted") or []
            if not any(e.get("gatewayId") == gateway_id for e in admitted):
                return
            anonymous = [
                {**e, "gatewayId": None} if e.get("gatewayId") == gateway_id else e
                for e in admitted
            ]
            if self._write(doc, {"$set": {"admitted": anonymous}}):
                return
        raise GuardContention(f"the deletion guard of region {region} kept changing; again")

    def forget_cancelled(self, region: str, gateway_id: str) -> None:
        """Once the cancelled deletion has given its intent back."""
        self._col.update_one(
            {"_id": region},
            {"$pull": {"cancelled": {"gatewayId": gateway_id}}, "$inc": {"version": 1}},
        )

    def regions(self) -> list[RawDoc]:
        """Every region's guard (for `gatewayflow status` and the metric)."""
        return list(self._col.find({}).sort("_id", 1))

    def _find(self, region: str) -> RawDoc:
        return self._col.find_one({"_id": region}) or {}

    def _read(self, region: str) -> RawDoc:
        """The region's guard, made empty by the first deletion that asks."""
        doc = self._find(region)
        if doc:
            return doc
        empty = {"_id": region, "version": 0, "admitted": [], "held": [], "cancelled": []}
        with contextlib.suppress(DuplicateKeyError):  # another worker made it first
            self._col.insert_one(empty)
        return self._find(region)

    def _write(self, doc: RawDoc, update: RawDoc) -> bool:
        """Apply `update` only while the region's guard is still as read; whether it was."""
        query = {"_id": doc["_id"], "version": doc["version"]}
        changed = self._col.update_one(query, {**update, "$inc": {"version": 1}})
        return changed.matched_count == 1

    def _past_limits(
        self, region: str, recent: list[RawDoc], gateway_id: str, limits: GuardLimits
    ) -> bool:
        """Whether admitting one more would pass both the count and the share."""
        admitted = len(recent) + 1
        if admitted <= limits.count:
            return False
        return admitted > limits.share * self._size(region, [*_deleted(recent), gateway_id])

    def _size(self, region: str, deleted: list[str | None]) -> int:
        """The region's gateways over the window: those with a document, and those the
        window's deletions already removed (a finished one is counted without its id)."""
        named = [gid for gid in deleted if gid is not None]
        present = self._gateways.count_documents({"region": region})
        found = self._gateways.find({"gatewayId": {"$in": named}}, {"gatewayId": 1})
        finished = len(deleted) - len(named)
        return present + finished + len(set(named) - {d["gatewayId"] for d in found})


def _held(doc: RawDoc) -> list[RawDoc]:
    return list(doc.get("held") or [])


def _cancelled(doc: RawDoc) -> list[RawDoc]:
    return list(doc.get("cancelled") or [])


def _ids(entries: list[RawDoc]) -> list[str]:
    return [str(e["gatewayId"]) for e in entries if e.get("gatewayId") is not None]


def _deleted(entries: list[RawDoc]) -> list[str | None]:
    """Every admitted deletion, None for a finished one whose id was forgotten."""
    return [None if e.get("gatewayId") is None else str(e["gatewayId"]) for e in entries]


def _kept(doc: RawDoc, now: datetime, window: float) -> list[RawDoc]:
    """The admitted entries still worth keeping: the guard's inside the window, the
    operator's for RELEASE_KEPT."""
    counted_since = now - timedelta(seconds=window)
    released_since = now - RELEASE_KEPT
    return [
        e
        for e in doc.get("admitted") or []
        if _aware(e["at"]) > (counted_since if e.get("by") == BY_GUARD else released_since)
    ]


def _recent(doc: RawDoc, now: datetime, window: float) -> list[RawDoc]:
    """What the guard counts: its own admissions inside the window."""
    since = now - timedelta(seconds=window)
    admitted = doc.get("admitted") or []
    return [e for e in admitted if e.get("by") == BY_GUARD and _aware(e["at"]) > since]


def _verdict(admission: Admission, held: int, recent: int, window: float) -> GuardVerdict:
    return GuardVerdict(admission=admission, held=held, recent=recent, window=window)


def _verdict_of(doc: RawDoc, gateway_id: str, recent: int, window: float) -> GuardVerdict | None:
    """The verdict already recorded for this deletion, if any."""
    held = _held(doc)
    for entry in _cancelled(doc):
        if entry["gatewayId"] == gateway_id:
            cancelled = _verdict(Admission.CANCELLED, len(held), recent, window)
            return cancelled.model_copy(update={"reason": entry["reason"]})
    if gateway_id in _ids(held):
        return _verdict(Admission.HELD, len(held), recent, window)
    if gateway_id in _ids(list(doc.get("admitted") or [])):
        return _verdict(Admission.ADMITTED, len(held), recent, window)
    return None


def _aware(at: datetime) -> datetime:
    """A datetime read by a client that is not tz-aware is UTC all the same."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
