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
    from gatewayflow.domain import naming
    from gatewayflow.domain.messages import (
        DeletionInput,
        DomainInput,
        GatewayInput,
        GatewayProgress,
        InstanceInput,
        Intent,
        PhaseUpdate,
        ProgressUpdate,
        StateUpdate,
        StepInput,
        StepResult,
        TriggersInput,
    )
    from gatewayflow.domain.states import DomainState, GatewayPhase, GatewayState
    from gatewayflow.domain.steps import DELETION_STEPS, CreationStep, StartStep, StopStep
    from gatewayflow.domain.transitions import Decision, GatewayAction, decide
    from workflows import search
    from workflows.calls import call
    from workflows.deletion import GatewayDeletion
    from workflows.runtime_domain import RuntimeDomainWorkflow

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
            intent = await call("read_intent", gid, Intent, summary=f"read intent of {gid}")
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
            reason = _reason(err)
            self._note(last_error=reason, detail=f"{decision.action.value} failed: {reason}")
            await call(
                "record_progress",
                ProgressUpdate(gateway_id=gid, error=reason),
                type(None),
                summary=f"record failure of {decision.action.value}",
            )
            return False
        finally:
            self._action_task = None
            self._action = None
        if decision.settle_state is not None:
            await self._set_state(gid, decision.settle_state, None, expected=intent.state)
        return True

    async def _set_state(
        self,
        gid: str,
        state: GatewayState,
        reason: str | None,
        expected: GatewayState | None = None,
    ) -> None:
        await call(
            "set_state",
            StateUpdate(gateway_id=gid, state=state, reason=reason, expected_state=expected),
            bool,
            summary=f"state -> {state.value}" + (f" ({reason})" if reason else ""),
        )

    async def _phase(self, gid: str, phase: GatewayPhase, operation: str, total: int) -> None:
        await call(
            "begin_operation",
            PhaseUpdate(gateway_id=gid, phase=phase, operation=operation, total_steps=total),
            bool,
            summary=f"{operation}: phase -> {phase.value} ({total} steps)",
        )
        self._note(phase=phase)
        search.upsert(gid, phase=phase.value)

    async def _domain(self, intent: Intent, target: DomainState, step: StepInput) -> None:
        """The child RuntimeDomainWorkflow, then its step recorded like any other."""
        gid = intent.gateway_id
        await workflow.execute_child_workflow(
            RuntimeDomainWorkflow.run,
            DomainInput(
                gateway_id=gid, region=intent.region, target=target, step_number=step.number
            ),
            id=naming.domain_workflow_id(gid),
            search_attributes=search.for_gateway(gid),
            static_summary=f"RuntimeDomain {gid} -> {target.value}",
            execution_timeout=timedelta(hours=1),
        )
        await call("record_step", step, StepResult, summary=f"record step {step.step}")

    def _step(
        self, intent: Intent, phase: GatewayPhase, step: str, number: int | None = None
    ) -> StepInput:
        return StepInput(
            gateway_id=intent.gateway_id,
            region=intent.region,
            phase=phase,
            step=step,
            number=number,
        )

    async def _create(self, intent: Intent) -> None:
        await self._phase(intent.gateway_id, _P.CREATING, "create", len(CreationStep))
        await self._provision(intent, _P.CREATING, done=_P.CREATED)

    async def _provision(
        self, intent: Intent, during: GatewayPhase, done: GatewayPhase | None = None
    ) -> None:
        """Ensure the base of a gateway; idempotent, so start and restart repair drift."""
        gid, ns = intent.gateway_id, naming.namespace(intent.gateway_id)
        steps = (
            (CreationStep.NAMESPACE, "create_namespace", f"ensure Namespace {ns}, ConfigMap"),
            (
                CreationStep.DATABASE,
                "create_database",
                f"ensure runtime database {naming.runtime_database(gid)}, user, Secret",
            ),
            (CreationStep.RUNTIME_DOMAIN, "", ""),
            (
                CreationStep.STAGES,
                "create_stages",
                f"ensure Stage, Environment, ClientApp docs; stage ApisixRoutes in {ns}",
            ),
            (CreationStep.FUNCTIONS, "create_functions", f"ensure CloudFunction docs of {gid}"),
            (
                CreationStep.TRIGGERS,
                "create_triggers",
                f"ensure CronTrigger docs, CronJobs in {ns}",
            ),
        )
        for number, (step, activity, summary) in enumerate(steps, start=1):
            workflow.set_current_details(f"{gid}: step {number}: {step.value}")
            if step is CreationStep.RUNTIME_DOMAIN:
                await self._domain(
                    intent, DomainState.ACTIVE, self._step(intent, during, step.value, number)
                )
                continue
            phase = done if done is not None and step is CreationStep.TRIGGERS else during
            await call(
                activity,
                self._step(intent, phase, step.value, number),
                StepResult,
                summary=summary,
            )

    async def _start(self, intent: Intent, input: GatewayInput) -> None:
        gid, ns = intent.gateway_id, naming.namespace(intent.gateway_id)
        await self._phase(gid, _P.STARTING, "start", len(CreationStep) + len(StartStep))
        await self._provision(intent, _P.STARTING)
        await call(
            "set_triggers_suspended",
            TriggersInput(
                gateway_id=gid,
                region=intent.region,
                phase=_P.STARTING,
                step=StartStep.TRIGGERS.value,
                number=len(CreationStep) + 1,
                suspend=False,
            ),
            StepResult,
            summary=f"resume CronJobs in {ns}",
        )
        await self._bring_up(intent, input, restarted_at=None, first=len(CreationStep) + 2)

    async def _restart(self, intent: Intent, input: GatewayInput) -> None:
        gid = intent.gateway_id
        await self._phase(gid, _P.STARTING, "restart", len(CreationStep) + 2)
        await self._provision(intent, _P.STARTING)
        await self._bring_up(
            intent, input, restarted_at=workflow.now().isoformat(), first=len(CreationStep) + 1
        )

    async def _bring_up(
        self, intent: Intent, input: GatewayInput, restarted_at: str | None, first: int
    ) -> None:
        gid, ns = intent.gateway_id, naming.namespace(intent.gateway_id)
        instance = InstanceInput(
            gateway_id=gid,
            region=intent.region,
            phase=_P.STARTING,
            step=StartStep.INSTANCE.value,
            number=first,
            restarted_at=restarted_at,
            timeout_seconds=input.start_timeout_seconds,
        )
        verb = "rolling update of" if restarted_at else "apply"
        await call(
            "apply_instance",
            instance,
            StepResult,
            summary=f"{verb} Deployment {gid}, Service {gid} in {ns}",
        )
        workflow.set_current_details(f"waiting for Deployment {ns}/{gid} to be ready")
        ready = instance.model_copy(
            update={"phase": _P.STARTED, "step": StartStep.READY.value, "number": first + 1}
        )
        try:
            await call(
                "wait_instance_ready",
                ready,
                StepResult,
                summary=f"wait until Deployment {ns}/{gid} is available",
                waits=True,
                timeout=timedelta(seconds=input.start_timeout_seconds + 60),
            )
        except ActivityError as err:
            if _error_type(err) != "NotReadyError":
                raise
            # The original behaviour: a start that is not ready in time goes back to Stopped.
            await self._set_state(gid, GatewayState.STOPPED, f"start timed out: {_reason(err)}")

    async def _stop(self, intent: Intent) -> None:
        gid, ns = intent.gateway_id, naming.namespace(intent.gateway_id)
        await self._phase(gid, _P.STOPPING, "stop", len(StopStep))
        workflow.set_current_details(f"stop {gid}: runtime domain -> Inactive")
        await self._domain(
            intent,
            DomainState.INACTIVE,
            self._step(intent, _P.STOPPING, StopStep.RUNTIME_DOMAIN.value, 1),
        )
        await call(
            "set_triggers_suspended",
            TriggersInput(
                gateway_id=gid,
                region=intent.region,
                phase=_P.STOPPING,
                step=StopStep.TRIGGERS.value,
                number=2,
                suspend=True,
            ),
            StepResult,
            summary=f"suspend CronJobs in {ns}",
        )
        workflow.set_current_details(f"stop {gid}: removing the instance")
        await call(
            "delete_instance",
            self._step(intent, _P.STOPPED, StopStep.INSTANCE.value, 3),
            StepResult,
            summary=f"delete Deployment {gid}, Service {gid} in {ns}; wait until gone",
            waits=True,
        )

    async def _delete(self, intent: Intent) -> None:
        gid = intent.gateway_id
        self._delete_requested = False
        await self._phase(gid, _P.DELETING, "delete", len(DELETION_STEPS))
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
            while (await call("read_intent", gid, Intent, summary=f"read intent of {gid}")).exists:
                await workflow.sleep(timedelta(seconds=5))


def _error_type(err: BaseException) -> str | None:
    cause = err.cause if isinstance(err, ActivityError | ChildWorkflowError) else err
    while isinstance(cause, ActivityError | ChildWorkflowError):
        cause = cause.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def _reason(err: BaseException) -> str:
    cause: BaseException | None = err
    while isinstance(cause, ActivityError | ChildWorkflowError) and cause.cause is not None:
        cause = cause.cause
    return str(cause) if cause is not None else str(err)
