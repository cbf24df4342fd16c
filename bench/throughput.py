"""Throughput: N gateways deleted at once, against the engine bound on the same server.

gatewayflow: N gateways (full tree, Started) get `state: 'Deleted'` in one raw
`update_many`; the time is until every document and namespace is gone.

Engine bound: N NoopChain workflows, each with the same number of activities and child
workflows as the histories of one real deletion show, on a task queue of their own served
by a no-op worker process with the same limits. Both figures come from the same Temporal
server in the same run; CPU seconds of every process are read from /proc around each burst.

With a profile directory, py-spy samples the worker during the burst of PROFILE_AT
deletions (or the largest burst, when there is none of that size).
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from bench.context import Bench
from bench.noop import ChainInput, Level, NoopChain
from bench.processes import ChildProcess, Profiler, Usage, peak_rss_mb, reset_peak_rss
from gatewayflow.domain import naming
from gatewayflow.settings import Settings

RETRY_SAMPLE = 10
PROFILE_AT = 100


@dataclass(frozen=True)
class Burst:
    n: int
    seconds: float
    per_second: float
    cpu_seconds_per_100: dict[str, float]
    """CPU seconds per 100 deletions (or chains), by process: the worker and the stack."""
    worker_peak_rss_mb: float


@dataclass(frozen=True)
class ThroughputRun:
    n: int
    gatewayflow: Burst
    engine_bound: Burst
    ratio: float
    """gatewayflow deletions per second / bound chains per second."""
    activity_retries_per_deletion: float
    """Sampled from the burst's histories: activity attempts that timed out or failed."""
    profile: str | None = None
    """Where py-spy's profile of the worker during this burst was written."""
    profile_top: list[tuple[str, float]] = field(default_factory=list)
    """The innermost frames with the largest share of the worker's samples."""


@dataclass(frozen=True)
class ThroughputResult:
    shape: list[Level]
    activities_per_deletion: int
    child_workflows_per_deletion: int
    runs: list[ThroughputRun]


async def _history(
    client: Client, workflow_id: str, run_id: str | None = None
) -> list[HistoryEvent]:
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    return list(history.events)


async def deletion_histories(
    client: Client, settings: Settings, gateway_id: str
) -> list[list[HistoryEvent]]:
    """The events of one finished deletion, per workflow: the gateway's from its `delete`
    signal on, then each child workflow in turn."""
    wid = naming.gateway_workflow_id(settings.installation, gateway_id)
    events = await _history(client, wid)
    first = next(
        i
        for i, e in enumerate(events)
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and e.workflow_execution_signaled_event_attributes.signal_name == "delete"
    )
    histories = [events[first:]]
    while (child := _child_of(histories[-1])) is not None:
        histories.append(await _history(client, *child))
    return histories


def _child_of(events: list[HistoryEvent]) -> tuple[str, str] | None:
    started = [
        e.child_workflow_execution_started_event_attributes.workflow_execution
        for e in events
        if e.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED
    ]
    if len(started) > 1:
        raise RuntimeError("a workflow of the deletion starts several children: extend NoopChain")
    return (started[0].workflow_id, started[0].run_id) if started else None


def _level_of(events: list[HistoryEvent]) -> Level:
    level, child_initiated = Level(0, 0), False
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            child_initiated = True
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if child_initiated:
                level.after += 1
            else:
                level.before += 1
    return level


def _retries(events: list[HistoryEvent]) -> int:
    """Attempts beyond the first (timeouts, errors), from each activity's last attempt."""
    return sum(
        e.activity_task_started_event_attributes.attempt - 1
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    )


async def deletion_shape(client: Client, settings: Settings, gateway_id: str) -> list[Level]:
    """Activities before and after the child, per workflow, of one finished deletion."""
    deletion = await deletion_histories(client, settings, gateway_id)
    return [_level_of(events) for events in deletion]


