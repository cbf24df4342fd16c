"""GatewayWorkflow: the one entity workflow that owns every transition of a gateway.

Temporal runs one workflow per id, which replaces the original `lockedAt` lock. The
intent is read from MongoDB (the source of truth). The signals and updates `start`,
`stop`, `restart` and `delete` are requests, like the CLI's: each is checked against the
request rules and written as the intent with a compare-and-set (an activity), or refused
and recorded; a `delete` also preempts the operation in flight. `reconcile` is only a
hint to look again.

`run` is the loop: read the intent, then continue as new, idle, back off or run the
operation the decision names (workflows/operations.py, run by workflows/steps.py). An
operation begins only while the state is still the one it was decided on, and stops
after its current step when a delete arrives (docs/guarantees.md).
"""

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
)

with workflow.unsafe.imports_passed_through():
    from activities.gateway import GatewayActivities
    from gatewayflow.domain import naming
    from gatewayflow.domain.errors import reason
    from gatewayflow.domain.messages import (
        RETIRE_SIGNAL,
        Backoff,
        DriftFinding,
        GatewayInput,
        GatewayProgress,
        GuardNotice,
        GuardRequest,
        Intent,
        ProgressUpdate,
        RequestAccepted,
        RequestInput,
        RequestOutcome,
    )
    from gatewayflow.domain.states import GatewayPhase, GatewayState
    from gatewayflow.domain.transitions import (
        Decision,
        GatewayAction,
        Request,
        check_request,
        decide,
    )
    from workflows import backoff, guard, handover, intents, search
    from workflows import drift_repair as drift
    from workflows import operations as ops
    from workflows.calls import call
    from workflows.deletion import delete_in_child
    from workflows.operations import Operation
    from workflows.steps import OperationStopped, run_operation

# A workflow that hears nothing for this long reads the intent again in a fresh run.
_IDLE_LOOK_AGAIN = timedelta(hours=24)


