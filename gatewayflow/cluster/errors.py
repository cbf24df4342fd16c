"""Errors of the cluster adapter, each transient or permanent (gatewayflow.domain.errors).

A `TransientClusterError` is worth retrying (the activity retry policy owns long retries);
a `PermanentClusterError` will fail the same way again and becomes a non-retryable failure.
"""

import json
from collections.abc import Sequence
from typing import Any

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from gatewayflow.cluster.kinds import ForeignObject, ObjectRef
from gatewayflow.domain.errors import GatewayflowError, PermanentError, TransientError
from gatewayflow.domain.naming import INSTALLATION_LABEL, OWNER_LABEL, owner_selector


class ClusterError(GatewayflowError):
    """Base of every error the adapter raises; `status`/`reason` come from the API's Status."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason


class TransientClusterError(ClusterError, TransientError):
    """Throttling (429), server errors (5xx), write conflicts, connection errors, timeouts."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, status=status, reason=reason)
        self.retry_after = retry_after


class PermanentClusterError(ClusterError, PermanentError):
    """The request itself is wrong or refused (400, 403, 404, 409 AlreadyExists, 422, ...)."""


class NotOwnedError(PermanentClusterError):
    """Objects that do not carry this gateway's ownership label: never touch them."""

    def __init__(self, message: str, refs: Sequence[ObjectRef | ForeignObject]):
        super().__init__(message)
        self.refs = list(refs)

    @classmethod
    def for_object(
        cls, ref: ObjectRef, installation: str, gateway_id: str, labels: dict[str, str]
    ) -> "NotOwnedError":
        """The object exists but another gateway, another installation or nobody owns it."""
        carried = [
            f"{key}={labels[key]}" if key in labels else f"no {key} label"
            for key in (OWNER_LABEL, INSTALLATION_LABEL)
        ]
        return cls(
            f"{ref} is not owned by gateway {gateway_id!r} of installation {installation!r}: "
            f"it carries {' and '.join(carried)}; left untouched",
            [ref],
        )

    @classmethod
    def in_namespace(
        cls,
        namespace: str,
        installation: str,
        gateway_id: str,
        foreign: Sequence[ObjectRef | ForeignObject],
    ) -> "NotOwnedError":
        """Objects we do not own would go down with the namespace: it is kept."""
        names = ", ".join(str(ref) for ref in foreign)
        return cls(
            f"namespace {namespace} holds objects without the labels "
            f"{owner_selector(installation, gateway_id)}: {names}; "
            "they and the namespace are kept. "
            "Remove or label them, then request the deletion again.",
            foreign,
        )


class StillPresentError(TransientClusterError):
    """Objects still exist when a wait for their deletion timed out."""

    def __init__(self, remaining: Sequence[ObjectRef], description: str, timeout: float):
        super().__init__(f"still present after {timeout:g}s: {description}")
        self.remaining = list(remaining)


_TRANSIENT_STATUSES = {408, 429}


def classify(exc: BaseException, *, during: str | None = None) -> ClusterError:
    """Turn what the Kubernetes client raised into a transient or permanent error.

    Anything else (an activity cancellation, a programming error) is re-raised unchanged.
    """
    if isinstance(exc, ClusterError):
        return exc
    prefix = f"{during}: " if during else ""
    if isinstance(exc, ApiException):
        return _from_api_exception(exc, prefix)
    if isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError):
        return TransientClusterError(f"{prefix}connection to the API server failed: {exc}")
    if isinstance(exc, ConfigException | OSError):
        return PermanentClusterError(f"{prefix}bad kubeconfig: {exc}")
    raise exc  # not the API's answer (a cancellation, a bug): not ours to classify


def _from_api_exception(exc: ApiException, prefix: str) -> ClusterError:
    status = int(exc.status or 0)
    reason, message = _status_reason(exc)
    text = f"{prefix}HTTP {status} {reason or exc.reason or ''}".rstrip()
    if message:
        text = f"{text}: {message}"
    if status == 0:
        # The client raises status 0 for TLS failures and requests it cannot build.
        return PermanentClusterError(text, status=None, reason=reason)
    # A 409 is transient when it is a resourceVersion conflict; AlreadyExists is permanent.
    transient = (
        status in _TRANSIENT_STATUSES or status >= 500 or (status == 409 and reason == "Conflict")
    )
    if not transient:
        return PermanentClusterError(text, status=status, reason=reason)
    return TransientClusterError(
        text, status=status, reason=reason, retry_after=_retry_after(exc.headers)
    )


def _status_reason(exc: ApiException) -> tuple[str | None, str | None]:
    """The `reason` and `message` of the Kubernetes Status object in the response body."""
    try:
        body = json.loads(exc.body or "")
    except ValueError:
        return None, (exc.body or "").strip()[:300] or None
    if not isinstance(body, dict):
        return None, None
    return body.get("reason"), body.get("message")


def _retry_after(headers: Any) -> float | None:
    """Retry-After in seconds, as the API server sends it with a 429."""
    try:
        return max(0.0, float(headers["Retry-After"]))
    except (KeyError, TypeError, ValueError):
        return None
