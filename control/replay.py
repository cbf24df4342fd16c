"""Replay recorded workflow histories against the current workflow code.

A change that running workflows cannot follow (steps in another order, a step more or
less, another child) fails here with the SDK's nondeterminism error before it is
deployed. Histories come from files (`temporal workflow show --output json`, or the JSON
of the older tctl) or straight from a Temporal server.
"""

import functools
import json
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.json_format import ParseError
from rich.table import Table
from rich.text import Text
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


async def replay_histories(
    histories: Iterable[WorkflowHistory], *, workflows: Sequence[type] = ALL_WORKFLOWS
) -> list[ReplayResult]:
    """Replay each history; a failure is reported in its result, never raised.

    `workflows` defaults to every workflow the worker runs, with the worker's data
    converter, so a history replays exactly as the worker would run it again.
    """
    replayer = Replayer(
        workflows=list(workflows), data_converter=pydantic_data_converter, runtime=_quiet_runtime()
    )

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    results = []
    async with replayer.workflow_replay_iterator(each()) as replayed:
        async for result in replayed:
            failure = result.replay_failure
            results.append(
                ReplayResult(
                    workflow_id=result.history.workflow_id,
                    run_id=result.history.run_id,
                    workflow_type=_workflow_type(result.history),
                    ok=failure is None,
                    error=None if failure is None else _message(failure),
                )
            )
    return results


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
