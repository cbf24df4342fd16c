"""Record the workflow histories of tests/histories/ from real runs of the current code.

    .venv/bin/python -m tests.record_histories [--out tests/histories] [--only NAME]

Brings up its own embedded stack (Temporal dev server, SecantusDB, the Kubernetes API
emulator) in a temporary home on free ports, runs every scenario against an in-process
worker, writes `<scenario>--<workflow-type>.json` (as `temporal workflow show --output
json` would) plus one legacy tctl-style file, then stops the stack. About three minutes.
tests/histories/README.md says when to re-record.
"""

import argparse
import asyncio
import json
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor
from kubernetes import client as k8s
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory

from control import service
from control.intents import signal_gateway
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.domain import naming
from gatewayflow.domain.deletion_guard import held_by_guard
from gatewayflow.domain.documents import ApiGateway
from gatewayflow.domain.messages import GatewayInput, ReapInput, RequestAccepted
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.settings import Settings
from gatewayflow_dev import stack as devstack
from tests.conftest import embedded_settings
from tests.emulator_admin import EmulatorAdmin, cluster_admin
from tests.gateway_harness import Harness, harness, unique_id
from workflows import search
from workflows.drift import DriftCheck
from workflows.gateway import GatewayWorkflow
from workflows.operations import APPLY_INSTANCE
from workflows.reaper import OrphanReaper

HISTORIES = Path(__file__).parent / "histories"
# A history in the legacy tctl style, made from the deletion history (see to_tctl_style).
LEGACY_FILE = "legacy-tctl--GatewayDeletion.json"
LEGACY_SOURCE = "delete--GatewayDeletion.json"

Recorded = dict[str, WorkflowHistory]
"""File name -> history."""


