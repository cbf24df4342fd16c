"""Hostile input and foreign objects: whatever is written into MongoDB and whatever else
lives in the clusters, a gateway's deletion removes what it owns and nothing else.

Real Temporal, the MongoDB-wire server and the Kubernetes API emulator, through the
official clients. Each test reproduces one break of issue 13 as a user would meet it.
"""

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.dynamic import DynamicClient
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError

from activities.deletion import DeletionActivities
from gatewayflow.cluster import manifests
from gatewayflow.cluster.client import METADATA_LIST, Cluster
from gatewayflow.cluster.errors import PermanentClusterError
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.deps import Deps
from gatewayflow.domain import naming
from gatewayflow.domain.documents import ApiGateway, CronTrigger
from gatewayflow.domain.messages import StepInput
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.inventory import orphans
from gatewayflow.settings import Settings
from gatewayflow.store.databases import RuntimeDatabases
from gatewayflow.store.errors import NotOwnedDatabase
from tests.emulator_admin import cluster_admin
from tests.gateway_harness import Harness, harness, unique_id
from tests.kube_fixtures import Emulator, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def started(h: Harness, prefix: str, **fields: object) -> str:
    gid = unique_id(prefix)
    await h.create(gid, **fields)
    await h.wait_for(gid, GatewayState.RUNNING)
    return gid


async def last_error(h: Harness, query: dict[str, Any], contains: str, timeout: float) -> str:
    """The document's progress.lastError once it contains `contains`."""
    raw = h.deps.db["ApiGateway"]
    seen: Any = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                doc = await asyncio.to_thread(raw.find_one, query)
                seen = doc and (doc.get("progress") or {}).get("lastError")
                if seen and contains in seen:
                    return str(seen)
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"no lastError with {contains!r} in {query}; last: {seen}") from None


# -- 1. an invalid id never reaches its valid neighbour ------------------------------------


