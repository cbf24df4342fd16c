"""Intent integrity (issue 12): a Deleted intent is never lost, overridden or blocked.

Each test reproduces, on the real embedded stack, an interleaving or an input that used to
lose an intent, and checks what a user would: the gateway's document and what is left.
"""

import asyncio
import logging
from typing import Any

import pytest
from kubernetes import client as k8s
from prometheus_client import Counter
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import ActivityEnvironment

from activities.deletion import DeletionActivities
from control.dispatcher import deliver
from gatewayflow import metrics
from gatewayflow.domain import naming
from gatewayflow.domain.documents import ApiGateway
from gatewayflow.domain.messages import DeletionInput, GatewayInput, StepInput
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request, RequestRefused
from gatewayflow.settings import Settings
from gatewayflow.store.gateways import GatewayRepository
from tests.emulator_admin import EmulatorAdmin, cluster_admin
from tests.gateway_harness import Harness, harness, unique_id
from workflows import operations as ops

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def until(h: Harness, gid: str, check: Any, timeout: float = 60.0) -> dict[str, Any]:
    """The raw document once `check(doc)` holds."""
    async with asyncio.timeout(timeout):
        while True:
            doc: dict[str, Any] | None = await asyncio.to_thread(
                h.deps.db["ApiGateway"].find_one, {"gatewayId": gid}
            )
            if doc is not None and check(doc):
                return doc
            await asyncio.sleep(0.05)


async def idle(h: Harness, gid: str, timeout: float = 30.0) -> None:
    """Until the gateway's workflow waits for the next change (so only a signal wakes it)."""
    handle = h.client.get_workflow_handle(naming.gateway_workflow_id(h.settings.installation, gid))
    async with asyncio.timeout(timeout):
        while True:
            progress = await handle.query("progress")
            if progress is not None and str(progress.get("detail", "")).startswith("converged"):
                return
            await asyncio.sleep(0.1)


def counted(counter: Counter) -> float:
    """The current total of one of our counters, over all its labels."""
    return sum(
        sample.value
        for family in counter.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    )


# -- 1. a delete during a start's short, non-heartbeating step ---------------------------


@pytest.mark.parametrize("change_streams", [True, False], ids=["change-stream", "sweep-only"])
async def test_a_delete_during_a_short_start_step_is_not_lost(
    stack: Settings, change_streams: bool
) -> None:
    """Deployment apply slowed to 4 s, pods never ready, a 3 s start timeout: a raw
    `state: Deleted` written while the apply runs must still delete the gateway (it used
    to end Stopped/Stopped: the timeout's unconditional write overwrote Deleted). Without
    change streams the sweep must send `delete` itself (it used to send `reconcile`)."""
    admin = EmulatorAdmin.of(stack)
    slow_apply = [{"verb": "create", "kind": "Deployment", "latency": 4.0}]
    # With the change stream, only its one `delete` signal tells the workflow: no sweep
    # comes within the test to signal it again while a heartbeating step could notice.
    sweep = 600.0 if change_streams else 2.0
    async with harness(
        stack,
        change_streams=change_streams,
        start_timeout_seconds=3.0,
        sweep_interval_seconds=sweep,
    ) as h:
        gid = unique_id("lost")
        with admin.timing(readyDelay=-1), admin.faults_injected(slow_apply):
            await h.create(gid, functions=0, triggers=0)
            await until(
                h,
                gid,
                lambda d: (
                    d["phase"] == "Starting"
                    and d.get("progress", {}).get("step") == ops.APPLY_INSTANCE.name
                ),
            )
            h.deps.db["ApiGateway"].update_one({"gatewayId": gid}, {"$set": {"state": "Deleted"}})
            await h.wait_for(gid, GatewayState.DELETED, timeout=90)
        assert await h.traces(gid) == []


# -- 2. Deleted is sticky ----------------------------------------------------------------


class _DeleteLandsAfterTheCheck(GatewayRepository):
    """A real repository; a raw `state: Deleted` lands just after the request read it."""

    def require(self, gateway_id: str) -> ApiGateway:
        current = super().require(gateway_id)
        self._col.update_one({"gatewayId": gateway_id}, {"$set": {"state": "Deleted"}})
        return current


