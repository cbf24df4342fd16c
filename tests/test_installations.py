"""Two installations sharing every server, and a tenant writing into its own database.

Installation A and installation B share the Kubernetes cluster, the runtime MongoDB and
the Temporal namespace; each has its own GATEWAYFLOW_DB, task queue and installation
id. Whatever B's reaper, drift check and dispatcher do, A's gateways stay Running with
everything they own. And nothing a tenant writes into its own runtime database stalls
its gateway's deletion or steers the reaper.
"""

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from control import reaper, service
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.domain import naming
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.settings import Settings
from tests.gateway_harness import Harness, harness, unique_id
from tests.kube_fixtures import Emulator
from tests.oracles import kube_traces

pytestmark = pytest.mark.asyncio(loop_scope="session")


@contextlib.contextmanager
def own_cluster(home: Path) -> Iterator[Path]:
    """A cluster of the test's own: B's reaper looks at every object of it."""
    emulator = Emulator(
        home, "--regions", "local", "--delete-delay", "0.05", "--ready-delay", "0.05"
    )
    emulator.start()
    try:
        yield emulator.kubeconfig
    finally:
        emulator.stop()


@contextlib.asynccontextmanager
async def installation(
    stack: Settings, kubeconfig: Path, **overrides: Any
) -> AsyncIterator[Harness]:
    name = f"inst-{uuid.uuid4().hex[:6]}"
    async with harness(stack, kubeconfig=kubeconfig, installation_name=name, **overrides) as h:
        yield h


async def everything_of(h: Harness, gid: str) -> set[str]:
    return {str(item) for item in await h.traces(gid)}


async def assert_intact(a: Harness, gid: str, before: set[str]) -> None:
    gw = await asyncio.to_thread(a.gateways.require, gid)
    assert (gw.state, gw.phase) == (GatewayState.RUNNING, GatewayPhase.STARTED), gw.progress
    assert await everything_of(a, gid) == before
    assert a.deps.runtime.exists(gid) and a.deps.runtime.user_exists(gid)


async def test_another_installation_never_reaps_repairs_or_signals_these_gateways(
    stack: Settings, tmp_path: Path
) -> None:
    with own_cluster(tmp_path) as kubeconfig:
        async with (
            installation(stack, kubeconfig) as a,
            installation(
                stack, kubeconfig, drift_interval_seconds=1.0, reap_grace_seconds=0.0
            ) as b,
        ):
            first, second = unique_id("a-one"), unique_id("a-two")
            await asyncio.gather(a.create(first), a.create(second))
            await asyncio.gather(
                a.wait_for(first, GatewayState.RUNNING), a.wait_for(second, GatewayState.RUNNING)
            )
            mine = unique_id("b-own")
            await b.create(mine)
            await b.wait_for(mine, GatewayState.RUNNING)
            before = {gid: await everything_of(a, gid) for gid in (first, second)}

            # B sees nothing of A's: not in its audit, not in the reaper's dry run.
            assert not {first, second} & set(service.audit(b.settings))
            assert not {first, second} & {o.gateway_id for o in reaper.dry_run(b.deps)}

            # B's reaper, by hand with no grace period, as an operator would run it.
            result = await service.reap_orphans(b.settings, 0.0)
            assert not {first, second} & {o.gateway_id for o in result.reaped}, result
            # B's drift check runs every second meanwhile; A's deletion took ~10 s before.
            await asyncio.sleep(15)
            for gid in (first, second):
                await assert_intact(a, gid, before[gid])
            b_gw = await asyncio.to_thread(b.gateways.require, mine)
            assert b_gw.phase is GatewayPhase.STARTED

            # Each installation still deletes its own.
            await b.request(mine, Request.DELETE)
            await b.wait_for(mine, GatewayState.DELETED)
            assert await b.traces(mine) == []
            for gid in (first, second):
                await assert_intact(a, gid, before[gid])


