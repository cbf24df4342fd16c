"""What every activity class and method has in common: the worker's shared connections,
inputs checked and errors translated, and, for a step of an operation, its record.

An activity's type name is its method's name: workflow histories refer to it.
"""

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from temporalio import activity

from activities.errors import translated
from activities.recording import In, S, StepMethod, recorded
from gatewayflow.deps import Deps

P = ParamSpec("P")
R = TypeVar("R")


class Activities:
    """A group of activities bound to one worker's `Deps`."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps


def activity_method(fn: Callable[P, R]) -> Callable[P, R]:
    """An activity: its input checked, our errors translated for the retry policy."""
    return activity.defn(translated(fn))


def step_activity(fn: StepMethod[S, In]) -> StepMethod[S, In]:
    """A step of an operation: an activity whose completion is recorded on the gateway."""
    return activity_method(recorded(fn))
