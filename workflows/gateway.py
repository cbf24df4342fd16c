"""GatewayWorkflow: the one entity workflow that owns every transition of a gateway.

It replaces the original `lockedAt` lock: Temporal runs one workflow per id. Intent is
read from MongoDB (the source of truth); signals are only hints to look again.
"""

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.gateway import GatewayActivities
    from gatewayflow.cluster.errors import NotReadyError
    from gatewayflow.domain import naming
    from gatewayflow.domain.errors import failed_with, reason
    from gatewayflow.domain.messages import (
        DeletionInput,
        DriftFinding,
        GatewayInput,
        GatewayProgress,
        InstanceInput,
        Intent,
        PhaseUpdate,
        ProgressUpdate,
        StateUpdate,
        TriggersInput,
    )
    from gatewayflow.domain.states import GatewayPhase, GatewayState
    from gatewayflow.domain.transitions import Decision, GatewayAction, decide
    from workflows import drift_repair as drift
    from workflows import operations as ops
    from workflows import search
    from workflows.calls import call
    from workflows.deletion import GatewayDeletion
    from workflows.operations import Operation, Step
    from workflows.steps import run_step, run_steps

_P = GatewayPhase
_BACKOFF_FIRST = timedelta(minutes=1)
_BACKOFF_MAX = timedelta(minutes=30)


