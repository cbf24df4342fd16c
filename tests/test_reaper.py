"""The orphan reaper on the embedded stack: a gateway whose ApiGateway document was
removed by hand leaves its namespace and runtime database behind; the scheduled reaper
removes them once the grace period has passed, not before, and touches no live gateway."""

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from control import reaper, service
from gatewayflow.cluster import manifests
from gatewayflow.domain import naming
from gatewayflow.domain.documents import ApiGateway
from gatewayflow.domain.messages import ReapInput, ReapResult
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.settings import Settings
from tests.conftest import free_ports
from tests.emulator_admin import EmulatorAdmin
from tests.gateway_harness import Harness, harness, unique_id
from tests.kube_fixtures import Emulator
from tests.test_drift import first_attempt, run_now
from tests.test_metrics import scrape
from workflows.policies import HEARTBEAT
from workflows.reaper import OrphanReaper

pytestmark = pytest.mark.asyncio(loop_scope="session")

GRACE = 8.0


async def owned(h: Harness, gid: str) -> set[str]:
    return {str(item) for item in await h.traces(gid)}


async def reaper_results(h: Harness) -> list[ReapResult]:
    prefix = f"orphan-reaper/{h.settings.task_queue}"
    results = []
    async for wf in h.client.list_workflows("WorkflowType = 'OrphanReaper'"):
        if wf.id.startswith(prefix) and wf.close_time is not None:
            handle = h.client.get_workflow_handle_for(OrphanReaper.run, wf.id, run_id=wf.run_id)
            results.append(await handle.result())
    return results


@contextlib.contextmanager
def kube_emulator(home: Path) -> Iterator[Path]:
    emulator = Emulator(
        home, "--regions", "local", "--delete-delay", "0.05", "--ready-delay", "0.05"
    )
    emulator.start()
    try:
        yield emulator.kubeconfig
    finally:
        emulator.stop()


async def test_orphan_is_reaped_after_the_grace_period_and_live_gateways_are_not(
    stack: Settings, tmp_path: Path
) -> None:
    port = free_ports(1)[0]
    # A cluster of its own: the reaper looks at every owned object of the cluster, and
    # the session's cluster holds what other tests' databases own.
    with kube_emulator(tmp_path) as kubeconfig:
        async with harness(
            stack,
            kubeconfig=kubeconfig,
            reap_interval_seconds=1.0,
            reap_grace_seconds=GRACE,
            metrics_port=port,
        ) as h:
            live, orphan = unique_id("live"), unique_id("orphan")
            await asyncio.gather(h.create(live), h.create(orphan))
            await asyncio.gather(
                h.wait_for(live, GatewayState.RUNNING), h.wait_for(orphan, GatewayState.RUNNING)
            )
            live_before = await owned(h, live)
            # The leak: the document goes, by hand, and with it every deletion of it.
            h.deps.db["ApiGateway"].delete_one({"gatewayId": orphan})
            orphaned_at = time.monotonic()
            ns = naming.namespace(orphan)
            assert f"Namespace {ns}" in await owned(h, orphan)
            assert h.deps.runtime.exists(orphan)
            [listed] = [o for o in reaper.dry_run(h.deps) if o.gateway_id == orphan]
            assert any(ns in item for item in listed.items)

            async with asyncio.timeout(120):
                while await owned(h, orphan) or h.deps.runtime.exists(orphan):
                    namespace_there = f"Namespace {ns}" in await owned(h, orphan)
                    if time.monotonic() - orphaned_at < GRACE:
                        # Seen, but not for long enough: nothing of it may be touched yet.
                        assert namespace_there and h.deps.runtime.exists(orphan)
                        assert await asyncio.to_thread(h.gateways.get, orphan) is None
                    await asyncio.sleep(0.2)
            assert time.monotonic() - orphaned_at >= GRACE
            assert await asyncio.to_thread(h.gateways.get, orphan) is None  # removed again
            assert set(h.deps.children.counts(orphan).values()) <= {0}

            live_gw = await asyncio.to_thread(h.gateways.require, live)
            assert live_gw.phase is GatewayPhase.STARTED
            assert await owned(h, live) == live_before
            assert not [o for o in reaper.dry_run(h.deps) if o.gateway_id in (live, orphan)]

            async with asyncio.timeout(30):
                while True:
                    reaped = [o for r in await reaper_results(h) for o in r.reaped]
                    if any(o.gateway_id == orphan for o in reaped):
                        break
                    await asyncio.sleep(0.5)
            assert not any(o.gateway_id == live for o in reaped)
            [record] = [o for o in reaped if o.gateway_id == orphan]
            assert record.kinds.get("Namespace") == 1 and record.kinds.get("database+users") == 1
            metrics = scrape(port)
            assert 'gatewayflow_reaped_objects_total{kind="Namespace"}' in metrics