# -- waiting for a workflow to be at rest ------------------------------------------------
async def _poll(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 90.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise RuntimeError(f"{what} in {timeout:.0f}s") from None


async def idle(h: Harness, gid: str) -> WorkflowHistory:
    """The history of `gateway/<gid>` once it waits for a signal with nothing in flight."""
    handle = h.client.get_workflow_handle(naming.gateway_workflow_id(h.settings.installation, gid))

    async def at_rest() -> bool:
        progress = await handle.query(GatewayWorkflow.progress)
        if progress is None or progress.action is not None:
            return False
        raw = (await handle.describe()).raw_description
        return not (
            raw.HasField("pending_workflow_task") or raw.pending_activities or raw.pending_children
        )

    await _poll(f"gateway/{gid} did not come to rest", at_rest)
    return await handle.fetch_history()


async def closed(h: Harness, workflow_id: str, run_id: str | None = None) -> WorkflowHistory:
    """The history of a run once it has closed (completed or continued as new)."""
    handle = h.client.get_workflow_handle(workflow_id, run_id=run_id)

    async def done() -> bool:
        status = (await handle.describe()).status
        return status is not None and status is not WorkflowExecutionStatus.RUNNING

    await _poll(f"{workflow_id} did not close", done)
    return await handle.fetch_history()


def attempts(history: WorkflowHistory) -> int:
    """The highest attempt of any activity in the history."""
    return max(
        (
            e.activity_task_started_event_attributes.attempt
            for e in history.events
            if e.HasField("activity_task_started_event_attributes")
        ),
        default=0,
    )


# -- the scenarios -------------------------------------------------------------------------
async def created(h: Harness, prefix: str) -> str:
    gid = unique_id(prefix)
    await h.create(gid)
    await h.wait_for(gid, GatewayState.RUNNING)
    return gid


async def create_start(h: Harness) -> Recorded:
    """Create (phase Creating -> Created) then start, each with its RuntimeDomain child."""
    gid = await created(h, "rec-create")
    gateway = await idle(h, gid)
    # The first child run is the one that applied the routes (the start's finds them).
    first = next(
        e.child_workflow_execution_started_event_attributes.workflow_execution.run_id
        for e in gateway.events
        if e.HasField("child_workflow_execution_started_event_attributes")
    )
    return {
        "create-start--GatewayWorkflow.json": gateway,
        "create-start--RuntimeDomainWorkflow.json": await closed(
            h, naming.domain_workflow_id(h.settings.installation, gid), first
        ),
    }


async def stop_start(h: Harness) -> Recorded:
    """Stop (RuntimeDomain -> Inactive, CronJobs suspended, instance removed), then start."""
    gid = await created(h, "rec-stop")
    await h.request(gid, Request.STOP)
    await h.wait_for(gid, GatewayState.STOPPED)
    await idle(h, gid)
    inactive = await closed(h, naming.domain_workflow_id(h.settings.installation, gid))
    await h.request(gid, Request.START)
    await h.wait_for(gid, GatewayState.RUNNING)
    return {
        "stop-start--GatewayWorkflow.json": await idle(h, gid),
        "stop--RuntimeDomainWorkflow.json": inactive,
    }


async def restart(h: Harness) -> Recorded:
    """A rolling update of the Deployment, not stop + start."""
    gid = await created(h, "rec-restart")
    await h.request(gid, Request.RESTART)
    await h.wait_phase(gid, GatewayPhase.STARTING)
    await h.wait_for(gid, GatewayState.RUNNING)
    return {"restart--GatewayWorkflow.json": await idle(h, gid)}


async def delete(h: Harness) -> Recorded:
    """GatewayDeletion and its RuntimeDomainWorkflow child to Deleted; the entity ends."""
    gid = await created(h, "rec-delete")
    await h.request(gid, Request.DELETE)
    await h.wait_for(gid, GatewayState.DELETED)
    return {
        "delete--GatewayWorkflow.json": await closed(
            h, naming.gateway_workflow_id(h.settings.installation, gid)
        ),
        LEGACY_SOURCE: await closed(h, naming.deletion_workflow_id(h.settings.installation, gid)),
        "delete--RuntimeDomainWorkflow.json": await closed(
            h, naming.domain_workflow_id(h.settings.installation, gid)
        ),
    }


async def continue_as_new(h: Harness) -> Recorded:
    """With max_actions_per_run=1 the entity continues as new after its first action,
    the create; the next run reads the intent again, starts the gateway and waits."""
    gid = unique_id("rec-can")
    await asyncio.to_thread(h.gateways.insert, ApiGateway(gateway_id=gid))
    handle = await h.client.start_workflow(
        GatewayWorkflow.run,
        GatewayInput(gateway_id=gid, max_actions_per_run=1),
        id=naming.gateway_workflow_id(h.settings.installation, gid),
        task_queue=h.settings.task_queue,
        search_attributes=search.for_gateway(gid),
    )
    await h.wait_for(gid, GatewayState.RUNNING)
    first = await closed(h, handle.id, handle.result_run_id)
    if first.events[-1].event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
        raise RuntimeError(f"{handle.id} ended without continuing as new")
    return {
        "continue-as-new--GatewayWorkflow.json": first,
        "continue-as-new-next-run--GatewayWorkflow.json": await idle(h, gid),
    }


async def delete_with_faults(h: Harness, admin: EmulatorAdmin, gid: str) -> Recorded:
    """30% of Kubernetes requests answer 503, so activities fail and are retried.

    The cluster client retries a 503 three times inline before its activity fails, so
    chance alone may leave every activity at attempt 1: the first six Deployment
    deletes fail as well, which makes `delete_instance` run at least twice.
    """
    rules: list[dict[str, Any]] = [
        {"verb": "delete", "kind": "Deployment", "status": 503, "count": 6},
        {"rate": 0.3, "status": 503},
    ]
    with admin.faults_injected(rules, seed=1):
        await h.request(gid, Request.DELETE)
        await h.wait_for(gid, GatewayState.DELETED, timeout=150)
    deletion = await closed(h, naming.deletion_workflow_id(h.settings.installation, gid))
    if attempts(deletion) < 2:
        raise RuntimeError("no activity of the deletion was retried under the injected faults")
    return {
        "delete-with-faults--GatewayDeletion.json": deletion,
        "delete-with-faults--RuntimeDomainWorkflow.json": await closed(
            h, naming.domain_workflow_id(h.settings.installation, gid)
        ),
    }


async def preempted_start(h: Harness, admin: EmulatorAdmin) -> Recorded:
    """A delete while the start waits for a Deployment that never becomes ready."""
    gid = unique_id("rec-preempt")
    with admin.timing(readyDelay=-1):
        await h.create(gid)

        async def waiting_for_readiness() -> bool:
            gw = await asyncio.to_thread(h.gateways.require, gid)
            return gw.phase is GatewayPhase.STARTING and gw.progress.waiting_on is not None

        await _poll(f"{gid} did not wait for readiness", waiting_for_readiness)
        await h.request(gid, Request.DELETE)
        await h.wait_for(gid, GatewayState.DELETED)
    return {
        "preempted-start--GatewayWorkflow.json": await closed(
            h, naming.gateway_workflow_id(h.settings.installation, gid)
        ),
        "preempted-start--GatewayDeletion.json": await closed(
            h, naming.deletion_workflow_id(h.settings.installation, gid)
        ),
    }


async def delete_during_start(h: Harness, admin: EmulatorAdmin) -> Recorded:
    """A delete while the start applies its Deployment (slowed to 3 s): a short step that
    a cancellation cannot interrupt. The start stops once it returns, and deletes."""
    gid = unique_id("rec-del-start")
    slow_apply = [{"verb": "create", "kind": "Deployment", "latency": 3.0}]
    with admin.timing(readyDelay=-1), admin.faults_injected(slow_apply):
        await h.create(gid, functions=0, triggers=0)

        async def applying() -> bool:
            gw = await asyncio.to_thread(h.gateways.require, gid)
            return gw.phase is GatewayPhase.STARTING and gw.progress.step == APPLY_INSTANCE.name

        await _poll(f"{gid} did not apply its Deployment", applying)
        # The step is named as soon as the one before it completes (one write per step);
        # a second in, the 3 s create is under way.
        await asyncio.sleep(1.0)
        await h.request(gid, Request.DELETE)
        await h.wait_for(gid, GatewayState.DELETED)
    return {
        "delete-during-start--GatewayWorkflow.json": await closed(
            h, naming.gateway_workflow_id(h.settings.installation, gid)
        ),
    }


async def failure_backoff(h: Harness) -> Recorded:
    """A deletion that fails (a ConfigMap in the namespace is not the gateway's): the
    entity backs off (a timer) until the delete is requested again once the ConfigMap is
    gone."""
    gid = await created(h, "rec-backoff")
    ns = naming.namespace(gid)
    api = cluster_admin(h.settings)
    with api:
        core = k8s.CoreV1Api(api)
        foreign = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="not-the-gateways"))
        core.create_namespaced_config_map(ns, foreign)
        await h.request(gid, Request.DELETE)
        handle = h.client.get_workflow_handle(
            naming.gateway_workflow_id(h.settings.installation, gid)
        )

        async def backing_off() -> bool:
            progress = await handle.query(GatewayWorkflow.progress)
            detail = progress.detail if progress is not None else ""
            return "next attempt" in detail

        await _poll(f"gateway/{gid} did not back off", backing_off)
        core.delete_namespaced_config_map("not-the-gateways", ns)
    await h.request(gid, Request.DELETE)
    await h.wait_for(gid, GatewayState.DELETED)
    return {"failure-backoff--GatewayWorkflow.json": await closed(h, handle.id)}


