"""Mass deletion that protects the cluster: one raw `updateMany` sets many gateways to
Deleted; at no moment do more than GATEWAYFLOW_REGION_DELETION_LIMIT of them delete at
once (read from the emulator's op log), the rest wait visibly in order, and the limit
holds while a worker process is killed with SIGKILL in the middle."""

import asyncio
from pathlib import Path

import pytest

from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.settings import Settings
from tests.emulator_admin import EmulatorAdmin, deletions_at_once
from tests.gateway_harness import Harness, harness, unique_id
from tests.worker_process import worker_processes

pytestmark = pytest.mark.asyncio(loop_scope="session")

LIMIT = 2
GATEWAYS = 6


async def queued_and_visible(h: Harness) -> bool:
    regions = await asyncio.to_thread(h.deps.permits.regions)
    if not regions or len(regions[0]["holders"]) < LIMIT:
        return False
    for gid in regions[0]["queue"]:
        gw = await asyncio.to_thread(h.gateways.require, gid)
        waiting = gw.progress.waiting_on or ""
        if gw.phase is GatewayPhase.DELETING and "deletion permit" in waiting:
            return True
    return False


async def test_region_limit_holds_through_a_worker_sigkill(stack: Settings, tmp_path: Path) -> None:
    admin = EmulatorAdmin.of(stack)
    async with harness(stack, worker=False, region_deletion_limit=LIMIT) as h:
        with worker_processes(h.settings, tmp_path) as spawn:
            first = spawn()
            spawn()
            ids = [unique_id(f"mass{i}") for i in range(GATEWAYS)]
            await asyncio.gather(*(h.create(gid, triggers=1, functions=1) for gid in ids))
            await asyncio.gather(*(h.wait_for(gid, GatewayState.RUNNING) for gid in ids))
            since = admin.last_seq()
            with admin.timing(deleteDelay=0.5):
                await asyncio.to_thread(
                    h.deps.db["ApiGateway"].update_many,
                    {"gatewayId": {"$in": ids}},
                    {"$set": {"state": GatewayState.DELETED.value}},
                )
                # Both permits held, the rest queued and saying so in their progress.
                async with asyncio.timeout(90):
                    while not await queued_and_visible(h):
                        await asyncio.sleep(0.05)
                first.kill()  # while permits are held and deletions are queued
                spawn()
                await asyncio.gather(
                    *(h.wait_for(gid, GatewayState.DELETED, timeout=240) for gid in ids)
                )
        entries = admin.entries(since)
        # Never above the limit (both permits were seen held at once, above).
        assert 1 <= deletions_at_once(entries, ids) <= LIMIT
        [region] = await asyncio.to_thread(h.deps.permits.regions)
        assert region["holders"] == [] and region["queue"] == []
        for gid in ids:
            assert await h.traces(gid) == []
