"""Each step records where the gateway is, so the Mongo document alone tells the story.

The bookkeeping lives here, in two decorators, and not in the activity bodies.
"""

import functools
import time
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


# A wait that lasts longer than this is recorded in progress.waitingOn; a shorter one is
# not worth a write (the step's own name is there already).
RECORD_WAIT_AFTER = 1.0


def heartbeat(detail: str) -> None:
    """Passed to adapter waits: keeps the activity alive and makes it cancellable."""
    activity.heartbeat(detail)


class Waiting:
    """`on_wait` of a step's long wait: heartbeats on every call and, once the wait has
    lasted RECORD_WAIT_AFTER seconds, records what the step waits on (the adapter calls it
    at least every few seconds). The step's completion record clears it."""

    def __init__(self, deps: Deps, gateway_id: str, what: str) -> None:
        self._deps = deps
        self._gateway_id = gateway_id
        self._what = what
        self._began = time.monotonic()
        self._recorded = False

    def __call__(self, detail: str) -> None:
        heartbeat(detail)
        if not self._recorded and time.monotonic() - self._began >= RECORD_WAIT_AFTER:
            self._deps.gateways.record_progress(self._gateway_id, waiting_on=self._what)
            self._recorded = True


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
