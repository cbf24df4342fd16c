"""GatewayWorkflow: the one entity workflow that owns every transition of a gateway.

It replaces the original `lockedAt` lock: Temporal runs one workflow per id. Intent is
read from MongoDB (the source of truth). The signals and updates `stop`, `start`,
`restart` and `delete` are requests, like the CLI's: the workflow checks each against the
request rules and writes it as the intent with a compare-and-set (an activity), then acts
on it; a refused one changes nothing and is recorded. `reconcile` is only a hint to look
again; a `delete` also preempts the operation in flight.

All intent handling is in `run`'s loop: read the intent, then continue as new, idle,
back off or act. An operation begins only if the state is still the one it was decided
on, stops at its next step when a delete arrives, and every state it writes is a
compare-and-set on that state: it never overwrites an intent it did not start from
(docs/guarantees.md).
"""

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar

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
    from activities.instance import InstanceActivities
    from gatewayflow.cluster.errors import NotReadyError
    from gatewayflow.domain import naming
    from gatewayflow.domain.errors import PermanentError, failed_with, reason
    from gatewayflow.domain.messages import (
        Backoff,
        DeletionInput,
        DriftFinding,
        GatewayInput,
        GatewayProgress,
        InstanceInput,
        Intent,
        PhaseUpdate,
        ProgressUpdate,
        RequestAccepted,
        RequestInput,
        RequestOutcome,
        StateUpdate,
        StepInput,
        TriggersInput,
    )
    from gatewayflow.domain.states import GatewayPhase, GatewayState
    from gatewayflow.domain.transitions import (
        Decision,
        GatewayAction,
        Request,
        check_request,
        decide,
    )
    from workflows import drift_repair as drift
    from workflows import operations as ops
    from workflows import search
    from workflows.calls import call
    from workflows.deletion import GatewayDeletion
    from workflows.operations import Operation, Step
    from workflows.steps import run_step

_P = GatewayPhase
_BACKOFF_FIRST = timedelta(minutes=1)
_BACKOFF_MAX = timedelta(minutes=30)
# A workflow that hears nothing for this long reads the intent again in a fresh run.
_IDLE_LOOK_AGAIN = timedelta(hours=24)
# Readiness is looked at after each pause, doubling up to the maximum, until the deadline.
_READY_PAUSE_FIRST = timedelta(milliseconds=500)
_READY_PAUSE_MAX = timedelta(seconds=15)
# Guards every change of commands made for intent integrity (issue 12), so histories
# recorded before it replay as they ran.
INTENT_INTEGRITY = "intent-integrity"
# Guards the signals that became requests (issue 17): histories recorded before it
# received them as hints and replay so.
REQUESTS = "signal-requests"
In = TypeVar("In", bound=StepInput)


class OperationStopped(PermanentError):
    """The operation stopped early: a delete came, or the intent it started from changed.
    Not a failure: the loop reads the intent again and acts on it."""


