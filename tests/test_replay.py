"""Replay: recorded histories against the current workflow code, and what replay catches.

The histories in tests/histories/ come from real runs (tests/record_histories.py). If a
change to workflow code makes one fail here, running workflows of that kind would fail
the same way after the deploy: see tests/histories/README.md.
"""

import asyncio
import base64
import dataclasses
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.workflow import ParentClosePolicy

from control.replay import (
    HistoryFormatError,
    fetch_histories,
    load_history,
    replay_histories,
    results_table,
)
from gatewayflow.client import connect
from gatewayflow.domain import naming
from gatewayflow.domain.messages import DeletionInput, DeletionResult, PermitRequest
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.settings import Settings
from tests.conftest import stack_env
from tests.gateway_harness import harness, unique_id
from tests.record_histories import HISTORIES, LEGACY_FILE, LEGACY_SOURCE, to_tctl_style
from workflows import guard, permits, search
from workflows import operations as ops
from workflows.operations import DELETE, Step
from workflows.registry import ALL_WORKFLOWS
from workflows.steps import run_step

REPO = Path(__file__).resolve().parent.parent
FILES = sorted(HISTORIES.glob("*.json"))
DELETION = HISTORIES / LEGACY_SOURCE


def workflow_type_of(path: Path) -> str:
    """`<scenario>--<workflow-type>.json`"""
    return path.stem.split("--")[1]


def without_workflow_id(history: WorkflowHistory) -> list[Any]:
    """The events, minus the workflow id that only newer servers record."""
    events = [type(e)() for e in history.events]
    for copy, event in zip(events, history.events, strict=True):
        copy.CopyFrom(event)
    events[0].workflow_execution_started_event_attributes.ClearField("workflow_id")
    return events


# -- every recorded history replays --------------------------------------------------------
def test_histories_cover_every_workflow_and_stay_small() -> None:
    assert {workflow_type_of(path) for path in FILES} == {
        "GatewayWorkflow",
        "GatewayDeletion",
        "RuntimeDomainWorkflow",
        "DriftCheck",
        "OrphanReaper",
    }
    assert len(ALL_WORKFLOWS) == 5
    # Grows with each scenario (drift-repair, reap, delete-queued and requests: ~0.6 MB).
    assert sum(path.stat().st_size for path in FILES) < 2_500_000


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
async def test_recorded_history_replays(path: Path) -> None:
    [result] = await replay_histories([load_history(path)])
    assert result.workflow_type == workflow_type_of(path)
    assert result.ok, (
        f"{path.name} no longer replays: {result.error}\n"
        "Running workflows like it would fail after this change; tests/histories/README.md "
        "says how to make it safely."
    )


