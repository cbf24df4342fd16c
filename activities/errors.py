"""Our errors become Temporal failures that say whether to retry them."""

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from gatewayflow.domain.errors import GatewayflowError, to_application_error

P = ParamSpec("P")
R = TypeVar("R")


def translated(fn: Callable[P, R]) -> Callable[P, R]:
    """Permanent errors become non-retryable; transient ones keep their Retry-After.

    Anything else (pymongo's connection errors, a bug) is retried by the retry policy.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except GatewayflowError as exc:
            raise to_application_error(exc) from exc

    return wrapper
