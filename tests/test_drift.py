"""Drift repair on the embedded stack: objects changed by hand with the official client
come back (or go) through the gateway's own workflow, and the repair is recorded."""

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from temporalio.api.enums.v1 import EventType
from temporalio.client import ScheduleActionExecutionStartWorkflow, WorkflowExecutionStatus
from temporalio.testing import ActivityEnvironment

from activities.drift import DriftActivities, owner_of
from control import service
from control.schedules import drift_schedule_id
from control.views import drift_text
from gatewayflow.cluster import manifests
from gatewayflow.cluster.client import METADATA_LIST
from gatewayflow.cluster.expected import differences
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.domain import naming
from gatewayflow.domain.documents import ApiGateway, InstanceSpec, utcnow
from gatewayflow.domain.messages import DriftReport
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.ownership import OWNERSHIP
from gatewayflow.settings import Settings
from gatewayflow_dev.kube_emulator.kubeconfig import kubeconfig
from tests.conftest import free_ports
from tests.emulator_admin import EmulatorAdmin, cluster_admin
from tests.gateway_harness import Harness, harness, unique_id
from tests.kube_fixtures import Emulator
from tests.test_lifecycle import expected_objects
from tests.test_metrics import scrape
from workflows.drift import DriftCheck
from workflows.policies import HEARTBEAT

INTERVAL = 2.0  # seconds between drift checks in these tests

A = TypeVar("A")
R = TypeVar("R")


@pytest.fixture
def kube(stack: Settings) -> Iterator[k8s.ApiClient]:
    """An operator's client (the policy of deploy/worker.yaml confines the worker's)."""
    api = cluster_admin(stack)
    yield api
    api.close()


