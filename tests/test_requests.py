"""Temporal-native control (issue 17): a signal or an update sent to `gateway/<id>` is a
request, like the CLI's.

Signals are sent the way a user would, with the shipped `temporal` CLI; each test checks
what a user would look at: the ApiGateway document, the Deployment, the workflow's
history and details, and what is left of the gateway anywhere (the oracle).
"""

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from gatewayflow.domain import naming
from gatewayflow.domain.messages import RequestAccepted
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.metrics import REQUESTS_REFUSED
from gatewayflow.settings import Settings
from tests.emulator_admin import EmulatorAdmin
from tests.gateway_harness import Harness, harness, unique_id

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


async def test_a_raw_delete_racing_a_start_signal_wins(stack: Settings) -> None:
    """The documented winner: a request's write is a compare-and-set on the state it was
    checked against, so a raw `state: Deleted` is never undone by a signal racing it."""
    async with harness(stack) as h:
        gid = await started(h, "race")
        await signal(h.settings, gid, "stop")
        await h.wait_for(gid, GatewayState.STOPPED)
        raw = h.deps.db["ApiGateway"]
        await asyncio.gather(
            signal(h.settings, gid, "start"),
            asyncio.to_thread(raw.update_one, {"gatewayId": gid}, {"$set": {"state": "Deleted"}}),
        )
        await h.wait_for(gid, GatewayState.DELETED)
        assert await h.traces(gid) == []
