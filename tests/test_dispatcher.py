"""The dispatcher: change stream and sweep turn raw MongoDB writes into workflows.

Both find the intent already in MongoDB, so they send nothing the workflow would write
again: `reconcile` (a hint) for Running, Stopped and Restarting, and `delete` (which
preempts an operation in flight; the workflow finds Deleted already written) for Deleted.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from control.dispatcher import run_dispatcher
from gatewayflow.domain import naming
from gatewayflow.domain.states import GatewayState
from gatewayflow.settings import Settings
from tests.conftest import free_ports
from tests.gateway_harness import Harness, closed_runs, harness, unique_id

pytestmark = pytest.mark.asyncio(loop_scope="session")

NO_SWEEP = 3600.0  # the sweep runs once as the dispatcher starts, then not within a test


async def signals(h: Harness, gid: str) -> list[str]:
    """The signals `gateway/<gid>` received, in order, from its history."""
    history = await h.client.get_workflow_handle(
        naming.gateway_workflow_id(h.settings.installation, gid)
    ).fetch_history()
    return [
        event.workflow_execution_signaled_event_attributes.signal_name
        for event in history.events
        if event.HasField("workflow_execution_signaled_event_attributes")
    ]


async def test_sweep_alone_converges_without_change_streams(stack: Settings) -> None:
    """A database without change streams (or a lost event) still converges."""
    async with harness(stack, change_streams=False) as h:
        gid = unique_id("sweep")
        h.deps.db["ApiGateway"].insert_one(
            {"gatewayId": gid, "state": "Running", "phase": "Creating"}
        )
        await h.wait_for(gid, GatewayState.RUNNING, timeout=60)
        h.deps.db["ApiGateway"].update_one({"gatewayId": gid}, {"$set": {"state": "Deleted"}})
        await h.wait_for(gid, GatewayState.DELETED, timeout=60)
        # The sweep wakes the workflow; a delete also preempts (issue 17: nothing new).
        assert set(await signals(h, gid)) == {"reconcile", "delete"}
        assert await h.traces(gid) == []


async def test_several_dispatchers_are_harmless(
    stack: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Three change streams (the worker's and two more) each signal every change; one
    gateway workflow and one deletion run."""
    caplog.set_level(logging.INFO, logger="gatewayflow.store.dispatcher")
    async with harness(stack, sweep_interval_seconds=NO_SWEEP) as h:
        stop = asyncio.Event()
        extra = [asyncio.create_task(run_dispatcher(h.client, h.settings, stop)) for _ in range(2)]
        try:
            async with asyncio.timeout(30):  # each feed logs once it is open
                while sum("change feed on" in m for m in caplog.messages) < 3:
                    await asyncio.sleep(0.05)
            gid = unique_id("dup")
            raw = h.deps.db["ApiGateway"]
            raw.insert_one({"gatewayId": gid, "state": "Running", "phase": "Creating"})
            await h.wait_for(gid, GatewayState.RUNNING)
            raw.update_one({"gatewayId": gid}, {"$set": {"state": "Deleted"}})
            await h.wait_for(gid, GatewayState.DELETED)
        finally:
            stop.set()
            await asyncio.gather(*extra)
        received = await signals(h, gid)
        assert received.count("reconcile") >= 3 and received.count("delete") >= 3, received
        assert (
            await closed_runs(h.client, naming.gateway_workflow_id(h.settings.installation, gid))
            == 1
        )
        assert (
            await closed_runs(h.client, naming.deletion_workflow_id(h.settings.installation, gid))
            == 1
        )
        assert await h.traces(gid) == []


async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def mongo_on(port: int, target: str) -> AsyncIterator[None]:
    """The MongoDB server at `target` ("host:port") answering on `port` from now on."""
    host, target_port = target.rsplit(":", 1)

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(target_port))
        await asyncio.gather(_forward(reader, upstream_writer), _forward(upstream_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def test_a_dispatcher_started_while_mongodb_is_down_dispatches_once_it_is_back(
    stack: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The torture's worker restarted while MongoDB was down swept nothing, ever: its
    dispatcher's first connection failed and ended it silently."""
    async with harness(stack, change_streams=False, sweep_interval_seconds=NO_SWEEP) as h:
        port = free_ports(1)[0]
        target = urlsplit(h.settings.mongodb_uri or "").netloc
        down = h.settings.model_copy(
            update={"mongodb_uri": f"mongodb://127.0.0.1:{port}/", "sweep_interval_seconds": 0.5}
        )
        stop = asyncio.Event()
        caplog.set_level(logging.WARNING, logger="gatewayflow.dispatcher")
        dispatcher = asyncio.create_task(run_dispatcher(h.client, down, stop))
        try:
            async with asyncio.timeout(60):  # its first connection failed, and it says so
                while not any("MongoDB unreachable" in m for m in caplog.messages):
                    await asyncio.sleep(0.1)
            gid = unique_id("back")
            h.deps.db["ApiGateway"].insert_one(
                {"gatewayId": gid, "state": "Running", "phase": "Creating"}
            )
            async with mongo_on(port, target):
                await h.wait_for(gid, GatewayState.RUNNING, timeout=60)
        finally:
            stop.set()
            await asyncio.wait_for(dispatcher, timeout=30)
