"""When a failed operation is tried again: 1 min after the failure, doubling to 30 min,
or at once when the intent changed or a new request came."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from gatewayflow.domain.messages import Backoff, Intent

_FIRST = timedelta(minutes=1)
_MAX = timedelta(minutes=30)


def after_failure(failures: int, intent: Intent) -> Backoff:
    """The backoff after the `failures`-th failure in a row of the intent's operation."""
    delay = min(_FIRST * 2 ** (failures - 1), _MAX)
    return Backoff(failures=failures, retry_at=workflow.now() + delay, state=intent.state)


def retry_due(backoff: Backoff | None, intent: Intent) -> bool:
    """Once the backoff is over, when the intent changed, or on a new request (which
    clears `progress.nextAttemptAt`). A sweep's signal alone does not cut it short."""
    return (
        backoff is None
        or workflow.now() >= backoff.retry_at
        or intent.state is not backoff.state
        or intent.next_attempt_at is None
    )
