"""The `gatewayflow` command line as a user runs it, against the session stack."""

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from pymongo import MongoClient

from gatewayflow.domain import naming
from gatewayflow.settings import Settings
from tests.conftest import embedded_settings, free_ports, stack_env
from tests.emulator_admin import EmulatorAdmin
from tests.gateway_harness import harness, unique_id
from tests.oracles import mongo_snapshot
from tests.ui_links import opened, opens, printed_links

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
        assert f"✓ {gid}: Running" in created.stdout
        [link] = printed_links(created.stdout)
        workflow = naming.gateway_workflow_id(h.settings.installation, gid)
        assert opens(h.settings, link, workflow), link

        stopped = await run(h.settings, "stop", gid, "--wait")
        assert stopped.returncode == 0 and f"✓ {gid}: Stopped" in stopped.stdout
        started = await run(h.settings, "start", gid, "--wait")
        assert started.returncode == 0 and f"✓ {gid}: Running" in started.stdout

        status = await run(h.settings, "status", gid)
        deletion = naming.deletion_workflow_id(h.settings.installation, gid)
        assert "Started" in status.stdout and deletion in status.stdout
        gateway_link, deletion_link, domain_link = printed_links(status.stdout)
        assert opens(h.settings, gateway_link, workflow), gateway_link
        domain = naming.domain_workflow_id(h.settings.installation, gid)
        assert opens(h.settings, domain_link, domain), domain_link
        assert opened(h.settings, deletion_link) == []  # no deletion yet: a query, empty

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
        [link] = printed_links(deleted.stdout)
        assert opens(h.settings, link, workflow), link

        # Gone from MongoDB, not from the CLI: when it went, and the deletion's run.
        gone = await run(h.settings, "status", gid)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert f"{gid} was deleted at " in gone.stdout
        [link] = printed_links(gone.stdout)
        deletion = naming.deletion_workflow_id(h.settings.installation, gid)
        assert opens(h.settings, link, deletion), link
        never = await run(h.settings, "status", unique_id("never"))
        assert never.returncode == 1 and "no gateway" in never.stdout

        replayed = await run(h.settings, "replay", "--workflow-id", workflow)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        replay_links = printed_links(replayed.stdout)
        assert replay_links
        assert all(opens(h.settings, link, workflow) for link in replay_links)


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
        labels = naming.owner_labels(h.settings.installation, ghost)
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


async def test_bad_input_gets_a_clear_error_and_changes_nothing(stack: Settings) -> None:
    async with harness(stack, worker=False) as h:
        bad = await run(h.settings, "stop", "Not_Valid")
        assert bad.returncode == 1 and "not a DNS-1123 label" in bad.stdout
        unknown = await run(h.settings, "start", "no-such-gateway")
        assert unknown.returncode == 1 and "no gateway 'no-such-gateway'" in unknown.stdout

        gid = unique_id("deleting")
        raw = h.deps.db["ApiGateway"]
        raw.insert_one({"gatewayId": gid, "state": "Deleted", "phase": "Deleting"})
        before = raw.find_one({"gatewayId": gid})
        refused = await run(h.settings, "start", gid)
        assert refused.returncode == 1 and "being deleted" in refused.stdout
        assert raw.find_one({"gatewayId": gid}) == before

        raw.insert_one({"gatewayId": "malformed-doc", "state": "Bogus"})
        broken = await run(h.settings, "status", "malformed-doc")
        assert broken.returncode == 1
        assert "ApiGateway" in broken.stdout and "malformed" in broken.stdout


# `up` and `demo` start the stack; `down` with nothing running says so and succeeds.
WITHOUT_STACK = [
    ("status",),
    ("status", "shop"),
    ("create", "shop"),
    ("stop", "shop"),
    ("start", "shop"),
    ("restart", "shop"),
    ("delete", "shop", "--wait"),
    ("plan", "shop"),
    ("audit",),
    ("replay", "--workflow-id", "gateway/shop"),
    ("deletions", "release", "--region", "local"),
    ("deletions", "cancel", "--region", "local"),
]


