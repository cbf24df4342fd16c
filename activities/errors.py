"""Our errors become Temporal failures that say whether to retry them."""

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from gatewayflow.domain.errors import GatewayflowError, to_application_error
from gatewayflow.domain.naming import validate_gateway_id

P = ParamSpec("P")
R = TypeVar("R")


def validate_input(args: tuple[object, ...]) -> None:
    """Every gateway id an activity receives (a bare id or a payload's `gateway_id`) is
    checked before anything is read or written: an id the rule rejects is never acted on."""
    for arg in args:
        gateway_id = arg if isinstance(arg, str) else getattr(arg, "gateway_id", None)
        if gateway_id is not None:
            validate_gateway_id(gateway_id)


def translated(fn: Callable[P, R]) -> Callable[P, R]:
    """Inputs validated; permanent errors become non-retryable; transient ones keep their
    Retry-After.

    Anything else (pymongo's connection errors, a bug) is retried by the retry policy.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            validate_input((*args, *kwargs.values()))
            return fn(*args, **kwargs)
        except GatewayflowError as exc:
            raise to_application_error(exc) from exc

    return wrapper
