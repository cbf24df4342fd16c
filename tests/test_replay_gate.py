"""`gatewayflow replay --from-server`: the check before a rollout, as an operator runs it.

The server holds one gateway deleted (its gateway, deletion and runtime-domain runs, all
closed) and one running. The current code replays them all; the same command run from a
copy of the code with two deletion steps swapped, the change a rollout must not ship,
stops at the deletion and names it and the event where it parts from the code.
"""

import asyncio
import dataclasses
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

from control.replay import load_history, parting_event, replay_histories
from gatewayflow.domain import naming
from gatewayflow.domain.states import GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.settings import Settings
from tests.conftest import stack_env
from tests.gateway_harness import harness, unique_id
from tests.test_replay import DELETION, INSTANCE_FIRST, NewStep
from workflows import operations as ops

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("gatewayflow", "workflows", "activities", "control", "starter")
PROGRESS = re.compile(r"^\s*(\d+) of (\d+)\s+(✓|✗) (\S+) \((\w+)\)$", re.M)


@dataclass(frozen=True)
class Served:
    settings: Settings
    deleted: str
    running: str
    runs: int  # every run of the task queue, as visibility lists them


async def settled_count(client: Client, query: str) -> int:
    """Visibility's count once it lists the one running gateway workflow and stops
    changing (it follows the histories a moment later)."""
    last = -1
    async with asyncio.timeout(60):
        while True:
            running = await client.count_workflows(f"({query}) AND ExecutionStatus = 'Running'")
            count = (await client.count_workflows(query)).count
            if running.count == 1 and count == last:
                return count
            last = count
            await asyncio.sleep(1.0)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def served(stack: Settings) -> AsyncIterator[Served]:
    async with harness(stack) as h:
        deleted, running = unique_id("gate-gone"), unique_id("gate-live")
        await asyncio.gather(h.create(deleted), h.create(running))
        await asyncio.gather(
            h.wait_for(deleted, GatewayState.RUNNING), h.wait_for(running, GatewayState.RUNNING)
        )
        await h.request(deleted, Request.DELETE)
        await h.wait_for(deleted, GatewayState.DELETED)
        runs = await settled_count(h.client, f"TaskQueue = '{h.settings.task_queue}'")
        yield Served(h.settings, deleted, running, runs)


async def gatewayflow(
    settings: Settings, *args: str, code: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """`gatewayflow ...` with the code under `code` (this checkout, or a changed copy)."""
    env = {**stack_env(settings), "COLUMNS": "250", "PYTHONPATH": str(code)}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "starter", *args],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def changed_copy(tmp_path: Path) -> Path:
    """The code with the instance removed before the stages in a deletion."""
    copy = tmp_path / "next-version"
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, copy / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    operations = copy / "workflows" / "operations.py"
    declared = "        DELETE_STAGES,\n        DOMAIN_DELETED,\n        REMOVE_INSTANCE,\n"
    swapped = "        REMOVE_INSTANCE,\n        DELETE_STAGES,\n        DOMAIN_DELETED,\n"
    text = operations.read_text()
    assert text.count(declared) == 1, "DELETE's declaration changed: update this test's edit"
    operations.write_text(text.replace(declared, swapped))
    return copy