async def drift_repair(h: Harness) -> Recorded:
    """A Deployment deleted by hand; one DriftCheck run signals `repair`; the gateway's
    workflow runs its start again."""
    gid = await created(h, "rec-drift")
    await idle(h, gid)
    cluster = h.deps.cluster("local")
    deployment = ObjectRef(Kind.DEPLOYMENT, naming.namespace(gid), naming.deployment(gid))
    await asyncio.to_thread(cluster.delete_owned, gid, deployment)
    await asyncio.to_thread(cluster.wait_until_gone, [deployment], timeout=60)
    check = await h.client.start_workflow(
        DriftCheck.run, [], id=f"drift-check/{gid}", task_queue=h.settings.task_queue
    )
    report = await check.result()
    if gid not in report.signalled:
        raise RuntimeError(f"the drift check did not find {gid}'s missing Deployment")

    async def repaired() -> bool:
        gw = await asyncio.to_thread(h.gateways.require, gid)
        return gw.phase is GatewayPhase.STARTED and gw.progress.drift.repairs == 1

    await _poll(f"{gid} was not repaired", repaired)
    return {
        "drift-repair--GatewayWorkflow.json": await idle(h, gid),
        "drift-repair--DriftCheck.json": await closed(h, check.id),
    }


async def requests(h: Harness) -> Recorded:
    """Temporal-native requests: a `stop` signal, a `start` update, a `restart` signal, a
    `delete` update, and a `start` signal refused during the deletion; the workflow writes
    each intent itself."""
    gid = await created(h, "rec-requests")
    handle = h.client.get_workflow_handle(naming.gateway_workflow_id(h.settings.installation, gid))
    await handle.signal("stop")
    await h.wait_for(gid, GatewayState.STOPPED)
    await handle.execute_update("start", result_type=RequestAccepted)
    await h.wait_for(gid, GatewayState.RUNNING)
    await handle.signal("restart")
    await h.wait_phase(gid, GatewayPhase.STARTING)
    await h.wait_for(gid, GatewayState.RUNNING)
    await handle.execute_update("delete", result_type=RequestAccepted)
    await handle.signal("start")  # refused: the gateway is being deleted
    await h.wait_for(gid, GatewayState.DELETED)
    return {"requests--GatewayWorkflow.json": await closed(h, handle.id)}


