"""Retry policies and timeouts: transient errors retry forever with capped backoff."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from gatewayflow.cluster.errors import (
        NotOwnedError,
        NotReadyError,
        PermanentClusterError,
        StillPresentError,
        TransientClusterError,
    )
    from gatewayflow.domain.errors import (
        DeletionFailed,
        GatewayflowError,
        Unreachable,
        permanent_type_names,
    )
    from gatewayflow.domain.naming import InvalidGatewayId
    from gatewayflow.domain.transitions import RequestRefused
    from gatewayflow.settings import SettingsError
    from gatewayflow.store.errors import (
        ChangeStreamsUnavailable,
        GatewayExists,
        MalformedDocument,
        NotOwnedDatabase,
        StateChangeRefused,
        StoreUnreachable,
        UnknownGateway,
    )

# Every error of the layers activities stand on (domain, store, cluster, settings); each
# class says itself whether it is permanent. tests/test_errors.py keeps this list whole.
ACTIVITY_ERRORS: tuple[type[GatewayflowError], ...] = (
    TransientClusterError,
    StillPresentError,
    PermanentClusterError,
    NotOwnedError,
    NotReadyError,
    ChangeStreamsUnavailable,
    GatewayExists,
    MalformedDocument,
    NotOwnedDatabase,
    StoreUnreachable,
    StateChangeRefused,
    UnknownGateway,
    InvalidGatewayId,
    RequestRefused,
    SettingsError,
    Unreachable,
    DeletionFailed,
)

STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,  # unlimited for transient errors
    # Retrying cannot fix a permanent error (they are also raised as non-retryable).
    non_retryable_error_types=permanent_type_names(ACTIVITY_ERRORS),
)

SHORT = timedelta(seconds=30)  # a single round of API calls
WAIT = timedelta(minutes=10)  # waits on asynchronous Kubernetes deletion
HEARTBEAT = timedelta(seconds=10)
