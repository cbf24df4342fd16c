"""The MongoDB side of the dispatcher: changes of intent on ApiGateway, as a resumable feed.

The feed watches inserts, replacements and updates that touch `state` or `region` (from
the API, the CLI or an operator's raw `updateOne`), and asks the server only for what an
event needs (not the whole document with its progress). After each event is handled its
resume token is saved in `DispatcherState`, so a restarted dispatcher continues where the
last one stopped. A token that is no longer valid (e.g. older than the oplog) is dropped
and the feed starts from now; so is a stream the server invalidated (the collection was
dropped or renamed). The periodic sweep covers the gap. Deletions need no event.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bson.timestamp import Timestamp
from pymongo.change_stream import ChangeStream
from pymongo.errors import OperationFailure, PyMongoError

from gatewayflow.domain.documents import ApiGateway, utcnow
from gatewayflow.domain.naming import InvalidGatewayId, validate_gateway_id
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.store.client import Db, RawDoc
from gatewayflow.store.errors import ChangeStreamsUnavailable, MalformedDocument
from gatewayflow.store.gateways import COLLECTION, refusal, refuse
from gatewayflow.store.parsing import log_malformed, parse

log = logging.getLogger("gatewayflow.store.dispatcher")

STATE_COLLECTION = "DispatcherState"

# Server answers meaning "this resume token can no longer be used": FailedToParse,
# InvalidResumeToken, ChangeStreamFatalError, ChangeStreamHistoryLost.
STALE_TOKEN_CODES = frozenset({9, 260, 280, 286})
# Server answers meaning "no change streams here": IllegalOperation (standalone mongod),
# CommandNotFound, CommandNotSupported, unrecognised pipeline stage.
UNAVAILABLE_CODES = frozenset({20, 59, 115, 40324, 40573})

PIPELINE: list[RawDoc] = [
    {
        "$match": {
            "$or": [
                {"operationType": {"$in": ["insert", "replace"]}},
                {
                    "operationType": "update",
                    "updateDescription.updatedFields.state": {"$exists": True},
                },
                # A raw region change: the workflow looks again and records the refusal.
                {
                    "operationType": "update",
                    "updateDescription.updatedFields.region": {"$exists": True},
                },
            ]
        }
    },
    # `_id` (the resume token) stays: a change stream cannot resume without it; the
    # times say when the change was written.
    {
        "$project": {
            "wallTime": 1,
            "clusterTime": 1,
            **{
                f"fullDocument.{name}": 1
                for name in ("_id", "gatewayId", "state", "phase", "region", "resourceRegion")
            },
        }
    },
]

Token = Mapping[str, Any]


@dataclass(frozen=True)
class GatewayEvent:
    """A gateway whose intent may have changed, as the document is now."""

    gateway_id: str
    state: GatewayState
    phase: GatewayPhase
    # When the change was written (the server's clock): how late it is once handled.
    written_at: datetime | None = field(default=None, compare=False)


class ChangeFeed:
    """Blocking and synchronous: run `events` in a thread of its own.

    While the server answers, `events` notices `stop` within `max_await_ms`; while it does
    not, within the client's server selection timeout.

    A getMore that comes back empty before `max_await_ms` was woken by a write that is not
    an event (docs/dev-server.md). The next one is asked `early_pause` seconds later, so a
    burst of writes costs a getMore per pause instead of one per write; an event that
    lands in the pause is seen at most that much later.

    `following` is told True each time the stream is open, False when it is lost or
    invalidated (until it is open again, the sweep alone finds changes).
    """

    def __init__(
        self,
        db: Db,
        *,
        max_await_ms: int = 500,
        early_pause: float = 0.1,
        retry_seconds: float = 2.0,
        following: Callable[[bool], None] = lambda open: None,
    ) -> None:
        self._gateways = db[COLLECTION]
        self._state = db[STATE_COLLECTION]
        self._max_await_ms = max_await_ms
        self._early_pause = early_pause
        self._retry_seconds = retry_seconds
        self._following = following

    def load_token(self) -> Token | None:
        saved = self._state.find_one({"_id": COLLECTION})
        return None if saved is None else saved.get("token")

    def save_token(self, token: Token) -> None:
        self._state.update_one(
            {"_id": COLLECTION}, {"$set": {"token": token, "savedAt": utcnow()}}, upsert=True
        )

    def forget_token(self) -> None:
        self._state.delete_one({"_id": COLLECTION})

    def _invalidated(self) -> None:
        """The server closed the stream for good (the collection was dropped or renamed,
        as a restore or a migration does): no token of it can resume, so start from now."""
        log.warning(
            "change feed on %s was invalidated (collection dropped or renamed); reopening "
            "from now, the sweep covers anything missed",
            COLLECTION,
        )
        self.forget_token()

    def check(self) -> None:
        """Raise ChangeStreamsUnavailable unless the server can open a change stream."""
        self._watch(None).close()

    def events(self, stop: threading.Event) -> Iterator[GatewayEvent]:
        """Events until `stop` is set, at least once each.

        An event's token is saved when the consumer asks for the next event, that is after
        it has handled this one. Lost connections are retried every `retry_seconds`;
        ChangeStreamsUnavailable is raised, as no retry can help it.
        """
        while not stop.is_set():
            try:
                with self._open() as stream:
                    self._following(True)
                    while not stop.is_set() and stream.alive:
                        asked = time.monotonic()
                        change = stream.try_next()
                        if change is None:
                            if time.monotonic() - asked < self._max_await_ms / 1000:
                                stop.wait(self._early_pause)  # woken early, by no event
                            continue
                        event = self._event(change)
                        if event is not None:
                            yield event
                        if stream.resume_token is not None:
                            self.save_token(stream.resume_token)
                if not stop.is_set():
                    self._following(False)
                    self._invalidated()
                    stop.wait(self._retry_seconds)
            except PyMongoError as exc:
                self._following(False)
                log.warning(
                    "change feed on %s interrupted (%s); retrying in %gs",
                    COLLECTION,
                    exc,
                    self._retry_seconds,
                )
                stop.wait(self._retry_seconds)

    def _event(self, change: RawDoc) -> GatewayEvent | None:
        """The event for a change; None when the document is gone, malformed or has an
        invalid id (refused, the reason recorded in the document itself)."""
        raw = change.get("fullDocument")
        if raw is None:  # deleted since the change: nothing left to dispatch
            return None
        try:
            gateway = parse(ApiGateway, raw)
            validate_gateway_id(gateway.gateway_id)
        except MalformedDocument as problem:
            log_malformed(problem)
            refuse(self._gateways, raw.get("_id"), refusal(problem))
            return None
        except InvalidGatewayId as problem:
            refuse(self._gateways, raw.get("_id"), refusal(problem))
            return None
        return GatewayEvent(
            gateway.gateway_id, gateway.state, gateway.phase, written_at=_written_at(change)
        )

    def _open(self) -> ChangeStream[RawDoc]:
        token = self.load_token()
        if token is not None:
            try:
                stream = self._watch(token)
            except OperationFailure as exc:
                if exc.code not in STALE_TOKEN_CODES:
                    raise
                log.warning(
                    "saved resume token of the %s change feed is no longer valid (%s); "
                    "starting from now, the sweep covers anything missed",
                    COLLECTION,
                    _errmsg(exc),
                )
            else:
                log.info("change feed on %s resumes from its saved token", COLLECTION)
                return stream
        stream = self._watch(None)
        log.info("change feed on %s starts from now", COLLECTION)
        if stream.resume_token is not None:
            self.save_token(stream.resume_token)
        return stream

    def _watch(self, token: Token | None) -> ChangeStream[RawDoc]:
        try:
            return self._gateways.watch(
                PIPELINE,
                full_document="updateLookup",
                resume_after=token,
                max_await_time_ms=self._max_await_ms,
            )
        except OperationFailure as exc:
            if exc.code in UNAVAILABLE_CODES:
                raise ChangeStreamsUnavailable(
                    f"this MongoDB server has no change streams: {_errmsg(exc)}"
                ) from exc
            raise


def _written_at(change: RawDoc) -> datetime | None:
    """`wallTime` (MongoDB 6.0 and later, to the millisecond), else `clusterTime` (to the
    second)."""
    wall = change.get("wallTime")
    if isinstance(wall, datetime):
        return wall if wall.tzinfo else wall.replace(tzinfo=UTC)
    cluster = change.get("clusterTime")
    return cluster.as_datetime() if isinstance(cluster, Timestamp) else None


def _errmsg(exc: OperationFailure) -> str:
    return str((exc.details or {}).get("errmsg") or exc)