async def test_an_invalid_id_is_refused_and_its_neighbour_keeps_its_database(
    stack: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gatewayflow.store")
    async with harness(stack) as h:
        neighbour = await started(h, "shop")  # shop-<hex>
        invalid = neighbour.replace("-", "_")  # shop_<hex>: the same gw_shop_<hex> before
        assert naming.runtime_database(invalid) == naming.runtime_database(neighbour)
        raw = h.deps.db["ApiGateway"]
        doc_id = raw.insert_one(
            {"gatewayId": invalid, "state": "Deleted", "phase": "Started"}
        ).inserted_id

        async def refusal_or_loss() -> str:
            while True:
                if not await asyncio.to_thread(h.deps.runtime.exists, neighbour):
                    raise AssertionError(f"{invalid} dropped the database of {neighbour}")
                doc = await asyncio.to_thread(raw.find_one, {"gatewayId": invalid})
                error = (doc or {}).get("progress", {}).get("lastError")
                if error:
                    return str(error)
                await asyncio.sleep(0.1)

        error = await asyncio.wait_for(refusal_or_loss(), timeout=30)
        assert "refused" in error and "not a DNS-1123 label" in error and invalid in error

        # Two more sweeps met it (each says why it skips it) and nothing was acted on:
        # no workflow, the neighbour intact.
        def refusals() -> int:
            return sum(
                f"_id {doc_id}:" in r.getMessage() and "refused" in r.getMessage()
                for r in caplog.records
            )

        seen = refusals()
        async with asyncio.timeout(30):
            while refusals() < seen + 2:
                await asyncio.sleep(0.1)
        assert (
            await h.workflow_status(naming.gateway_workflow_id(h.settings.installation, invalid))
            is None
        )
        assert (
            await h.workflow_status(naming.deletion_workflow_id(h.settings.installation, invalid))
            is None
        )
        assert h.deps.runtime.exists(neighbour) and h.deps.runtime.user_exists(neighbour)
        gw = h.gateways.require(neighbour)
        assert (gw.state, gw.phase) == (GatewayState.RUNNING, GatewayPhase.STARTED)

        # An activity handed the invalid id refuses it before touching anything.
        step = StepInput(gateway_id=invalid, phase=GatewayPhase.DELETING, step="database", number=6)
        with pytest.raises(ApplicationError, match="not a DNS-1123 label") as refused:
            await asyncio.to_thread(DeletionActivities(h.deps).delete_database, step)
        assert refused.value.non_retryable
        assert h.deps.runtime.exists(neighbour) and h.deps.runtime.user_exists(neighbour)

        await h.request(neighbour, Request.DELETE)
        await h.wait_for(neighbour, GatewayState.DELETED)


async def test_a_runtime_database_is_dropped_only_by_the_gateway_it_is_registered_to(
    stack: Settings,
) -> None:
    deps = Deps(stack)
    gid = unique_id("mark")
    # Someone else's database under the name gid's would have, whatever it holds: even an
    # owner marker naming gid (anyone with readWrite on it can write one).
    foreign = deps.runtime._client[naming.runtime_database(gid)]
    foreign["data"].insert_one({"precious": True})
    foreign["_meta"].insert_one({"_id": "gateway", "gatewayId": gid})
    other = RuntimeDatabases(deps.runtime._client, "another-installation")
    try:
        with pytest.raises(NotOwnedDatabase, match="registered to no gateway"):
            deps.runtime.drop(gid)
        with pytest.raises(NotOwnedDatabase):
            deps.runtime.create(gid, "password")  # nor taken over by a create
        assert foreign["data"].count_documents({}) == 1
        assert not deps.runtime.owned(gid)
    finally:
        deps.runtime._client.drop_database(naming.runtime_database(gid))

    # Registered to another installation: neither made again, dropped nor listed here.
    other.create(gid, "password")
    try:
        with pytest.raises(NotOwnedDatabase, match="of installation 'another-installation'"):
            deps.runtime.drop(gid)
        with pytest.raises(NotOwnedDatabase):
            deps.runtime.create(gid, "password")
        assert deps.runtime.exists(gid) and not deps.runtime.owned(gid)
        assert naming.runtime_database(gid) not in deps.runtime.registered()
    finally:
        other.drop(gid)


# -- 2. a malformed leaf document is a permanent, recorded error ---------------------------


async def test_a_malformed_trigger_stops_the_deletion_with_a_recorded_error(
    stack: Settings,
) -> None:
    async with harness(stack) as h:
        gid = await started(h, "leaf")
        bad = h.deps.db["CronTrigger"].insert_one({"gatewayId": gid, "schedule": 5}).inserted_id
        await h.request(gid, Request.DELETE)
        error = await last_error(h, {"gatewayId": gid}, "CronTrigger", timeout=40)
        assert str(bad) in error and "malformed" in error
        assert "triggerId" in error  # what is wrong with it
        deletion = naming.deletion_workflow_id(h.settings.installation, gid)
        assert await h.workflow_status(deletion) is WorkflowExecutionStatus.FAILED

        # Once an operator fixes the document, a new request finishes the deletion.
        h.deps.db["CronTrigger"].delete_one({"_id": bad})
        await h.request(gid, Request.DELETE)
        await h.wait_for(gid, GatewayState.DELETED)
        assert await h.traces(gid) == []


# -- 3. objects of kinds we never create keep the namespace alive --------------------------


FOREIGN_KINDS = [
    ("v1", "PersistentVolumeClaim"),
    ("v1", "ServiceAccount"),
    ("batch/v1", "Job"),
    ("networking.k8s.io/v1", "Ingress"),
    ("rbac.authorization.k8s.io/v1", "Role"),
]


@pytest.fixture
def kube(stack: Settings) -> Iterator[DynamicClient]:
    """The official client, as an operator putting their own objects into a namespace."""
    api = cluster_admin(stack)
    yield DynamicClient(api)  # type: ignore[no-untyped-call]
    api.close()


async def test_objects_of_kinds_we_never_create_keep_the_namespace(
    stack: Settings, kube: DynamicClient
) -> None:
    async with harness(stack) as h:
        gid = await started(h, "foreign")
        ns = naming.namespace(gid)
        theirs = [kube.resources.get(api_version=v, kind=k) for v, k in FOREIGN_KINDS]
        for resource in theirs:
            body = {"metadata": {"name": "theirs"}}
            resource.create(
                body={"apiVersion": resource.group_version, "kind": resource.kind, **body},
                namespace=ns,
            )

        await h.request(gid, Request.DELETE)
        error = await last_error(h, {"gatewayId": gid}, "without the label", timeout=40)
        for kind in ("PersistentVolumeClaim", "ServiceAccount", "Job", "Ingress", "Role"):
            assert f"{kind} {ns}/theirs" in error
        for resource in theirs:  # still there, and so is the namespace
            assert resource.get(name="theirs", namespace=ns).metadata.name == "theirs"
        cluster = h.deps.cluster("local")
        namespace = cluster.get(ObjectRef(Kind.NAMESPACE, None, ns))
        assert namespace is not None and not namespace["metadata"].get("deletionTimestamp")

        for resource in theirs:  # the owner takes them away; the deletion can finish
            resource.delete(name="theirs", namespace=ns)
        await h.request(gid, Request.DELETE)
        await h.wait_for(gid, GatewayState.DELETED)
        assert await h.traces(gid) == []


async def test_objects_a_controller_made_for_ours_are_not_foreign(
    stack: Settings, kube: DynamicClient
) -> None:
    """A Job of our CronJob goes with it; a Job whose owner is elsewhere does not."""
    cluster = Deps(stack).cluster("local")
    installation = stack.installation
    gid = unique_id("owned")
    ns = naming.namespace(gid)
    cluster.ensure(gid, manifests.namespace(installation, gid))
    trigger = CronTrigger(gateway_id=gid, trigger_id="t1", function_name="fn-1")
    cron_job = cluster.ensure(gid, manifests.cron_job(installation, gid, trigger, suspend=True))
    jobs = kube.resources.get(api_version="batch/v1", kind="Job")

    def job(name: str, owner_uid: str) -> None:
        owner = {"apiVersion": "batch/v1", "kind": "CronJob", "name": "x", "uid": owner_uid}
        metadata = {"name": name, "ownerReferences": [owner]}
        jobs.create(
            body={"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata}, namespace=ns
        )

    try:
        job("made-for-ours", cron_job["metadata"]["uid"])
        job("made-for-something-elsewhere", str(uuid.uuid4()))
        found = [str(obj) for obj in cluster.foreign_objects(gid, ns)]
        assert found == [f"Job {ns}/made-for-something-elsewhere"]
    finally:
        for name in ("made-for-ours", "made-for-something-elsewhere"):
            jobs.delete(name=name, namespace=ns)
        cluster.delete_owned(gid, ObjectRef.of(cron_job))
        cluster.delete_owned(gid, ObjectRef(Kind.NAMESPACE, None, ns))


# -- 4. the region is fixed at creation ----------------------------------------------------


async def test_a_region_change_is_refused_and_actions_stay_where_resources_live(
    stack: Settings,
) -> None:
    async with harness(stack) as h:
        gid = await started(h, "moved")
        raw = h.deps.db["ApiGateway"]
        raw.update_one({"gatewayId": gid}, {"$set": {"region": "eu"}})
        error = await last_error(h, {"gatewayId": gid}, "region change refused", timeout=30)
        assert "'local'" in error and "'eu'" in error

        raw.update_one({"gatewayId": gid}, {"$set": {"state": "Stopped"}})
        await h.wait_for(gid, GatewayState.STOPPED)  # stopped where it runs: region local
        deployment = ObjectRef(Kind.DEPLOYMENT, naming.namespace(gid), naming.deployment(gid))
        assert h.deps.cluster("local").get(deployment) is None

        raw.update_one({"gatewayId": gid}, {"$set": {"state": "Deleted"}})
        await h.wait_for(gid, GatewayState.DELETED)
        assert await h.traces(gid) == []  # nothing left in the region it lived in


# -- 5. audit: every region, the runtime databases, by label selector only ---------------


@pytest.fixture
def two_regions(tmp_path: Path) -> Iterator[Emulator]:
    emulator = Emulator(
        tmp_path / "kube", "--regions", "local,eu", "--delete-delay", "0.05"
    ).start()
    yield emulator
    emulator.stop()


async def test_audit_finds_leaks_in_every_region_and_on_the_runtime_server(
    stack: Settings, two_regions: Emulator
) -> None:
    settings = stack.model_copy(
        update={"db_name": f"gf_test_{uuid.uuid4().hex[:8]}", "kubeconfig": two_regions.kubeconfig}
    )
    deps = Deps(settings)
    gone_in_eu, gone_db, alive = unique_id("eu"), unique_id("db"), unique_id("alive")
    eu = deps.cluster("eu")
    installation = settings.installation
    eu.ensure(gone_in_eu, manifests.namespace(installation, gone_in_eu))
    eu.ensure(gone_in_eu, manifests.config_map(installation, gone_in_eu, "eu"))
    eu.ensure(gone_in_eu, manifests.db_secret(installation, gone_in_eu, "user", "s3cret-password"))
    deps.cluster("local").ensure(alive, manifests.namespace(installation, alive))
    deps.gateways.insert(ApiGateway(gateway_id=alive))
    deps.runtime.create(alive, "password")
    deps.runtime.create(gone_db, "password")
    requests: list[tuple[str, str, list[tuple[str, str]], str]] = []
    for cluster in (eu, deps.cluster("local")):
        send = cluster._request

        def recorded(method: str, path: str, send: Any = send, **kwargs: Any) -> dict[str, Any]:
            requests.append((method, path, kwargs.get("query") or [], kwargs.get("accept") or ""))
            answer: dict[str, Any] = send(method, path, **kwargs)
            assert "s3cret" not in json.dumps(answer), f"Secret data read: {method} {path}"
            return answer

        cluster._request = recorded  # type: ignore[method-assign]
    try:
        found = await asyncio.to_thread(orphans, deps)
    finally:
        deps.runtime.drop(alive)
        deps.runtime.drop(gone_db)

    assert alive not in found
    in_eu = {(item.kind, item.name, item.region) for item in found[gone_in_eu]}
    assert ("Namespace", naming.namespace(gone_in_eu), "eu") in in_eu
    assert ("ConfigMap", naming.config_map(gone_in_eu), "eu") in in_eu
    assert ("Secret", naming.db_secret(gone_in_eu), "eu") in in_eu
    (database,) = found[gone_db]
    assert database.where == "runtime-db"
    assert naming.runtime_database(gone_db) in database.name
    assert naming.runtime_user(gone_db) in database.name
    lists = [r for r in requests if r[0] == "GET" and not r[1].rsplit("/", 1)[-1].startswith("gw-")]
    assert lists, "the audit read the clusters"
    for method, path, query, accept in lists:
        assert dict(query).get("labelSelector"), f"{method} {path} without a label selector"
        assert accept == METADATA_LIST, f"{method} {path} read whole objects"


# -- 6. credentials are read again on a 401 ------------------------------------------------


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    emulator = Emulator(tmp_path / "kube").start()
    yield emulator
    emulator.stop()


async def test_a_rotated_token_is_read_again_on_a_401(emulator: Emulator, tmp_path: Path) -> None:
    """As a projected ServiceAccount token is rotated under a running worker."""
    token = tmp_path / "token"
    token.write_text("first")
    kubeconfig = json.loads(emulator.kubeconfig.read_text())
    kubeconfig["users"][0]["user"] = {"tokenFile": str(token)}
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(kubeconfig))
    emulator.request("PUT", "/_admin/auth", {"tokens": ["first"]})
    cluster = Cluster(path, "local", installation="test-hostile")
    missing = ObjectRef(Kind.NAMESPACE, None, "gw-nothing-here")
    assert cluster.get(missing) is None

    token.write_text("second")  # rotated: the old token is refused from now on
    emulator.request("PUT", "/_admin/auth", {"tokens": ["second"]})
    assert cluster.get(missing) is None
    assert cluster.list_owned("nothing-here", Kind.NAMESPACE) == []

    emulator.request("PUT", "/_admin/auth", {"tokens": ["third"]})  # and never given to us
    with pytest.raises(PermanentClusterError, match="401"):
        cluster.get(missing)
    cluster.close()
    wait_until(lambda: emulator.request("DELETE", "/_admin/auth") == {"tokens": 0})


async def test_a_progress_that_is_not_an_object_never_holds_up_a_deletion(
    stack: Settings,
) -> None:
    """Every progress write uses dotted paths, which fail inside a string: the write must
    still land, or the handler that makes it retries forever and the delete queues behind."""
    async with harness(stack) as h:
        gid = await started(h, "junk-progress")
        raw = h.deps.db["ApiGateway"]
        await asyncio.to_thread(
            raw.update_one, {"gatewayId": gid}, {"$set": {"progress": "not an object"}}
        )
        # The CLI refuses a malformed document; a signal reaches the workflow's handler.
        await h.client.get_workflow_handle(
            naming.gateway_workflow_id(h.settings.installation, gid)
        ).signal("stop")
        await asyncio.to_thread(
            raw.update_one, {"gatewayId": gid}, {"$set": {"state": GatewayState.DELETED.value}}
        )
        await asyncio.to_thread(
            wait_until, lambda: raw.find_one({"gatewayId": gid}) is None, timeout=60, every=0.2
        )
        assert await h.traces(gid) == []
