"""Temporal-native control (issue 17): a signal or an update sent to `gateway/<id>` is a
request, like the CLI's.

Signals are sent the way a user would, with the shipped `temporal` CLI; each test checks
what a user would look at: the ApiGateway document, the Deployment, the workflow's
history and details, and what is left of the gateway anywhere (the oracle).
"""

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.worker import Worker

from activities.registry import all_activities
from control.dispatcher import run_dispatcher
from gatewayflow.deps import Deps
from gatewayflow.domain import naming
from gatewayflow.domain.documents import ApiGateway
from gatewayflow.domain.messages import RequestAccepted
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.metrics import REQUESTS_REFUSED
from gatewayflow.settings import Settings
from gatewayflow.store.gateways import GatewayRepository
from tests.emulator_admin import EmulatorAdmin
from tests.gateway_harness import Harness, harness, unique_id
from workflows.registry import ALL_WORKFLOWS

pytestmark = pytest.mark.asyncio(loop_scope="session")

TEMPORAL = str(Path(sys.executable).with_name("temporal"))


async def temporal_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The shipped `temporal` CLI against the test stack, as a user runs it."""
    command = [
        TEMPORAL,
        *args,
        "--address",
        str(settings.temporal_address),
        "--namespace",
        settings.temporal_namespace,
    ]
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done


async def signal(settings: Settings, gid: str, name: str) -> None:
    wid = naming.gateway_workflow_id(settings.installation, gid)
    await temporal_cli(settings, "workflow", "signal", "--workflow-id", wid, "--name", name)


def deployment(settings: Settings, gid: str) -> dict[str, Any] | None:
    api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(settings.kubeconfig), context="local"
    )
    with api:
        try:
            found = k8s.AppsV1Api(api).read_namespaced_deployment(gid, naming.namespace(gid))
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return dict(api.sanitize_for_serialization(found))


def refused(request: str, source: str) -> float:
    return sum(
        sample.value
        for family in REQUESTS_REFUSED.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
        and sample.labels == {"request": request, "source": source}
    )


async def started(h: Harness, prefix: str) -> str:
    gid = unique_id(prefix)
    await h.create(gid)
    await h.wait_for(gid, GatewayState.RUNNING)
    return gid


async def last_error(h: Harness, gid: str, contains: str, timeout: float = 30.0) -> str:
    async with asyncio.timeout(timeout):
        while True:
            gw = await asyncio.to_thread(h.gateways.get, gid)
            error = gw.progress.last_error if gw is not None else None
            if error is not None and contains in error:
                return error
            await asyncio.sleep(0.1)


async def current_details(handle: WorkflowHandle[Any, Any], contains: str) -> str:
    async with asyncio.timeout(30):
        while True:
            meta: WorkflowMetadata = await handle.query(
                "__temporal_workflow_metadata", result_type=WorkflowMetadata
            )
            details = str(meta.current_details)
            if contains in details:
                return details
            await asyncio.sleep(0.1)


async def test_signals_sent_with_the_temporal_cli_stop_start_restart_and_delete(
    stack: Settings,
) -> None:
    async with harness(stack) as h:
        gid = await started(h, "sig")
        before = deployment(h.settings, gid)
        assert before is not None

        await signal(h.settings, gid, "stop")
        gw = await h.wait_for(gid, GatewayState.STOPPED)
        assert gw is not None and gw.phase is GatewayPhase.STOPPED
        assert deployment(h.settings, gid) is None

        await signal(h.settings, gid, "start")
        await h.wait_for(gid, GatewayState.RUNNING)
        up = deployment(h.settings, gid)
        assert up is not None

        await signal(h.settings, gid, "restart")
        await h.wait_phase(gid, GatewayPhase.STARTING)
        await h.wait_for(gid, GatewayState.RUNNING)
        rolled = deployment(h.settings, gid)
        assert rolled is not None  # a rolling update of the same Deployment
        assert rolled["metadata"]["uid"] == up["metadata"]["uid"]
        assert rolled["metadata"]["generation"] > up["metadata"]["generation"]

        await signal(h.settings, gid, "delete")
        await h.wait_for(gid, GatewayState.DELETED)
        assert await h.traces(gid) == []


async def test_refused_requests_change_nothing_and_are_recorded(stack: Settings) -> None:
    """An update gets its answer from the workflow; during a deletion a `start` signal is
    refused and recorded, and a `start` update is rejected before it enters history."""
    admin = EmulatorAdmin.of(stack)
    async with harness(stack) as h:
        gid = await started(h, "refuse")
        handle = h.client.get_workflow_handle(
            naming.gateway_workflow_id(h.settings.installation, gid)
        )

        wid = naming.gateway_workflow_id(h.settings.installation, gid)
        answer = await temporal_cli(
            h.settings,
            "workflow",
            "update",
            "execute",
            "--workflow-id",
            wid,
            "--name",
            "stop",
            "--output",
            "json",
        )
        accepted = json.loads(answer.stdout)["result"]
        assert accepted["state"] == "Stopped" and accepted["operation"] == "stop", answer.stdout
        await h.wait_for(gid, GatewayState.STOPPED)

        with admin.timing(deleteDelay=3.0):  # a deletion long enough to ask during it
            deleting = await handle.execute_update("delete", result_type=RequestAccepted)
            assert deleting.state is GatewayState.DELETED and deleting.operation == "delete"
            await h.wait_phase(gid, GatewayPhase.DELETING)

            counted = refused("start", "signal")
            await signal(h.settings, gid, "start")
            error = await last_error(h, gid, "refused start (signal)")
            assert "being deleted" in error
            await current_details(handle, "refused start (signal)")
            assert refused("start", "signal") == counted + 1
            gw = await asyncio.to_thread(h.gateways.get, gid)
            assert gw is not None and gw.state is GatewayState.DELETED

            with pytest.raises(WorkflowUpdateFailedError) as rejected:
                await handle.execute_update("start", result_type=RequestAccepted)
            assert "being deleted" in str(rejected.value.cause)
            # The updates that entered history are the accepted ones, never the start.
            history = await handle.fetch_history()
            names = [
                e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
                for e in history.events
                if e.HasField("workflow_execution_update_accepted_event_attributes")
            ]
            assert names == ["stop", "delete"]
            assert not any(
                e.HasField("workflow_execution_update_rejected_event_attributes")
                for e in history.events
            )

        await h.wait_for(gid, GatewayState.DELETED)
        assert await h.traces(gid) == []


class _RawDeleteLandsInsideTheStart(GatewayRepository):
    """A real repository; while a `start` request is checked (inside `apply_request`), a
    raw `state: Deleted` lands between its read and its write: the one interleaving that
    only the compare-and-set decides, forced rather than hoped for."""

    def __init__(self, db: Any, gateway_id: str) -> None:
        super().__init__(db)
        self.gateway_id = gateway_id
        self.landed = threading.Event()
        self._armed = threading.local()

    def request(
        self, gateway_id: str, what: Request, attempts: int = 5, *, signal: bool = False
    ) -> tuple[ApiGateway, bool]:
        self._armed.on = gateway_id == self.gateway_id and what is Request.START
        return super().request(gateway_id, what, attempts, signal=signal)

    def require(self, gateway_id: str) -> ApiGateway:
        current = super().require(gateway_id)
        if getattr(self._armed, "on", False) and not self.landed.is_set():
            self._armed.on = False
            self._col.update_one({"gatewayId": gateway_id}, {"$set": {"state": "Deleted"}})
            self.landed.set()
        return current


@contextlib.asynccontextmanager
async def racing_worker(
    h: Harness, gateway_id: str
) -> AsyncIterator[_RawDeleteLandsInsideTheStart]:
    """The harness's worker and dispatcher, with the racing repository in its activities."""
    racing = _RawDeleteLandsInsideTheStart(Deps(h.settings).db, gateway_id)

    class RacingDeps(Deps):
        @cached_property
        def gateways(self) -> GatewayRepository:
            return racing

    stop = asyncio.Event()
    with ThreadPoolExecutor(max_workers=h.settings.max_concurrent_activities) as executor:
        worker = Worker(
            h.client,
            task_queue=h.settings.task_queue,
            workflows=list(ALL_WORKFLOWS),
            activities=all_activities(h.settings, RacingDeps(h.settings)),
            activity_executor=executor,
            max_heartbeat_throttle_interval=timedelta(seconds=1),
        )
        async with worker:
            dispatcher = asyncio.create_task(run_dispatcher(h.client, h.settings, stop))
            try:
                yield racing
            finally:
                stop.set()
                await asyncio.wait_for(dispatcher, timeout=30)


