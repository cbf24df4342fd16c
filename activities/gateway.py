"""Reading intent and recording phase, state and progress of the ApiGateway document."""

import asyncio

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from activities.base import Activities, activity_method
from activities.errors import validate_input
from activities.recording import complete_step
from gatewayflow.domain import naming
from gatewayflow.domain.errors import DeletionFailed, reason, to_application_error
from gatewayflow.domain.images import check_runtime_image
from gatewayflow.domain.messages import (
    RETIRE_SIGNAL,
    HandOver,
    Intent,
    PhaseUpdate,
    ProgressUpdate,
    RequestInput,
    RequestOutcome,
    StateUpdate,
    StepInput,
    StepResult,
)
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import RequestRefused, begins_from
from gatewayflow.metrics import REQUESTS_REFUSED
from gatewayflow.store.errors import MalformedDocument, UnknownGateway


class GatewayActivities(Activities):
    @activity_method
    def read_intent(self, gateway_id: str) -> Intent:
        try:
            gw = self.deps.gateways.get(gateway_id)
        except MalformedDocument as exc:
            return Intent(gateway_id=gateway_id, exists=True, malformed=str(exc))
        if gw is None:
            return Intent(gateway_id=gateway_id, exists=False)
        region = self.deps.gateways.pin_region(gw)
        return Intent(
            gateway_id=gateway_id,
            exists=True,
            state=gw.state,
            phase=gw.phase,
            region=region,
            next_attempt_at=gw.progress.next_attempt_at,
        )

    @activity_method
    def begin_operation(self, update: PhaseUpdate) -> bool:
        """Enter the operation's phase with a fresh progress record, only while the state
        is still `expected_state`; False (and nothing written) when it is not: the
        operation must not run, the intent it was decided on is gone. A start or restart
        of a runtime image the settings do not allow is refused before it begins."""
        if update.phase is GatewayPhase.STARTING:
            image = self.deps.gateways.require(update.gateway_id).instance.image
            check_runtime_image(image, self.deps.settings.allowed_runtime_images)
        return self.deps.gateways.begin(
            update.gateway_id,
            update.phase,
            state=GatewayState(update.expected_state),
            from_phases=begins_from(update.phase),
            operation=update.operation,
            total_steps=update.total_steps,
        )

    @activity_method
    def set_state(self, update: StateUpdate) -> bool:
        return self.deps.gateways.set_state_if(
            update.gateway_id, update.state, expected=update.expected_state, reason=update.reason
        )

    @activity_method
    def apply_request(self, req: RequestInput) -> RequestOutcome:
        """A request sent to the workflow, checked against the same rules as the CLI's and
        written as the intent with a compare-and-set; a refusal writes nothing but
        `progress.lastError` (and counts it)."""
        gid, what = req.gateway_id, req.request
        try:
            gateway, written = self.deps.gateways.request(gid, what, signal=req.source == "signal")
        except (RequestRefused, UnknownGateway, MalformedDocument) as exc:
            why = str(exc)
            REQUESTS_REFUSED.labels(request=what.value, source=req.source).inc()
            activity.logger.warning("%s %s refused for %s: %s", req.source, what.value, gid, why)
            if not isinstance(exc, UnknownGateway):
                note = f"refused {what.value} ({req.source}): {why}"
                self.deps.gateways.record_progress(gid, error=note)
            return RequestOutcome(gateway_id=gid, request=what, accepted=False, refusal=why)
        return RequestOutcome(
            gateway_id=gid,
            request=what,
            accepted=True,
            state=gateway.state,
            phase=gateway.phase,
            written=written,
        )

    @activity_method
    def record_progress(self, update: ProgressUpdate) -> None:
        self.deps.gateways.record_progress(
            update.gateway_id,
            step=update.step,
            step_number=update.step_number,
            waiting_on=update.waiting_on,
            error=update.error,
            next_attempt_at=update.next_attempt_at,
        )

    @activity_method
    def record_step(self, step: StepInput) -> StepResult:
        complete_step(self.deps, step)
        return StepResult(step=step.step)

    @activity.defn
    async def unscoped_run_active(self, handover: HandOver) -> bool:
        """Whether the gateway's workflow still runs under the id it had before
        installations (`gateway/<id>`) on this task queue; if so, it is asked to hand over
        (RETIRE_SIGNAL) once its current operation is done. A run of another task queue
        is another installation's: not this gateway's, left alone."""
        validate_input((handover,))
        wid = naming.unscoped_gateway_workflow_id(handover.gateway_id)
        handle = activity.client().get_workflow_handle(wid)
        try:
            described = await handle.describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return False
            raise
        if (
            described.status is not WorkflowExecutionStatus.RUNNING
            or described.task_queue != activity.info().task_queue
        ):
            return False
        await handle.signal(RETIRE_SIGNAL, handover.successor)
        return True

    @activity.defn
    async def wait_for_deletion(self, gateway_id: str) -> None:
        """The result of the gateway's running deletion (started by an earlier run):
        returns when it succeeded, fails when it failed; heartbeats meanwhile."""
        validate_input((gateway_id,))
        caller = activity.info().workflow_id or ""  # the gateway's: its deletion's scope
        wid = naming.related_workflow_id(caller, naming.DELETION_WORKFLOW, gateway_id)
        result = asyncio.ensure_future(activity.client().get_workflow_handle(wid).result())
        try:
            while not result.done():
                activity.heartbeat(f"waiting for the result of {wid}")
                await asyncio.wait({result}, timeout=2)
            result.result()
        except WorkflowFailureError as exc:
            failed = DeletionFailed(f"{wid} failed: {reason(exc.cause)}")
            raise to_application_error(failed) from exc
        finally:
            result.cancel()
