"""The order of one deletion across both stores, on one clock.

MongoDB's change events (each with the server's `wallTime`) and the emulator's op log
(each entry with its `time`) are read independently of the code under test: neither is
written by our activities, unlike `progress.completed`. Each event is given the step of
docs/operations.md that must have caused it; an event of a later step may not come
before an event of an earlier one.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.emulator_admin import OpItem, deletion_step_of

# docs/operations.md: which step removes the documents of each collection.
MONGO_STEP = {
    "CronTrigger": 1,
    "CloudFunction": 2,
    "Stage": 3,
    "Environment": 3,
    "ClientApp": 3,
    "RuntimeDomain": 4,
    "Database": 6,
    "ApiGateway": 8,
}
RUNTIME_DATABASE_STEP = 6
# wallTime has millisecond precision; the op log microseconds.
TOLERANCE = timedelta(milliseconds=2)


@dataclass(frozen=True)
class Event:
    time: datetime
    step: int
    what: str


def mongo_events(
    changes: Iterable[Mapping[str, Any]], db_name: str, runtime_database: str
) -> list[Event]:
    """Document deletes in the gateway's database and the drop of its runtime database."""
    events = []
    for change in changes:
        ns = change.get("ns") or {}
        when = change["wallTime"].replace(tzinfo=UTC)
        if change["operationType"] == "delete" and ns.get("db") == db_name:
            collection = ns.get("coll")
            if collection in MONGO_STEP:
                what = f"delete {collection} {change['documentKey']['_id']}"
                events.append(Event(when, MONGO_STEP[collection], what))
        elif change["operationType"] == "dropDatabase" and ns.get("db") == runtime_database:
            events.append(Event(when, RUNTIME_DATABASE_STEP, f"drop database {runtime_database}"))
    return events


def oplog_events(gateway_id: str, items: Iterable[OpItem]) -> list[Event]:
    """Deletes and final removals in the cluster."""
    return [
        Event(
            datetime.fromisoformat(item["time"]),
            deletion_step_of(gateway_id, item),
            f"{item['verb']} {item['kind']} {item['name']}",
        )
        for item in items
        if item["verb"] in ("delete", "removed")
    ]


def order_violations(events: Iterable[Event]) -> list[str]:
    """Every pair where an event of a later step came before one of an earlier step."""
    ordered = sorted(events, key=lambda event: event.time)
    problems = []
    for index, late in enumerate(ordered):
        for early in ordered[index + 1 :]:
            if early.step < late.step and late.time + TOLERANCE < early.time:
                problems.append(
                    f"step {late.step} ({late.what}, {late.time:%H:%M:%S.%f}) came before "
                    f"step {early.step} ({early.what}, {early.time:%H:%M:%S.%f})"
                )
    return problems