@workflow.defn(name="GatewayWorkflow")
class GatewayWorkflow:
    def __init__(self) -> None:
        self._wake = False
        self._requested = False  # an explicit stop/start/restart/delete, not a sweep hint
        self._failures = 0
        self._delete_requested = False
        self._action_task: asyncio.Task[None] | None = None
        self._action: GatewayAction | None = None
        self._progress: GatewayProgress | None = None
        self._drift: DriftFinding | None = None

    # -- signals: hints that intent may have changed ------------------------------------
    @workflow.signal
    def reconcile(self) -> None:
        self._wake = True

    @workflow.signal
    def start(self) -> None:
        self._wake = self._requested = True

    @workflow.signal
    def stop(self) -> None:
        self._wake = self._requested = True

    @workflow.signal
    def restart(self) -> None:
        self._wake = self._requested = True

    @workflow.signal
    def delete(self) -> None:
        """A delete preempts an in-flight create, start or stop."""
        self._wake = self._requested = True
        self._delete_requested = True
        task = self._action_task
        if task is not None and not task.done() and self._action is not GatewayAction.DELETE:
            task.cancel()

    @workflow.signal
    def repair(self, finding: DriftFinding) -> None:
        """From the drift check: objects differ from what the phase implies."""
        self._drift = finding
        self._wake = True

    @workflow.query
    def progress(self) -> GatewayProgress | None:
        return self._progress

    # -- the loop ------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: GatewayInput) -> str:
        gid = input.gateway_id
        self._progress = GatewayProgress(gateway_id=gid)
        actions = 0
        while True:
            self._wake = False
            intent = await self._read_intent(gid)
            if not intent.exists:
                search.upsert(gid, state=GatewayState.DELETED.value, phase=_P.DELETED.value)
                self._note(detail="the ApiGateway document is gone")
                return f"gateway {gid} is gone"
            search.upsert(gid, state=intent.state.value, phase=intent.phase.value)
            self._note(state=intent.state, phase=intent.phase)
            if intent.malformed:
                self._note(last_error=intent.malformed)
                await self._idle(f"malformed document: {intent.malformed}")
                continue
            decision = decide(intent.state, intent.phase)
            if decision.action is GatewayAction.NONE:
                if self._drift is not None and workflow.patched(drift.PATCH):
                    finding, self._drift = self._drift, None
                    await drift.repair(finding, intent, lambda i, d: self._run_action(i, d, input))
                    continue
                if self._should_continue_as_new(actions, input):
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    workflow.continue_as_new(input)
                await self._idle(f"converged: {intent.state.value} / {intent.phase.value}")
                continue
            actions += 1
            self._progress.actions_this_run = actions
            ok = await self._run_action(intent, decision, input)
            if ok:
                self._failures = 0
            else:
                self._failures += 1
                await self._back_off(decision.action)

    def _should_continue_as_new(self, actions: int, input: GatewayInput) -> bool:
        return (
            actions >= input.max_actions_per_run or workflow.info().is_continue_as_new_suggested()
        )

    async def _back_off(self, action: GatewayAction) -> None:
        """After a failed operation: retry on an explicit request, or after a backoff.

        Sweep hints (`reconcile`) do not cut the backoff short, so a gateway that fails
        for a reason only an operator can fix is not retried on every sweep.
        """
        if not workflow.patched("failure-backoff"):
            await self._idle("waiting for a signal after a failed operation")
            return
        delay = min(_BACKOFF_FIRST * 2 ** (self._failures - 1), _BACKOFF_MAX)
        why = f"{action.value} failed; retrying in {delay} or on the next request"
        workflow.set_current_details(why)
        self._note(detail=why, action=None)
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._requested, timeout=delay)

    async def _idle(self, why: str) -> None:
        workflow.set_current_details(why)
        self._note(detail=why, action=None)
        await workflow.wait_condition(lambda: self._wake)

    def _note(
        self,
        *,
        state: GatewayState | None = None,
        phase: GatewayPhase | None = None,
        detail: str | None = None,
        action: GatewayAction | str | None = "",
        last_error: str | None = None,
    ) -> None:
        progress = self._progress
        if progress is None:
            return
        if state is not None:
            progress.state = state
        if phase is not None:
            progress.phase = phase
        if detail is not None:
            progress.detail = detail
        if action != "":
            progress.action = action.value if isinstance(action, GatewayAction) else action
        if last_error is not None:
            progress.last_error = last_error

    async def _run_action(self, intent: Intent, decision: Decision, input: GatewayInput) -> bool:
        """Run one action as a task a delete can cancel; False when it failed."""
        gid = intent.gateway_id
        if decision.refusal:
            await self._set_state(
                gid, GatewayState.DELETED, f"refused {intent.state.value}: {decision.refusal}"
            )
        runners: dict[GatewayAction, Callable[[], Coroutine[Any, Any, None]]] = {
            GatewayAction.CREATE: lambda: self._create(intent),
            GatewayAction.START: lambda: self._start(intent, input),
            GatewayAction.STOP: lambda: self._stop(intent),
            GatewayAction.RESTART: lambda: self._restart(intent, input),
            GatewayAction.DELETE: lambda: self._delete(intent),
        }
        self._action = decision.action
        self._requested = False  # requests made from here on retry a failure at once
        self._note(action=decision.action, detail=f"{decision.action.value} in progress")
        self._action_task = asyncio.create_task(runners[decision.action]())
        try:
            await self._action_task
        except asyncio.CancelledError:
            if not self._delete_requested:
                raise
            self._note(detail=f"{decision.action.value} preempted by a delete")
            return True
        except (ActivityError, ChildWorkflowError, ApplicationError) as err:
            why = reason(err)
            self._note(last_error=why, detail=f"{decision.action.value} failed: {why}")
            await call(
                GatewayActivities.record_progress,
                ProgressUpdate(gateway_id=gid, error=why),
                summary=f"record failure of {decision.action.value}",
            )
            return False
        finally:
            self._action_task = None
            self._action = None
        if decision.settle_state is not None:
            await self._set_state(gid, decision.settle_state, None, expected=intent.state)
        return True

    async def _read_intent(self, gid: str) -> Intent:
        return await call(GatewayActivities.read_intent, gid, summary=f"read intent of {gid}")

    async def _set_state(
        self,
        gid: str,
        state: GatewayState,
        why: str | None,
        expected: GatewayState | None = None,
    ) -> None:
        await call(
            GatewayActivities.set_state,
            StateUpdate(gateway_id=gid, state=state, reason=why, expected_state=expected),
            summary=f"state -> {state.value}" + (f" ({why})" if why else ""),
        )

    async def _begin(self, intent: Intent, operation: Operation) -> None:
        """Enter the operation's phase, with a fresh progress record of its steps."""
        gid, phase = intent.gateway_id, operation.during
        await call(
            GatewayActivities.begin_operation,
            PhaseUpdate(
                gateway_id=gid, phase=phase, operation=operation.name, total_steps=operation.total
            ),
            summary=f"{operation.name}: phase -> {phase.value} ({operation.total} steps)",
        )
        self._note(phase=phase)
        search.upsert(gid, phase=phase.value)

    async def _create(self, intent: Intent) -> None:
        await self._begin(intent, ops.CREATE)
        await run_steps(ops.CREATE, ops.BASE, intent.gateway_id, intent.region)

    async def _start(self, intent: Intent, input: GatewayInput) -> None:
        """The base again (idempotent, so a start repairs drift), then the instance."""
        op, gid = ops.START, intent.gateway_id
        await self._begin(intent, op)
        await run_steps(op, ops.BASE, gid, intent.region)
        resume = ops.RESUME_TRIGGERS
        await run_step(
            op,
            resume,
            TriggersInput(**op.input(resume, gid, intent.region).model_dump(), suspend=False),
        )
        await self._bring_up(intent, input, op, ops.APPLY_INSTANCE, restarted_at=None)

    async def _restart(self, intent: Intent, input: GatewayInput) -> None:
        """A rolling update of the same Deployment, not a stop and a start."""
        op = ops.RESTART
        await self._begin(intent, op)
        await run_steps(op, ops.BASE, intent.gateway_id, intent.region)
        await self._bring_up(
            intent, input, op, ops.ROLL_INSTANCE, restarted_at=workflow.now().isoformat()
        )

    async def _bring_up(
        self,
        intent: Intent,
        input: GatewayInput,
        op: Operation,
        apply: Step[InstanceInput],
        restarted_at: str | None,
    ) -> None:
        gid, region = intent.gateway_id, intent.region

        def instance(step: Step[InstanceInput]) -> InstanceInput:
            return InstanceInput(
                **op.input(step, gid, region).model_dump(),
                restarted_at=restarted_at,
                timeout_seconds=input.start_timeout_seconds,
            )

        await run_step(op, apply, instance(apply))
        ready = ops.WAIT_READY
        try:
            await run_step(
                op,
                ready,
                instance(ready),
                timeout=timedelta(seconds=input.start_timeout_seconds + 60),
            )
        except ActivityError as err:
            if not failed_with(err, NotReadyError):
                raise
            # The original behaviour: a start that is not ready in time goes back to Stopped.
            await self._set_state(gid, GatewayState.STOPPED, f"start timed out: {reason(err)}")

    async def _stop(self, intent: Intent) -> None:
        """Routes go before the CronJobs are suspended, CronJobs before the pods stop."""
        op, gid, region = ops.STOP, intent.gateway_id, intent.region
        await self._begin(intent, op)
        domain, suspend, instance = ops.DOMAIN_INACTIVE, ops.SUSPEND_TRIGGERS, ops.REMOVE_INSTANCE
        await run_step(op, domain, op.input(domain, gid, region))
        await run_step(
            op, suspend, TriggersInput(**op.input(suspend, gid, region).model_dump(), suspend=True)
        )
        await run_step(op, instance, op.input(instance, gid, region))

    async def _delete(self, intent: Intent) -> None:
        gid = intent.gateway_id
        self._delete_requested = False
        await self._begin(intent, ops.DELETE)
        workflow.set_current_details(f"deleting {gid}: see child gateway-deletion/{gid}")
        try:
            await workflow.execute_child_workflow(
                GatewayDeletion.run,
                DeletionInput(gateway_id=gid, region=intent.region),
                id=naming.deletion_workflow_id(gid),
                search_attributes=search.for_gateway(gid, _P.DELETING.value),
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"delete gateway {gid}",
            )
        except WorkflowAlreadyStartedError:
            # A deletion from an earlier run of this workflow is still going: follow it.
            workflow.set_current_details(f"following the running gateway-deletion/{gid}")
            while (await self._read_intent(gid)).exists:
                await workflow.sleep(timedelta(seconds=5))
