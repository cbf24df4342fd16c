"""The deletion cascade end to end: its order, its triggers, and its failures.

Real Temporal, the real MongoDB-wire server and the Kubernetes API emulator. What a user
checks: the ApiGateway document tells the steps as they complete, the cluster saw them in
the order of docs/operations.md, exactly one deletion ran, and nothing of the gateway is
left anywhere afterwards.
"""

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from control import dispatcher
from control.plan import plan
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.domain import naming
from gatewayflow.domain.documents import ApiGateway, Progress
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.settings import Settings
from gatewayflow.store.errors import UnknownGateway
from tests.emulator_admin import (
    EmulatorAdmin,
    cluster_admin,
    delete_counts,
    deletion_order_violations,
    deletion_step_of,
)
from tests.gateway_harness import Harness, harness, unique_id
from tests.oracles import kube_owned, mongo_snapshot
from tests.timeline import MONGO_STEP, mongo_events, oplog_events, order_violations
from workflows.operations import DELETE

pytestmark = pytest.mark.asyncio(loop_scope="session")

STEPS = [step.name for step in DELETE.steps]


async def assert_nothing_left(h: Harness, gid: str) -> None:
    assert await h.traces(gid) == []


async def owned_objects(h: Harness, gid: str) -> set[tuple[str, str]]:
    owned = await asyncio.to_thread(kube_owned, h.settings, gid)
    return {(kind, name) for kind, _namespace, name in owned}


@contextlib.asynccontextmanager
async def mongo_changes(h: Harness, gid: str) -> AsyncIterator[list[Mapping[str, Any]]]:
    """Change events of the harness's and the gateway's runtime database from entry until
    the ApiGateway document is deleted, read from a stream opened on the whole server."""
    databases = [h.settings.db_name, naming.runtime_database(gid)]
    stream = h.deps.db.client.watch([{"$match": {"ns.db": {"$in": databases}}}])
    changes: list[Mapping[str, Any]] = []

    def read_until_removed() -> None:
        for change in stream:
            changes.append(change)
            ns = change.get("ns") or {}
            if change["operationType"] == "delete" and ns.get("coll") == "ApiGateway":
                return

    with stream:
        yield changes
        await asyncio.wait_for(asyncio.to_thread(read_until_removed), timeout=60)


async def started(h: Harness, prefix: str, **fields: object) -> str:
    gid = unique_id(prefix)
    await h.create(gid, **fields)
    await h.wait_for(gid, GatewayState.RUNNING)
    return gid


def progress_history(events: list[dict[str, Any]]) -> tuple[list[list[str]], list[str]]:
    """From change events of one ApiGateway document: each distinct `progress.completed`
    in order, and the values `progress.step` took (consecutive repeats merged)."""
    completed: list[str] = []
    snapshots: list[list[str]] = []
    steps: list[str] = []
    for event in events:
        fields = (event.get("updateDescription") or {}).get("updatedFields") or {}
        for key, value in fields.items():
            if key == "progress":
                completed = list(value.get("completed") or [])
                if value.get("step"):
                    steps.append(value["step"])
            elif key == "progress.completed":
                completed = list(value)
            elif key.startswith("progress.completed."):
                index = int(key.rsplit(".", 1)[1])
                completed = [*completed[:index], value, *completed[index + 1 :]]
            elif key == "progress.step" and value and (not steps or steps[-1] != value):
                steps.append(value)
        if not snapshots or snapshots[-1] != completed:
            snapshots.append(completed)
    return snapshots, steps


async def phase_and_progress(
    h: Harness, gid: str, phase: GatewayPhase, progress: Callable[[Progress], bool]
) -> ApiGateway:
    async with asyncio.timeout(60):
        while True:
            gw = await asyncio.to_thread(h.gateways.require, gid)
            if gw.phase is phase and progress(gw.progress):
                return gw
            await asyncio.sleep(0.05)


