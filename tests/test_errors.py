"""The error taxonomy: every error of ours is transient or permanent, and everything that
decides about retries (the activity translation, the retry policy, the metrics, the
workflows) agrees with the classes. Pure: no stack needed."""

import importlib
import json
import pkgutil
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

import activities
import gatewayflow
import workflows
from activities.errors import translated
from gatewayflow.cluster.errors import (
    ClusterError,
    NotOwnedError,
    NotReadyError,
    StillPresentError,
    TransientClusterError,
)
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.domain.errors import (
    GatewayflowError,
    PermanentError,
    TransientError,
    failed_with,
    is_permanent_failure,
    reason,
    to_application_error,
)
from gatewayflow.store.errors import StoreError, UnknownGateway
from workflows.policies import ACTIVITY_ERRORS, STEP_RETRY

HISTORIES = Path(__file__).parent / "histories"
# Groupings: never raised themselves, their subclasses are classified.
GROUPS = {GatewayflowError, TransientError, PermanentError, ClusterError, StoreError}
# The layers activities stand on: what an activity can raise.
BELOW_ACTIVITIES = (
    "gatewayflow.domain.",
    "gatewayflow.store.",
    "gatewayflow.cluster.",
    "gatewayflow.settings",
)


def modules(package: ModuleType) -> list[ModuleType]:
    found = [package]
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        found.append(importlib.import_module(info.name))
    return found


def project_errors() -> set[type[BaseException]]:
    """Every exception class defined in the runtime packages."""
    return {
        obj
        for package in (gatewayflow, workflows, activities)
        for module in modules(package)
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseException)
        and obj.__module__ == module.__name__
    }


def test_every_error_is_classified_exactly_once() -> None:
    errors = project_errors() - GROUPS
    assert len(errors) >= 10
    for cls in errors:
        assert issubclass(cls, GatewayflowError), f"{cls.__qualname__} is not a GatewayflowError"
        kinds = [kind for kind in (TransientError, PermanentError) if issubclass(cls, kind)]
        assert len(kinds) == 1, f"{cls.__qualname__} is classified as {kinds}"


def test_retry_policy_agrees_with_the_classes() -> None:
    below = {
        cls for cls in project_errors() - GROUPS if cls.__module__.startswith(BELOW_ACTIVITIES)
    }
    assert set(ACTIVITY_ERRORS) == below
    permanent = {cls.__name__ for cls in below if issubclass(cls, PermanentError)}
    assert set(STEP_RETRY.non_retryable_error_types or []) == permanent
    # The start timeout is permanent: the start gives up and goes back to Stopped.
    assert "NotReadyError" in permanent
    assert {"TransientClusterError", "StillPresentError"}.isdisjoint(permanent)


def test_error_types_in_recorded_histories_are_still_ours() -> None:
    """A renamed class would change the failure type a running workflow may look for."""
    recorded = {
        match
        for path in HISTORIES.glob("*.json")
        for match in _failure_types(json.loads(path.read_text()))
    }
    ours = {cls.__name__ for cls in project_errors()}
    assert "TransientClusterError" in recorded
    assert recorded - {"ApiException"} <= ours


def _failure_types(node: object) -> set[str]:
    """The `type` of every application failure in a history's JSON."""
    found: set[str] = set()
    if isinstance(node, dict):
        info = node.get("applicationFailureInfo")
        if isinstance(info, dict) and "type" in info:
            found.add(str(info["type"]))
        for value in node.values():
            found |= _failure_types(value)
    elif isinstance(node, list):
        for item in node:
            found |= _failure_types(item)
    return found


REF = ObjectRef(Kind.DEPLOYMENT, "gw-a", "a")


@pytest.mark.parametrize(
    ("error", "non_retryable", "delay"),
    [
        (TransientClusterError("HTTP 429", status=429, retry_after=3.0), False, 3.0),
        (TransientClusterError("HTTP 503", status=503), False, None),
        (StillPresentError([REF], "Deployment gw-a/a", 300), False, None),
        (NotReadyError(REF, "0 of 1 replicas available", 900), True, None),
        (NotOwnedError.in_namespace("gw-a", "a", [REF]), True, None),
        (UnknownGateway("a"), True, None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_one_translation_into_temporal_failures(
    error: GatewayflowError, non_retryable: bool, delay: float | None
) -> None:
    failure = to_application_error(error)
    assert failure.type == type(error).__name__
    assert failure.non_retryable is non_retryable
    assert failure.next_retry_delay == (timedelta(seconds=delay) if delay else None)
    assert str(error) in str(failure)
    # What the metrics count as a deletion failed for good.
    assert is_permanent_failure(failure, STEP_RETRY.non_retryable_error_types or []) is (
        non_retryable
    )

    @translated
    def activity_body() -> None:
        raise error

    with pytest.raises(ApplicationError) as raised:
        activity_body()
    assert (raised.value.type, raised.value.non_retryable) == (failure.type, non_retryable)


def test_anything_else_is_left_to_the_retry_policy() -> None:
    @translated
    def activity_body() -> None:
        raise ConnectionError("mongo went away")

    with pytest.raises(ConnectionError):
        activity_body()
    assert not is_permanent_failure(
        ConnectionError("x"), STEP_RETRY.non_retryable_error_types or []
    )


def test_workflows_recognise_a_failure_by_its_class() -> None:
    cause = to_application_error(NotReadyError(REF, "0 of 1 replicas available", 900))
    failure = ActivityError(
        "activity failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type="wait_instance_ready",
        activity_id="3",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    failure.__cause__ = cause
    assert failed_with(failure, NotReadyError)
    assert not failed_with(failure, StillPresentError)
    assert "Deployment gw-a/a not ready after 900s" in reason(failure)