async def reap(h: Harness) -> Recorded:
    """A gateway whose document was removed by hand; the reaper (grace 0) hands it over."""
    gid = await created(h, "rec-orphan")
    await idle(h, gid)
    await asyncio.to_thread(h.deps.db["ApiGateway"].delete_one, {"gatewayId": gid})
    run = await h.client.start_workflow(
        OrphanReaper.run,
        ReapInput(grace_seconds=0, confirm=1),  # its database holds no other gateway
        id=f"orphan-reaper/{gid}",
        task_queue=h.settings.task_queue,
    )
    result = await run.result()
    if [o.gateway_id for o in result.reaped] != [gid]:
        raise RuntimeError(f"the reaper did not take {gid}: {result}")
    await h.wait_for(gid, GatewayState.DELETED)
    return {"reap--OrphanReaper.json": await closed(h, run.id)}


async def _unscoped(h: Harness, prefix: str) -> tuple[str, WorkflowHandle[Any, Any]]:
    """A gateway whose workflow runs as the versions before installations ran it,
    `gateway/<id>`, at rest."""
    gid = await created(h, prefix)
    scoped = naming.gateway_workflow_id(h.settings.installation, gid)
    await h.client.get_workflow_handle(scoped).terminate("run it unscoped")
    unscoped = await h.client.start_workflow(
        GatewayWorkflow.run,
        GatewayInput(gateway_id=gid),
        id=naming.unscoped_gateway_workflow_id(gid),
        task_queue=h.settings.task_queue,
        search_attributes=search.for_gateway(gid),
    )
    await _poll(f"{unscoped.id} did not come to rest", lambda: _converged(h, unscoped.id))
    return gid, unscoped


