"""Retry policies and timeouts: transient errors retry forever with capped backoff."""

from datetime import timedelta

from temporalio.common import RetryPolicy

# Error types our activities raise as non-retryable: retrying cannot fix them.
PERMANENT_ERRORS = [
    "NotOwnedError",
    "PermanentClusterError",
    "MalformedDocument",
    "InvalidGatewayId",
    "NotReadyError",
    "UnknownGateway",
]

STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,  # unlimited for transient errors
    non_retryable_error_types=PERMANENT_ERRORS,
)

SHORT = timedelta(seconds=30)  # a single round of API calls
WAIT = timedelta(minutes=10)  # waits on asynchronous Kubernetes deletion
HEARTBEAT = timedelta(seconds=10)