@pytest.mark.asyncio(loop_scope="session")
async def test_the_current_code_replays_everything_the_server_holds(served: Served) -> None:
    result = await gatewayflow(served.settings, "replay", "--from-server")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = PROGRESS.findall(result.stdout)
    assert [(int(n), int(total)) for n, total, *_ in lines] == [
        (n, served.runs) for n in range(1, served.runs + 1)
    ]
    assert {mark for _, _, mark, _, _ in lines} == {"✓"}
    # The running gateway first: it is what the new code must carry on.
    assert lines[0][3] == naming.gateway_workflow_id(served.settings.installation, served.running)
    replayed = {wid for *_, wid, _ in lines}
    assert naming.deletion_workflow_id(served.settings.installation, served.deleted) in replayed
    assert naming.domain_workflow_id(served.settings.installation, served.deleted) in replayed
    query = f"TaskQueue = '{served.settings.task_queue}'"
    assert f"✓ {served.runs} histories of {query} replay against the current code" in (
        result.stdout
    )

    limited = await gatewayflow(served.settings, "replay", "--from-server", "--limit", "2")
    assert limited.returncode == 0, limited.stdout + limited.stderr
    assert [(n, total) for n, total, *_ in PROGRESS.findall(limited.stdout)] == [
        ("1", "2"),
        ("2", "2"),
    ]
    deletion = naming.deletion_workflow_id(served.settings.installation, served.deleted)
    only = await gatewayflow(
        served.settings, "replay", "--from-server", "--query", f"WorkflowId = '{deletion}'"
    )
    assert only.returncode == 0, only.stdout + only.stderr
    assert [wid for *_, wid, _ in PROGRESS.findall(only.stdout)] == [
        naming.deletion_workflow_id(served.settings.installation, served.deleted)
    ]


@pytest.mark.asyncio(loop_scope="session")
async def test_a_change_running_deletions_cannot_follow_stops_the_rollout(
    served: Served, tmp_path: Path
) -> None:
    result = await gatewayflow(
        served.settings, "replay", "--from-server", code=changed_copy(tmp_path)
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    deletion = naming.deletion_workflow_id(served.settings.installation, served.deleted)
    [error] = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert error.startswith(f"error: {deletion} (GatewayDeletion) does not replay at event "), error
    assert "ActivityTaskScheduled delete_stages: " in error
    assert "Nondeterminism error" in error
    assert f"/workflows/{deletion.replace('/', '%2F')}/" in error  # its run in the UI
    # It stops at the first: the broken one is the last history replayed.
    lines = PROGRESS.findall(result.stdout)
    assert [mark for _, _, mark, _, _ in lines] == ["✓"] * (len(lines) - 1) + ["✗"]
    assert lines[-1][3] == deletion
    assert all(int(total) == served.runs for _, total, *_ in lines)


@pytest.mark.asyncio(loop_scope="session")
async def test_what_the_gate_does_not_take(served: Served, tmp_path: Path) -> None:
    history = tmp_path / "h.json"
    history.write_text("{}")
    for args, complaint in (
        (["--from-server", str(history)], "--from-server replays what the server holds"),
        (["--from-server", "--workflow-id", "x"], "--from-server replays what the server holds"),
        (["--query", "WorkflowId = 'x'", "--limit", "3"], "--limit goes with --from-server"),
        (["--from-server", "--query", "WorkflowId = 'no-such'"], "nothing to replay"),
        (["--from-server", "--query", "NoSuchAttribute = 'x'"], "cannot list workflows"),
    ):
        result = await gatewayflow(served.settings, "replay", *args)
        assert result.returncode == 1, (args, result.stdout + result.stderr)
        assert complaint in result.stdout, (args, result.stdout)


# -- the event named, on the recorded deletion -------------------------------------------------
async def test_the_event_where_a_history_parts_from_the_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SDK's message quotes the step that moved: its scheduled event is named. A
    message that quotes nothing (a new activity where the history has a local one) names
    the first event of the workflow task that no longer replays."""
    history = load_history(DELETION)
    [added] = await replay_histories([history], workflows=[NewStep])
    assert added.error is not None and "LocalActivity" in added.error
    finalize = [
        e.event_id
        for e in history.events
        if e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ][-1]  # the history's last local activity: finalize_deletion, after the namespace
    assert await parting_event(history, added.error, [NewStep]) == (
        f"event {finalize} MarkerRecorded core_local_activity"
    )

    monkeypatch.setattr(ops, "DELETE", dataclasses.replace(ops.DELETE, steps=INSTANCE_FIRST))
    [swapped] = await replay_histories([history])
    assert swapped.error is not None
    stages = next(
        e.event_id
        for e in history.events
        if e.activity_task_scheduled_event_attributes.activity_type.name == "delete_stages"
    )
    assert await parting_event(history, swapped.error) == (
        f"event {stages} ActivityTaskScheduled delete_stages"
    )
