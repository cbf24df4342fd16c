"""The error taxonomy: every error of ours is transient or permanent, and Temporal retries
exactly the transient ones. The retry property runs real activities through our retry
policy on the session's Temporal server."""

import importlib
import json
import pkgutil
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest
import pytest_asyncio
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

import activities
import gatewayflow
import workflows
from activities.errors import translated
from gatewayflow.client import connect
from gatewayflow.cluster.errors import (
    ClusterError,
    NotOwnedError,
    PermanentClusterError,
    StillPresentError,
    TransientClusterError,
)
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.domain.errors import (
    DeletionFailed,
    GatewayflowError,
    PermanentError,
    TransientError,
    is_permanent_failure,
    reason,
    to_application_error,
)
from gatewayflow.domain.transitions import RequestRefused
from gatewayflow.settings import Settings
from gatewayflow.store.errors import StoreError, StoreUnreachable, UnknownGateway
from workflows.calls import call
from workflows.steps import OperationStopped

HISTORIES = Path(__file__).parent / "histories"
# Groupings: never raised themselves, their subclasses are classified.
GROUPS = {GatewayflowError, TransientError, PermanentError, ClusterError, StoreError}
# Control flow inside a workflow, never a failure of an activity.
CONTROL_FLOW = {OperationStopped}


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
    errors = project_errors() - GROUPS - CONTROL_FLOW
    assert len(errors) >= 10
    for cls in errors:
        assert issubclass(cls, GatewayflowError), f"{cls.__qualname__} is not a GatewayflowError"
        kinds = [kind for kind in (TransientError, PermanentError) if issubclass(cls, kind)]
        assert len(kinds) == 1, f"{cls.__qualname__} is classified as {kinds}"
    assert not issubclass(OperationStopped, GatewayflowError)


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
        (NotOwnedError.in_namespace("gw-a", "prod", "a", [REF]), True, None),
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
    assert is_permanent_failure(failure, []) is non_retryable

    @translated
    def activity_body() -> None:
        raise error

    with pytest.raises(ApplicationError) as raised:
        activity_body()
    assert (raised.value.type, raised.value.non_retryable) == (failure.type, non_retryable)


# -- what Temporal does with them ------------------------------------------------------------
# Raised by the probe activity on its first two attempts, by the key it is given.
TRANSIENT: dict[str, Exception] = {
    "cluster-503": TransientClusterError("HTTP 503", status=503),
    "still-present": StillPresentError([REF], "Deployment gw-a/a", 300),
    "store-unreachable": StoreUnreachable("MongoDB did not answer"),
    "not-ours": ConnectionError("connection reset by peer"),  # pymongo's, a bug's: retried
}
PERMANENT: dict[str, Exception] = {
    "unknown-gateway": UnknownGateway("a"),
    "not-owned": NotOwnedError.in_namespace("gw-a", "prod", "a", [REF]),
    "forbidden": PermanentClusterError("HTTP 403", status=403),
    "refused": RequestRefused("cannot start: the gateway is being deleted"),
    "deletion-failed": DeletionFailed("gateway-deletion/a failed"),
}


class Probe:
    """An activity that raises its key's error on its first two attempts."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()

    @activity.defn(name="raise_twice")
    @translated
    def raise_twice(self, key: str) -> int:
        self.attempts[key] += 1
        attempt = activity.info().attempt
        if attempt <= 2:
            raise {**TRANSIENT, **PERMANENT}[key]
        return attempt


@workflow.defn(name="RetryProbe", sandboxed=False)
class RetryProbe:
    """Runs the probe as every workflow of ours runs an activity (`call`, STEP_RETRY)."""

    @workflow.run
    async def run(self, key: str) -> str:
        try:
            attempt = await call(Probe.raise_twice, key, summary=f"raise {key} twice")
        except ActivityError as err:
            state = err.retry_state.name if err.retry_state is not None else None
            return f"{state}: {reason(err)}"
        return f"succeeded at attempt {attempt}"


@dataclass
class Probing:
    client: Client
    task_queue: str
    probe: Probe

    async def run(self, key: str) -> str:
        return await self.client.execute_workflow(
            RetryProbe.run,
            key,
            id=f"retry-probe-{key}-{uuid.uuid4().hex[:6]}",
            task_queue=self.task_queue,
            execution_timeout=timedelta(seconds=60),
        )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def probing(stack: Settings) -> AsyncIterator[Probing]:
    client = await connect(stack)
    queue = f"retry-probe-{uuid.uuid4().hex[:8]}"
    probe = Probe()
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[RetryProbe],
            activities=[probe.raise_twice],
            activity_executor=executor,
        ):
            yield Probing(client, queue, probe)


@pytest.mark.parametrize("key", TRANSIENT)
async def test_a_transient_error_is_retried(probing: Probing, key: str) -> None:
    assert await probing.run(key) == "succeeded at attempt 3"
    assert probing.probe.attempts[key] == 3


@pytest.mark.parametrize("key", PERMANENT)
async def test_a_permanent_error_fails_the_activity_without_a_retry(
    probing: Probing, key: str
) -> None:
    error = PERMANENT[key]
    assert await probing.run(key) == f"NON_RETRYABLE_FAILURE: {type(error).__name__}: {error}"
    assert probing.probe.attempts[key] == 1


async def test_an_invalid_gateway_id_fails_before_the_activity_runs(probing: Probing) -> None:
    outcome = await probing.run("Not-A-Gateway")
    assert outcome.startswith("NON_RETRYABLE_FAILURE: InvalidGatewayId: gateway id")
    assert probing.probe.attempts["Not-A-Gateway"] == 0
