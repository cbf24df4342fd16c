"""What happened to the ApiGateway documents of an episode, read from the server's change
stream (its own record, with the server's `wallTime`), not from the code under test.

The torture tags each of its own raw writes with a fresh `tortureWrite` number, so a
state written by anything else (the system, or the CLI) is told from ours.
"""

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tests.torture.model import TIMED_OUT_MARK

TAG = "tortureWrite"
DELETED = "Deleted"


@dataclass
class Watch:
    """Runs in a thread for one episode's database."""

    client: MongoClient[dict[str, Any]]
    db_name: str
    ids: dict[Any, str] = field(default_factory=dict)
    """_id -> gatewayId, from the insert events."""
    deleted_at: dict[str, datetime] = field(default_factory=dict)
    """When a Deleted state was first written (accepted), per gateway."""
    deleting_since: dict[str, datetime] = field(default_factory=dict)
    """When the phase first became Deleting: the deletion began."""
    timed_out: set[str] = field(default_factory=set)
    """Gateways the system set to Stopped with a start timeout as the reason (one write)."""
    overwritten: list[str] = field(default_factory=list)
    """Deleted states overwritten by something other than the torture's own raw writes."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _token: Any = None
    events: int = 0

    def start(self) -> None:
        # Opened here, so nothing written after `start` returns is missed.
        self._stream = self._open()
        self._thread = threading.Thread(target=self._run, daemon=True, name="torture-watch")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def settle(self, timeout: float = 10.0) -> None:
        """Until the stream has caught up with a marker written now."""
        marker = self.client[self.db_name]["TortureMarker"]
        before = self.events
        marker.insert_one({"at": datetime.now(UTC)})
        deadline = time.monotonic() + timeout
        while self.events == before and time.monotonic() < deadline:
            time.sleep(0.05)

    def timed_out_ids(self) -> set[str]:
        with self._lock:
            return set(self.timed_out)

    def _open(self) -> Any:
        db = self.client[self.db_name]
        return db.watch(resume_after=self._token, max_await_time_ms=500)

    def _run(self) -> None:
        stream = self._stream
        while not self._stop.is_set():
            try:
                if stream is None:
                    stream = self._open()
                change = stream.try_next()
                if change is not None:
                    self._handle(change)
                    self.events += 1
                if stream.resume_token is not None:
                    self._token = stream.resume_token
            except PyMongoError:
                stream = None
                self._stop.wait(0.5)

    def _handle(self, change: dict[str, Any]) -> None:
        if (change.get("ns") or {}).get("coll") != "ApiGateway":
            return
        kind = change["operationType"]
        key = (change.get("documentKey") or {}).get("_id")
        when = change["wallTime"].replace(tzinfo=UTC)
        if kind in ("insert", "replace"):
            doc = change.get("fullDocument") or {}
            gid = doc.get("gatewayId")
            if kind == "insert" and isinstance(gid, str):
                self.ids[key] = gid
            fields, ours = doc, TAG in doc and kind == "insert"
            if kind == "replace":
                ours = TAG in doc
        elif kind == "update":
            fields = (change.get("updateDescription") or {}).get("updatedFields") or {}
            ours = TAG in fields
        else:
            return
        gid = self.ids.get(key)
        if gid is None:
            return
        with self._lock:
            state = fields.get("state")
            if state == DELETED and gid not in self.deleted_at:
                self.deleted_at[gid] = when
            elif state not in (None, DELETED) and gid in self.deleted_at and not ours:
                self.overwritten.append(
                    f"{gid}: state {state!r} written ({kind}) at {when:%H:%M:%S.%f} over the "
                    f"Deleted accepted at {self.deleted_at[gid]:%H:%M:%S.%f}"
                )
            reason = fields.get("progress.lastError") or (fields.get("progress") or {}).get(
                "lastError"
            )
            if state == "Stopped" and not ours and TIMED_OUT_MARK in str(reason or ""):
                self.timed_out.add(gid)
            if fields.get("phase") == "Deleting" and gid not in self.deleting_since:
                self.deleting_since[gid] = when
