"""Turn adapter errors into retry decisions the workflows' retry policy understands."""

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import ParamSpec, TypeVar

from temporalio.exceptions import ApplicationError

from gatewayflow.cluster.errors import PermanentClusterError, TransientClusterError
from gatewayflow.domain.naming import InvalidGatewayId, validate_gateway_id
from gatewayflow.store.errors import MalformedDocument, NotOwnedDatabase, UnknownGateway

P = ParamSpec("P")
R = TypeVar("R")

_PERMANENT = (
    PermanentClusterError,
    MalformedDocument,
    UnknownGateway,
    InvalidGatewayId,
    NotOwnedDatabase,
)


def validate_input(args: tuple[object, ...]) -> None:
    """Every gateway id an activity receives (a bare id or a payload's `gateway_id`) is
    checked before anything is read or written: an id the rule rejects is never acted on."""
    for arg in args:
        gateway_id = arg if isinstance(arg, str) else getattr(arg, "gateway_id", None)
        if gateway_id is not None:
            validate_gateway_id(gateway_id)


def translated(fn: Callable[P, R]) -> Callable[P, R]:
    """Inputs validated; permanent errors become non-retryable; transient ones keep their
    Retry-After."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            validate_input((*args, *kwargs.values()))
            return fn(*args, **kwargs)
        except _PERMANENT as exc:
            raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=True) from exc
        except TransientClusterError as exc:
            delay = getattr(exc, "retry_after", None)
            raise ApplicationError(
                str(exc),
                type=type(exc).__name__,
                next_retry_delay=timedelta(seconds=delay) if delay else None,
            ) from exc

    return wrapper