async def test_the_same_gateway_id_in_another_installation_is_refused(
    stack: Settings, tmp_path: Path
) -> None:
    """B creating a gateway of A's id finds A's namespace: not B's, so B's create stops
    there, and B's delete removes nothing of A's."""
    with own_cluster(tmp_path) as kubeconfig:
        async with installation(stack, kubeconfig) as a, installation(stack, kubeconfig) as b:
            gid = unique_id("shared")
            await a.create(gid)
            await a.wait_for(gid, GatewayState.RUNNING)
            objects = kube_traces(a.settings, gid)

            await b.create(gid)
            error = await recorded_error(b, gid)
            assert "not" in error and naming.namespace(gid) in error, error
            await b.request(gid, Request.DELETE)
            await recorded_error(b, gid, other_than=error)
            await asyncio.sleep(3)
            gw = await asyncio.to_thread(a.gateways.require, gid)
            assert (gw.state, gw.phase) == (GatewayState.RUNNING, GatewayPhase.STARTED)
            assert kube_traces(a.settings, gid) == objects
            assert a.deps.runtime.exists(gid) and a.deps.runtime.user_exists(gid)


async def recorded_error(h: Harness, gid: str, other_than: str | None = None) -> str:
    """The gateway's progress.lastError, once there is one (a new one after `other_than`)."""
    async with asyncio.timeout(60):
        while True:
            gw = await asyncio.to_thread(h.gateways.get, gid)
            error = gw and gw.progress.last_error
            if error and error != other_than:
                return error
            await asyncio.sleep(0.2)


# -- the tenant's own database ------------------------------------------------------------


@contextlib.contextmanager
def as_tenant(h: Harness, gid: str) -> Iterator[Database[dict[str, Any]]]:
    """The gateway's runtime database as its tenant reaches it: its own user, with the
    password of its Secret (readWrite on that database only)."""
    secret = h.deps.cluster("local").get(
        ObjectRef(Kind.SECRET, naming.namespace(gid), naming.db_secret(gid))
    )
    assert secret is not None
    password = base64.b64decode(secret["data"]["password"]).decode()
    host = urlsplit(h.settings.mongodb_uri or "").netloc
    name = naming.runtime_database(gid)
    user = naming.runtime_user(gid)
    uri = f"mongodb://{user}:{quote(password)}@{host}/{name}?directConnection=true"
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    with client:
        yield client[name]


@pytest.mark.parametrize("mischief", ["rewrite", "delete"])
async def test_a_tenant_writing_its_owner_marker_does_not_stall_its_deletion(
    stack: Settings, mischief: str
) -> None:
    async with harness(stack) as h:
        gid = unique_id("tenant")
        await h.create(gid)
        await h.wait_for(gid, GatewayState.RUNNING)
        with as_tenant(h, gid) as db:
            db["orders"].insert_one({"order": 1})  # the runtime's own data
            if mischief == "rewrite":
                db["_meta"].update_many({}, {"$set": {"gatewayId": "someone-else"}})
            else:
                db["_meta"].drop()

        await h.request(gid, Request.DELETE)
        await h.wait_for(gid, GatewayState.DELETED, timeout=60)
        assert await h.traces(gid) == []


async def test_a_forged_owner_marker_does_not_steer_the_reaper(stack: Settings) -> None:
    async with harness(stack) as h:
        gid, ghost = unique_id("tenant"), unique_id("ghost")
        await h.create(gid)
        await h.wait_for(gid, GatewayState.RUNNING)
        with as_tenant(h, gid) as db:
            db["_meta"].update_many({}, {"$set": {"gatewayId": ghost}})

        assert not {gid, ghost} & {o.gateway_id for o in reaper.dry_run(h.deps)}
        result = await service.reap_orphans(h.settings, 0.0, [gid, ghost])
        assert not result.reaped, result
        gw = await asyncio.to_thread(h.gateways.require, gid)
        assert (gw.state, gw.phase) == (GatewayState.RUNNING, GatewayPhase.STARTED)
        assert h.deps.runtime.exists(gid)
