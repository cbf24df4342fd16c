"""Turn adapter errors into retry decisions the workflows' retry policy understands."""

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import ParamSpec, TypeVar

from temporalio.exceptions import ApplicationError

from gatewayflow.cluster.errors import PermanentClusterError, TransientClusterError
from gatewayflow.domain.naming import InvalidGatewayId
from gatewayflow.store.errors import MalformedDocument, UnknownGateway

P = ParamSpec("P")
R = TypeVar("R")

_PERMANENT = (PermanentClusterError, MalformedDocument, UnknownGateway, InvalidGatewayId)


def translated(fn: Callable[P, R]) -> Callable[P, R]:
    """Permanent errors become non-retryable; transient ones keep their Retry-After."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
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
