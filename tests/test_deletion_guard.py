"""The deletion guard: a script that sets a whole region to Deleted is held before the
first step of the deletions past the guard, until an operator releases or cancels them.

On the session stack with small thresholds (settings, as an operator would set them):
the reproduction is one raw `updateMany({}, {$set: {state: "Deleted"}})` over every
gateway of the harness's region. The guard's own rules are checked on its MongoDB
documents directly, concurrent callers included.
"""

import asyncio
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families
from pymongo.database import Database

from gatewayflow.domain import naming
from gatewayflow.domain.documents import ApiGateway, utcnow
from gatewayflow.domain.messages import Admission
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.settings import Settings
from gatewayflow.store.deletion_guard import DeletionGuardRepository, GuardLimits
from gatewayflow.store.gateways import GatewayRepository
from gatewayflow.store.indexes import ensure_indexes
from tests.conftest import free_ports, stack_env
from tests.emulator_admin import EmulatorAdmin
from tests.gateway_harness import Harness, harness, unique_id
from tests.oracles import history_texts
from workflows.guard import HELD_PHASE

GATEWAYFLOW = str(Path(sys.executable).parent / "gatewayflow")
COUNT = 2  # more than this many deletions within the window ...
SHARE = 0.25  # ... and more than this share of the region's gateways: held
GATEWAYS = 6
GUARD: dict[str, Any] = {
    "deletion_guard_count": COUNT,
    "deletion_guard_share": SHARE,
    "deletion_guard_window_seconds": 600.0,
}
RELEASE = "gatewayflow deletions release --region local"
CANCEL = "gatewayflow deletions cancel --region local"


# -- helpers ------------------------------------------------------------------------------
async def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**stack_env(settings), "COLUMNS": "250"}
    return await asyncio.to_thread(
        subprocess.run, [GATEWAYFLOW, *args], env=env, capture_output=True, text=True, timeout=180
    )


def namespaces_left(settings: Settings, ids: list[str]) -> list[str]:
    """The gateways whose namespace still exists, read from the cluster."""
    api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(settings.kubeconfig), context="local"
    )
    left = []
    with api:
        core = k8s.CoreV1Api(api)
        for gid in ids:
            try:
                core.read_namespace(naming.namespace(gid))
            except ApiException as err:
                if err.status == 404:
                    continue
                raise
            left.append(gid)
    return left


def held(h: Harness, gid: str) -> bool:
    """Deleted, not begun, and saying in its progress that the guard holds it."""
    gw = h.gateways.get(gid)
    return (
        gw is not None
        and gw.state is GatewayState.DELETED
        and gw.phase not in (GatewayPhase.DELETING, GatewayPhase.DELETED)
        and "deletion guard" in (gw.progress.waiting_on or "")
    )


async def settled(
    h: Harness, ids: list[str], timeout: float = 120.0
) -> tuple[list[str], list[str]]:
    """Wait until every gateway is gone or held; (gone, held)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        gone = [gid for gid in ids if await asyncio.to_thread(h.gateways.get, gid) is None]
        waiting = [gid for gid in ids if await asyncio.to_thread(held, h, gid)]
        if len(gone) + len(waiting) == len(ids) or loop.time() > deadline:
            return gone, waiting
        await asyncio.sleep(0.2)


async def started_gateways(h: Harness, n: int, prefix: str) -> list[str]:
    ids = [unique_id(f"{prefix}{i}") for i in range(n)]
    await asyncio.gather(*(h.create(gid, functions=1, triggers=1) for gid in ids))
    await asyncio.gather(*(h.wait_for(gid, GatewayState.RUNNING) for gid in ids))
    return ids


def deletes(admin: EmulatorAdmin, gid: str, since: int) -> list[str]:
    """Every delete the cluster received in the gateway's namespace since `since`."""
    return [f"{i['kind']} {i['name']}" for i in admin.oplog(gid, since) if i["verb"] == "delete"]


