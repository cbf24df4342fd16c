"""Retry policies and timeouts: transient errors retry forever with capped backoff.

A permanent error needs no list here: the activity raises it as a non-retryable failure
(activities/errors.py, `to_application_error`), which no retry policy retries.
"""

from datetime import timedelta

from temporalio.common import RetryPolicy

STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,  # unlimited for transient errors
)

SHORT = timedelta(seconds=30)  # a single round of API calls
WAIT = timedelta(minutes=10)  # waits on asynchronous Kubernetes deletion
HEARTBEAT = timedelta(seconds=10)