async def stopped_deletion(h: Harness, gid: str) -> ApiGateway:
    """The gateway once `gateway-deletion/<id>` has failed after steps 1-6 and the
    document says why. (The dispatcher's sweep may run the deletion again meanwhile:
    it stops at the same step.)"""
    last = None
    try:
        async with asyncio.timeout(60):
            while True:
                status = await h.workflow_status(
                    naming.deletion_workflow_id(h.settings.installation, gid)
                )
                last = await asyncio.to_thread(h.gateways.require, gid)
                if (
                    status is WorkflowExecutionStatus.FAILED
                    and last.progress.last_error
                    and last.progress.completed == STEPS[:6]
                ):
                    return last
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"the deletion did not stop after steps 1-6: {last}") from None


async def failure_message(h: Harness, workflow_id: str) -> str:
    """Every message in the failure chain of a failed workflow."""
    with pytest.raises(WorkflowFailureError) as failure:
        await h.client.get_workflow_handle(workflow_id).result()
    messages: list[str] = []
    cause: BaseException | None = failure.value.cause
    while cause is not None:
        messages.append(str(cause))
        cause = cause.__cause__
    return " | ".join(messages)


async def test_delete_records_the_eight_steps_in_order(stack: Settings) -> None:
    async with harness(stack) as h:
        gid = await started(h, "del", custom_domain="api.example.com")
        doc = h.deps.db["ApiGateway"].find_one({"gatewayId": gid})
        assert doc is not None
        doc_id = doc["_id"]
        # A change stream sees every write, even the `finalize` step that lives for
        # milliseconds before the document goes: a poll could miss it.
        stream = h.deps.db["ApiGateway"].watch([{"$match": {"documentKey._id": doc_id}}])
        with stream:
            await h.request(gid, Request.DELETE)
            assert await h.wait_for(gid, GatewayState.DELETED) is None
            events: list[dict[str, Any]] = []

            def read_until_removed() -> None:
                for event in stream:
                    events.append(event)
                    if event["operationType"] == "delete":
                        return

            await asyncio.wait_for(asyncio.to_thread(read_until_removed), timeout=30)

        snapshots, steps = progress_history(events)
        # From a fresh record, one step at a time, each after the ones before it.
        assert snapshots == [STEPS[:n] for n in range(len(STEPS) + 1)]
        assert steps == [s for s in STEPS if s in steps], f"current steps out of order: {steps}"
        phases = [
            e["updateDescription"]["updatedFields"]["phase"]
            for e in events
            if "phase" in (e.get("updateDescription") or {}).get("updatedFields", {})
        ]
        assert phases[0] == GatewayPhase.DELETING.value
        assert phases[-1] == GatewayPhase.DELETED.value
        await assert_nothing_left(h, gid)


async def test_cluster_sees_the_deletion_in_order(stack: Settings) -> None:
    """Routes are gone before the pods stop, the pods before the database goes, and the
    namespace is deleted last: in the cluster's op log and MongoDB's change events, on one
    clock. `plan` named beforehand, step by step, what the deletion removed, and changed
    nothing."""
    admin = EmulatorAdmin.of(stack)
    async with harness(stack) as h:
        gid = await started(h, "order", custom_domain="api.example.com", triggers=2)
        before = await owned_objects(h, gid)
        since = admin.last_seq()
        mongo_before = await asyncio.to_thread(mongo_snapshot, h.deps.db)
        steps = await asyncio.to_thread(plan, h.deps, gid)
        assert admin.oplog(gid, since=since) == [], "plan changed the cluster"
        assert await asyncio.to_thread(mongo_snapshot, h.deps.db) == mongo_before, "plan wrote"

        async with mongo_changes(h, gid) as changes:
            await h.request(gid, Request.DELETE)
            await h.wait_for(gid, GatewayState.DELETED)

        oplog = admin.oplog(gid, since=since)
        assert deletion_order_violations(gid, oplog) == []
        runtime_db = naming.runtime_database(gid)
        mongo = mongo_events(changes, h.settings.db_name, runtime_db)
        assert order_violations([*oplog_events(gid, oplog), *mongo]) == []
        routes = {(i["name"], i["verb"]) for i in oplog if i["kind"] == "ApisixRoute"}
        assert {name for name, verb in routes if verb == "removed"} == {
            name for kind, name in before if kind == "ApisixRoute"
        }
        assert len({name for kind, name in before if kind == "ApisixRoute"}) == 6
        # Everything that existed was deleted once and finally removed; the worker's
        # RoleBinding (its rights in the namespace) goes with the namespace.
        assert set(delete_counts(oplog)) == before - {("RoleBinding", "gatewayflow-gateway")}
        assert set(delete_counts(oplog).values()) == {1}
        assert {(i["kind"], i["name"]) for i in oplog if i["verb"] == "removed"} == before

        # The plan, step by step, is what the deletion then removed.
        planned = {
            (item.kind, item.name): step.number
            for step in steps
            for item in step.items
            if item.where == "kubernetes"
        }
        deletes = [item for item in oplog if item["verb"] == "delete"]
        assert (
            set(planned)
            == {(i["kind"], i["name"]) for i in deletes}
            == before - {("RoleBinding", "gatewayflow-gateway")}
        )
        assert {(i["kind"], i["name"]): deletion_step_of(gid, i) for i in deletes} == planned
        planned_docs = Counter(
            item.kind for step in steps for item in step.items if item.where == "mongo"
        )
        deleted_docs = Counter(e.what.split()[1] for e in mongo if e.what.startswith("delete "))
        assert deleted_docs == planned_docs
        assert {
            item.kind: step.number for step in steps for item in step.items if item.where == "mongo"
        } == {kind: MONGO_STEP[kind] for kind in planned_docs}
        assert [e.step for e in mongo if e.what.startswith("drop database")] == [
            step.number
            for step in steps
            for item in step.items
            if item.where == "runtime-db" and item.name == runtime_db
        ]
        await assert_nothing_left(h, gid)