def exists(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


async def eventually(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f}s"
        await asyncio.sleep(0.2)


async def gateway(h: Harness, gid: str) -> ApiGateway:
    return await asyncio.to_thread(h.gateways.require, gid)


async def rounds_since(
    h: Harness, since: datetime, count: int = 2, timeout: float = 60.0
) -> list[DriftReport]:
    """The reports of `count` drift rounds begun after `since` and completed: evidence
    that the check has looked since then (and asked for any repair it found due)."""
    schedule = h.client.get_schedule_handle(drift_schedule_id(h.settings))
    deadline = time.monotonic() + timeout
    while True:
        reports = []
        for action in (await schedule.describe()).info.recent_actions:
            started = action.action
            assert isinstance(started, ScheduleActionExecutionStartWorkflow)
            if action.started_at <= since:
                continue
            handle = h.client.get_workflow_handle(started.workflow_id, result_type=DriftReport)
            if (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED:
                reports.append(await handle.result())
        if len(reports) >= count:
            return reports
        assert time.monotonic() < deadline, f"{count} drift rounds within {timeout:.0f}s"
        await asyncio.sleep(0.2)


def drifted(reports: list[DriftReport]) -> set[str]:
    return {finding.gateway_id for report in reports for finding in report.drifted}


async def test_hand_deleted_objects_come_back_and_are_recorded(
    stack: Settings, kube: k8s.ApiClient
) -> None:
    apps, batch = k8s.AppsV1Api(kube), k8s.BatchV1Api(kube)
    custom = k8s.CustomObjectsApi(kube)
    port = free_ports(1)[0]
    async with harness(stack, drift_interval_seconds=INTERVAL, metrics_port=port) as h:
        gid = unique_id("drift")
        await h.create(gid, triggers=1)
        await h.wait_for(gid, GatewayState.RUNNING)
        ns = naming.namespace(gid)
        cron, route = naming.cron_job(gid, "t1"), naming.domain_route(gid, "dev")

        def read_route() -> Any:
            return custom.get_namespaced_custom_object(
                "apisix.apache.org", "v2", ns, "apisixroutes", route
            )

        apps.delete_namespaced_deployment(gid, ns)
        batch.delete_namespaced_cron_job(cron, ns)
        custom.delete_namespaced_custom_object("apisix.apache.org", "v2", ns, "apisixroutes", route)

        def present() -> list[bool]:
            return [
                exists(lambda: apps.read_namespaced_deployment(gid, ns)),
                exists(lambda: batch.read_namespaced_cron_job(cron, ns)),
                exists(read_route),
            ]

        def all_back() -> bool:
            return all(present())

        # Deletion is asynchronous: each is gone before the check may bring it back.
        await eventually("the objects are deleted", lambda: not any(present()))
        await eventually("the Deployment, CronJob and route are back", all_back)
        cron_job = batch.read_namespaced_cron_job(cron, ns)
        assert cron_job.spec.suspend is False  # a started gateway's triggers run
        await h.wait_for(gid, GatewayState.RUNNING)
        drift = (await gateway(h, gid)).progress.drift
        assert drift.repairs >= 1
        assert (await service.gateway_status(h.settings, gid)).drift_checked_at is not None
        repaired = " ".join(drift.repaired)
        for gone in (f"Deployment {ns}/{gid} missing", f"CronJob {ns}/{cron}", f"{route} missing"):
            assert gone in repaired
        metrics = scrape(port)
        for kind in ("Deployment", "CronJob", "ApisixRoute"):
            assert f'gatewayflow_drift_repairs_total{{kind="{kind}"}}' in metrics

        # A spec edited by hand is put back as applied.
        apps.patch_namespaced_deployment(gid, ns, {"spec": {"replicas": 4}})
        await eventually(
            "the Deployment's replicas are back to 1",
            lambda: apps.read_namespaced_deployment(gid, ns).spec.replicas == 1,
        )
        drift = (await gateway(h, gid)).progress.drift
        assert drift.repaired == [f"Deployment {ns}/{gid} spec changed"]


async def test_stopped_gateways_hand_made_deployment_is_removed(
    stack: Settings, kube: k8s.ApiClient
) -> None:
    apps = k8s.AppsV1Api(kube)
    async with harness(stack, drift_interval_seconds=INTERVAL) as h:
        gid = unique_id("drift-stop")
        await h.create(gid)
        await h.wait_for(gid, GatewayState.RUNNING)
        await h.request(gid, Request.STOP)
        await h.wait_for(gid, GatewayState.STOPPED)
        ns = naming.namespace(gid)
        gw = await gateway(h, gid)
        # Someone applies the old manifest again (it carries the gateway's label).
        applied: Any = manifests.deployment(
            h.settings.installation, gid, gw.instance
        )  # as kubectl's
        apps.create_namespaced_deployment(ns, applied)
        await eventually(
            "the hand-made Deployment is gone",
            lambda: not exists(lambda: apps.read_namespaced_deployment(gid, ns)),
        )
        await h.wait_for(gid, GatewayState.STOPPED)
        gw = await gateway(h, gid)
        assert gw.progress.drift.repaired == [f"Deployment {ns}/{gid} unexpected"]
        # An unlabelled Deployment is not the gateway's: the check leaves it alone.
        foreign: Any = manifests.deployment(h.settings.installation, gid, gw.instance)
        foreign["metadata"] = {"name": "operator-tool", "namespace": ns}
        made = utcnow()
        apps.create_namespaced_deployment(ns, foreign)
        # Rounds that looked since: none found the gateway drifted, so none asked a repair.
        assert gid not in drifted(await rounds_since(h, made))
        assert exists(lambda: apps.read_namespaced_deployment("operator-tool", ns))
        apps.delete_namespaced_deployment("operator-tool", ns)


async def test_the_drift_check_deletes_only_what_the_repair_of_its_gateway_owns(
    stack: Settings, kube: k8s.ApiClient
) -> None:
    """The drift check itself deletes nothing; the repair it asks for is the phase's own
    operation, whose deletes carry the gateway's label. Beside a stopped gateway's
    hand-made Deployment: an operator's objects without the label in its namespace, a copy
    of another gateway's object there, and that other gateway live next door. Over several
    rounds, the cluster's op log holds one delete: the hand-made Deployment."""
    admin = EmulatorAdmin.of(stack)
    apps, core = k8s.AppsV1Api(kube), k8s.CoreV1Api(kube)
    async with harness(stack, drift_interval_seconds=INTERVAL) as h:
        gid, other = unique_id("drift-own"), unique_id("drift-next")
        await asyncio.gather(h.create(gid), h.create(other))
        await asyncio.gather(
            h.wait_for(gid, GatewayState.RUNNING), h.wait_for(other, GatewayState.RUNNING)
        )
        await h.request(gid, Request.STOP)
        await h.wait_for(gid, GatewayState.STOPPED)
        ns, other_before = naming.namespace(gid), await h.traces(other)
        gw = await gateway(h, gid)
        since = admin.last_seq()

        tool: Any = manifests.deployment(h.settings.installation, gid, gw.instance)
        tool["metadata"] = {"name": "operator-tool", "namespace": ns}
        apps.create_namespaced_deployment(ns, tool)
        notes: Any = {"metadata": {"name": "operator-notes", "namespace": ns}, "data": {"a": "b"}}
        core.create_namespaced_config_map(ns, notes)
        copy: Any = manifests.deployment(h.settings.installation, other, gw.instance)
        copy["metadata"] = {
            "name": f"{other}-copy",
            "namespace": ns,
            "labels": manifests.labels(h.settings.installation, other),
        }
        apps.create_namespaced_deployment(ns, copy)
        hand_made: Any = manifests.deployment(
            h.settings.installation, gid, gw.instance
        )  # carries the gateway's label
        apps.create_namespaced_deployment(ns, hand_made)

        await eventually(
            "the hand-made Deployment is gone",
            lambda: not exists(lambda: apps.read_namespaced_deployment(gid, ns)),
        )
        # More rounds, with everything else still there: they find nothing to repair.
        assert not drifted(await rounds_since(h, utcnow())) & {gid, other}
        deletes = [
            (op["kind"], op["namespace"], op["name"], op["labels"].get(naming.OWNER_LABEL))
            for op in admin.oplog_since(since)
            if op["verb"] == "delete"
        ]
        assert deletes == [("Deployment", ns, gid, gid)]
        assert exists(lambda: apps.read_namespaced_deployment("operator-tool", ns))
        assert exists(lambda: core.read_namespaced_config_map("operator-notes", ns))
        assert exists(lambda: apps.read_namespaced_deployment(f"{other}-copy", ns))
        assert (await gateway(h, other)).phase is GatewayPhase.STARTED
        copied = f"Deployment {ns}/{other}-copy"
        assert [t for t in await h.traces(other) if t != copied] == other_before
        assert (await gateway(h, gid)).progress.drift.repaired == [
            f"Deployment {ns}/{gid} unexpected"
        ]
        for name in ("operator-tool", f"{other}-copy"):
            apps.delete_namespaced_deployment(name, ns)
        core.delete_namespaced_config_map("operator-notes", ns)


async def test_a_repair_never_deletes_an_unlabelled_object_of_its_gateways_name(
    stack: Settings, kube: k8s.ApiClient
) -> None:
    """An operator applies a stopped gateway's Service without its labels, beside a
    hand-made labelled Deployment. The repair (the stop again) would remove both; the
    unlabelled one is not the gateway's, so the stop deletes nothing and says why."""
    admin = EmulatorAdmin.of(stack)
    apps, core = k8s.AppsV1Api(kube), k8s.CoreV1Api(kube)
    async with harness(stack, drift_interval_seconds=INTERVAL) as h:
        gid = unique_id("drift-name")
        await h.create(gid)
        await h.wait_for(gid, GatewayState.RUNNING)
        await h.request(gid, Request.STOP)
        await h.wait_for(gid, GatewayState.STOPPED)
        ns, gw = naming.namespace(gid), await gateway(h, gid)
        since = admin.last_seq()
        unlabelled: Any = {
            "metadata": {"name": gid, "namespace": ns},
            "spec": {"ports": [{"port": 80}]},
        }
        core.create_namespaced_service(ns, unlabelled)
        hand_made: Any = manifests.deployment(h.settings.installation, gid, gw.instance)
        apps.create_namespaced_deployment(ns, hand_made)

        def refused() -> bool:
            error = h.gateways.require(gid).progress.last_error or ""
            return "NotOwnedError" in error and f"Service {ns}/{gid}" in error

        await eventually("the repair refuses the unlabelled Service", refused)
        # The repair has run to its end: its workflow waits for the next attempt (a
        # minute away, after the failure); until then nothing acts on the gateway.
        handle = h.client.get_workflow_handle(
            naming.gateway_workflow_id(h.settings.installation, gid)
        )
        async with asyncio.timeout(30):
            while "next attempt at" not in str((await handle.query("progress"))["detail"]):
                await asyncio.sleep(0.2)
        assert [op for op in admin.oplog_since(since) if op["verb"] == "delete"] == []
        assert exists(lambda: core.read_namespaced_service(gid, ns))
        core.delete_namespaced_service(gid, ns, _preload_content=False)


def cluster_deployment(h: Harness, gid: str) -> dict[str, Any]:
    ref = ObjectRef(Kind.DEPLOYMENT, naming.namespace(gid), naming.deployment(gid))
    live = h.deps.cluster("local").get(ref)
    assert live is not None
    return live


def drift_of(gw: ApiGateway, live: dict[ObjectRef, dict[str, Any]]) -> list[str]:
    expected = OWNERSHIP.expected(gw.phase, owner_of(gw, "drift-test"))
    return [str(d) for d in differences(expected, live)]


def test_differences_follow_the_phase() -> None:
    """The comparison itself, on manifests: what a started and a stopped gateway imply."""
    gid, ns = "shop", naming.namespace("shop")
    started = ApiGateway(
        gateway_id=gid, phase=GatewayPhase.STARTED, custom_domain="a.example", triggers=1
    )
    live: dict[ObjectRef, dict[str, Any]] = {
        ObjectRef(Kind.named(kind), namespace, name): {"spec": {}}
        for kind, namespace, name in expected_objects(gid, 1, custom_domain=True)
    }
    deployment = ObjectRef(Kind.DEPLOYMENT, ns, gid)
    cron = ObjectRef(Kind.CRON_JOB, ns, naming.cron_job(gid, "t1"))
    live[deployment] = manifests.deployment("drift-test", gid, started.instance, restarted_at="now")
    live[cron] = {"spec": {"suspend": False}}
    assert drift_of(started, live) == []
    del live[ObjectRef(Kind.CERTIFICATE, ns, naming.certificate(gid))]
    live[deployment]["spec"]["replicas"] = 3
    live[cron]["spec"]["suspend"] = True
    assert drift_of(started, live) == [
        f"Certificate {ns}/{naming.certificate(gid)} missing",
        f"Deployment {ns}/{gid} spec changed",
        f"CronJob {ns}/{naming.cron_job(gid, 't1')} suspended",
    ]
    stopped = started.model_copy(update={"phase": GatewayPhase.STOPPED})
    assert drift_of(stopped, live) == [
        *(
            f"ApisixRoute {ns}/{naming.domain_route(gid, e)} unexpected"
            for e in naming.ENVIRONMENTS
        ),
        f"Deployment {ns}/{gid} unexpected",
        f"Service {ns}/{gid} unexpected",
    ]
    assert drift_of(started.model_copy(update={"phase": GatewayPhase.STARTING}), {}) == []


def bare_gateways(count: int) -> list[dict[str, Any]]:
    """Documents of Started gateways with nothing in the cluster: every one has drifted."""
    return [
        ApiGateway(
            gateway_id=unique_id("bare"), state=GatewayState.RUNNING, phase=GatewayPhase.STARTED
        ).to_mongo()
        for _ in range(count)
    ]


async def full_round(h: Harness, count: int, timeout: float = 60.0) -> tuple[str, DriftReport]:
    """The first finished drift round that saw `count` gateways (an earlier one may have
    started before they were there): its workflow id and result."""
    schedule = h.client.get_schedule_handle(drift_schedule_id(h.settings))
    deadline = time.monotonic() + timeout
    while True:
        for action in (await schedule.describe()).info.recent_actions:
            started = action.action
            assert isinstance(started, ScheduleActionExecutionStartWorkflow)
            handle = h.client.get_workflow_handle(started.workflow_id, result_type=DriftReport)
            if (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED:
                report = await handle.result()
                if report.checked >= count:
                    return started.workflow_id, report
        assert time.monotonic() < deadline, f"a drift round that saw {count} gateways"
        await asyncio.sleep(0.5)


async def test_a_round_repairs_at_most_the_limit_and_defers_the_rest(stack: Settings) -> None:
    """Found by `make bench`: 10,000 gateways all drifted at once (documents with nothing in
    the cluster) made one DriftCheck signal every one of them. A round now repairs at most
    GATEWAYFLOW_DRIFT_MAX_REPAIRS; the rest are counted and left to the next rounds."""
    limit, count = 3, 40
    async with harness(stack, drift_interval_seconds=INTERVAL, drift_max_repairs=limit) as h:
        await asyncio.to_thread(h.deps.db["ApiGateway"].insert_many, bare_gateways(count))
        wid, report = await full_round(h, count)
        assert len(report.drifted) == limit
        assert report.deferred == count - limit
        # What a user reads in the Temporal UI: no more signals than the limit.
        history = await h.client.get_workflow_handle(wid).fetch_history()
        signals = [
            e
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED
        ]
        assert len(signals) <= limit


async def test_a_round_writes_no_gateway_document(stack: Settings) -> None:
    """Found by `make bench` with 10,000 gateways: each round stamped its time on every
    converged gateway (an update of 10,000 documents, and as many change events for the
    dispatcher), which timed out and stalled the deletions running meanwhile for up to 40 s.
    The time of the last round is one record per region; the gateways are not written."""
    count = 30
    async with harness(stack, drift_interval_seconds=INTERVAL, drift_max_repairs=1) as h:
        docs = bare_gateways(count)
        await asyncio.to_thread(h.deps.db["ApiGateway"].insert_many, docs)
        began = utcnow()
        await full_round(h, count)
        for doc in docs:
            stored = await asyncio.to_thread(
                h.deps.db["ApiGateway"].find_one, {"gatewayId": doc["gatewayId"]}
            )
            assert stored is not None
            assert stored.get("progress", {}).get("drift", {}).get("checkedAt") is None
        # `gatewayflow status <id>` still says when the check last looked.
        tracked = await service.gateway_status(h.settings, docs[-1]["gatewayId"])
        checked = tracked.drift_checked_at
        assert checked is not None and checked >= began.replace(microsecond=0)
        assert "last checked" in drift_text(tracked.gateway, checked)


async def run_now(
    h: Harness, run: Callable[[Any, A], Awaitable[R]], arg: A, timeout: float = 90.0
) -> tuple[str, R]:
    """A periodic workflow (DriftCheck, OrphanReaper) run once now, not by its schedule:
    its id and result. A run that does not end in time fails with what its pending
    activity last failed with."""
    wid = f"run-now/{uuid.uuid4().hex[:8]}"
    handle = await h.client.start_workflow(run, arg, id=wid, task_queue=h.settings.task_queue)
    try:
        async with asyncio.timeout(timeout):
            return wid, await handle.result()
    except TimeoutError:
        pending = (await handle.describe()).raw_description.pending_activities
        failures = [f"attempt {a.attempt}: {a.last_failure.message}" for a in pending]
        raise AssertionError(f"no result within {timeout:.0f}s: {failures}") from None


async def drift_round(h: Harness, timeout: float = 90.0) -> DriftReport:
    """One DriftCheck round over every region."""
    _wid, report = await run_now(h, DriftCheck.run, [], timeout)
    return report


async def first_attempt(h: Harness, workflow_id: str, activity_type: str) -> int:
    """The attempt on which the workflow's `activity_type` activity completed."""
    history = await h.client.get_workflow_handle(workflow_id).fetch_history()
    scheduled = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity_type
    }
    [attempt] = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]
    return attempt


async def test_a_slow_cluster_slows_a_round_but_never_times_it_out(stack: Settings) -> None:
    """At 0.25 s per list, six gateways' namespaces take longer to list than the heartbeat
    timeout: the round heartbeats as it lists, so it ends, on its first attempt."""
    count = 6
    admin = EmulatorAdmin.of(stack)
    async with harness(stack) as h:
        gids = [unique_id("slow") for _ in range(count)]
        await asyncio.gather(*(h.create(gid, triggers=0) for gid in gids))
        await asyncio.gather(*(h.wait_for(gid, GatewayState.RUNNING) for gid in gids))
        with admin.faults_injected([{"verb": "list", "latency": 0.25}]):
            began = time.monotonic()
            wid, report = await run_now(h, DriftCheck.run, [], timeout=60)
            took = time.monotonic() - began
        assert report.checked == count and report.drifted == []
        assert took > HEARTBEAT.total_seconds(), f"the lists were slow: {took:.1f}s"
        assert await first_attempt(h, wid, "find_drift") == 1


async def test_a_canonical_quantity_is_no_drift(stack: Settings, kube: k8s.ApiClient) -> None:
    """An API server answers quantities in canonical form ("0.5" as "500m", "1024Mi" as
    "1Gi"): the same quantity, so the gateway has not drifted and nothing is repaired."""
    apps = k8s.AppsV1Api(kube)
    async with harness(stack) as h:
        gid = unique_id("quantity")
        instance = InstanceSpec(cpu="0.5", memory="1024Mi")
        await asyncio.to_thread(
            h.gateways.insert, ApiGateway(gateway_id=gid, instance=instance, triggers=0)
        )
        await h.wait_for(gid, GatewayState.RUNNING)
        ns = naming.namespace(gid)
        canonical = {"cpu": "500m", "memory": "1Gi"}
        resources = {"requests": canonical, "limits": canonical}
        path = "/spec/template/spec/containers/0/resources"
        patch = [{"op": "replace", "path": path, "value": resources}]  # a JSON patch
        await asyncio.to_thread(apps.patch_namespaced_deployment, gid, ns, patch)

        report = await drift_round(h)
        assert report.checked == 1
        assert report.drifted == []
        live = await asyncio.to_thread(cluster_deployment, h, gid)
        assert live["spec"]["template"]["spec"]["containers"][0]["resources"] == resources
        assert (await gateway(h, gid)).progress.drift.repairs == 0


@contextlib.contextmanager
def three_regions(home: Path) -> Iterator[Path]:
    """A kubeconfig of regions `local` and `eu` (one emulator) and `far`, whose API server
    never answers."""
    emulator = Emulator(home, "--regions", "local,eu", "--delete-delay", "0.05")
    emulator.start()
    try:
        config = json.loads(emulator.kubeconfig.read_text())
        dead = kubeconfig(f"http://127.0.0.1:{free_ports(1)[0]}", ["far"], token="never-asked")
        for section in ("clusters", "users", "contexts"):
            config[section] += dead[section]
        path = home / "three-regions.kubeconfig"
        path.write_text(json.dumps(config))
        yield path
    finally:
        emulator.stop()


async def test_each_gateway_is_checked_where_it_was_placed_and_no_region_fails_a_round(
    stack: Settings, tmp_path: Path
) -> None:
    """`region` rewritten by hand (to another configured region, or to one that does not
    exist) changes nothing: the gateway lives where it was placed and is checked there. A
    region whose cluster cannot be reached leaves its own gateways unchecked, and the
    round goes on for the others."""
    with three_regions(tmp_path) as kubeconfig_path:
        async with harness(stack, kubeconfig=kubeconfig_path) as h:
            moved, renamed, hurt = unique_id("moved"), unique_id("mars"), unique_id("hurt")
            await asyncio.gather(*(h.create(gid, triggers=0) for gid in (moved, renamed, hurt)))
            for gid in (moved, renamed, hurt):
                await h.wait_for(gid, GatewayState.RUNNING)
            raw = h.deps.db["ApiGateway"]
            far = ApiGateway(
                gateway_id=unique_id("far"),
                region="far",
                state=GatewayState.RUNNING,
                phase=GatewayPhase.STARTED,
            )
            await asyncio.to_thread(raw.insert_one, far.to_mongo())
            await asyncio.to_thread(
                raw.update_one, {"gatewayId": moved}, {"$set": {"region": "eu"}}
            )
            await asyncio.to_thread(
                raw.update_one, {"gatewayId": renamed}, {"$set": {"region": "mars"}}
            )
            local = h.deps.cluster("local")
            deployment = ObjectRef(Kind.DEPLOYMENT, naming.namespace(hurt), naming.deployment(hurt))
            await asyncio.to_thread(local.delete_owned, hurt, deployment)

            report = await drift_round(h)
            assert [f.gateway_id for f in report.drifted] == [hurt]
            assert report.drifted[0].region == "local"
            assert report.checked == 3
            assert report.unchecked == 1
            assert any("far" in failure for failure in report.failures), report.failures
            for gid in (moved, renamed):
                assert (await gateway(h, gid)).progress.drift.repairs == 0


async def test_a_round_lists_bodies_only_of_what_it_compares(stack: Settings) -> None:
    """Presence is all the check needs of most kinds: those are listed as metadata, and a
    Secret's data is never read. Bodies only of the Deployment and CronJobs (their spec)."""
    async with harness(stack) as h:
        gid = unique_id("metadata")
        await h.create(gid)
        await h.wait_for(gid, GatewayState.RUNNING)
        ns = naming.namespace(gid)
        cluster = h.deps.cluster("local")
        secret = cluster.get(ObjectRef(Kind.SECRET, ns, naming.db_secret(gid)))
        assert secret is not None
        password = secret["data"]["password"]
        requests: list[tuple[str, str]] = []
        send = cluster._request

        def recorded(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            answer: dict[str, Any] = send(method, path, **kwargs)
            assert password not in json.dumps(answer), f"Secret data read: {method} {path}"
            requests.append((path, kwargs.get("accept") or ""))
            return answer

        cluster._request = recorded  # type: ignore[method-assign]
        try:
            report = await asyncio.to_thread(
                ActivityEnvironment().run, DriftActivities(h.deps).find_drift, []
            )
        finally:
            del cluster._request
        assert report.checked == 1 and report.drifted == []
        whole = {path for path, accept in requests if accept != METADATA_LIST}
        assert whole == {
            f"/apis/apps/v1/namespaces/{ns}/deployments",
            f"/apis/batch/v1/namespaces/{ns}/cronjobs",
        }
