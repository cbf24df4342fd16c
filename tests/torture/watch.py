"""What happened to the ApiGateway documents of an episode, read from the server's change
stream (its own record, with the server's `wallTime`), not from the code under test.

The torture tags each of its own raw writes with a fresh `tortureWrite` number, so a
state written by anything else (the system, or the CLI) is told from ours. A watch that
went blind would turn those checks off without a word: so it must see a marker it writes
itself at each quiescence, and resume after every MongoDB kill from where it was; either
failing is written to `blind`, a violation.
"""

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

from tests.torture.model import TIMED_OUT_MARK

TAG = "tortureWrite"
DELETED = "Deleted"
MARKERS = "TortureMarker"
UNREACHABLE_SECONDS = 60.0
"""How long the server may stay unreachable (a kill and its restart take seconds)."""


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
    removed_at: dict[str, datetime] = field(default_factory=dict)
    """When the ApiGateway document was removed (a deletion's last write)."""
    blind: list[str] = field(default_factory=list)
    """Markers not seen, streams that could not resume: while blind, nothing above holds."""
    markers: set[Any] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _token: Any = None
    events: int = 0

    def start(self) -> None:
        # Opened here, so nothing written after `start` returns is missed.
        self._stream = self._resume()
        self._thread = threading.Thread(target=self._run, daemon=True, name="torture-watch")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def settle(self, timeout: float = 10.0) -> None:
        """Until the stream has delivered a marker written now (everything written before
        it has been seen); a marker not seen in time makes the watch blind."""
        written = datetime.now(UTC)
        marker = self.client[self.db_name][MARKERS].insert_one({"at": written}).inserted_id
        deadline = time.monotonic() + timeout
        while marker not in self.markers:
            if time.monotonic() > deadline:
                self._blind(
                    f"marker written at {written:%H:%M:%S.%f} not seen within {timeout:.0f}s "
                    f"({self.events} events seen)"
                )
                return
            time.sleep(0.05)

    def timed_out_ids(self) -> set[str]:
        with self._lock:
            return set(self.timed_out)

    def deletions(self) -> tuple[dict[str, datetime], dict[str, datetime]]:
        """When each deletion began (phase Deleting), when each document was removed."""
        with self._lock:
            return dict(self.deleting_since), dict(self.removed_at)

    def _open(self) -> Any:
        db = self.client[self.db_name]
        return db.watch(resume_after=self._token, max_await_time_ms=500)

    def _resume(self) -> Any:
        """The stream again, from the last event seen. A server that answers but cannot
        go on from there (its history lost) leaves a gap: the watch is blind, and watches
        again from now so the rest of the episode is still seen."""
        try:
            return self._open()
        except OperationFailure as exc:
            self._blind(f"cannot resume after {self._token}: {exc}")
            self._token = None
            return self._open()

    def _blind(self, why: str) -> None:
        with self._lock:
            self.blind.append(why)

    def _run(self) -> None:
        stream, failing_since, broke_off = self._stream, None, False
        while not self._stop.is_set():
            try:
                if stream is None:
                    stream = self._resume()
                change = stream.try_next()
                if change is not None:
                    self._handle(change)
                    self.events += 1
                if stream.resume_token is not None:
                    self._token = stream.resume_token
                failing_since, broke_off = None, False
            except OperationFailure as exc:  # the server answers, but the stream ended
                stream = None
                if broke_off:  # again, right after resuming from the same place: a gap
                    self._blind(f"the stream cannot go on after {self._token}: {exc}")
                    self._token = None
                broke_off = True
            except PyMongoError as exc:  # unreachable: killed, until it is back
                stream = None
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > UNREACHABLE_SECONDS:
                    self._blind(f"the stream failed for {UNREACHABLE_SECONDS:.0f}s: {exc}")
                    failing_since = None
                self._stop.wait(0.5)

    def _handle(self, change: dict[str, Any]) -> None:
        collection = (change.get("ns") or {}).get("coll")
        kind = change["operationType"]
        key = (change.get("documentKey") or {}).get("_id")
        if collection == MARKERS and kind == "insert":
            self.markers.add(key)
        if collection != "ApiGateway":
            return
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
            if kind == "delete" and key in self.ids:
                with self._lock:
                    self.removed_at[self.ids[key]] = when
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