async def test_raw_mongo_write_deletes(stack: Settings) -> None:
    """`db.ApiGateway.updateOne({gatewayId}, {$set: {state: 'Deleted'}})` is enough."""
    async with harness(stack) as h:
        gid = await started(h, "rawdel")
        result = await asyncio.to_thread(
            h.deps.db["ApiGateway"].update_one,
            {"gatewayId": gid},
            {"$set": {"state": "Deleted"}},
        )
        assert result.modified_count == 1
        await h.wait_for(gid, GatewayState.DELETED)
        await assert_nothing_left(h, gid)


async def test_stopped_gateway_set_to_deleted_is_cleaned_up(stack: Settings) -> None:
    """The vn8ofl incident: a stopped gateway marked Deleted kept its stages and database."""
    async with harness(stack) as h:
        gid = await started(h, "vn8ofl")
        await h.request(gid, Request.STOP)
        await h.wait_for(gid, GatewayState.STOPPED)
        ns = naming.namespace(gid)
        cluster = h.deps.cluster("local")
        assert h.deps.children.count("Stage", gid) == 3
        assert cluster.get(ObjectRef(Kind.APISIX_ROUTE, ns, naming.stage_route(gid, "dev")))
        assert h.deps.runtime.exists(gid) and h.deps.databases.get(gid) is not None

        await asyncio.to_thread(
            h.deps.db["ApiGateway"].update_one,
            {"gatewayId": gid},
            {"$set": {"state": "Deleted"}},
        )
        await h.wait_for(gid, GatewayState.DELETED)
        await assert_nothing_left(h, gid)


async def test_a_stopped_gateway_loses_its_tls_in_step_4(stack: Settings) -> None:
    """Found by the torture run (tests/torture): a stop leaves the RuntimeDomain Inactive
    with phase Deleted (its routes are gone, TLS, plugin config and Certificate kept);
    its deletion must still remove those in step 4, not leave them to the namespace."""
    admin = EmulatorAdmin.of(stack)
    async with harness(stack) as h:
        gid = await started(h, "stoptls", custom_domain="api.example.com")
        await h.request(gid, Request.STOP)
        await h.wait_for(gid, GatewayState.STOPPED)
        since = admin.last_seq()
        await h.request(gid, Request.DELETE)
        await h.wait_for(gid, GatewayState.DELETED)
        oplog = admin.oplog(gid, since=since)
        assert deletion_order_violations(gid, oplog) == []
        deleted = {(i["kind"], i["name"]) for i in oplog if i["verb"] == "delete"}
        assert ("ApisixTls", f"{gid}-prod-tls") in deleted
        assert ("Certificate", naming.certificate(gid)) in deleted
        await assert_nothing_left(h, gid)