async def hand_over(h: Harness) -> Recorded:
    """Two ways a `gateway/<id>` run hands over to `gateway/<installation>/<id>`.

    `hand-over`: asked by a worker's start, it starts its successor and ends; the
    successor acts once it has ended. `take-over`: a request starts the successor first
    (a signal-with-start, as the dispatcher sends); its first look finds the old run
    still running and asks it to hand over, which finds its successor started already.
    """
    gid, unscoped = await _unscoped(h, "rec-handover")
    scoped = naming.gateway_workflow_id(h.settings.installation, gid)
    await unscoped.signal(GatewayWorkflow.retire, scoped)
    handed = await closed(h, unscoped.id, unscoped.result_run_id)
    successor = await idle(h, gid)

    gid, unscoped = await _unscoped(h, "rec-takeover")
    await signal_gateway(h.client, h.settings, gid, "reconcile")
    taken = await closed(h, unscoped.id, unscoped.result_run_id)
    scoped = naming.gateway_workflow_id(h.settings.installation, gid)
    await _poll(f"{scoped} did not take over", lambda: _converged(h, scoped))
    taker = await idle(h, gid)
    waits = [e for e in taker.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    if not waits:
        raise RuntimeError(f"the successor of {unscoped.id} did not wait for it")
    return {
        "hand-over--GatewayWorkflow.json": handed,
        "hand-over-successor--GatewayWorkflow.json": successor,
        "take-over--GatewayWorkflow.json": taker,
        "take-over-unscoped--GatewayWorkflow.json": taken,
    }


async def _converged(h: Harness, workflow_id: str) -> bool:
    progress = await h.client.get_workflow_handle(workflow_id).query(GatewayWorkflow.progress)
    return progress is not None and progress.detail.startswith("converged")


async def delete_queued(settings: Settings) -> Recorded:
    """With a region limit of 1, the second of two deletions waits for the first's
    permit and is woken by its `permit_granted` signal."""
    async with harness(settings.model_copy(update={"region_deletion_limit": 1})) as h:
        first, second = await asyncio.gather(created(h, "rec-perm1"), created(h, "rec-perm2"))
        await h.request(first, Request.DELETE)
        await _poll(
            f"{first} did not take the permit",
            lambda: _holds(h, first),
        )
        await h.request(second, Request.DELETE)
        await asyncio.gather(
            h.wait_for(first, GatewayState.DELETED), h.wait_for(second, GatewayState.DELETED)
        )
        history = await closed(h, naming.deletion_workflow_id(h.settings.installation, second))
        signals = [
            e.workflow_execution_signaled_event_attributes.signal_name
            for e in history.events
            if e.HasField("workflow_execution_signaled_event_attributes")
        ]
        if "permit_granted" not in signals:
            raise RuntimeError(f"{second} was not woken by a permit_granted signal")
    return {"delete-queued--GatewayDeletion.json": history}


# Every deletion past the guard: more than none, and more than no share of the region.
HOLD_EVERY_DELETION = {"deletion_guard_count": 0, "deletion_guard_share": 0.0}


async def _held(h: Harness, gid: str) -> None:
    async def held() -> bool:
        gw = await asyncio.to_thread(h.gateways.require, gid)
        return held_by_guard(gw.progress.waiting_on)

    await _poll(f"{gid} was not held by the deletion guard", held)


async def delete_held_released(settings: Settings) -> Recorded:
    """The deletion guard holds a deletion before its first step; an operator releases
    it (`deletion_guard` signal), the guard admits it and the gateway is deleted."""
    async with harness(settings.model_copy(update=HOLD_EVERY_DELETION)) as h:
        gid = await created(h, "rec-held")
        await h.request(gid, Request.DELETE)
        await _held(h, gid)
        released = await service.release_deletions(h.settings, "local")
        if released.gateway_ids != [gid]:
            raise RuntimeError(f"released {released.gateway_ids}, not {gid}")
        await h.wait_for(gid, GatewayState.DELETED)
        history = await closed(h, naming.gateway_workflow_id(h.settings.installation, gid))
    return {"delete-held-released--GatewayWorkflow.json": history}


async def delete_held_cancelled(settings: Settings) -> Recorded:
    """A held deletion an operator cancels: the gateway gets back its intent (Running)
    and its workflow waits again; the deletion never started."""
    async with harness(settings.model_copy(update=HOLD_EVERY_DELETION)) as h:
        gid = await created(h, "rec-cancel")
        await h.request(gid, Request.DELETE)
        await _held(h, gid)
        cancelled = await service.cancel_deletions(h.settings, "local", "recorded scenario")
        if cancelled.restored != {gid: GatewayState.RUNNING}:
            raise RuntimeError(f"cancel gave back {cancelled.restored}")
        history = await idle(h, gid)
    return {"delete-held-cancelled--GatewayWorkflow.json": history}


async def _holds(h: Harness, gid: str) -> bool:
    regions = await asyncio.to_thread(h.deps.permits.regions)
    return any(gid in region["holders"] for region in regions)


# Scenarios that can be recorded alone (`--only NAME`, repeatable), leaving every other
# file as it is: in one shared harness, or in its own (delete-queued: a region limit of 1;
# the deletion guard's: a guard that holds every deletion).
ALONE: dict[str, Callable[[Harness], Awaitable[Recorded]]] = {
    "failure-backoff": failure_backoff,
    "requests": requests,
    "drift-repair": drift_repair,
    "reap": reap,
    "hand-over": hand_over,
}
OWN_HARNESS: dict[str, Callable[[Settings], Awaitable[Recorded]]] = {
    "delete-queued": delete_queued,
    "delete-held-released": delete_held_released,
    "delete-held-cancelled": delete_held_cancelled,
}


async def record_only(settings: Settings, names: list[str]) -> Recorded:
    settings = settings.model_copy(update={"dispatcher": False})
    recorded: Recorded = {}
    async with harness(settings) as h:
        for name in names:
            if name in ALONE:
                recorded |= await ALONE[name](h)
    for name in names:
        if name in OWN_HARNESS:
            recorded |= await OWN_HARNESS[name](settings)
    return recorded


async def record_all(settings: Settings) -> Recorded:
    """Independent scenarios run side by side; those that change the emulator for
    everyone (faults, readiness) run alone afterwards."""
    admin = EmulatorAdmin.of(settings)
    # The dispatcher stays off: the scenarios ask through `control.service` as the CLI does,
    # and nothing can start `gateway/<id>` before continue_as_new starts it itself.
    async with harness(settings.model_copy(update={"dispatcher": False})) as h:
        backing_off = asyncio.create_task(failure_backoff(h))
        first, stopped, restarted, deleted, continued, faulty = await asyncio.gather(
            create_start(h),
            stop_start(h),
            restart(h),
            delete(h),
            continue_as_new(h),
            created(h, "rec-faults"),
        )
        asked = asyncio.create_task(requests(h))
        recorded = first | stopped | restarted | deleted | continued | await backing_off
        recorded |= await asked
        recorded |= await delete_with_faults(h, admin, faulty)
        recorded |= await preempted_start(h, admin)
        recorded |= await delete_during_start(h, admin)
    return recorded | await record_only(
        settings,
        [
            "drift-repair",
            "reap",
            "delete-queued",
            "delete-held-released",
            "delete-held-cancelled",
            "hand-over",
        ],
    )


# -- the legacy tctl style -----------------------------------------------------------------
def to_tctl_style(history_json: dict[str, Any]) -> list[dict[str, Any]]:
    """A history as the older tctl wrote it, from `{"events": [...]}` of today's CLI.

    - a bare list of events: `tctl admin workflow show --output_filename` encodes the
      events one by one (`JSONPBEncoder.EncodeHistoryEvents`) into a JSON array;
    - every enum in the short style of the gogo-protobuf era (api-go's
      `EventType_shorthandName`): `"eventType": "WorkflowExecutionStarted"`,
      `"kind": "Normal"`, `"parentClosePolicy": "Abandon"`;
    - no `workflowId` in the first event: servers of that time did not record it.
    Compare the Python SDK's own legacy fixture, tests/worker/
    test_replayer_complete_history.json in temporalio/sdk-python.
    """
    events: list[dict[str, Any]] = json.loads(json.dumps(history_json["events"]))
    for event in events:
        _shorten_enums(HistoryEvent.DESCRIPTOR, event)
    events[0]["workflowExecutionStartedEventAttributes"].pop("workflowId", None)
    return events


def _shorten_enums(descriptor: Descriptor, message: dict[str, Any]) -> None:
    for key, value in message.items():
        field = descriptor.fields_by_camelcase_name.get(key)
        if field is None:
            continue
        if field.enum_type is not None:
            message[key] = _short_enum_name(field.enum_type, value)
        elif field.message_type is not None:
            inner = field.message_type
            if inner.GetOptions().map_entry:
                entry = inner.fields_by_name["value"].message_type
                if entry is not None:
                    for item in value.values():
                        _shorten_enums(entry, item)
            else:
                for item in value if isinstance(value, list) else [value]:
                    if isinstance(item, dict):  # not a Duration or Timestamp string
                        _shorten_enums(inner, item)


def _short_enum_name(enum: EnumDescriptor, value: Any) -> Any:
    """`TASK_QUEUE_KIND_NORMAL` -> `Normal` (the enum's prefix is that of its 0 value)."""
    if isinstance(value, list):
        return [_short_enum_name(enum, item) for item in value]
    prefix = enum.values_by_number[0].name.removesuffix("UNSPECIFIED")
    words = str(value).removeprefix(prefix).split("_")
    return "".join(word.capitalize() for word in words)


# -- writing -------------------------------------------------------------------------------
def write(recorded: Recorded, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, history in sorted(recorded.items()):
        path = out / name
        path.write_text(history.to_json() + "\n")
        written.append(path)
    if LEGACY_SOURCE in recorded:
        legacy = to_tctl_style(recorded[LEGACY_SOURCE].to_json_dict())
        path = out / LEGACY_FILE
        path.write_text(json.dumps(legacy, indent=2) + "\n")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HISTORIES, help="where to write")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted([*ALONE, *OWN_HARNESS]),
        help="record only this scenario (repeatable); the other files stay as they are",
    )
    args = parser.parse_args()
    # The injected faults fail activities on purpose: their tracebacks are not news.
    logging.getLogger("temporalio.activity").setLevel(logging.CRITICAL)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gatewayflow-record-") as home:
        settings = embedded_settings(Path(home))
        started = devstack.start(settings)
        try:
            if args.only:
                recorded = asyncio.run(record_only(started.settings, args.only))
            else:
                recorded = asyncio.run(record_all(started.settings))
        finally:
            devstack.stop(settings)
    written = write(recorded, args.out)
    for path in written:
        print(f"{path}  {path.stat().st_size // 1024} KiB")
    print(f"{len(written)} histories in {time.monotonic() - began:.0f}s")


if __name__ == "__main__":
    main()