def test_recorded_histories_hold_the_scenarios() -> None:
    """Each file is what its name says: retries, a cancelled wait, a backoff, requests, a
    continue-as-new, short steps as local activities."""

    def events(name: str) -> list[str]:
        return [e["eventType"] for e in json.loads((HISTORIES / name).read_text())["events"]]

    faulty = json.loads((HISTORIES / "delete-with-faults--GatewayDeletion.json").read_text())
    attempts = [
        e["activityTaskStartedEventAttributes"].get("attempt", 1)
        for e in faulty["events"]
        if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_STARTED"
    ]
    assert max(attempts) > 1
    # The wait for readiness is cancelled by the delete: its timer, or the look in flight.
    preempted = events("preempted-start--GatewayWorkflow.json")
    assert {
        "EVENT_TYPE_TIMER_CANCELED",
        "EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED",
    } & set(preempted)
    assert events("continue-as-new--GatewayWorkflow.json")[-1] == (
        "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW"
    )
    assert events("delete--GatewayDeletion.json")[-1] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"
    # The start stopped once the step the delete came during returned: no readiness look.
    during = (HISTORIES / "delete-during-start--GatewayWorkflow.json").read_text()
    assert "apply_instance" in during and "check_instance_ready" not in during
    # A failed operation: the backoff's timer, cut short by a request.
    kinds = events("failure-backoff--GatewayWorkflow.json")
    assert "EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED" in kinds
    assert "EVENT_TYPE_TIMER_STARTED" in kinds and "EVENT_TYPE_TIMER_CANCELED" in kinds
    # Requests sent to the workflow: signals and updates, each written by apply_request.
    asked = load_history(HISTORIES / "requests--GatewayWorkflow.json")
    signalled = [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in asked.events
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    updated = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for e in asked.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    applied = [
        e
        for e in asked.events
        if e.activity_task_scheduled_event_attributes.activity_type.name == "apply_request"
    ]
    assert signalled == ["reconcile", "stop", "restart", "start"]  # the first: the create
    assert updated == ["start", "delete"]
    assert len(applied) == 5

    def signals(name: str) -> list[str]:
        return [
            e["workflowExecutionSignaledEventAttributes"]["signalName"]
            for e in json.loads((HISTORIES / name).read_text())["events"]
            if e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"
        ]

    assert "repair" in signals("drift-repair--GatewayWorkflow.json")
    assert "permit_granted" in signals("delete-queued--GatewayDeletion.json")
    # Short steps run as local activities (markers): the RuntimeDomain step's record,
    # functions and finalize.
    for name, expected in (
        ("delete--GatewayDeletion.json", 3),  # domain record, functions, finalize
        ("create-start--GatewayWorkflow.json", 2),  # the domain steps' records
    ):
        local = json.loads((HISTORIES / name).read_text())
        names = [
            e["markerRecordedEventAttributes"]["markerName"]
            for e in local["events"]
            if e["eventType"] == "EVENT_TYPE_MARKER_RECORDED"
        ]
        assert names.count("core_local_activity") == expected, name
    # A run of the id before installations hands over: it starts its successor (or finds
    # it started) and ends; the successor looks, waits while the old run lives, then acts.
    handed = events("hand-over--GatewayWorkflow.json")
    assert "EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED" in handed
    assert handed[-1] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"
    taken = events("take-over-unscoped--GatewayWorkflow.json")
    assert "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED" in taken
    taker = events("take-over--GatewayWorkflow.json")
    first_activity = taker.index("EVENT_TYPE_ACTIVITY_TASK_SCHEDULED")  # read_intent
    assert "EVENT_TYPE_TIMER_FIRED" in taker[:first_activity]
    for name in ("hand-over", "take-over-unscoped"):
        assert "retire" in signals(f"{name}--GatewayWorkflow.json")


def test_recorded_deletion_guard_histories() -> None:
    """The deletion-guard generation: a deletion held before its first step, then released
    (the deletion runs) or cancelled (none ever starts); the histories recorded before
    the patch carry no marker and replay without the guard."""

    def scheduled(history: WorkflowHistory) -> list[str]:
        return [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        ]

    def patches(history: WorkflowHistory) -> list[str]:
        markers = [
            e.marker_recorded_event_attributes
            for e in history.events
            if e.marker_recorded_event_attributes.marker_name == "core_patch"
        ]
        return [json.loads(m.details["patch-data"].payloads[0].data)["id"] for m in markers]

    def phases(history: WorkflowHistory) -> list[str]:
        upserts = [
            e.upsert_workflow_search_attributes_event_attributes.search_attributes
            for e in history.events
            if e.HasField("upsert_workflow_search_attributes_event_attributes")
        ]
        return [
            json.loads(upsert.indexed_fields["GatewayPhase"].data)
            for upsert in upserts
            if "GatewayPhase" in upsert.indexed_fields
        ]

    def signals(history: WorkflowHistory) -> list[str]:
        return [
            e.workflow_execution_signaled_event_attributes.signal_name
            for e in history.events
            if e.HasField("workflow_execution_signaled_event_attributes")
        ]

    released = load_history(HISTORIES / "delete-held-released--GatewayWorkflow.json")
    cancelled = load_history(HISTORIES / "delete-held-cancelled--GatewayWorkflow.json")
    for history in (released, cancelled):
        assert patches(history) == [guard.PATCH]
        assert guard.HELD_PHASE in phases(history)
        assert guard.SIGNAL in signals(history)
    # Held before the deletion's first step: after the operator's signal it asks again,
    # then the deletion begins (released), or the intent is given back (cancelled).
    asked = scheduled(released)
    held_at = asked.index("admit_deletion")
    assert asked[held_at : held_at + 3] == ["admit_deletion", "admit_deletion", "begin_operation"]
    assert any(
        e.HasField("child_workflow_execution_started_event_attributes") for e in released.events
    )
    asked = scheduled(cancelled)
    held_at = asked.index("admit_deletion")
    assert asked[held_at:] == [
        "admit_deletion",
        "admit_deletion",
        "cancel_held_deletion",
        "read_intent",
    ]
    children = [
        e.start_child_workflow_execution_initiated_event_attributes.workflow_type.name
        for e in cancelled.events
        if e.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]
    assert "GatewayDeletion" not in children
    assert patches(load_history(HISTORIES / "delete--GatewayWorkflow.json")) == []


# -- the file formats ----------------------------------------------------------------------
def test_legacy_tctl_file_loads_as_the_history_it_was_made_from() -> None:
    legacy = json.loads((HISTORIES / LEGACY_FILE).read_text())
    # The shape of tctl's export: a bare list, short enum names, no workflow id.
    assert isinstance(legacy, list)
    assert legacy[0]["eventType"] == "WorkflowExecutionStarted"
    assert legacy[0]["workflowExecutionStartedEventAttributes"]["taskQueue"]["kind"] == "Normal"
    assert "workflowId" not in legacy[0]["workflowExecutionStartedEventAttributes"]
    assert legacy == to_tctl_style(json.loads(DELETION.read_text()))

    loaded = load_history(HISTORIES / LEGACY_FILE)
    assert loaded.workflow_id == "legacy-tctl--GatewayDeletion"  # the file name stands in
    assert without_workflow_id(loaded) == without_workflow_id(load_history(DELETION))


@pytest.mark.parametrize(
    "path", [p for p in FILES if p.name != LEGACY_FILE], ids=lambda path: path.name
)
def test_every_enum_we_record_survives_the_tctl_style(path: Path, tmp_path: Path) -> None:
    """The SDK's fix-ups of old enum names cover every enum our histories contain."""
    legacy = tmp_path / path.name
    legacy.write_text(json.dumps(to_tctl_style(json.loads(path.read_text()))))
    assert without_workflow_id(load_history(legacy)) == without_workflow_id(load_history(path))


def test_cli_format_keeps_the_recorded_workflow_id(tmp_path: Path) -> None:
    history = load_history(DELETION)
    assert history.workflow_id.startswith("gateway-deletion/rec-delete-")
    extra = tmp_path / "extra-keys.json"
    extra.write_text(json.dumps({**json.loads(DELETION.read_text()), "nextPageToken": None}))
    assert load_history(extra).events == history.events


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("not json", "cannot read JSON"),
        ('{"workflows": []}', "not a workflow history"),
        ("[]", "not a workflow history"),
        ('[{"eventId": "1", "eventType": "WorkflowTaskScheduled"}]', "first event"),
    ],
)
def test_what_is_not_a_history_is_refused_by_name(
    tmp_path: Path, content: str, complaint: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(HistoryFormatError, match=complaint) as refused:
        load_history(path)
    assert str(path) in str(refused.value)


# -- an incompatible change is caught --------------------------------------------------------


STAGES_AT = DELETE.steps.index(ops.DELETE_STAGES)
INSTANCE_FIRST = (
    *DELETE.steps[:STAGES_AT],
    ops.REMOVE_INSTANCE,
    *(step for step in DELETE.steps[STAGES_AT:] if step is not ops.REMOVE_INSTANCE),
)


class DeletionCopy:
    """GatewayDeletion again (its permit, then its steps), each class below a variant
    registered under the name GatewayDeletion. Not sandboxed: the sandbox would re-import
    this test module.

    ORDER: the steps in order. NEW_STEP: an extra activity after the namespace step,
    `"always"`, or `"patched"` (only where `workflow.patched` lets it run).
    """

    ORDER: tuple[Step[Any], ...] = DELETE.steps
    NEW_STEP: str | None = None

    async def steps(self, input: DeletionInput) -> DeletionResult:
        gid = input.gateway_id
        search.upsert(gid, state="Deleted", phase=GatewayPhase.DELETING.value)
        permit = PermitRequest(gateway_id=gid, region=input.region)
        await permits.acquire(permit, lambda: False, lambda: None)
        result = DeletionResult(gateway_id=gid)
        for step in self.ORDER:
            step_input = DELETE.input(step, gid, input.region)
            result.steps.append(
                await run_step(
                    DELETE, step, step_input, parent_close_policy=ParentClosePolicy.ABANDON
                )
            )
            if step is ops.DELETE_NAMESPACE and (
                self.NEW_STEP == "always"
                or (self.NEW_STEP == "patched" and workflow.patched("wait-namespace-finalizers"))
            ):
                # An activity no worker has: only its place in the history matters here.
                await workflow.execute_activity(
                    "wait_namespace_gone", step_input, start_to_close_timeout=timedelta(minutes=1)
                )
        await permits.release(permit)
        search.upsert(gid, phase=GatewayPhase.DELETED.value)
        return result


@workflow.defn(name="GatewayDeletion", sandboxed=False)
class Unchanged(DeletionCopy):
    """The copy itself is faithful: without a change it replays."""

    @workflow.run
    async def run(self, input: DeletionInput) -> DeletionResult:
        return await self.steps(input)


@workflow.defn(name="GatewayDeletion", sandboxed=False)
class InstanceBeforeStages(DeletionCopy):
    ORDER = INSTANCE_FIRST

    @workflow.run
    async def run(self, input: DeletionInput) -> DeletionResult:
        return await self.steps(input)


@workflow.defn(name="GatewayDeletion", sandboxed=False)
class NewStep(DeletionCopy):
    NEW_STEP = "always"

    @workflow.run
    async def run(self, input: DeletionInput) -> DeletionResult:
        return await self.steps(input)


@workflow.defn(name="GatewayDeletion", sandboxed=False)
class NewStepPatched(DeletionCopy):
    NEW_STEP = "patched"

    @workflow.run
    async def run(self, input: DeletionInput) -> DeletionResult:
        return await self.steps(input)


@pytest.mark.parametrize(
    ("modified", "mismatch"),
    [
        (Unchanged, None),
        (InstanceBeforeStages, "delete_stages"),
        (NewStep, "LocalActivity"),  # where the history has finalize_deletion
        (NewStepPatched, None),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else str(value),
)
async def test_a_recorded_deletion_catches_an_incompatible_change(
    modified: type, mismatch: str | None
) -> None:
    [result] = await replay_histories([load_history(DELETION)], workflows=[modified])
    assert result.workflow_type == "GatewayDeletion"
    if mismatch is None:
        assert result.ok, result.error
        return
    assert not result.ok
    assert result.error is not None and "Nondeterminism error" in result.error
    assert mismatch in result.error


async def test_the_shipped_deletion_with_two_steps_swapped_does_not_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real GatewayDeletion (sandboxed, as the worker runs it) with the instance step
    declared before the stages: the recorded deletion names the step that moved."""
    [before] = await replay_histories([load_history(DELETION)])
    assert before.ok, before.error
    monkeypatch.setattr(ops, "DELETE", dataclasses.replace(DELETE, steps=INSTANCE_FIRST))
    [after] = await replay_histories([load_history(DELETION)])
    assert not after.ok
    assert after.error is not None and "Nondeterminism error" in after.error
    assert "delete_stages" in after.error


def test_every_patch_in_the_workflows_is_in_a_recorded_history() -> None:
    """A patch no recorded history has taken is a branch no replay has proven."""
    code = "\n".join(path.read_text() for path in (REPO / "workflows").glob("*.py"))
    patches = set(re.findall(r"(?:patched|deprecate_patch)\(\s*[\"']([^\"']+)", code))
    constants = dict(re.findall(r"^([A-Z_]+) = [\"']([^\"']+)[\"']", code, flags=re.M))
    for name in re.findall(r"(?:patched|deprecate_patch)\(\s*(?:\w+\.)?([A-Z_]+)\)", code):
        patches.add(constants[name])
    missing = sorted(patches - recorded_patches())
    assert not missing, f"patches with no recorded history: {missing}"


def recorded_patches() -> set[str]:
    """The patch ids of every `core_patch` marker in the recorded histories."""
    found = set()
    for path in HISTORIES.glob("*.json"):
        history = json.loads(path.read_text())
        events = history["events"] if isinstance(history, dict) else history
        for event in events:
            marker = event.get("markerRecordedEventAttributes") or {}
            if marker.get("markerName") != "core_patch":
                continue
            for payload in marker["details"]["patch-data"]["payloads"]:
                found.add(json.loads(base64.b64decode(payload["data"]))["id"])
    return found


def edited_deletion(tmp_path: Path) -> Path:
    """The recorded deletion as code with stages and instance swapped would have made it."""
    history = json.loads(DELETION.read_text())
    scheduled = [
        e["activityTaskScheduledEventAttributes"]["activityType"]
        for e in history["events"]
        if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
    ]
    stages = next(t for t in scheduled if t["name"] == "delete_stages")
    instance = next(t for t in scheduled if t["name"] == "delete_instance")
    stages["name"], instance["name"] = "delete_instance", "delete_stages"
    path = tmp_path / "other-code--GatewayDeletion.json"
    path.write_text(json.dumps(history))
    return path


async def test_a_history_of_other_code_does_not_replay(tmp_path: Path) -> None:
    results = await replay_histories(
        [load_history(DELETION), load_history(edited_deletion(tmp_path))]
    )
    assert [r.ok for r in results] == [True, False]
    error = results[1].error
    assert error is not None and "Nondeterminism error" in error and "delete_stages" in error
    assert results[1].workflow_id == load_history(DELETION).workflow_id
    rendered = results_table(results)
    assert rendered.row_count == 2


# -- from the server ----------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    settings: Settings
    gateway_id: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def lifecycle(stack: Settings) -> AsyncIterator[Run]:
    """One gateway created, stopped and deleted by a worker of the current code."""
    async with harness(stack) as h:
        gid = unique_id("replay")
        await h.create(gid)
        await h.wait_for(gid, GatewayState.RUNNING)
        await h.request(gid, Request.STOP)
        await h.wait_for(gid, GatewayState.STOPPED)
        await h.request(gid, Request.DELETE)
        await h.wait_for(gid, GatewayState.DELETED)
        yield Run(h.settings, gid)


def child_runs(histories: Sequence[WorkflowHistory], workflow_id: str) -> set[str]:
    """Run ids of `workflow_id` that the parents' histories say they started."""
    return {
        attributes.workflow_execution.run_id
        for history in histories
        for event in history.events
        if event.HasField("child_workflow_execution_started_event_attributes")
        for attributes in [event.child_workflow_execution_started_event_attributes]
        if attributes.workflow_execution.workflow_id == workflow_id
    }


async def test_histories_fetched_from_the_server_replay(lifecycle: Run) -> None:
    gid = lifecycle.gateway_id
    client = await connect(lifecycle.settings)
    installation = lifecycle.settings.installation
    domain = naming.domain_workflow_id(installation, gid)
    parents = {
        naming.gateway_workflow_id(installation, gid),
        naming.deletion_workflow_id(installation, gid),
    }
    # Visibility is eventually consistent: wait until every run is listed.
    for _ in range(100):
        histories = await fetch_histories(client, query=f"GatewayId='{gid}'")
        fetched = {h.workflow_id for h in histories}
        domain_runs = {h.run_id for h in histories if h.workflow_id == domain}
        started = child_runs([h for h in histories if h.workflow_id in parents], domain)
        if fetched == {*parents, domain} and domain_runs == started:
            break
        await asyncio.sleep(0.3)
    assert fetched == {*parents, domain}
    assert len(domain_runs) >= 3 and domain_runs == started  # every run, not just the last
    results = await replay_histories(histories)
    assert [r for r in results if not r.ok] == []
    assert {r.workflow_type for r in results} == {
        "GatewayWorkflow",
        "GatewayDeletion",
        "RuntimeDomainWorkflow",
    }

    deletion = naming.deletion_workflow_id(installation, gid)
    only = await fetch_histories(client, workflow_id=deletion)
    assert [h.workflow_id for h in only] == [deletion]
    both = await fetch_histories(client, workflow_id=domain, query=f"GatewayId='{gid}'")
    assert {h.run_id for h in both} == started
    assert await fetch_histories(client, workflow_id=domain, query="GatewayId='no-such'") == []


async def test_temporal_cli_export_loads_and_replays(lifecycle: Run, tmp_path: Path) -> None:
    """The JSON of `temporal workflow show --output json`, from the CLI we ship."""
    settings = lifecycle.settings
    workflow_id = naming.deletion_workflow_id(settings.installation, lifecycle.gateway_id)
    exported = subprocess.run(
        [
            str(Path(sys.executable).parent / "temporal"),
            "workflow",
            "show",
            "--address",
            str(settings.temporal_address),
            "--namespace",
            settings.temporal_namespace,
            "--workflow-id",
            workflow_id,
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    path = tmp_path / "exported--GatewayDeletion.json"
    path.write_text(exported.stdout)
    assert list(json.loads(exported.stdout)) == ["events"]
    history = load_history(path)
    assert history.workflow_id == workflow_id
    [result] = await replay_histories([history])
    assert result.ok, result.error


# -- the command line ----------------------------------------------------------------------
async def test_gatewayflow_replay_command(lifecycle: Run, tmp_path: Path) -> None:
    env = {**stack_env(lifecycle.settings), "COLUMNS": "250"}
    gatewayflow = str(Path(sys.executable).parent / "gatewayflow")

    def replay(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [gatewayflow, "replay", *args], env=env, capture_output=True, text=True, timeout=120
        )

    recorded = replay(*(str(path) for path in FILES))
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert "gateway-deletion/rec-delete-" in recorded.stdout

    served = replay("--query", f"GatewayId='{lifecycle.gateway_id}'")
    assert served.returncode == 0, served.stdout + served.stderr
    installation = lifecycle.settings.installation
    assert naming.deletion_workflow_id(installation, lifecycle.gateway_id) in served.stdout

    broken = replay(str(DELETION), str(edited_deletion(tmp_path)))
    assert broken.returncode != 0
    output = broken.stdout + broken.stderr
    assert load_history(DELETION).workflow_id in output
    assert "Nondeterminism error" in output