async def retries_per_deletion(client: Client, settings: Settings, ids: list[str]) -> float:
    """Activity retries per deletion, over a sample of RETRY_SAMPLE of the burst."""
    sample = ids[:: max(1, len(ids) // RETRY_SAMPLE)][:RETRY_SAMPLE]
    total = 0
    for gateway_id in sample:
        deletion = await deletion_histories(client, settings, gateway_id)
        total += sum(_retries(events) for events in deletion)
    return total / len(sample)


async def _burst(
    n: int,
    pids: dict[str, int],
    worker_pid: int,
    work: Callable[[], Awaitable[float]],
    profiler: Profiler | None = None,
) -> Burst:
    reset_peak_rss(worker_pid)
    before = Usage.of(pids)
    try:
        seconds = await work()
    finally:
        if profiler is not None:
            await asyncio.to_thread(profiler.stop)
    spent = Usage.of(pids).since(before)
    return Burst(
        n=n,
        seconds=seconds,
        per_second=n / seconds,
        cpu_seconds_per_100={name: cpu * 100 / n for name, cpu in spent.items()},
        worker_peak_rss_mb=peak_rss_mb(worker_pid),
    )


async def _run_chains(client: Client, task_queue: str, n: int, shape: list[Level]) -> float:
    began = time.perf_counter()
    handles = await asyncio.gather(
        *(
            client.start_workflow(
                NoopChain.run, ChainInput(shape), id=f"bound-{n}-{i:03d}", task_queue=task_queue
            )
            for i in range(n)
        )
    )
    await asyncio.gather(*(handle.result() for handle in handles))
    return time.perf_counter() - began


async def measure(
    bench: Bench,
    gatewayflow: Settings,
    worker: ChildProcess,
    sizes: tuple[int, ...],
    shape_of: str,
    profile_dir: Path | None = None,
) -> ThroughputResult:
    """`worker` serves `gatewayflow`; `shape_of` is a gateway it has deleted already."""
    profiled = PROFILE_AT if PROFILE_AT in sizes else max(sizes)
    shape = await deletion_shape(bench.client, gatewayflow, shape_of)
    bound_settings = bench.scoped("bound")
    noop_worker = ChildProcess(
        name="no-op worker",
        args=["-m", "bench.noop_worker"],
        env=worker.env | {"GATEWAYFLOW_TASK_QUEUE": bound_settings.task_queue},
        log_file=bench.settings.home / "logs" / "noop-worker.log",
        ready_line="no-op worker running",
    )
    await asyncio.to_thread(noop_worker.start)
    runs = []
    try:
        for n in sizes:
            ids = [f"tp{n}-{i:03d}" for i in range(n)]
            await bench.provision(gatewayflow, ids)
            profiler = None
            if profile_dir is not None and n == profiled:
                profiler = Profiler(worker.pid, profile_dir / f"worker-{n}-at-once.txt")
            real = await _burst(
                n,
                {"worker": worker.pid, **bench.stack_pids()},
                worker.pid,
                partial(bench.delete_all_and_time, gatewayflow, ids),
                profiler,
            )
            bound = await _burst(
                n,
                {"worker": noop_worker.pid, **bench.stack_pids()},
                noop_worker.pid,
                partial(_run_chains, bench.client, bound_settings.task_queue, n, shape),
            )
            retries = await retries_per_deletion(bench.client, gatewayflow, ids)
            runs.append(
                ThroughputRun(
                    n,
                    real,
                    bound,
                    real.per_second / bound.per_second,
                    retries,
                    profile=None if profiler is None else str(profiler.out),
                    profile_top=[] if profiler is None else profiler.top(),
                )
            )
    finally:
        await asyncio.to_thread(noop_worker.stop)
    return ThroughputResult(
        shape=shape,
        activities_per_deletion=sum(level.before + level.after for level in shape),
        child_workflows_per_deletion=len(shape) - 1,
        runs=runs,
    )
