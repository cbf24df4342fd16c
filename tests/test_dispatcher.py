"""The dispatcher: change stream and sweep turn raw MongoDB writes into workflows."""

import asyncio

import pytest

from gatewayflow.dispatcher import run_dispatcher
from gatewayflow.domain import naming
from gatewayflow.domain.states import GatewayState
from gatewayflow.settings import Settings
from tests.gateway_harness import harness, unique_id

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def executions(h_client: object, workflow_id: str) -> int:
    from temporalio.client import Client

    assert isinstance(h_client, Client)
    count = 0
    async for _ in h_client.list_workflows(f"WorkflowId = '{workflow_id}'"):
        count += 1
    return count


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
        assert await h.leftovers(gid) == []


async def test_several_dispatchers_are_harmless(stack: Settings) -> None:
    async with harness(stack) as h:
        stop = asyncio.Event()
        extra = [asyncio.create_task(run_dispatcher(h.client, h.settings, stop)) for _ in range(2)]
        try:
            await asyncio.sleep(1)  # let the extra change streams open
            gid = unique_id("dup")
            raw = h.deps.db["ApiGateway"]
            raw.insert_one({"gatewayId": gid, "state": "Running", "phase": "Creating"})
            await h.wait_for(gid, GatewayState.RUNNING)
            raw.update_one({"gatewayId": gid}, {"$set": {"state": "Deleted"}})
            await h.wait_for(gid, GatewayState.DELETED)
        finally:
            stop.set()
            await asyncio.gather(*extra)
        # Three dispatchers signalled it; one gateway workflow and one deletion ran.
        assert await executions(h.client, naming.gateway_workflow_id(gid)) == 1
        assert await executions(h.client, naming.deletion_workflow_id(gid)) == 1
        assert await h.leftovers(gid) == []
