"""Crashes in the middle of work: the worker as a real process killed with SIGKILL, the
MongoDB-wire server killed and started again, and a start that never gets ready.

Each test runs its own `worker.py` subprocess on its own database and task queue, and
asks as the CLI does (`create_gateway` and `request_gateway` of control/service.py).
"""

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from gatewayflow.domain import naming
from gatewayflow.domain.documents import ApiGateway
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.settings import Settings
from gatewayflow_dev.mongo import mongo_process
from tests.emulator_admin import EmulatorAdmin, delete_counts, deletion_order_violations
from tests.gateway_harness import Harness, harness, unique_id
from tests.worker_process import worker_processes
from workflows.operations import DELETE

pytestmark = pytest.mark.asyncio(loop_scope="session")

STEPS = [step.name for step in DELETE.steps]


async def poll_until(
    h: Harness, gid: str, done: Callable[[ApiGateway], bool], timeout: float = 60.0
) -> ApiGateway:
    async with asyncio.timeout(timeout):
        while True:
            gw = await asyncio.to_thread(h.gateways.get, gid)
            if gw is not None and done(gw):
                return gw
            await asyncio.sleep(0.1)


async def assert_nothing_left(h: Harness, gid: str) -> None:
    assert await h.traces(gid) == []


def running(step: str) -> Callable[[ApiGateway], bool]:
    """The deletion is in `step`: named current by the record of the step before it (a
    wait records progress.waitingOn only once it lasts a while)."""
    return lambda gw: (
        gw.phase is GatewayPhase.DELETING
        and gw.progress.step == step
        and len(gw.progress.completed) == STEPS.index(step)
    )


def in_deletion_after(steps: int) -> Callable[[ApiGateway], bool]:
    return lambda gw: gw.phase is GatewayPhase.DELETING and len(gw.progress.completed) >= steps


async def test_worker_killed_during_deletion(stack: Settings, tmp_path: Path) -> None:
    admin = EmulatorAdmin.of(stack)
    async with harness(stack, worker=False) as h:
        with worker_processes(h.settings, tmp_path) as spawn:
            first = spawn()
            gid = unique_id("kill")
            await h.create(gid, custom_domain="api.example.com")
            await h.wait_for(gid, GatewayState.RUNNING)
            since = admin.last_seq()
            with admin.timing(deleteDelay=1.0):  # each wait for a deletion takes a while
                await h.request(gid, Request.DELETE)
                # Killed while waiting for the pods to go: the step that must finish
                # before the database may be dropped.
                gw = await poll_until(h, gid, running("instance"))
                first.kill()
                assert gw.progress.completed == STEPS[:4]
                spawn()
                await h.wait_for(gid, GatewayState.DELETED, timeout=120)
        oplog = admin.oplog(gid, since=since)
        assert deletion_order_violations(gid, oplog) == []
        assert set(delete_counts(oplog).values()) == {1}
        await assert_nothing_left(h, gid)


async def test_worker_killed_while_waiting_for_readiness(stack: Settings, tmp_path: Path) -> None:
    admin = EmulatorAdmin.of(stack)
    async with harness(stack, worker=False) as h:
        with worker_processes(h.settings, tmp_path) as spawn, admin.timing(readyDelay=3.0):
            first = spawn()
            gid = unique_id("killstart")
            await h.create(gid)
            await poll_until(
                h,
                gid,
                lambda gw: gw.phase is GatewayPhase.STARTING and gw.progress.waiting_on is not None,
            )
            first.kill()
            spawn()
            gw = await h.wait_for(gid, GatewayState.RUNNING, timeout=90)
        assert gw is not None and gw.phase is GatewayPhase.STARTED
        assert gw.progress.last_error is None


async def test_mongo_restarted_during_deletion(stack: Settings, tmp_path: Path) -> None:
    admin = EmulatorAdmin.of(stack)
    mongo = mongo_process(stack)
    async with harness(stack, worker=False) as h:
        try:
            with worker_processes(h.settings, tmp_path) as spawn:
                spawn()
                gid = unique_id("mongo")
                await h.create(gid)
                await h.wait_for(gid, GatewayState.RUNNING)
                since = admin.last_seq()
                with admin.timing(deleteDelay=1.0):
                    await h.request(gid, Request.DELETE)
                    await poll_until(h, gid, in_deletion_after(2))
                    pid = mongo.pid()
                    assert pid is not None
                    os.killpg(pid, signal.SIGKILL)  # the server leads its own session
                    await asyncio.to_thread(mongo.stop)  # reaps it, removes the pid file
                    await asyncio.sleep(1.0)
                    assert await asyncio.to_thread(mongo.start, 60.0)
                    await h.wait_for(gid, GatewayState.DELETED, timeout=120)
            assert deletion_order_violations(gid, admin.oplog(gid, since=since)) == []
            await assert_nothing_left(h, gid)
        finally:
            # The session stack serves every later test: make sure it serves again.
            await asyncio.to_thread(mongo.start, 60.0)


async def test_start_that_never_gets_ready_goes_back_to_stopped(
    stack: Settings, tmp_path: Path
) -> None:
    admin = EmulatorAdmin.of(stack)
    async with harness(stack, worker=False) as h:
        # Both the client (which may start the workflow) and the worker read it.
        h.settings = h.settings.model_copy(update={"start_timeout_seconds": 3.0})
        with worker_processes(h.settings, tmp_path) as spawn, admin.timing(readyDelay=-1):
            spawn()
            gid = unique_id("timeout")
            await h.create(gid)
            gw = await poll_until(
                h,
                gid,
                lambda gw: gw.state is GatewayState.STOPPED and gw.phase is GatewayPhase.STOPPED,
            )
        assert gw.progress.last_error is not None
        assert "timed out" in gw.progress.last_error, gw.progress
        deployment = naming.deployment(gid)
        assert deployment in gw.progress.last_error
