"""The project's errors: each one transient or permanent, decided here and nowhere else.

Every error class of the project derives from `TransientError` (worth retrying: the
activity retry policy retries it, after `retry_after` seconds when the server said so) or
from `PermanentError` (it would fail the same way again). `to_application_error` is the
one translation into what Temporal understands: a permanent error becomes a non-retryable
failure, so no retry policy needs a list of error types.
"""

from collections.abc import Iterable
from datetime import timedelta

from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

from gatewayflow.domain.redaction import redact_uri


class GatewayflowError(Exception):
    """An expected failure whose message tells the user what to do."""


class TransientError(GatewayflowError):
    """A later attempt may succeed (throttling, a server error, a wait that timed out)."""

    retry_after: float | None = None  # seconds, when the server asked for a delay


class PermanentError(GatewayflowError):
    """The request itself cannot succeed: retrying would only fail the same way."""


class DeletionFailed(PermanentError):
    """The deletion a gateway's workflow followed (started by an earlier run) failed; the
    workflow backs off and starts a new one."""


def to_application_error(exc: GatewayflowError) -> ApplicationError:
    """The failure Temporal records: the class name as its type, retryable or not."""
    delay = exc.retry_after if isinstance(exc, TransientError) else None
    return ApplicationError(
        str(exc),
        type=type(exc).__name__,
        non_retryable=isinstance(exc, PermanentError),
        next_retry_delay=timedelta(seconds=delay) if delay else None,
    )


def is_permanent_failure(error: BaseException, non_retryable_types: Iterable[str]) -> bool:
    """Whether Temporal will not retry this failure, whatever attempt it is."""
    if isinstance(error, ApplicationError):
        return error.non_retryable or error.type in set(non_retryable_types)
    return type(error).__name__ in set(non_retryable_types)


def reason(failure: BaseException) -> str:
    """The message of the innermost cause: what actually went wrong."""
    cause: BaseException | None = failure
    while isinstance(cause, ActivityError | ChildWorkflowError) and cause.cause is not None:
        cause = cause.cause
    return str(cause) if cause is not None else str(failure)


class Unreachable(TransientError):
    """A server a command needs did not answer: says which, where (never with the
    password an address carries), and what to run."""

    def __init__(self, part: str, address: str, remedy: str) -> None:
        address = redact_uri(address)
        super().__init__(f"cannot reach {part} at {address}: {remedy}")
        self.part = part
        self.address = address
        self.remedy = remedy