async def test_a_request_never_undoes_a_delete_that_lands_after_its_check(
    stack: Settings,
) -> None:
    async with harness(stack, worker=False) as h:
        gid = unique_id("sticky")
        h.deps.db["ApiGateway"].insert_one(
            {"gatewayId": gid, "state": "Running", "phase": "Started"}
        )
        racing = _DeleteLandsAfterTheCheck(h.deps.db)
        for what in (Request.START, Request.STOP, Request.RESTART):
            with pytest.raises(RequestRefused, match="being deleted"):
                await asyncio.to_thread(racing.request, gid, what)
            doc = h.deps.db["ApiGateway"].find_one({"gatewayId": gid})
            assert doc is not None and doc["state"] == "Deleted", what


# -- 3. finalize never removes a newer document ------------------------------------------


async def test_finalize_retried_after_a_re_create_keeps_the_new_document(
    stack: Settings,
) -> None:
    """The retry of a finalize whose first attempt removed the document, after the user
    created the gateway again: the new document stays."""
    async with harness(stack, worker=False) as h:
        gid = unique_id("fin")
        h.deps.db["ApiGateway"].insert_one(
            {"gatewayId": gid, "state": "Running", "phase": "Creating"}
        )
        step = StepInput(
            gateway_id=gid, phase=GatewayPhase.DELETED, step=ops.FINALIZE.name, number=8
        )
        ActivityEnvironment().run(DeletionActivities(h.deps).finalize_deletion, step)
        doc = h.deps.db["ApiGateway"].find_one({"gatewayId": gid})
        assert doc is not None, "finalize removed a gateway created after the deletion"
        assert (doc["state"], doc["phase"]) == ("Running", "Creating")


async def test_a_document_replaced_during_a_deletion_survives_it(stack: Settings) -> None:
    """An operator's replaceOne while the deletion waits for the namespace: the new
    document is not removed by finalize, and the gateway is created again."""
    admin = EmulatorAdmin.of(stack)
    async with harness(stack) as h:
        gid = unique_id("repl")
        await h.create(gid, functions=0, triggers=0)
        await h.wait_for(gid, GatewayState.RUNNING)
        with admin.timing(deleteDelay=2.0):
            await h.request(gid, Request.DELETE)
            await until(
                h, gid, lambda d: d.get("progress", {}).get("step") == ops.DELETE_NAMESPACE.name
            )
            h.deps.db["ApiGateway"].replace_one(
                {"gatewayId": gid},
                {"gatewayId": gid, "state": "Running", "phase": "Creating", "functions": 0},
            )
            deletion = h.client.get_workflow_handle(
                naming.deletion_workflow_id(h.settings.installation, gid)
            )
            await deletion.result()
        assert h.deps.db["ApiGateway"].find_one({"gatewayId": gid}) is not None
        gw = await h.wait_for(gid, GatewayState.RUNNING, timeout=120)
        assert gw is not None and gw.phase is GatewayPhase.STARTED


# -- 4. one undeliverable document never blocks anyone else ------------------------------


@pytest.mark.parametrize("change_streams", [True, False], ids=["change-stream", "sweep-only"])
async def test_an_undeliverable_document_does_not_block_a_delete(
    stack: Settings, change_streams: bool
) -> None:
    """A raw insert with a 1,200-character id (Temporal would refuse its workflow id): a
    delete of a valid gateway written after it is still acted on."""
    async with harness(stack, change_streams=change_streams) as h:
        gid = unique_id("ok")
        await h.create(gid, functions=0, triggers=0)
        await h.wait_for(gid, GatewayState.RUNNING)
        await idle(h, gid)
        raw = h.deps.db["ApiGateway"]
        raw.insert_one({"gatewayId": "x" * 1200, "state": "Running", "phase": "Creating"})
        raw.update_one({"gatewayId": gid}, {"$set": {"state": "Deleted"}})
        await h.wait_for(gid, GatewayState.DELETED, timeout=60)
        assert await h.traces(gid) == []


