"""Each step records where the gateway is, so the Mongo document alone tells the story.

The bookkeeping lives here, in two decorators, and not in the activity bodies.
"""

import functools
from collections.abc import Callable
from typing import Protocol, TypeVar

from temporalio import activity

from gatewayflow.deps import Deps
from gatewayflow.domain.messages import StepInput, StepResult
from gatewayflow.domain.transitions import completes_from


class HasDeps(Protocol):
    deps: Deps


S = TypeVar("S", bound=HasDeps)
In = TypeVar("In", bound=StepInput)
StepMethod = Callable[[S, In], StepResult]


def heartbeat(detail: str) -> None:
    """Passed to adapter waits: keeps the activity alive and makes it cancellable."""
    activity.heartbeat(detail)


def begin_step(deps: Deps, step: StepInput) -> None:
    """Progress names the step while it runs. Only the first step of an operation writes
    this: each later one was named by the completion record of the step before it."""
    if step.number == 1:
        deps.gateways.record_progress(step.gateway_id, step=step.step, step_number=step.number)


def complete_step(deps: Deps, step: StepInput) -> bool:
    """One conditional write: the step completed, the phase, and the next step named as
    current. A step of an operation that was preempted moves nothing."""
    return deps.gateways.complete_step(
        step.gateway_id,
        step.step,
        step.phase,
        expected=completes_from(step.phase),
        number=step.number,
        next_step=step.next_step,
    )


def recorded(fn: StepMethod[S, In]) -> StepMethod[S, In]:
    """A step: its work, then one write recording it as completed."""

    @functools.wraps(fn)
    def wrapper(self: S, step: In) -> StepResult:
        begin_step(self.deps, step)
        result = fn(self, step)
        complete_step(self.deps, step)
        return result

    return wrapper


def recorded_before(fn: StepMethod[S, In]) -> StepMethod[S, In]:
    """A step whose work removes the document its record lives in: recorded first."""

    @functools.wraps(fn)
    def wrapper(self: S, step: In) -> StepResult:
        begin_step(self.deps, step)
        complete_step(self.deps, step)
        return fn(self, step)

    return wrapper
