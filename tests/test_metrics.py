"""The worker's Prometheus endpoint, scraped as Prometheus would while a gateway is deleted.

A real worker (`run_worker` with GATEWAYFLOW_METRICS_PORT set) on the session stack; one
CronJob DELETE answers 503 four times, so the first attempt of `delete_triggers` fails
and the step is retried; a second gateway's namespace holds a ConfigMap that is not its
own, so its deletion fails for good, until that ConfigMap goes and it is requested again.
"""

import asyncio
import socket
import urllib.request
from collections.abc import AsyncIterator

import pytest
from kubernetes import client as k8s
from prometheus_client.parser import text_string_to_metric_families

from gatewayflow.domain import naming
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.metrics import GatewayPhases, pipeline, start_metrics
from gatewayflow.settings import Settings
from gatewayflow.store.client import Db
from gatewayflow.store.indexes import ensure_indexes
from tests.conftest import free_ports
from tests.emulator_admin import EmulatorAdmin, cluster_admin
from tests.gateway_harness import Harness, harness, unique_id

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

DELETION_ACTIVITIES = {
    "begin_operation",
    "delete_triggers",
    "delete_functions",
    "delete_stages",
    "set_domain_target",
    "converge_domain",
    "record_step",
    "delete_instance",
    "delete_database",
    "delete_namespace",
    "finalize_deletion",
}


def scrape(port: int, path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        assert response.status == 200
        return str(response.read().decode())


def samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def metered(stack: Settings) -> AsyncIterator[tuple[Harness, int]]:
    """A worker with metrics on a free port, its own database and task queue."""
    (port,) = free_ports(1)
    async with harness(stack, metrics_port=port) as h:
        yield h, port


@pytest.mark.asyncio(loop_scope="session")
async def test_a_deletion_shows_in_the_scrape(
    stack: Settings, metered: tuple[Harness, int]
) -> None:
    h, port = metered
    assert scrape(port, "/healthz") == "ok\n"
    doomed, kept = unique_id("metrics"), unique_id("metrics")
    # `kept` has no CronJob, so the four injected 503s all meet `doomed`'s one: the delete
    # of the listed object, then the client's three attempts of the read-and-delete.
    await asyncio.gather(h.create(doomed), h.create(kept, triggers=0))
    await asyncio.gather(
        h.wait_for(doomed, GatewayState.RUNNING), h.wait_for(kept, GatewayState.RUNNING)
    )
    # The ConfigMap in `kept`'s namespace that is not the gateway's: its deletion must stop.
    api = cluster_admin(stack)
    k8s.CoreV1Api(api).create_namespaced_config_map(
        naming.namespace(kept), k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="someone-elses"))
    )
    with EmulatorAdmin.of(stack).faults_injected(
        [{"verb": "delete", "kind": "CronJob", "status": 503, "count": 4}]
    ):
        before = samples(scrape(port))
        assert value(before, "gatewayflow_gateways", phase="Started") == 2

        await h.request(doomed, Request.DELETE)
        await h.request(kept, Request.DELETE)
        await h.wait_phase(doomed, GatewayPhase.DELETING)
        during = samples(scrape(port))
        assert value(during, "gatewayflow_gateways", phase="Deleting") >= 1
        started = "gatewayflow_deletions_started_total"
        assert value(during, started) - value(before, started) >= 1

        await h.wait_for(doomed, GatewayState.DELETED)
        await _until_failed(port, before)
    after = samples(scrape(port))
    # `kept`'s deletion may already have been tried again (and failed again) meanwhile.
    assert value(after, started) - value(before, started) >= 2
    completed = "gatewayflow_deletions_completed_total"
    failed = "gatewayflow_deletions_failed_total"
    assert value(after, completed) - value(before, completed) == 1
    assert value(after, failed) - value(before, failed) >= 1
    for activity in DELETION_ACTIVITIES:
        count = "gatewayflow_step_duration_seconds_count"
        assert value(after, count, activity=activity) > value(before, count, activity=activity)
    retries = "gatewayflow_step_retries_total"
    assert value(after, retries, activity="delete_triggers") > value(
        before, retries, activity="delete_triggers"
    )
    # The gauge counts the worker's database on each scrape: `doomed` is gone.
    assert sum(v for (n, _), v in after.items() if n == "gatewayflow_gateways") == 1
    # The SDK's own metrics come through the same endpoint (finalize_deletion is a local
    # activity now: the database step is a regular one, run once for each gateway).
    assert (
        value(
            after,
            "temporal_activity_execution_latency_seconds_count",
            activity_type="delete_database",
            namespace=h.settings.temporal_namespace,
            service_name="temporal-core-sdk",
            task_queue=h.settings.task_queue,
            workflow_type="GatewayDeletion",
        )
        >= 1
    )

    # Without the foreign ConfigMap, the deletion requested again goes through.
    k8s.CoreV1Api(api).delete_namespaced_config_map("someone-elses", naming.namespace(kept))
    await h.request(kept, Request.DELETE)
    await h.wait_for(kept, GatewayState.DELETED)
    assert value(samples(scrape(port)), completed) - value(before, completed) == 2
    api.close()


async def _until_failed(port: int, before: Samples, timeout: float = 60.0) -> None:
    name = "gatewayflow_deletions_failed_total"
    async with asyncio.timeout(timeout):
        while value(samples(scrape(port)), name) == value(before, name):
            await asyncio.sleep(0.2)


def test_the_gateway_count_is_served_by_the_state_phase_index(mongo: Db) -> None:
    """What the gauge asks MongoDB on every scrape is an index range, never a scan."""
    ensure_indexes(mongo)
    mongo["ApiGateway"].insert_many(
        [
            {"gatewayId": "a", "state": "Running", "phase": "Started"},
            {"gatewayId": "b", "state": "Deleted", "phase": "Started"},
            {"gatewayId": "c", "state": "Deleted", "phase": "Deleting"},
        ]
    )
    (family,) = GatewayPhases(mongo).collect()
    counts = {sample.labels["phase"]: sample.value for sample in family.samples}
    assert counts == {phase.value: 0 for phase in GatewayPhase} | {"Started": 2, "Deleting": 1}
    for state in GatewayState:
        plan = str(
            mongo.command(
                "explain",
                {"aggregate": "ApiGateway", "pipeline": pipeline(state), "cursor": {}},
                verbosity="queryPlanner",
            )
        )
        assert "COLLSCAN" not in plan and "IXSCAN" in plan, plan


def _outward_address() -> str | None:
    """This machine's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(sock.getsockname()[0])
    return None if address.startswith("127.") else address


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def test_metrics_listen_on_loopback_unless_told_otherwise(stack: Settings, mongo: Db) -> None:
    outward = _outward_address()
    if outward is None:
        pytest.skip("this machine has no address but loopback: nothing to reach /metrics from")
    private, public = free_ports(2)
    start_metrics(stack.model_copy(update={"metrics_port": private}), mongo)
    assert "gatewayflow_" in scrape(private)
    assert not _reachable(outward, private), f"/metrics answered on {outward}"
    start_metrics(
        stack.model_copy(update={"metrics_port": public, "metrics_address": "0.0.0.0"}), mongo
    )
    assert _reachable(outward, public)
