"""Reading intent and recording phase, state and progress of the ApiGateway document."""

from temporalio import activity

from activities.errors import translated
from activities.recording import complete_step
from gatewayflow.deps import Deps
from gatewayflow.domain.messages import (
    Intent,
    PhaseUpdate,
    ProgressUpdate,
    StateUpdate,
    StepInput,
    StepResult,
)
from gatewayflow.domain.transitions import begins_from
from gatewayflow.store.errors import MalformedDocument


class GatewayActivities:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    @activity.defn
    @translated
    def read_intent(self, gateway_id: str) -> Intent:
        try:
            gw = self.deps.gateways.get(gateway_id)
        except MalformedDocument as exc:
            return Intent(gateway_id=gateway_id, exists=True, malformed=str(exc))
        if gw is None:
            return Intent(gateway_id=gateway_id, exists=False)
        region = self.deps.gateways.pin_region(gw)
        return Intent(
            gateway_id=gateway_id, exists=True, state=gw.state, phase=gw.phase, region=region
        )

    @activity.defn
    @translated
    def begin_operation(self, update: PhaseUpdate) -> bool:
        """Enter the operation's phase and start a fresh progress record."""
        self.deps.gateways.reset_progress(update.gateway_id, update.operation, update.total_steps)
        return self.deps.gateways.set_phase(
            update.gateway_id, update.phase, expected=begins_from(update.phase)
        )

    @activity.defn
    @translated
    def set_state(self, update: StateUpdate) -> bool:
        return self.deps.gateways.set_state_if(
            update.gateway_id, update.state, expected=update.expected_state, reason=update.reason
        )

    @activity.defn
    @translated
    def record_progress(self, update: ProgressUpdate) -> None:
        self.deps.gateways.record_progress(
            update.gateway_id,
            step=update.step,
            step_number=update.step_number,
            waiting_on=update.waiting_on,
            error=update.error,
        )

    @activity.defn
    @translated
    def record_step(self, step: StepInput) -> StepResult:
        complete_step(self.deps, step)
        return StepResult(step=step.step)
