"""Replay recorded workflow histories against the current workflow code.

A change that running workflows cannot follow (steps in another order, a step more or
less, another child) fails here with the SDK's nondeterminism error before it is
deployed. Histories come from files (`temporal workflow show --output json`, or the JSON
of the older tctl) or straight from a Temporal server; `gate` replays what the server
holds, as a check before a rollout.
"""

import dataclasses
import functools
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.json_format import ParseError
from rich.table import Table
from rich.text import Text
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.worker import Replayer

from gatewayflow.domain.errors import PermanentError
from workflows.registry import ALL_WORKFLOWS


class HistoryFormatError(PermanentError, ValueError):
    """A file that is not a workflow history in a format we read; the message names it."""


@dataclass(frozen=True)
class ReplayResult:
    workflow_id: str
    run_id: str
    workflow_type: str
    ok: bool
    error: str | None = None
    """The SDK's message when the history does not replay, e.g. "Nondeterminism error: ..."."""
    event: str | None = None
    """Where the history parts from the code, when `gate` looked: e.g. "event 19
    ActivityTaskScheduled delete_stages"."""


@dataclass(frozen=True)
class GateRun:
    """What `gate` replayed: `query`, `total` histories to replay, `broken` the first that
    did not (the gate stops there)."""

    query: str
    total: int
    replayed: int
    broken: ReplayResult | None


def load_history(path: str | Path) -> WorkflowHistory:
    """Read one history file.

    Accepted: `{"events": [...]}` as `temporal workflow show --output json` and
    `WorkflowHistory.to_json()` write it (other top-level keys are ignored), and the
    legacy tctl JSON: a bare list of events and/or enums in the old short style
    (`"eventType": "WorkflowExecutionStarted"`, `"kind": "Normal"`), which
    `WorkflowHistory.from_json` rewrites to the current names. The workflow id is the
    one the server recorded in the first event; older servers did not record it, and then
    the file name (without `.json`) stands in.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HistoryFormatError(f"{path}: cannot read JSON: {exc}") from exc
    if isinstance(data, list):
        data = {"events": data}
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list) or not events or not isinstance(events[0], dict):
        raise HistoryFormatError(
            f'{path}: not a workflow history: expected {{"events": [...]}} or a list of events'
        )
    started = events[0].get("workflowExecutionStartedEventAttributes")
    if not isinstance(started, dict):
        raise HistoryFormatError(f"{path}: the first event is not WorkflowExecutionStarted")
    workflow_id = started.get("workflowId") or path.stem
    try:
        return WorkflowHistory.from_json(workflow_id, data)
    except (ValueError, ParseError) as exc:
        raise HistoryFormatError(f"{path}: not a workflow history: {exc}") from exc


async def fetch_histories(
    client: Client, *, workflow_id: str | None = None, query: str | None = None
) -> list[WorkflowHistory]:
    """Every run (running or closed) that matches, from the server.

    `query` is a visibility query such as `GatewayId='gw1'`; with `workflow_id` too,
    both must match. With neither, every workflow of the namespace is fetched.
    """
    clauses = [f"({query})"] if query else []
    if workflow_id is not None:
        clauses.append(f"WorkflowId = '{workflow_id}'")
    histories = []
    async for execution in client.list_workflows(" AND ".join(clauses) or None):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        histories.append(await handle.fetch_history())
    return histories


def gate_query(task_queue: str, query: str | None = None) -> str:
    """The gate's visibility query: `query`, else every workflow of the task queue."""
    return query or f"TaskQueue = '{task_queue}'"


async def count_histories(client: Client, query: str, limit: int) -> int:
    """How many histories `server_histories` yields (visibility's count, at most `limit`)."""
    return min(limit, (await client.count_workflows(query)).count)


async def server_histories(
    client: Client, query: str, limit: int
) -> AsyncGenerator[WorkflowHistory, None]:
    """Up to `limit` histories of the runs `query` finds, fetched one at a time: the
    running ones first (they go on under the new code), then the closed ones (the paths
    the code took lately)."""
    fetched = 0
    for status in ("ExecutionStatus = 'Running'", "ExecutionStatus != 'Running'"):
        async for execution in client.list_workflows(f"({query}) AND {status}"):
            if fetched >= limit:
                return
            handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
            yield await handle.fetch_history()
            fetched += 1


async def gate(
    client: Client,
    query: str,
    limit: int,
    on_result: Callable[[int, int, ReplayResult], None] = lambda n, total, result: None,
    *,
    workflows: Sequence[type] = ALL_WORKFLOWS,
) -> GateRun:
    """Replay the server's histories of `query` (see `server_histories`) until the first
    that does not replay, and find the event where it parts from the code. `on_result`
    gets each result as it comes, with its number and the total."""
    total = await count_histories(client, query, limit)
    replayed = 0
    broken: tuple[WorkflowHistory, ReplayResult] | None = None
    histories = server_histories(client, query, limit)
    replays = _replayed(histories, workflows)
    try:
        async for history, result in replays:
            replayed += 1
            total = max(total, replayed)  # visibility counted before it listed
            on_result(replayed, total, result)
            if not result.ok:
                broken = history, result
                break
    finally:  # the replayer's worker, then the listing, end here
        await replays.aclose()
        await histories.aclose()
    if broken is None:
        return GateRun(query, total, replayed, None)
    history, result = broken
    event = await parting_event(history, result.error or "", workflows)
    return GateRun(query, total, replayed, dataclasses.replace(result, event=event))