@pytest.mark.parametrize("args", WITHOUT_STACK, ids=" ".join)
def test_without_a_stack_every_command_says_what_to_run(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """Nothing listens on the ports of a home where no stack ever ran."""
    settings = embedded_settings(tmp_path / "home")
    env = {**stack_env(settings), "COLUMNS": "80"}
    # What starting the CLI costs on this machine right now (a loaded machine starts Python
    # slowly): the bound below is on the waiting a command adds, not on the interpreter.
    began = time.monotonic()
    subprocess.run([GATEWAYFLOW, "--help"], env=env, capture_output=True, timeout=60, check=True)
    startup = time.monotonic() - began
    began = time.monotonic()
    result = subprocess.run(
        [GATEWAYFLOW, *args], env=env, capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - began
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == ""  # no traceback
    [line] = result.stdout.splitlines()
    if args[0] == "replay":  # it needs Temporal only
        part, address, variable = (
            "Temporal",
            f"127.0.0.1:{settings.temporal_port}",
            "TEMPORAL_ADDRESS",
        )
    else:
        part, variable = "MongoDB", "MONGODB_URI"
        address = f"mongodb://127.0.0.1:{settings.mongo_port}/?directConnection=true"
    assert line == (
        f"error: cannot reach {part} at {address}: "
        f"start the embedded stack with `gatewayflow up`, or set {variable}"
    )
    # A command that hangs on a server that is not there waits for pymongo's or
    # Temporal's default timeouts (30 s and more); the bound is far from the 2 s a
    # command waits (REACH_TIMEOUT) so that a loaded machine cannot fail it.
    assert elapsed - startup < 20, f"{' '.join(args)} took {elapsed:.1f}s to say so"


async def test_a_stopped_part_is_named_and_nothing_is_written(
    stack: Settings, tmp_path: Path
) -> None:
    """MongoDB answers; Temporal and the Kubernetes API (given by address) do not."""
    temporal_port, kube_port = free_ports(2)
    kubeconfig = tmp_path / "kubeconfig"
    assert stack.kubeconfig is not None
    kubeconfig.write_text(
        re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{kube_port}", stack.kubeconfig.read_text())
    )
    stopped = stack.model_copy(
        update={"temporal_address": f"127.0.0.1:{temporal_port}", "kubeconfig": kubeconfig}
    )
    gid = unique_id("stopped")

    created = await run(stopped, "create", gid)
    assert created.returncode == 1
    assert created.stdout == (
        f"error: cannot reach Temporal at 127.0.0.1:{temporal_port}: "
        "check TEMPORAL_ADDRESS (it points there)\n"
    )
    missing = await run(stack, "status", gid)
    assert missing.returncode == 1 and f"no gateway '{gid}'" in missing.stdout  # not written

    audit = await run(stopped, "audit")
    assert audit.returncode == 1
    assert audit.stdout == (
        "error: cannot reach the Kubernetes API of region local at "
        f"http://127.0.0.1:{kube_port}/clusters/local: "
        "check KUBECONFIG (it points there)\n"
    )


async def test_read_only_commands_write_nothing(stack: Settings) -> None:
    """Not even the indexes: a fresh database stays empty through status, plan and audit."""
    fresh = stack.model_copy(update={"db_name": f"gf_readonly_{unique_id('db')[3:]}"})
    for args in (("status",), ("status", "shop"), ("plan", "shop"), ("audit",)):
        result = await run(fresh, *args)
        assert result.returncode in (0, 1), result.stdout + result.stderr
    client: MongoClient[dict[str, object]] = MongoClient(stack.mongodb_uri)
    with client:
        assert fresh.db_name not in client.list_database_names()


@pytest.mark.parametrize("args", [("status",), ("status", "shop"), ("audit",)], ids=" ".join)
def test_a_password_in_an_unreachable_uri_is_never_printed(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    (port,) = free_ports(1)
    password = "S3cretPassw0rd"
    settings = embedded_settings(tmp_path / "home").model_copy(
        update={"mongodb_uri": f"mongodb://admin:{password}@127.0.0.1:{port}/?authSource=admin"}
    )
    result = subprocess.run(
        [GATEWAYFLOW, *args], env=stack_env(settings), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"cannot reach MongoDB at mongodb://admin:***@127.0.0.1:{port}/" in result.stdout
    assert password not in result.stdout + result.stderr
