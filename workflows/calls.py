"""How workflows run activities: by name, with our retry policy and a UI summary."""

from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.workflow import ActivityCancellationType

from workflows.policies import HEARTBEAT, SHORT, STEP_RETRY, WAIT

T = TypeVar("T")


async def call(
    activity: str,
    arg: Any,
    result_type: type[T],
    *,
    summary: str,
    waits: bool = False,
    timeout: timedelta | None = None,
) -> T:
    """Run one activity; waiting activities heartbeat so they can be cancelled."""
    result: T = await workflow.execute_activity(
        activity,
        arg,
        result_type=result_type,
        start_to_close_timeout=timeout or (WAIT if waits else SHORT),
        heartbeat_timeout=HEARTBEAT if waits else None,
        retry_policy=STEP_RETRY,
        # A preempted step finishes its cleanup before the deletion that preempted it starts.
        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        summary=summary,
    )
    return result