async def test_delete_preempts_a_start_and_a_create(stack: Settings) -> None:
    """A delete does not wait for a start that never gets ready, nor for a creation to
    finish: it cancels them and cleans up whatever they had made so far."""
    admin = EmulatorAdmin.of(stack)
    slow_creates = [{"verb": "create", "latency": 0.15}]  # a creation takes seconds
    async with harness(stack) as h:
        with admin.timing(readyDelay=-1), admin.faults_injected(slow_creates):
            starting, creating = unique_id("preempt"), unique_id("preempt")
            await h.create(starting)
            await h.create(creating)
            # Mid-creation: namespace and database made, the runtime domain under way.
            gw = await phase_and_progress(
                h, creating, GatewayPhase.CREATING, lambda p: "database" in p.completed
            )
            half_made = await h.traces(creating)
            assert f"Namespace {naming.namespace(creating)}" in half_made
            await h.request(creating, Request.DELETE)
            await phase_and_progress(
                h, starting, GatewayPhase.STARTING, lambda p: p.waiting_on is not None
            )
            await h.request(starting, Request.DELETE)
            await asyncio.gather(
                h.wait_for(starting, GatewayState.DELETED),
                h.wait_for(creating, GatewayState.DELETED),
            )
        assert gw.phase is GatewayPhase.CREATING
        # The wait for readiness was ended by the delete (a cancelled pause or look, or the
        # delete noticed after a look), not left to run into its timeout, which writes
        # Stopped through `set_state`.
        history = await h.client.get_workflow_handle(
            naming.gateway_workflow_id(h.settings.installation, starting)
        ).fetch_history()
        scheduled = [
            event.activity_task_scheduled_event_attributes.activity_type.name
            for event in history.events
            if event.HasField("activity_task_scheduled_event_attributes")
        ]
        assert "check_instance_ready" in scheduled
        assert "set_state" not in scheduled
        for gid in (starting, creating):
            await assert_nothing_left(h, gid)


async def test_many_delete_requests_run_one_deletion(stack: Settings) -> None:
    admin = EmulatorAdmin.of(stack)
    async with harness(stack) as h:
        gid = await started(h, "once")
        since = admin.last_seq()
        raw = asyncio.to_thread(
            h.deps.db["ApiGateway"].update_one,
            {"gatewayId": gid},
            {"$set": {"state": "Deleted"}},
        )
        await asyncio.gather(
            *(h.request(gid, Request.DELETE) for _ in range(3)),
            raw,
            dispatcher.sweep_once(h.client, h.settings, h.gateways),
        )
        await dispatcher.sweep_once(h.client, h.settings, h.gateways)
        await h.wait_for(gid, GatewayState.DELETED)

        deletion = naming.deletion_workflow_id(h.settings.installation, gid)
        await h.client.get_workflow_handle(deletion).result()
        query = f"WorkflowId = '{deletion}'"
        async with asyncio.timeout(30):  # visibility follows the history shortly after
            while True:
                runs = [wf async for wf in h.client.list_workflows(query)]
                if runs and all(wf.status is not WorkflowExecutionStatus.RUNNING for wf in runs):
                    break
                await asyncio.sleep(0.2)
        assert [wf.status for wf in runs] == [WorkflowExecutionStatus.COMPLETED]
        counts = delete_counts(admin.oplog(gid, since=since))
        assert counts and set(counts.values()) == {1}, counts
        await assert_nothing_left(h, gid)


async def test_deletion_completes_through_kubernetes_errors(stack: Settings) -> None:
    admin = EmulatorAdmin.of(stack)
    async with harness(stack) as h:
        gid = await started(h, "faulty")
        since = admin.last_seq()
        # 10% + 90% * 11.1% + 80% * 12.5% = 30% of all requests fail.
        rules: list[dict[str, Any]] = [
            {"rate": 0.1, "status": 500},
            {"rate": 0.111, "status": 503},
            {"rate": 0.125, "status": 429, "retryAfter": 1},
        ]
        with admin.faults_injected(rules, seed=7):
            await h.request(gid, Request.DELETE)
            await h.wait_for(gid, GatewayState.DELETED, timeout=150)
            fired = {rule["status"]: rule["injected"] for rule in admin.faults()["rules"]}
        assert all(count > 0 for count in fired.values()), fired
        assert deletion_order_violations(gid, admin.oplog(gid, since=since)) == []
        await assert_nothing_left(h, gid)


