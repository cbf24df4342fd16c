"""Horizontal scale: two worker processes, each with its dispatcher, on one task queue."""

import asyncio
from pathlib import Path

import pytest

from gatewayflow.domain import naming
from gatewayflow.domain.states import GatewayState
from gatewayflow.settings import Settings
from tests.emulator_admin import (
    EmulatorAdmin,
    delete_counts,
    deletion_order_violations,
    of_gateway,
)
from tests.gateway_harness import closed_runs, harness, unique_id
from tests.worker_process import worker_processes

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Enough that both workers take a share of the steps (about 20 activities each), few
# enough to stay quick; bench/scale.py measures larger numbers.
GATEWAYS = 12


async def test_two_workers_delete_a_dozen_gateways(stack: Settings, tmp_path: Path) -> None:
    admin = EmulatorAdmin.of(stack)
    # The dozen are the harness's whole region: the deletion guard would hold most of them
    # (tests/test_deletion_guard.py); here it is out of the way.
    async with harness(stack, worker=False, deletion_guard_count=GATEWAYS) as h:
        with worker_processes(h.settings, tmp_path) as spawn:
            spawn()
            spawn()
            ids = [unique_id(f"s{n:02d}") for n in range(GATEWAYS)]
            since = admin.last_seq()
            for gid in ids:
                await h.create(gid, functions=1, triggers=1)
            await asyncio.gather(*(h.wait_for(gid, GatewayState.RUNNING, 240) for gid in ids))
            # Raw writes, as an operator would: both dispatchers see every one of them.
            h.deps.db["ApiGateway"].update_many(
                {"gatewayId": {"$in": ids}}, {"$set": {"state": "Deleted"}}
            )
            await asyncio.gather(*(h.wait_for(gid, GatewayState.DELETED, 240) for gid in ids))

        oplog = admin.oplog_since(since)
        identities: dict[str, int] = {}
        for gid in ids:
            history = await h.client.get_workflow_handle(
                naming.deletion_workflow_id(h.settings.installation, gid)
            ).fetch_history()
            for event in history.events:
                if event.HasField("activity_task_started_event_attributes"):
                    identity = event.activity_task_started_event_attributes.identity
                    identities[identity] = identities.get(identity, 0) + 1
            items = of_gateway(gid, oplog)
            assert deletion_order_violations(gid, items) == [], gid
            twice = {key: n for key, n in delete_counts(items).items() if n > 1}
            assert twice == {}, f"{gid}: deleted more than once: {twice}"
            runs = await closed_runs(
                h.client, naming.deletion_workflow_id(h.settings.installation, gid)
            )
            assert runs == 1, f"{gid}: {runs} deletions"
            assert await h.traces(gid) == []
        assert len(identities) == 2, f"the two workers did not share the steps: {identities}"