@workflow.defn(name="GatewayWorkflow")
class GatewayWorkflow:
    def __init__(self) -> None:
        self._wake = False
        self._failures = 0
        self._backoff: Backoff | None = None
        self._idle_expired = False
        self._delete_requested = False
        self._action_task: asyncio.Task[None] | None = None
        self._action: GatewayAction | None = None
        self._progress: GatewayProgress | None = None
        self._drift: DriftFinding | None = None
        self._guard_news = False
        # The (state, phase) last read or written: what an update's validator checks.
        self._seen: tuple[GatewayState, GatewayPhase] | None = None
        # Requests are written one at a time, in the order they arrived.
        self._requests = asyncio.Lock()
        # The workflow id to hand over to (RETIRE_SIGNAL), once the current action is done.
        self._successor: str | None = None

    # -- signals: requests, and a hint --------------------------------------------------
    @workflow.signal
    def reconcile(self) -> None:
        """Only a hint: look at MongoDB again."""
        self._wake = True

    @workflow.signal
    async def start(self) -> None:
        await self._apply(Request.START, "signal")

    @workflow.signal
    async def stop(self) -> None:
        await self._apply(Request.STOP, "signal")

    @workflow.signal
    async def restart(self) -> None:
        await self._apply(Request.RESTART, "signal")

    @workflow.signal
    async def delete(self) -> None:
        """A delete preempts an in-flight create, start or stop."""
        await self._apply(Request.DELETE, "signal")

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
        _installation, gid = naming.workflow_scope(workflow.info().workflow_id)
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
        self._wake = True
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

    @workflow.signal(name=guard.SIGNAL)
    def deletion_guard(self, notice: GuardNotice) -> None:
        """From `gatewayflow deletions release|cancel`: the guard's verdict on the held
        deletion changed; ask it again."""
        self._note(detail=f"deletion guard: {notice.action} ({notice.reason})")
        self._guard_news = True

    def _reset_guard_news(self) -> None:
        self._guard_news = False

    @workflow.signal(name=RETIRE_SIGNAL)
    def retire(self, successor: str) -> None:
        """For a run of an id of the versions before installations (`gateway/<id>`): hand
        the gateway over to `successor`, its id in this installation, once idle. A run of
        an installation's id ignores it, as does a successor for another gateway."""
        installation, gid = naming.workflow_scope(workflow.info().workflow_id)
        wanted, successor_gid = naming.workflow_scope(successor)
        if not installation and wanted and successor_gid == gid:
            self._successor = successor
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
        info = workflow.info()
        if naming.workflow_scope(info.workflow_id)[0] and info.continued_run_id is None:
            await handover.take_over(gid)
        while True:
            if self._successor is not None:
                carried = input.model_copy(update={"backoff": self._backoff})
                return await handover.hand_over(GatewayWorkflow.run, carried, self._successor)
            self._wake = False
            intent = await self._read_intent(gid)
            if not intent.exists:
                search.upsert(
                    gid, state=GatewayState.DELETED.value, phase=GatewayPhase.DELETED.value
                )
                self._note(detail="the ApiGateway document is gone")
                await workflow.wait_condition(workflow.all_handlers_finished)
                return f"gateway {gid} is gone"
            decision = None if intent.malformed else decide(intent.state, intent.phase)
            converged = decision is not None and decision.action is GatewayAction.NONE
            if converged:
                self._backoff = None
            if self._time_to_continue(actions, input):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(input.model_copy(update={"backoff": self._backoff}))
            if decision is None:
                self._note(last_error=intent.malformed)
                await self._idle(f"malformed document: {intent.malformed}")
            elif converged and self._drift is not None:
                await self._repair_drift(intent, input)
            elif converged:
                await self._idle(f"converged: {intent.state.value} / {intent.phase.value}")
            elif not backoff.retry_due(self._backoff, intent):
                await self._wait_for_retry()
            else:
                actions += 1
                self._progress.actions_this_run = actions
                await self._act(intent, decision, input)

    async def _read_intent(self, gid: str) -> Intent:
        """The intent in MongoDB, shown in the search attributes and the progress query."""
        intent = await intents.read(gid)
        if intent.exists:
            search.upsert(gid, state=intent.state.value, phase=intent.phase.value)
            self._note(state=intent.state, phase=intent.phase)
            self._seen = None if intent.malformed else (intent.state, intent.phase)
            if not intent.malformed and intent.state is not GatewayState.DELETED:
                # A delete heard earlier asked for a deletion that is over without one
                # (a held deletion an operator cancelled): it stops nothing any more.
                self._delete_requested = False
        return intent

    async def _act(self, intent: Intent, decision: Decision, input: GatewayInput) -> None:
        """Run the decided action; after a failure, record when it is tried again."""
        failure = await self._run_action(intent, decision, input)
        if failure is None:
            self._failures = 0
            self._backoff = None
            return
        self._failures += 1
        self._backoff = backoff.after_failure(self._failures, intent)
        retry_at = self._backoff.retry_at
        await self._record_failure(intent.gateway_id, decision.action, failure, retry_at=retry_at)

    async def _repair_drift(self, intent: Intent, input: GatewayInput) -> None:
        """Re-run the phase's operation for the drift check's finding; a failure is
        recorded as the last error (the next drift check finds what is still wrong)."""
        finding, self._drift = self._drift, None
        assert finding is not None
        failure = await drift.repair(finding, intent, lambda i, d: self._run_action(i, d, input))
        if failure is not None:
            action = drift.REPAIR_BY_PHASE[intent.phase]
            await self._record_failure(intent.gateway_id, action, failure, retry_at=None)

    def _time_to_continue(self, actions: int, input: GatewayInput) -> bool:
        return (
            actions >= input.max_actions_per_run or self._history_long(input) or self._idle_expired
        )

    def _history_long(self, input: GatewayInput) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= input.max_history_length
        )

    async def _record_failure(
        self, gid: str, action: GatewayAction, why: str, *, retry_at: datetime | None
    ) -> None:
        """Where a user looks, with when the next attempt is (none for a drift repair)."""
        self._note(last_error=why, detail=f"{action.value} failed: {why}")
        await call(
            GatewayActivities.record_progress,
            ProgressUpdate(gateway_id=gid, error=why, next_attempt_at=retry_at),
            summary=f"record failure of {action.value}",
        )

    async def _wait_for_retry(self) -> None:
        assert self._backoff is not None
        retry_at, failures = self._backoff.retry_at, self._backoff.failures
        when = retry_at.isoformat(timespec="seconds")
        why = f"failed {failures} time(s); next attempt at {when} or on a new request"
        await self._wait(why, retry_at - workflow.now())

    async def _idle(self, why: str) -> None:
        """Until a signal; after a day without one, the loop continues as new."""
        if await self._wait(why, _IDLE_LOOK_AGAIN):
            self._idle_expired = True

    async def _wait(self, why: str, timeout: timedelta) -> bool:
        """Until a signal wakes the loop, or the timeout passes (then True)."""
        workflow.set_current_details(why)
        self._note(detail=why, action=None)
        try:
            await workflow.wait_condition(lambda: self._wake, timeout=timeout)
        except TimeoutError:
            return True
        return False

    def _note(self, **progress: object) -> None:
        """Update what the `progress` query answers."""
        if self._progress is not None:
            for name, value in progress.items():
                setattr(self._progress, name, value)

    async def _run_action(
        self, intent: Intent, decision: Decision, input: GatewayInput
    ) -> str | None:
        """Run one action as a task a delete can cancel; the reason when it failed."""
        gid = intent.gateway_id
        if decision.refusal:
            refused = await intents.set_state(
                gid,
                GatewayState.DELETED,
                f"refused {intent.state.value}: {decision.refusal}",
                expected=intent.state,
            )
            if not refused:
                return None  # the intent changed meanwhile: read it again
            intent = intent.model_copy(update={"state": GatewayState.DELETED})
        operation = ops.FOR_ACTION[decision.action]
        if operation is ops.DELETE:
            self._delete_requested = False  # the deletion a delete asks for runs now
        self._action = decision.action
        self._note(action=decision.action.value, detail=f"{decision.action.value} in progress")
        self._action_task = asyncio.create_task(self._operate(operation, intent, input))
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
            await intents.set_state(gid, decision.settle_state, None, expected=intent.state)
        return None

    async def _operate(self, operation: Operation, intent: Intent, input: GatewayInput) -> None:
        """Begin the operation, then run its steps (a deletion's in GatewayDeletion, once
        the deletion guard admits it: workflows/guard.py). A start not ready in time goes
        back to Stopped, with the reason, unless the intent moved meanwhile."""
        gid, region = intent.gateway_id, intent.region
        if operation is ops.DELETE and workflow.patched(guard.PATCH):
            passage = await guard.admission(
                GuardRequest(gateway_id=gid, region=region, phase=intent.phase),
                lambda: self._guard_news,
                self._reset_guard_news,
                lambda: self._history_long(input),
            )
            if passage is not guard.Passage.ADMITTED:
                raise OperationStopped(passage.value)
        await intents.begin(operation, intent)
        self._note(phase=operation.during)
        if operation is ops.DELETE:
            await delete_in_child(gid, region)
            return
        ran = await run_operation(
            operation,
            gid,
            region,
            start_timeout=input.start_timeout_seconds,
            after_step=self._stop_if_deleted,
        )
        if ran.not_ready is not None:
            why = f"start timed out: {ran.not_ready}"
            await intents.set_state(gid, GatewayState.STOPPED, why, expected=intent.state)

    def _stop_if_deleted(self) -> None:
        """After each step: a delete that arrived while a short step ran (a cancellation
        cannot interrupt an activity that does not heartbeat) stops the operation here."""
        if self._delete_requested and self._action is not GatewayAction.DELETE:
            raise OperationStopped("preempted by a delete")
