"""Each step records where the gateway is, so the Mongo document alone tells the story."""

from temporalio import activity

from gatewayflow.deps import Deps
from gatewayflow.domain.messages import StepInput
from gatewayflow.domain.transitions import completes_from


def heartbeat(detail: str) -> None:
    """Passed to adapter waits: keeps the activity alive and makes it cancellable."""
    activity.heartbeat(detail)


def begin_step(deps: Deps, step: StepInput) -> None:
    deps.gateways.record_progress(step.gateway_id, step=step.step, step_number=step.number)


def complete_step(deps: Deps, step: StepInput) -> bool:
    """Conditional: a step of an operation that was preempted does not move the phase."""
    return deps.gateways.set_phase(
        step.gateway_id, step.phase, expected=completes_from(step.phase), step=step.step
    )
