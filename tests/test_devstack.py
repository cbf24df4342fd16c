"""The embedded stack as a user meets it: start, reuse, stop, crash and restart.

These tests run a second stack in a home of their own (the session stack is only read),
so stopping and killing here never disturbs other tests.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from pymongo import MongoClient
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from gatewayflow.domain import naming
from gatewayflow.settings import Settings
from gatewayflow_dev import stack
from gatewayflow_dev.processes import port_in_use
from gatewayflow_dev.temporal import temporal_address, temporal_binary
from tests.conftest import embedded_settings, stack_env
from tests.emulator_admin import cluster_admin
from tests.ui_links import opened, opens, printed_links

GATEWAYFLOW = str(Path(sys.executable).parent / "gatewayflow")


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Unresolved settings of this module's own stack, stopped at the end."""
    settings = embedded_settings(tmp_path_factory.mktemp("own-home"))
    yield settings
    stack.stop(settings)


def pids(settings: Settings) -> dict[str, int | None]:
    return {status.name: status.pid for status in stack.status(settings)}


def processes_using(home: Path) -> list[str]:
    """Command lines of every process on the machine that mentions `home`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = " ".join(a.decode(errors="replace") for a in argv)
        if proc.name.isdigit() and str(home.resolve()) in line:
            found.append(line)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie that its parent has yet to reap is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def mongo_client(settings: Settings) -> MongoClient[dict[str, Any]]:
    return MongoClient(settings.mongodb_uri, serverSelectionTimeoutMS=10_000)


def test_up_detach_serves_then_start_reuses_and_down_stops(own: Settings) -> None:
    """`up --detach` starts every part and serves the UI; a second start reuses the running
    processes; `down` leaves no process behind."""
    stack.stop(own)
    env = stack_env(own)  # unresolved: no addresses, so `up` starts every part
    up = subprocess.run(
        [GATEWAYFLOW, "up", "--detach"], env=env, capture_output=True, text=True, timeout=120
    )
    assert up.returncode == 0, up.stdout + up.stderr
    resolved = own.resolved()
    assert resolved.temporal_ui_url is not None
    for address in (resolved.temporal_address, resolved.temporal_ui_url, resolved.mongodb_uri):
        assert str(address) in up.stdout
    kubectl = Path(sys.executable).parent / "kubectl"  # the venv's, from the dev extra
    assert f"KUBECONFIG={resolved.kubeconfig} {kubectl} get ns" in up.stdout

    with urllib.request.urlopen(resolved.temporal_ui_url, timeout=10) as page:
        assert page.status == 200
    address = str(resolved.temporal_address)
    listed = subprocess.run(
        [temporal_binary(), "operator", "search-attribute", "list", "--address", address],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    rows = [line.split() for line in listed.stdout.splitlines()]
    for name in ("GatewayId", "GatewayState", "GatewayPhase"):
        assert [name, "Keyword"] in rows

    before = pids(own)
    again = stack.start(own)
    assert again.started == ()
    assert pids(own) == before
    assert all(pid is not None for pid in before.values())
    recorded = json.loads(own.stack_file.read_text())
    assert recorded == {
        "temporal_address": again.settings.temporal_address,
        "temporal_ui_url": again.settings.temporal_ui_url,
        "mongodb_uri": again.settings.mongodb_uri,
        "kubeconfig": str(own.home.resolve() / "kubeconfig"),
    }
    assert Path(recorded["kubeconfig"]).is_file()

    down = subprocess.run(
        [GATEWAYFLOW, "down"], env=env, capture_output=True, text=True, timeout=60
    )
    assert down.returncode == 0, down.stdout + down.stderr
    assert processes_using(own.home) == []
    assert not any(alive(pid) for pid in before.values() if pid is not None)
    assert all(status.pid is None and not status.healthy for status in stack.status(own))
    assert not own.stack_file.exists()
    assert stack.stop(own) == []


def test_up_names_a_taken_port(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "home")
    with socket.create_server(("127.0.0.1", settings.temporal_port)):
        up = subprocess.run(
            [GATEWAYFLOW, "up", "--detach"],
            env=stack_env(settings),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert up.returncode == 1
    assert f"port {settings.temporal_port}" in up.stdout
    assert "GATEWAYFLOW_TEMPORAL_PORT" in up.stdout
    assert processes_using(settings.home) == []


async def test_up_runs_the_worker_until_sigterm_then_stops_the_stack(own: Settings) -> None:
    await asyncio.to_thread(stack.stop, own)
    up = subprocess.Popen(
        [GATEWAYFLOW, "up"], env=stack_env(own), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        pollers = await _workflow_pollers(own)
        while not pollers and up.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            pollers = await _workflow_pollers(own)
        assert pollers, "no worker polls the task queue"
        assert all(status.healthy for status in await asyncio.to_thread(stack.status, own))
    finally:
        up.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(up.communicate, timeout=60)
    assert up.returncode == 0, output.decode()
    assert processes_using(own.home) == []


async def _workflow_pollers(settings: Settings) -> list[str]:
    """Identities polling the workflow task queue; [] while Temporal is not serving yet."""
    request = DescribeTaskQueueRequest(
        namespace=settings.temporal_namespace,
        task_queue=TaskQueue(name=settings.task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    try:
        temporal = await Client.connect(temporal_address(settings))
        response = await temporal.workflow_service.describe_task_queue(request)
    except (RuntimeError, RPCError):
        return []
    return [poller.identity for poller in response.pollers]


async def test_sigkill_of_the_whole_stack_keeps_the_data(own: Settings) -> None:
    """Every part killed with SIGKILL (an acknowledged write in the last moment before),
    its pid files left stale or garbled: the next start recovers and nothing is lost."""
    settings = (await asyncio.to_thread(stack.start, own)).settings
    temporal = await Client.connect(str(settings.temporal_address))
    handle = await temporal.start_workflow(
        "NoWorkerRunsThis", id="durable-workflow", task_queue="nobody-listens"
    )
    kube = cluster_admin(settings)
    with kube:
        namespace = k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="kept-ns"))
        k8s.CoreV1Api(kube).create_namespace(namespace)
    running = pids(own)
    with mongo_client(settings) as client:
        client.gf_durability.kept.insert_one({"_id": "kept"})
        gateways = client.gf_durability.ApiGateway
        gateways.insert_one({"_id": "gw-1", "state": "Running"})
        gateways.update_one({"_id": "gw-1"}, {"$set": {"state": "Deleted"}})
        for pid in running.values():
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
    # SIGKILL is delivered at once but a loaded machine takes a moment to tear a process
    # down; its ports are free again only then, as they would be for a user.
    ports = (own.temporal_port, own.ui_port, own.mongo_port, own.kube_port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        any(alive(pid) for pid in running.values() if pid) or any(map(port_in_use, ports))
    ):
        time.sleep(0.1)
    run = own.home / "run"
    (run / "temporal.pid").write_text(f"{os.getpid()}\n")  # alive, but not ours
    (run / "kube.pid").write_text("not a pid\n")  # mongo.pid names a dead process

    restarted = await asyncio.to_thread(stack.start, own)

    assert sorted(restarted.started) == ["kube", "mongo", "temporal"]
    assert os.getpid() not in pids(own).values()
    assert all(status.healthy for status in await asyncio.to_thread(stack.status, own))
    temporal = await Client.connect(str(settings.temporal_address))
    description = await temporal.get_workflow_handle(handle.id).describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    with mongo_client(settings) as client:
        assert client.gf_durability.kept.find_one({"_id": "kept"}) == {"_id": "kept"}
        assert client.gf_durability.ApiGateway.find_one({"_id": "gw-1"}) == {
            "_id": "gw-1",
            "state": "Deleted",
        }
    kube = k8s_config.new_client_from_config(config_file=str(settings.kubeconfig))  # type: ignore[no-untyped-call]
    with kube:
        listed = k8s.CoreV1Api(kube).list_namespace().items
    names = [ns.metadata.name for ns in listed if ns.metadata]
    assert "kept-ns" in names


def test_session_stack_serves_subprocesses(stack: Settings, mongo: Any) -> None:
    mongo.notes.insert_one({"_id": "from-test"})

    demo = subprocess.run(
        [GATEWAYFLOW, "demo"], env=stack_env(stack), capture_output=True, text=True, timeout=120
    )

    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "started" not in demo.stdout  # every part was given by address, none started
    every_workflow = next(link for link in printed_links(demo.stdout) if "GatewayId" in link)
    deletion_line = next(line for line in demo.stdout.splitlines() if "gateway-deletion/" in line)
    [deletion] = printed_links(deletion_line)
    shown = {wid for wid, _run in opened(stack, every_workflow)}
    installation = stack.installation
    scope = f"gateway/{installation}/"
    shop = next(wid for wid in shown if wid.startswith(f"{scope}shop-")).removeprefix(scope)
    ids = {
        naming.gateway_workflow_id(installation, shop),
        naming.deletion_workflow_id(installation, shop),
        naming.domain_workflow_id(installation, shop),
    }
    assert ids <= shown
    assert opens(stack, deletion, naming.deletion_workflow_id(installation, shop)), deletion
    assert mongo.notes.find_one({"_id": "from-test"}) == {"_id": "from-test"}
    assert "GATEWAYFLOW_HOME" not in os.environ