def states_written(stream: Any, key: Any) -> list[tuple[str, str]]:
    """(state, lastError) of every write of the document the change stream has seen."""
    written = []
    while (change := stream.try_next()) is not None:
        if (change.get("documentKey") or {}).get("_id") != key:
            continue
        fields = change.get("fullDocument") or (
            (change.get("updateDescription") or {}).get("updatedFields") or {}
        )
        error = fields.get("progress.lastError") or (fields.get("progress") or {}).get("lastError")
        written.append((str(fields.get("state", "")), str(error or "")))
    return written


async def test_a_raw_delete_landing_inside_a_start_signals_check_wins(stack: Settings) -> None:
    """The documented winner: a request's write is a compare-and-set on the state it was
    checked against, so a raw `state: Deleted` that lands after the start's check and
    before its write is never undone: the start is checked again and refused."""
    async with harness(stack, worker=False) as h:
        gid = unique_id("race")
        async with racing_worker(h, gid) as racing:
            await h.create(gid)
            await h.wait_for(gid, GatewayState.RUNNING)
            await signal(h.settings, gid, "stop")
            await h.wait_for(gid, GatewayState.STOPPED)
            raw = h.deps.db["ApiGateway"]
            doc = await asyncio.to_thread(raw.find_one, {"gatewayId": gid})
            assert doc is not None
            with raw.watch(max_await_time_ms=200) as stream:
                await signal(h.settings, gid, "start")
                await h.wait_for(gid, GatewayState.DELETED)
                assert racing.landed.is_set(), "the raw delete did not land inside the start"
                written = await asyncio.to_thread(states_written, stream, doc["_id"])
        states = [state for state, _error in written if state]
        assert "Deleted" in states, written
        assert set(states[states.index("Deleted") :]) == {"Deleted"}, written
        assert any("refused start (signal)" in error for _state, error in written), written
        assert await h.traces(gid) == []