async def replay_histories(
    histories: Iterable[WorkflowHistory], *, workflows: Sequence[type] = ALL_WORKFLOWS
) -> list[ReplayResult]:
    """Replay each history; a failure is reported in its result, never raised.

    `workflows` defaults to every workflow the worker runs, with the worker's data
    converter, so a history replays exactly as the worker would run it again.
    """

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    return [result async for _, result in _replayed(each(), workflows)]


async def _replayed(
    histories: AsyncIterator[WorkflowHistory], workflows: Sequence[type]
) -> AsyncGenerator[tuple[WorkflowHistory, ReplayResult], None]:
    async with _replayer(workflows).workflow_replay_iterator(histories) as replayed:
        async for result in replayed:
            failure = result.replay_failure
            yield (
                result.history,
                ReplayResult(
                    workflow_id=result.history.workflow_id,
                    run_id=result.history.run_id,
                    workflow_type=_workflow_type(result.history),
                    ok=failure is None,
                    error=None if failure is None else _message(failure),
                ),
            )


def _replayer(workflows: Sequence[type]) -> Replayer:
    return Replayer(
        workflows=list(workflows), data_converter=pydantic_data_converter, runtime=_quiet_runtime()
    )


_TASK_STARTED = EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
_TASK_COMPLETED = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
# The events a workflow task's commands (and its answers to updates) write, right after
# its WorkflowTaskCompleted.
_COMMAND_EVENTS = frozenset(
    {
        EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED,
        EventType.EVENT_TYPE_TIMER_STARTED,
        EventType.EVENT_TYPE_TIMER_CANCELED,
        EventType.EVENT_TYPE_MARKER_RECORDED,
        EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
        EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
        EventType.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
        EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
        EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    }
)


async def parting_event(
    history: WorkflowHistory, error: str, workflows: Sequence[type] = ALL_WORKFLOWS
) -> str | None:
    """The event where a history that does not replay parts from the code.

    The SDK's message names a command or an event type, not where it is. Replays of the
    history cut where a workflow task starts (each only checks the tasks before the cut)
    find the first task whose commands the code no longer gives; of the events those
    commands wrote, the one the message quotes by name, else the first.
    """
    events = list(history.events)
    cuts = sorted(
        {i for i, e in enumerate(events) if e.event_type == _TASK_STARTED} | {len(events) - 1}
    )
    replayer = _replayer(workflows)
    low, high = 0, len(cuts) - 1  # the whole history does not replay
    while low < high:
        middle = (low + high) // 2
        cut = WorkflowHistory(history.workflow_id, events[: cuts[middle] + 1])
        replayed = await replayer.replay_workflow(cut, raise_on_replay_failure=False)
        if replayed.replay_failure is None:
            low = middle + 1
        else:
            high = middle
    completed = [i for i in range(cuts[low]) if events[i].event_type == _TASK_COMPLETED]
    if not completed:
        return None
    written = []
    for event in events[completed[-1] + 1 :]:
        if event.event_type not in _COMMAND_EVENTS:
            break
        written.append(event)
    if not written:
        return None
    quoted = set(re.findall(r"'([^']+)'", error))
    named = next((e for e in written if _detail(e) in quoted), written[0])
    return _describe(named)


def _detail(event: HistoryEvent) -> str:
    """What an event is about: an activity's or child's type, a timer's id, a marker."""
    if event.HasField("activity_task_scheduled_event_attributes"):
        return event.activity_task_scheduled_event_attributes.activity_type.name
    if event.HasField("start_child_workflow_execution_initiated_event_attributes"):
        return event.start_child_workflow_execution_initiated_event_attributes.workflow_type.name
    if event.HasField("timer_started_event_attributes"):
        return event.timer_started_event_attributes.timer_id
    if event.HasField("marker_recorded_event_attributes"):
        return event.marker_recorded_event_attributes.marker_name
    return ""


def _describe(event: HistoryEvent) -> str:
    """e.g. "event 19 ActivityTaskScheduled delete_stages"."""
    kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
    words = "".join(word.capitalize() for word in kind.split("_"))
    return " ".join(part for part in (f"event {event.event_id}", words, _detail(event)) if part)


def results_table(results: Sequence[ReplayResult]) -> Table:
    """One row per history, for `gatewayflow replay`."""
    table = Table(
        "workflow id", "run id", "type", "result", title="Replay against the current code"
    )
    for result in results:
        verdict = (
            Text("✓ replays", style="green") if result.ok else Text(f"✗ {result.error}", "red")
        )
        table.add_row(
            Text(result.workflow_id), Text(result.run_id), Text(result.workflow_type), verdict
        )
    return table


@functools.cache
def _quiet_runtime() -> Runtime:
    """A runtime whose core does not also log each failure we report in the results."""
    return Runtime(telemetry=TelemetryConfig(logging=None))


# Core reports a failed replay as the Debug form of its Failure, e.g. `Workflow activation
# completion failed: Failure { failure: Some(Failure { message: "[TMPRL1100] Nondeterminism
# error: ...", ... }) }`; the message inside is what a user needs.
_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')


def _message(failure: Exception) -> str:
    found = _CORE_MESSAGE.search(str(failure))
    if found is None:
        return str(failure)
    try:
        message: str = json.loads(f'"{found.group(1)}"')
    except ValueError:
        message = found.group(1)
    return message


def _workflow_type(history: WorkflowHistory) -> str:
    first = history.events[0]
    return first.workflow_execution_started_event_attributes.workflow_type.name