async def test_a_gateway_temporal_refuses_is_logged_counted_and_skipped(
    stack: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever makes a signal fail, the dispatcher reports it and moves on: it never
    raises into the feed or the sweep (which used to stall on it)."""
    async with harness(stack, worker=False) as h:
        before = counted(metrics.DISPATCH_FAILURES)
        with caplog.at_level(logging.WARNING, logger="gatewayflow.dispatcher"):
            delivered = await deliver(h.client, h.settings, "x" * 1200, "delete", "sweep")
        assert not delivered
        assert counted(metrics.DISPATCH_FAILURES) == before + 1
        assert "cannot signal gateway 'xxxx" in caplog.text and "skipped" in caplog.text


# -- 6. a workflow that never converges still continues as new ---------------------------


async def test_a_malformed_gateway_idling_under_sweep_hints_continues_as_new(
    stack: Settings,
) -> None:
    """A malformed document never converges; every sweep hint wakes its workflow. With a
    history threshold of 60 events it must continue as new instead of growing."""
    async with harness(stack, dispatcher=False) as h:
        gid = unique_id("bloat")
        h.deps.db["ApiGateway"].insert_one(
            {"gatewayId": gid, "state": "Running", "phase": "Creating", "functions": "many"}
        )
        wid = naming.gateway_workflow_id(h.settings.installation, gid)
        first = await h.client.start_workflow(
            "GatewayWorkflow",
            GatewayInput(gateway_id=gid, max_history_length=60),
            id=wid,
            task_queue=h.settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
        run = h.client.get_workflow_handle(wid, run_id=first.result_run_id)
        hints = 0
        async with asyncio.timeout(60):
            while (described := await run.describe()).status is WorkflowExecutionStatus.RUNNING:
                await h.client.get_workflow_handle(wid).signal("reconcile")  # as the sweep does
                hints += 1
                # Until the run has woken for it (more than the signal's own event).
                while (now := await run.describe()).status is WorkflowExecutionStatus.RUNNING:
                    if now.history_length > described.history_length + 1:
                        break
                    await asyncio.sleep(0.05)
        assert described.status is WorkflowExecutionStatus.CONTINUED_AS_NEW
        assert hints <= 30, f"{hints} hints before the run continued as new"
        latest = await h.client.get_workflow_handle(wid).describe()
        assert latest.status is WorkflowExecutionStatus.RUNNING
        async with asyncio.timeout(30):  # the new run idles on the same malformed document
            while "malformed" not in str(await h.client.get_workflow_handle(wid).query("progress")):
                await asyncio.sleep(0.1)
        await h.client.get_workflow_handle(wid).terminate("test done")


async def test_a_followed_deletion_that_fails_is_noticed(stack: Settings) -> None:
    """A deletion from an earlier run is still going when the workflow deletes: it
    follows it by its result, so its failure (an object the gateway does not own in the
    namespace) is a failure here too, with a next attempt, not an endless wait."""
    admin = EmulatorAdmin.of(stack)
    async with harness(stack) as h:
        gid = unique_id("follow")
        await h.create(gid, functions=0, triggers=0)
        await h.wait_for(gid, GatewayState.RUNNING)
        await idle(h, gid)
        api = cluster_admin(stack)
        notes = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="operator-notes"))
        k8s.CoreV1Api(api).create_namespaced_config_map(naming.namespace(gid), notes)
        with admin.timing(deleteDelay=1.0):
            await h.client.start_workflow(
                "GatewayDeletion",
                DeletionInput(gateway_id=gid),
                id=naming.deletion_workflow_id(h.settings.installation, gid),
                task_queue=h.settings.task_queue,
            )
            h.deps.db["ApiGateway"].update_one({"gatewayId": gid}, {"$set": {"state": "Deleted"}})
            doc = await until(h, gid, lambda d: d["progress"].get("nextAttemptAt") is not None)
        error = doc["progress"]["lastError"]
        assert (
            f"{naming.deletion_workflow_id(h.settings.installation, gid)} failed" in error
            and "operator-notes" in error
        )
        handle = h.client.get_workflow_handle(
            naming.gateway_workflow_id(h.settings.installation, gid)
        )
        async with asyncio.timeout(30):  # it backs off, rather than waiting forever
            while "next attempt" not in (await handle.query("progress"))["detail"]:
                await asyncio.sleep(0.1)