async def test_documents_alone_are_not_an_orphan(stack: Settings) -> None:
    """A leaf document whose gateway does not exist (written before its gateway, or junk)
    is the user's: the reaper reaps objects, databases and users, never documents alone."""
    async with harness(stack) as h:
        ghost = unique_id("ghost")
        leaf = {"gatewayId": ghost, "name": 42, "junk": True}
        h.deps.db["Stage"].insert_one(leaf)
        assert not [o for o in reaper.dry_run(h.deps) if o.gateway_id == ghost]

        result = await service.reap_orphans(h.settings, 0.0, [ghost])

        assert not result.reaped, result
        assert h.deps.db["Stage"].find_one({"gatewayId": ghost}) == leaf
        assert await asyncio.to_thread(h.gateways.get, ghost) is None


@pytest.mark.parametrize("phase", [GatewayPhase.CREATING, GatewayPhase.STARTING])
async def test_a_document_deleted_by_hand_mid_operation_is_reaped(
    stack: Settings, phase: GatewayPhase
) -> None:
    """The torture's orphan: the document goes while its gateway is being built; what was
    built must still go, by the reaper, whatever the interrupted operation did."""
    admin = EmulatorAdmin.of(stack)
    slow_creates = [{"verb": "create", "latency": 0.15}]  # a creation takes seconds
    async with harness(stack) as h:
        gid = unique_id("midway")
        with admin.timing(readyDelay=-1), admin.faults_injected(slow_creates):
            await h.create(gid)
            async with asyncio.timeout(30):
                while True:
                    gw = await asyncio.to_thread(h.gateways.require, gid)
                    made = await owned(h, gid)
                    if gw.phase is phase and f"Namespace {naming.namespace(gid)}" in made:
                        break
                    await asyncio.sleep(0.1)
            h.deps.db["ApiGateway"].delete_one({"gatewayId": gid})
            # Its database holds no gateway now, which the reaper refuses until confirmed.
            result = await service.reap_orphans(h.settings, 0.0, [gid], confirm=1)
            assert [o.gateway_id for o in result.reaped] == [gid]
            async with asyncio.timeout(60):
                while left := await owned(h, gid):
                    await asyncio.sleep(0.5)
        assert not left
        assert await asyncio.to_thread(h.gateways.get, gid) is None


async def test_a_slow_cluster_slows_the_reapers_scan_but_never_times_it_out(
    stack: Settings, tmp_path: Path
) -> None:
    """At 0.25 s per list, looking through six orphans takes longer than the heartbeat
    timeout: the scan heartbeats per gateway it looks at, so the run ends, on its first
    attempt (with a grace period of an hour: it adopts nothing)."""
    count = 6
    with kube_emulator(tmp_path) as kubeconfig:
        async with harness(stack, kubeconfig=kubeconfig, dispatcher=False) as h:
            live = [
                ApiGateway(
                    gateway_id=unique_id("live"),
                    state=GatewayState.STOPPED,
                    phase=GatewayPhase.STOPPED,
                )
                for _ in range(2 * count)
            ]
            for gw in live:
                await asyncio.to_thread(h.gateways.insert, gw)
            cluster = h.deps.cluster("local")
            left = [unique_id("orphan") for _ in range(count)]
            for gid in left:
                installation = h.settings.installation
                namespace = manifests.namespace(installation, gid)
                await asyncio.to_thread(cluster.ensure, gid, namespace)
                config = manifests.config_map(installation, gid, "local")
                await asyncio.to_thread(cluster.ensure, gid, config)
            admin = EmulatorAdmin.of(h.settings)
            with admin.faults_injected([{"verb": "list", "latency": 0.25}]):
                began = time.monotonic()
                wid, result = await run_now(
                    h, OrphanReaper.run, ReapInput(grace_seconds=3600), timeout=90
                )
                took = time.monotonic() - began
            assert sorted(o.gateway_id for o in result.waiting) == sorted(left)
            assert result.reaped == []
            assert took > HEARTBEAT.total_seconds(), f"the lists were slow: {took:.1f}s"
            assert await first_attempt(h, wid, "find_orphans") == 1