@workflow.defn(name="GatewayWorkflow")
class GatewayWorkflow:
    def __init__(self) -> None:
        self._wake = False
        # Read only by the backoff of histories recorded before INTENT_INTEGRITY.
        self._requested = False
        self._failures = 0
        self._backoff: Backoff | None = None
        self._idle_expired = False
        self._delete_requested = False
        self._action_task: asyncio.Task[None] | None = None
        self._action: GatewayAction | None = None
        self._progress: GatewayProgress | None = None
        self._drift: DriftFinding | None = None
        # The (state, phase) last read or written: what an update's validator checks.
        self._seen: tuple[GatewayState, GatewayPhase] | None = None
        # Requests are written one at a time, in the order they arrived.
        self._requests = asyncio.Lock()

    # -- signals: requests, and a hint --------------------------------------------------
    @workflow.signal
    def reconcile(self) -> None:
        """Only a hint: look at MongoDB again."""
        self._wake = True

    @workflow.signal
    async def start(self) -> None:
        await self._signalled(Request.START)

    @workflow.signal
    async def stop(self) -> None:
        await self._signalled(Request.STOP)

    @workflow.signal
    async def restart(self) -> None:
        await self._signalled(Request.RESTART)

    @workflow.signal
    async def delete(self) -> None:
        """A delete preempts an in-flight create, start or stop."""
        await self._signalled(Request.DELETE)

    async def _signalled(self, what: Request) -> None:
        if not workflow.patched(REQUESTS):  # recorded when signals were only hints
            self._wake = self._requested = True
            if what is Request.DELETE:
                self._delete_requested = True
                self._preempt()
            return
        await self._apply(what, "signal")

    # -- updates: the same requests, with an answer ---------------------------------------
    @workflow.update(name="start")
    async def start_request(self) -> RequestAccepted:
        return await self._answer(Request.START)

    @start_request.validator
    def _validate_start(self) -> None:
        self._validate(Request.START)

    @workflow.update(name="stop")
    async def stop_request(self) -> RequestAccepted:
        return await self._answer(Request.STOP)

    @stop_request.validator
    def _validate_stop(self) -> None:
        self._validate(Request.STOP)

    @workflow.update(name="restart")
    async def restart_request(self) -> RequestAccepted:
        return await self._answer(Request.RESTART)

    @restart_request.validator
    def _validate_restart(self) -> None:
        self._validate(Request.RESTART)

    @workflow.update(name="delete")
    async def delete_request(self) -> RequestAccepted:
        return await self._answer(Request.DELETE)

    @delete_request.validator
    def _validate_delete(self) -> None:
        self._validate(Request.DELETE)

    def _validate(self, what: Request) -> None:
        """Reject, before it enters history, a request the rules refuse in the state last
        seen; the activity checks again against MongoDB (the source of truth)."""
        if self._seen is not None:
            check_request(what, *self._seen)

    async def _answer(self, what: Request) -> RequestAccepted:
        outcome = await self._apply(what, "update")
        if not outcome.accepted or outcome.state is None or outcome.phase is None:
            raise ApplicationError(
                outcome.refusal or f"cannot {what.value}", type="RequestRefused", non_retryable=True
            )
        return RequestAccepted(
            gateway_id=outcome.gateway_id,
            request=what,
            state=outcome.state,
            phase=outcome.phase,
            operation=decide(outcome.state, outcome.phase).action.value,
        )

    async def _apply(self, what: Request, source: str) -> RequestOutcome:
        """Write the request as the intent (a compare-and-set, by an activity), then wake
        the loop; a refusal is recorded where a user looks and changes nothing else."""
        gid = workflow.info().workflow_id.removeprefix("gateway/")
        async with self._requests:
            outcome = await call(
                GatewayActivities.apply_request,
                RequestInput(gateway_id=gid, request=what, source=source),
                summary=f"{what.value} ({source}): check the request, write the intent",
            )
        if not outcome.accepted:
            why = f"refused {what.value} ({source}): {outcome.refusal}"
            workflow.set_current_details(why)
            self._note(last_error=why, detail=why)
            return outcome
        if outcome.state is not None and outcome.phase is not None:
            self._seen = (outcome.state, outcome.phase)
        self._wake = self._requested = True
        if what is Request.DELETE:
            self._delete_requested = True
            self._preempt()
        return outcome

    def _preempt(self) -> None:
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
        self._backoff = input.backoff
        self._failures = input.backoff.failures if input.backoff else 0
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
            self._seen = None if intent.malformed else (intent.state, intent.phase)
            decision = None if intent.malformed else decide(intent.state, intent.phase)
            converged = decision is not None and decision.action is GatewayAction.NONE
            if converged:
                self._backoff = None
            # On any path once the history is long (before INTENT_INTEGRITY: converged only).
            if self._time_to_continue(actions, input) and (
                converged or workflow.patched(INTENT_INTEGRITY)
            ):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(input.model_copy(update={"backoff": self._backoff}))
            if decision is None:
                self._note(last_error=intent.malformed)
                await self._idle(f"malformed document: {intent.malformed}")
                continue
            if converged:
                if self._drift is not None and workflow.patched(drift.PATCH):
                    await self._repair_drift(intent, input)
                    continue
                await self._idle(f"converged: {intent.state.value} / {intent.phase.value}")
                continue
            if self._backoff is not None and not self._retry_due(intent):
                await self._wait_for_retry(self._backoff)
                continue
            actions += 1
            self._progress.actions_this_run = actions
            failure = await self._run_action(intent, decision, input)
            if failure is None:
                self._failures = 0
                self._backoff = None
            else:
                self._failures += 1
                await self._failed(intent, decision.action, failure)

    async def _repair_drift(self, intent: Intent, input: GatewayInput) -> None:
        """Re-run the phase's operation for the drift check's finding; a failure is
        recorded as the last error (the next drift check finds what is still wrong)."""
        finding, self._drift = self._drift, None
        assert finding is not None
        failure = await drift.repair(finding, intent, lambda i, d: self._run_action(i, d, input))
        if failure is not None:
            action = drift.REPAIR_BY_PHASE[intent.phase]
            await self._record_failure(intent.gateway_id, action, failure, None)

    def _time_to_continue(self, actions: int, input: GatewayInput) -> bool:
        info = workflow.info()
        return (
            actions >= input.max_actions_per_run
            or info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= input.max_history_length
            or self._idle_expired
        )

    async def _failed(self, intent: Intent, action: GatewayAction, why: str) -> None:
        """Record the failure and when the next attempt is: 1 min, doubling to 30 min."""
        gid = intent.gateway_id
        if not workflow.patched(INTENT_INTEGRITY):
            await self._record_failure(gid, action, why, None)
            await self._back_off(action)
            return
        delay = min(_BACKOFF_FIRST * 2 ** (self._failures - 1), _BACKOFF_MAX)
        retry_at = workflow.now() + delay
        self._backoff = Backoff(failures=self._failures, retry_at=retry_at, state=intent.state)
        await self._record_failure(gid, action, why, retry_at)

    async def _record_failure(
        self, gid: str, action: GatewayAction, why: str, retry_at: datetime | None
    ) -> None:
        self._note(last_error=why, detail=f"{action.value} failed: {why}")
        await call(
            GatewayActivities.record_progress,
            ProgressUpdate(gateway_id=gid, error=why, next_attempt_at=retry_at),
            summary=f"record failure of {action.value}",
        )

    def _retry_due(self, intent: Intent) -> bool:
        """After a failure, try again once the backoff is over, when the intent changed,
        or on a new request (which clears `progress.nextAttemptAt`). A sweep's signal
        alone does not cut the backoff short."""
        backoff = self._backoff
        return (
            backoff is None
            or workflow.now() >= backoff.retry_at
            or intent.state is not backoff.state
            or intent.next_attempt_at is None
        )

    async def _wait_for_retry(self, backoff: Backoff) -> None:
        when = backoff.retry_at.isoformat(timespec="seconds")
        why = f"failed {backoff.failures} time(s); next attempt at {when} or on a new request"
        workflow.set_current_details(why)
        self._note(detail=why, action=None)
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._wake, timeout=backoff.retry_at - workflow.now()
            )

    async def _back_off(self, action: GatewayAction) -> None:
        """The backoff of histories recorded before INTENT_INTEGRITY: a request signal cut
        it short."""
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
        """Until a signal; after a day without one, the loop continues as new."""
        workflow.set_current_details(why)
        self._note(detail=why, action=None)
        if not workflow.patched(INTENT_INTEGRITY):
            await workflow.wait_condition(lambda: self._wake)
            return
        try:
            await workflow.wait_condition(lambda: self._wake, timeout=_IDLE_LOOK_AGAIN)
        except TimeoutError:
            self._idle_expired = True

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

    async def _run_action(
        self, intent: Intent, decision: Decision, input: GatewayInput
    ) -> str | None:
        """Run one action as a task a delete can cancel; the reason when it failed."""
        gid = intent.gateway_id
        if decision.refusal:
            refused = await self._set_state(
                gid,
                GatewayState.DELETED,
                f"refused {intent.state.value}: {decision.refusal}",
                expected=intent.state,
            )
            if not refused and workflow.patched(INTENT_INTEGRITY):
                return None  # the intent changed meanwhile: read it again
            intent = intent.model_copy(update={"state": GatewayState.DELETED})
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
            return None
        except OperationStopped as stopped:
            self._note(detail=f"{decision.action.value} stopped: {stopped}")
            return None
        except (ActivityError, ChildWorkflowError, ApplicationError) as err:
            return reason(err)
        finally:
            self._action_task = None
            self._action = None
        if decision.settle_state is not None:
            await self._set_state(gid, decision.settle_state, None, expected=intent.state)
        return None

    def _stop_if_deleted(self) -> None:
        """After each step: a delete that arrived while a short step ran (a cancellation
        cannot interrupt an activity that does not heartbeat) stops the operation here."""
        if (
            self._delete_requested
            and self._action is not GatewayAction.DELETE
            and workflow.patched(INTENT_INTEGRITY)
        ):
            raise OperationStopped("preempted by a delete")

    async def _step(
        self, op: Operation, step: Step[In], arg: In, *, timeout: timedelta | None = None
    ) -> None:
        await run_step(op, step, arg, timeout=timeout)
        self._stop_if_deleted()

    async def _base(self, op: Operation, intent: Intent) -> None:
        """The base of a gateway, step by step (idempotent, so start repairs drift)."""
        for step in ops.BASE:
            await self._step(op, step, op.input(step, intent.gateway_id, intent.region))

    async def _read_intent(self, gid: str) -> Intent:
        return await call(GatewayActivities.read_intent, gid, summary=f"read intent of {gid}")

    async def _set_state(
        self, gid: str, state: GatewayState, why: str | None, *, expected: GatewayState
    ) -> bool:
        """A compare-and-set on `expected`, the state the operation started from."""
        return await call(
            GatewayActivities.set_state,
            StateUpdate(gateway_id=gid, state=state, reason=why, expected_state=expected),
            summary=f"state -> {state.value}" + (f" ({why})" if why else ""),
        )

    async def _begin(self, intent: Intent, operation: Operation) -> None:
        """Enter the operation's phase, with a fresh progress record of its steps, only
        while the state is still the intent the operation was decided on."""
        gid, phase = intent.gateway_id, operation.during
        began = await call(
            GatewayActivities.begin_operation,
            PhaseUpdate(
                gateway_id=gid,
                phase=phase,
                operation=operation.name,
                total_steps=operation.total,
                expected_state=intent.state,
            ),
            summary=f"{operation.name}: phase -> {phase.value} ({operation.total} steps)",
        )
        if not began and workflow.patched(INTENT_INTEGRITY):
            raise OperationStopped(f"the state is no longer {intent.state.value}")
        self._note(phase=phase)
        search.upsert(gid, phase=phase.value)

    async def _create(self, intent: Intent) -> None:
        await self._begin(intent, ops.CREATE)
        await self._base(ops.CREATE, intent)

    async def _start(self, intent: Intent, input: GatewayInput) -> None:
        """The base again (idempotent, so a start repairs drift), then the instance."""
        op, gid = ops.START, intent.gateway_id
        await self._begin(intent, op)
        await self._base(op, intent)
        resume = ops.RESUME_TRIGGERS
        await self._step(
            op,
            resume,
            TriggersInput(**op.input(resume, gid, intent.region).model_dump(), suspend=False),
        )
        await self._bring_up(intent, input, op, ops.APPLY_INSTANCE, restarted_at=None)

    async def _restart(self, intent: Intent, input: GatewayInput) -> None:
        """A rolling update of the same Deployment, not a stop and a start."""
        op = ops.RESTART
        await self._begin(intent, op)
        await self._base(op, intent)
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

        await self._step(op, apply, instance(apply))
        ready = ops.WAIT_READY
        if workflow.patched(INTENT_INTEGRITY):
            await self._wait_ready(intent, op, instance(ready), input.start_timeout_seconds)
            return
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
            await self._set_state(
                gid, GatewayState.STOPPED, f"start timed out: {reason(err)}", expected=intent.state
            )

    async def _wait_ready(
        self, intent: Intent, op: Operation, arg: InstanceInput, timeout: float
    ) -> None:
        """Look at the Deployment after pauses on the workflow's clock (a timer, so a
        delete cancels it at once and the time-skipping test server can skip it); not
        ready by the deadline: back to Stopped, with the reason, unless the intent moved.
        """
        gid, ns = intent.gateway_id, naming.namespace(intent.gateway_id)
        deadline = workflow.now() + timedelta(seconds=timeout)
        pause = _READY_PAUSE_FIRST
        workflow.set_current_details(op.details(ops.WAIT_READY))
        while True:
            check = await call(
                InstanceActivities.check_instance_ready,
                arg,
                summary=f"is Deployment {ns}/{gid} available?",
            )
            if check.ready:
                return
            self._stop_if_deleted()
            left = deadline - workflow.now()
            if left <= timedelta(0):
                why = f"Deployment {ns}/{gid} not ready after {timeout:g}s: {check.why}"
                await self._set_state(
                    gid, GatewayState.STOPPED, f"start timed out: {why}", expected=intent.state
                )
                return
            await workflow.sleep(min(pause, left))
            pause = min(pause * 2, _READY_PAUSE_MAX)

    async def _stop(self, intent: Intent) -> None:
        """Routes go before the CronJobs are suspended, CronJobs before the pods stop."""
        op, gid, region = ops.STOP, intent.gateway_id, intent.region
        await self._begin(intent, op)
        domain, suspend, instance = ops.DOMAIN_INACTIVE, ops.SUSPEND_TRIGGERS, ops.REMOVE_INSTANCE
        await self._step(op, domain, op.input(domain, gid, region))
        await self._step(
            op, suspend, TriggersInput(**op.input(suspend, gid, region).model_dump(), suspend=True)
        )
        await self._step(op, instance, op.input(instance, gid, region))

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
            if workflow.patched(INTENT_INTEGRITY):
                # Its result, so a deletion that failed is a failure here too.
                await call(
                    GatewayActivities.wait_for_deletion,
                    gid,
                    summary=f"wait for the result of gateway-deletion/{gid}",
                    waits=True,
                )
                return
            while (await self._read_intent(gid)).exists:
                await workflow.sleep(timedelta(seconds=5))
