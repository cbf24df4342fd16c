"""The tests' own wait must not pass for the wrong reason: a gateway the product deleted
has not reached Running, and a wait for it says so at once."""

import asyncio
import time

import pytest

from control import service
from gatewayflow.domain.errors import GatewayflowError
from gatewayflow.domain.states import GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.settings import Settings
from tests.gateway_harness import harness, unique_id

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_wait_for_running_fails_once_the_document_is_gone(stack: Settings) -> None:
    async with harness(stack) as h:
        gid = unique_id("vanished")
        await h.create(gid)
        await h.wait_for(gid, GatewayState.RUNNING)
        await asyncio.to_thread(h.deps.db["ApiGateway"].delete_one, {"gatewayId": gid})
        began = time.monotonic()
        with pytest.raises(AssertionError, match="document is gone"):
            await h.wait_for(gid, GatewayState.RUNNING, timeout=30)
        assert time.monotonic() - began < 5, "the wait should fail at once, not time out"
        await h.wait_for(gid, GatewayState.DELETED)


async def test_following_a_start_does_not_end_well_when_the_gateway_is_deleted(
    stack: Settings,
) -> None:
    """`gatewayflow start x --wait` must not print that x is Running once x is gone."""
    async with harness(stack) as h:
        gid = unique_id("followed")
        await h.create(gid)
        await h.wait_for(gid, GatewayState.RUNNING)
        tracked = await service.request_gateway(
            h.settings, gid, Request.STOP, connections=h.connections
        )
        await asyncio.to_thread(h.deps.db["ApiGateway"].delete_one, {"gatewayId": gid})
        with pytest.raises(GatewayflowError, match="is gone"):
            await tracked.follow(lambda _gw: None)
