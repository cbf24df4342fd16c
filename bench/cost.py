"""Cost per deletion: MongoDB round trips by command, Kubernetes API requests by verb,
Temporal workflow tasks and activities.

MongoDB round trips are counted in-process with a command listener.
A listener registered with `pymongo.monitoring.register` is carried by every client
created afterwards, so it is registered before the in-process worker (and the tick
baseline) create theirs; the bench's own client exists already and is never counted.
The window of one deletion runs from the raw write until the document and the namespace
are gone, plus `SETTLE` seconds for what follows (the gateway workflow's last read).
Polling is part of the count: for gatewayflow the change feed's getMore, two a second when
idle and, on SecantusDB, one more for every write to the server (its awaitData getMore
returns an empty batch on any write); for the baseline, the two claims a second of its
tick loops.

Kubernetes requests come from the emulator's request counts (`/_admin/requests`) over the
same window, and are also given per object the deletion removed (from its oplog). Temporal
workflow tasks, activities (local ones too) and child workflows are read from the
deletion's histories: `gateway/<id>` from its `delete` signal on, then each child.

Worker CPU seconds and peak RSS per 100 deletions come from the throughput bursts
(`throughput.Burst`), where the worker is a process of its own.
"""

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pymongo import monitoring
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from bench.context import Bench, in_process_worker
from bench.latency import provision_for_baseline
from bench.throughput import deletion_histories
from bench.tick_baseline import TickBaseline
from gatewayflow.settings import Settings
from tests.emulator_admin import EmulatorAdmin

SETTLE = 0.5


class CommandCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window: Counter[str] | None = None

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            if self._window is not None:
                self._window[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    @contextmanager
    def window(self) -> Iterator[Counter[str]]:
        counts: Counter[str] = Counter()
        with self._lock:
            self._window = counts
        try:
            yield counts
        finally:
            with self._lock:
                self._window = None


@dataclass(frozen=True)
class Window:
    """What one deletion cost, counted from its raw write until it settled."""

    mongo: Counter[str]
    kube: Counter[str]
    removed_objects: int


@dataclass(frozen=True)
class KubeRequests:
    per_deletion: float
    by_verb: dict[str, float]
    """Per deletion, by API verb."""
    per_removed_object: float
    """Requests per Kubernetes object the deletion removed."""

    @classmethod
    def of(cls, windows: list[Window]) -> "KubeRequests":
        total: Counter[str] = sum((w.kube for w in windows), Counter())
        n, removed = len(windows), sum(w.removed_objects for w in windows)
        return cls(
            per_deletion=sum(total.values()) / n,
            by_verb={verb: count / n for verb, count in total.most_common()},
            per_removed_object=sum(total.values()) / max(removed, 1),
        )


@dataclass(frozen=True)
class TemporalWork:
    """Per deletion, over the histories of every workflow of the deletion."""

    workflow_tasks: float
    activities: float
    local_activities: float
    child_workflows: float


@dataclass(frozen=True)
class RoundTrips:
    deletions: int
    per_deletion: float
    by_command: dict[str, float]
    """Per deletion, by command name."""

    @property
    def without_getmore(self) -> float:
        """Without the change feed's getMore, which SecantusDB answers on every write."""
        return self.per_deletion - self.by_command.get("getMore", 0.0)

    @classmethod
    def of(cls, windows: list[Counter[str]]) -> "RoundTrips":
        total: Counter[str] = sum(windows, Counter())
        n = len(windows)
        return cls(
            deletions=n,
            per_deletion=sum(total.values()) / n,
            by_command={name: count / n for name, count in total.most_common()},
        )


@dataclass(frozen=True)
class RoundTripResult:
    gatewayflow: RoundTrips
    tick_baseline: RoundTrips
    kube_gatewayflow: KubeRequests
    kube_tick_baseline: KubeRequests
    temporal: TemporalWork


async def _counted(
    bench: Bench, counter: CommandCounter, settings: Settings, gateway_id: str
) -> Window:
    admin = EmulatorAdmin.of(bench.settings)
    since = await asyncio.to_thread(admin.last_seq)
    before = await asyncio.to_thread(admin.requests_by_verb)
    with counter.window() as counts:
        await bench.delete_and_time(settings, gateway_id)
        await asyncio.sleep(SETTLE)
    after = await asyncio.to_thread(admin.requests_by_verb)
    oplog = await asyncio.to_thread(admin.oplog, gateway_id, since)
    return Window(
        mongo=counts,
        kube=Counter({verb: n - before.get(verb, 0) for verb, n in after.items()}),
        removed_objects=sum(1 for item in oplog if item["verb"] == "removed"),
    )


_TEMPORAL_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "workflow_tasks",
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activities",
    EventType.EVENT_TYPE_MARKER_RECORDED: "local_activities",
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: "child_workflows",
}


# The marker of a local activity; a `workflow.patched` marker is no work.
_LOCAL_ACTIVITY_MARKER = "core_local_activity"


def _counted_event(event: HistoryEvent) -> str | None:
    if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
        name = event.marker_recorded_event_attributes.marker_name
        return "local_activities" if name == _LOCAL_ACTIVITY_MARKER else None
    return _TEMPORAL_EVENTS.get(event.event_type)


async def temporal_work(bench: Bench, settings: Settings, ids: list[str]) -> TemporalWork:
    counts: Counter[str] = Counter()
    for gateway_id in ids:
        for events in await deletion_histories(bench.client, settings, gateway_id):
            counts.update(name for e in events if (name := _counted_event(e)) is not None)
    n = len(ids)
    return TemporalWork(**{name: counts[name] / n for name in _TEMPORAL_EVENTS.values()})


async def measure_round_trips(bench: Bench, count: int) -> RoundTripResult:
    """Registers a global listener: run it last, it stays for the life of the process."""
    counter = CommandCounter()
    monitoring.register(counter)

    gatewayflow = bench.scoped("rt")
    ids = [f"rt-gf-{n}" for n in range(count)]
    async with in_process_worker(gatewayflow, dispatcher=True):
        await bench.provision(gatewayflow, ids)
        gf = [await _counted(bench, counter, gatewayflow, gid) for gid in ids]

    baseline_settings = bench.scoped("rt-tick")
    await provision_for_baseline(bench, baseline_settings, ["rt-tick-0"])
    baseline = TickBaseline(baseline_settings)
    await asyncio.to_thread(baseline.connect)
    stop = asyncio.Event()
    loop = asyncio.create_task(baseline.run(stop))
    try:
        tick = [await _counted(bench, counter, baseline_settings, "rt-tick-0")]
    finally:
        stop.set()
        await loop
    return RoundTripResult(
        gatewayflow=RoundTrips.of([w.mongo for w in gf]),
        tick_baseline=RoundTrips.of([w.mongo for w in tick]),
        kube_gatewayflow=KubeRequests.of(gf),
        kube_tick_baseline=KubeRequests.of(tick),
        temporal=await temporal_work(bench, gatewayflow, ids),
    )