async def test_foreign_object_stops_the_deletion_before_the_namespace(stack: Settings) -> None:
    async with harness(stack) as h:
        gid = await started(h, "foreign")
        ns = naming.namespace(gid)
        api = cluster_admin(stack)
        core = k8s.CoreV1Api(api)
        try:
            core.create_namespaced_config_map(
                ns,
                k8s.V1ConfigMap(
                    metadata=k8s.V1ObjectMeta(name="operator-notes"),
                    data={"note": "not gatewayflow's"},
                ),
            )
            await h.request(gid, Request.DELETE)
            gw = await stopped_deletion(h, gid)
            assert gw.phase is GatewayPhase.DELETING
            assert gw.progress.last_error and "operator-notes" in gw.progress.last_error
            message = await failure_message(
                h, naming.deletion_workflow_id(h.settings.installation, gid)
            )
            assert "operator-notes" in message
            assert core.read_namespaced_config_map("operator-notes", ns).data == {
                "note": "not gatewayflow's"
            }
            namespace = core.read_namespace(ns)
            assert namespace.metadata is not None
            assert namespace.metadata.deletion_timestamp is None

            core.delete_namespaced_config_map("operator-notes", ns)
            # The dispatcher's sweep may have retried it already and be done.
            with contextlib.suppress(UnknownGateway):
                await h.request(gid, Request.DELETE)
            await h.wait_for(gid, GatewayState.DELETED)
            await assert_nothing_left(h, gid)
            with pytest.raises(ApiException) as gone:
                core.read_namespace(ns)
            assert gone.value.status == 404
        finally:
            api.close()


async def test_a_foreign_object_made_while_the_configmap_goes_keeps_the_namespace(
    stack: Settings,
) -> None:
    """The namespace step looks for foreign objects, then removes the ConfigMap and waits
    until it is gone (here held by a finalizer), then deletes the namespace. An object made
    in that window is seen by a second look just before the namespace DELETE."""
    hold = "example.com/hold"
    async with harness(stack) as h:
        gid = await started(h, "window")
        ns, config_map = naming.namespace(gid), naming.config_map(gid)
        # The operator, not the worker: the admission policy keeps the worker to its own.
        api = cluster_admin(stack)
        core = k8s.CoreV1Api(api)
        try:
            core.patch_namespaced_config_map(config_map, ns, {"metadata": {"finalizers": [hold]}})
            await h.request(gid, Request.DELETE)
            cluster = h.deps.cluster("local")
            ours = ObjectRef(Kind.CONFIG_MAP, ns, config_map)

            def terminating() -> bool:
                live = cluster.get(ours)
                return live is not None and bool(live["metadata"].get("deletionTimestamp"))

            async with asyncio.timeout(60):  # the first look is done: the ConfigMap goes
                while not await asyncio.to_thread(terminating):
                    await asyncio.sleep(0.1)
            core.create_namespaced_config_map(
                ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="operator-notes"))
            )
            core.patch_namespaced_config_map(config_map, ns, {"metadata": {"finalizers": None}})

            notes = ObjectRef(Kind.CONFIG_MAP, ns, "operator-notes")
            gw = await stopped_deletion(h, gid)
            assert gw.progress.last_error and "operator-notes" in gw.progress.last_error
            assert cluster.get(notes) is not None
            namespace = cluster.get(ObjectRef(Kind.NAMESPACE, None, ns))
            assert namespace is not None and not namespace["metadata"].get("deletionTimestamp")

            core.delete_namespaced_config_map("operator-notes", ns)
            with contextlib.suppress(UnknownGateway):
                await h.request(gid, Request.DELETE)
            await h.wait_for(gid, GatewayState.DELETED)
            await assert_nothing_left(h, gid)
        finally:
            api.close()
