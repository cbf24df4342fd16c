"""How workflows run activities: by typed reference, with our retry policy and a UI summary."""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from temporalio import workflow
from temporalio.workflow import ActivityCancellationType

from workflows.policies import HEARTBEAT, SHORT, STEP_RETRY, WAIT

A = TypeVar("A")
R = TypeVar("R")


@overload
async def call(
    activity: Callable[[Any, A], Awaitable[R]],
    arg: A,
    *,
    summary: str,
    waits: bool = False,
    local: bool = False,
) -> R: ...


@overload
async def call(
    activity: Callable[[Any, A], R],
    arg: A,
    *,
    summary: str,
    waits: bool = False,
    local: bool = False,
) -> R: ...


async def call(
    activity: Callable[[Any, A], Any],
    arg: A,
    *,
    summary: str,
    waits: bool = False,
    local: bool = False,
) -> R:
    """Run one activity method (sync or async); mypy checks `arg` and the result against
    its signature.

    Waiting activities heartbeat so they can be cancelled. A `local` one (short, never
    waits) runs in this worker without a server round trip of its own; its effect is
    written to MongoDB before it returns, as for any step, and a worker that crashes before
    the workflow task completes runs it again (every step is idempotent).
    """
    if local:
        done: R = await workflow.execute_local_activity_method(
            activity,
            arg,
            start_to_close_timeout=SHORT,
            retry_policy=STEP_RETRY,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=summary,
        )
        return done
    result: R = await workflow.execute_activity_method(
        activity,
        arg,
        start_to_close_timeout=WAIT if waits else SHORT,
        heartbeat_timeout=HEARTBEAT if waits else None,
        retry_policy=STEP_RETRY,
        # A preempted step finishes its cleanup before the deletion that preempted it starts.
        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        summary=summary,
    )
    return result