def held_gauge(port: int) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "gatewayflow_deletions_held" and sample.labels == {"region": "local"}:
                return float(sample.value)
    return None


async def listed_as_held(h: Harness, expected: int, timeout: float = 30.0) -> list[str]:
    """gateway/<id> workflows the visibility query GatewayPhase='DeletionHeld' lists
    (visibility follows a moment later)."""
    query = f"GatewayPhase='{HELD_PHASE}' AND TaskQueue='{h.settings.task_queue}'"
    async with asyncio.timeout(timeout):
        while True:
            found = [wf.id async for wf in h.client.list_workflows(query)]
            if len(found) == expected:
                return found
            await asyncio.sleep(0.3)


# -- the reproduction, and release ------------------------------------------------------------
@pytest.mark.asyncio(loop_scope="session")
async def test_a_script_that_deletes_the_region_is_held_until_released(stack: Settings) -> None:
    admin = EmulatorAdmin.of(stack)
    (port,) = free_ports(1)
    async with harness(stack, metrics_port=port, **GUARD) as h:
        ids = await started_gateways(h, GATEWAYS, "guard")
        since = admin.last_seq()
        # The bad script: every gateway of the region, at once.
        await asyncio.to_thread(
            h.deps.db["ApiGateway"].update_many, {}, {"$set": {"state": "Deleted"}}
        )
        gone, waiting = await settled(h, ids)
        left = await asyncio.to_thread(namespaces_left, h.settings, ids)
        assert len(left) == GATEWAYS - COUNT, (
            f"{GATEWAYS - len(left)} of {GATEWAYS} namespaces gone: {sorted(set(ids) - set(left))}"
        )
        assert len(gone) == COUNT and sorted(waiting) == sorted(left)
        # Held before the first step: nothing of them was deleted, no permit was taken.
        for gid in waiting:
            assert deletes(admin, gid, since) == [], gid
            gw = h.gateways.require(gid)
            assert gw.phase is GatewayPhase.STARTED and gw.progress.operation == "start"
            assert RELEASE in (gw.progress.waiting_on or "")
        [permits] = h.deps.permits.regions()
        assert permits["holders"] == [] and permits["queue"] == []

        # Where an operator looks: status, the UI's search attribute, the metric.
        status = await cli(h.settings, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("held by the deletion guard") == len(waiting)
        assert f"deletions held by the guard in region local: {len(waiting)}" in status.stdout
        assert RELEASE in status.stdout and CANCEL in status.stdout
        one = await cli(h.settings, "status", waiting[0])
        assert "deletion guard" in one.stdout and RELEASE in one.stdout
        listed = await listed_as_held(h, len(waiting))
        assert sorted(listed) == sorted(
            naming.gateway_workflow_id(h.settings.installation, g) for g in waiting
        )
        assert held_gauge(port) == len(waiting)

        # Held it stays (the guard does not let it through later on its own) ...
        await asyncio.sleep(3)
        assert all(held(h, gid) for gid in waiting)
        # ... until an operator releases it: the deletions go on, under the region's limit.
        released = await cli(h.settings, "deletions", "release", "--region", "local")
        assert released.returncode == 0, released.stdout + released.stderr
        assert f"released {len(waiting)} held deletion(s) in region local" in released.stdout
        await asyncio.gather(*(h.wait_for(gid, GatewayState.DELETED) for gid in waiting))
        for gid in ids:
            assert await h.traces(gid) == []
        assert held_gauge(port) == 0
        again = await cli(h.settings, "deletions", "release", "--region", "local")
        assert again.returncode == 0 and "no deletion held in region local" in again.stdout


# -- cancel ----------------------------------------------------------------------------------
@pytest.mark.asyncio(loop_scope="session")
async def test_cancel_gives_each_held_deletion_its_intent_back(stack: Settings) -> None:
    admin = EmulatorAdmin.of(stack)
    async with harness(stack, **GUARD) as h:
        ran, stopped, asked, spare1, spare2 = await started_gateways(h, 5, "cancel")
        await h.request(stopped, Request.STOP)
        await h.wait_for(stopped, GatewayState.STOPPED)
        # Two deletions a person asks for: within the guard.
        for gid in (spare1, spare2):
            await h.request(gid, Request.DELETE)
            await h.wait_for(gid, GatewayState.DELETED)
        since = admin.last_seq()
        # A third, past the guard: `gatewayflow delete` says at once that it is held.
        deleted = await cli(h.settings, "delete", asked)
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
        assert "held by the deletion guard of region local" in deleted.stdout
        assert RELEASE in deleted.stdout
        # And a script's, of the others.
        await asyncio.to_thread(
            h.deps.db["ApiGateway"].update_many,
            {"gatewayId": {"$in": [ran, stopped]}},
            {"$set": {"state": "Deleted"}},
        )
        kept = [ran, stopped, asked]
        _gone, waiting = await settled(h, kept)
        assert sorted(waiting) == sorted(kept)

        reason = "the script was wrong"
        cancelled = await cli(
            h.settings, "deletions", "cancel", "--region", "local", "--reason", reason
        )
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        assert "cancelled 3 held deletion(s) in region local" in cancelled.stdout
        for gid, state in ((ran, "Running"), (stopped, "Stopped"), (asked, "Running")):
            assert f"{gid}: state -> {state}" in cancelled.stdout
        await h.wait_for(ran, GatewayState.RUNNING)
        await h.wait_for(asked, GatewayState.RUNNING)
        await h.wait_for(stopped, GatewayState.STOPPED)
        for gid in kept:
            assert deletes(admin, gid, since) == [], gid  # nothing of them was touched
            gw = h.gateways.require(gid)
            assert gw.deletion_cancelled is not None and gw.deletion_cancelled.reason == reason
            assert reason in (gw.progress.last_error or "")
            history = await h.client.get_workflow_handle(
                naming.gateway_workflow_id(h.settings.installation, gid)
            ).fetch_history()
            texts = "\n".join(await history_texts(h.client, history))
            assert "deletion_guard" in texts and reason in texts  # the signal, with its reason
            assert "cancel_held_deletion" in texts
        detail = await cli(h.settings, "status", ran)
        assert "deletion cancelled" in detail.stdout and reason in detail.stdout

        # A `delete` signal as the dispatcher sent it for the Deleted it had read: refused.
        await h.client.get_workflow_handle(
            naming.gateway_workflow_id(h.settings.installation, ran)
        ).signal("delete")
        async with asyncio.timeout(30):
            while "by a signal" not in (h.gateways.require(ran).progress.last_error or ""):
                await asyncio.sleep(0.1)
        assert h.gateways.require(ran).state is GatewayState.RUNNING
        # The gateways work as before.
        await h.request(ran, Request.STOP)
        await h.wait_for(ran, GatewayState.STOPPED)
        assert sorted(await asyncio.to_thread(namespaces_left, h.settings, kept)) == sorted(kept)


# -- the guard's rules, on its documents -------------------------------------------------------
LIMITS = GuardLimits(count=3, share=0.25, window=600.0)


def region_of(db: Database[dict[str, Any]], n: int, region: str = "eu") -> list[str]:
    ensure_indexes(db)
    gateways = GatewayRepository(db)
    ids = [f"{region}{i}" for i in range(n)]
    for gid in ids:
        gateways.insert(ApiGateway(gateway_id=gid, region=region, phase=GatewayPhase.STARTED))
    return ids


def test_held_only_past_both_the_count_and_the_share(mongo: Database[dict[str, Any]]) -> None:
    guard = DeletionGuardRepository(mongo)
    small = region_of(mongo, 8, "eu")  # a quarter is 2: the count decides
    verdicts = [guard.decide("eu", gid, LIMITS, began=False).admission for gid in small]
    assert verdicts == [Admission.ADMITTED] * 3 + [Admission.HELD] * 5
    large = region_of(mongo, 40, "us")  # a quarter is 10: the share decides
    verdicts = [guard.decide("us", gid, LIMITS, began=False).admission for gid in large[:12]]
    assert verdicts == [Admission.ADMITTED] * 10 + [Admission.HELD] * 2
    # The same answer every time it asks; a deletion that began is never held.
    assert guard.decide("us", large[0], LIMITS, began=False).admission is Admission.ADMITTED
    assert guard.decide("us", large[11], LIMITS, began=False).admission is Admission.HELD
    assert guard.decide("us", large[20], LIMITS, began=True).admission is Admission.ADMITTED
    # While any is held, every new one is held too.
    assert guard.decide("us", large[21], LIMITS, began=False).admission is Admission.HELD


def test_the_defaults_let_a_handful_through_and_hold_a_region(
    mongo: Database[dict[str, Any]],
) -> None:
    defaults = Settings.model_construct()
    limits = GuardLimits(
        defaults.deletion_guard_count,
        defaults.deletion_guard_share,
        defaults.deletion_guard_window_seconds,
    )
    assert (limits.count, limits.share, limits.window) == (10, 0.25, 600.0)
    guard = DeletionGuardRepository(mongo)
    ids = region_of(mongo, 12, "eu")
    verdicts = [guard.decide("eu", gid, limits, began=False).admission for gid in ids]
    assert verdicts == [Admission.ADMITTED] * 10 + [Admission.HELD] * 2


def test_the_window_release_and_cancel(mongo: Database[dict[str, Any]]) -> None:
    guard = DeletionGuardRepository(mongo)
    ids = region_of(mongo, 8, "eu")
    now = utcnow()
    for gid in ids[:4]:
        guard.decide("eu", gid, LIMITS, began=False, now=now)
    assert [guard.decide("eu", g, LIMITS, began=False).admission for g in ids[3:5]] == [
        Admission.HELD
    ] * 2
    # Held ones stay held after the window: only an operator moves them on.
    later = now + timedelta(seconds=LIMITS.window + 1)
    assert guard.decide("eu", ids[3], LIMITS, began=False, now=later).admission is Admission.HELD
    assert guard.release("eu", LIMITS.window, now=later) == ids[3:5]
    assert (
        guard.decide("eu", ids[4], LIMITS, began=False, now=later).admission is Admission.ADMITTED
    )
    # Released ones do not count against the guard: the window is empty again.
    fresh = [guard.decide("eu", g, LIMITS, began=False, now=later).admission for g in ids[5:8]]
    assert fresh == [Admission.ADMITTED] * 3
    extra = region_of(mongo, 2, "ex")
    for gid in extra:
        mongo["ApiGateway"].update_one({"gatewayId": gid}, {"$set": {"region": "eu"}})
    assert guard.decide("eu", extra[0], LIMITS, began=False, now=later).admission is Admission.HELD
    assert guard.cancel("eu", "a mistake", now=later) == [extra[0]]
    verdict = guard.decide("eu", extra[0], LIMITS, began=False, now=later)
    assert verdict.admission is Admission.CANCELLED and verdict.reason == "a mistake"
    guard.forget_cancelled("eu", extra[0])
    assert guard.release("eu", LIMITS.window) == [] and guard.cancel("eu", "x") == []


def test_concurrent_deletions_never_pass_the_guard(mongo: Database[dict[str, Any]]) -> None:
    guard = DeletionGuardRepository(mongo)
    ids = region_of(mongo, 40, "eu")
    limits = GuardLimits(count=5, share=0.0, window=600.0)
    with ThreadPoolExecutor(max_workers=10) as pool:
        verdicts = list(pool.map(lambda g: guard.decide("eu", g, limits, began=False), ids))
    admitted = [v for v in verdicts if v.admission is Admission.ADMITTED]
    assert len(admitted) == 5
    [doc] = guard.regions()
    assert len(doc["held"]) == 35 and len(doc["admitted"]) == 5
