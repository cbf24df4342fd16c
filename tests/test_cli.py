"""The `gatewayflow` command line as a user runs it, against the session stack."""

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from gatewayflow.settings import Settings
from tests.conftest import stack_env
from tests.emulator_admin import EmulatorAdmin
from tests.gateway_harness import harness, unique_id
from tests.oracles import mongo_snapshot

pytestmark = pytest.mark.asyncio(loop_scope="session")

GATEWAYFLOW = str(Path(sys.executable).parent / "gatewayflow")


async def run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**stack_env(settings), "COLUMNS": "200"}
    return await asyncio.to_thread(
        subprocess.run,
        [GATEWAYFLOW, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


async def test_a_gateway_through_its_whole_life(stack: Settings) -> None:
    admin = EmulatorAdmin.of(stack)
    async with harness(stack) as h:
        gid = unique_id("cli")
        created = await run(h.settings, "create", gid, "--custom-domain", "c.example.com", "--wait")
        assert created.returncode == 0, created.stdout + created.stderr
        assert f"/workflows/gateway/{gid}" in created.stdout  # the Temporal UI link
        assert f"✓ {gid}: Running" in created.stdout

        stopped = await run(h.settings, "stop", gid, "--wait")
        assert stopped.returncode == 0 and f"✓ {gid}: Stopped" in stopped.stdout
        started = await run(h.settings, "start", gid, "--wait")
        assert started.returncode == 0 and f"✓ {gid}: Running" in started.stdout

        status = await run(h.settings, "status", gid)
        assert "Started" in status.stdout and f"gateway-deletion/{gid}" in status.stdout

        since = admin.last_seq()
        mongo_before = mongo_snapshot(h.deps.db)
        plan = await run(h.settings, "plan", gid)
        assert plan.returncode == 0
        for name in (f"{gid}-runtime-custom-domain", f"{gid}-trigger-t1", f"gw-{gid}"):
            assert name in plan.stdout
        assert "nothing was changed" in plan.stdout
        # And indeed: no write in the cluster's op log, MongoDB as it was.
        assert admin.oplog(gid, since=since) == []
        assert mongo_snapshot(h.deps.db) == mongo_before

        deleted = await run(h.settings, "delete", gid, "--wait")
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
        for step in ("namespace", "database", "instance", "runtime-domain"):
            assert step in deleted.stdout
        assert f"✓ {gid}: Deleted" in deleted.stdout
        assert await h.traces(gid) == []


async def test_audit_finds_a_planted_leak(stack: Settings) -> None:
    """Resources of a gateway whose ApiGateway document is gone: a labelled namespace with
    a ConfigMap, and a Stage document. `audit` lists each and exits 1."""
    async with harness(stack, worker=False) as h:
        clean = await run(h.settings, "audit")
        # Every test removes what it made, so the shared cluster holds no leak now.
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert "nothing left behind" in clean.stdout

        # One gateway left only in the cluster, another only in MongoDB.
        ghost, orphan = unique_id("ghost"), unique_id("orphan")
        ns = f"gw-{ghost}"
        labels = {"gatewayflow.dev/gateway": ghost}
        api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(stack.kubeconfig), context="local"
        )
        with api:
            core = k8s.CoreV1Api(api)
            core.create_namespace(
                k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns, labels=labels))
            )
            core.create_namespaced_config_map(
                ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="kept", labels=labels))
            )
            h.deps.db["Stage"].insert_one({"gatewayId": orphan, "name": "dev"})
            try:
                leak = await run(h.settings, "audit")
            finally:
                core.delete_namespace(ns)
        assert leak.returncode == 1, leak.stdout + leak.stderr
        assert "Left behind" in leak.stdout
        rows = leak.stdout.splitlines()
        for gid, kind, name in (
            (ghost, "Namespace", ns),
            (ghost, "ConfigMap", "kept"),
            (orphan, "Stage", "1 document"),
        ):
            assert any(gid in row and kind in row and name in row for row in rows), leak.stdout
        assert "2 deleted gateway(s) left resources behind" in leak.stdout
