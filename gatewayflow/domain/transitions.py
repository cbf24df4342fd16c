"""What to do for every (state, phase) pair: total, pure, tested exhaustively.

A pair without an action would leave its gateway stuck forever: every pair maps to
exactly one action, and the lookup raises on none.
"""

from dataclasses import dataclass
from enum import StrEnum

from gatewayflow.domain.errors import PermanentError
from gatewayflow.domain.states import DomainPhase, DomainState, GatewayPhase, GatewayState


class GatewayAction(StrEnum):
    NONE = "none"  # converged: wait for the next change of intent
    CREATE = "create"  # provision namespace, database, domain, stages, triggers
    START = "start"  # (re)activate and bring the Deployment up
    STOP = "stop"  # deactivate routes, suspend CronJobs, remove the Deployment
    RESTART = "restart"  # rolling update of the Deployment
    DELETE = "delete"  # run GatewayDeletion


@dataclass(frozen=True)
class Decision:
    action: GatewayAction
    # Set when the intent cannot be honoured; the workflow records it and resets the state.
    refusal: str | None = None
    # The state the workflow writes back once the action is done (Restarting -> Running).
    settle_state: GatewayState | None = None


_S = GatewayState
_P = GatewayPhase
_A = GatewayAction

_DELETION_COMMITTED = "the gateway is being deleted; a deletion cannot be undone"

GATEWAY_TABLE: dict[tuple[GatewayState, GatewayPhase], Decision] = {
    # Running: provision, then start; anything half-stopped is started again.
    (_S.RUNNING, _P.CREATING): Decision(_A.CREATE),
    (_S.RUNNING, _P.CREATED): Decision(_A.START),
    (_S.RUNNING, _P.STARTING): Decision(_A.START),
    (_S.RUNNING, _P.STARTED): Decision(_A.NONE),
    (_S.RUNNING, _P.STOPPING): Decision(_A.START),
    (_S.RUNNING, _P.STOPPED): Decision(_A.START),
    (_S.RUNNING, _P.DELETING): Decision(_A.DELETE, refusal=_DELETION_COMMITTED),
    (_S.RUNNING, _P.DELETED): Decision(_A.DELETE, refusal=_DELETION_COMMITTED),
    # Stopped: provision if needed, then stop; a stopped gateway keeps everything but pods.
    (_S.STOPPED, _P.CREATING): Decision(_A.CREATE),
    (_S.STOPPED, _P.CREATED): Decision(_A.STOP),
    (_S.STOPPED, _P.STARTING): Decision(_A.STOP),
    (_S.STOPPED, _P.STARTED): Decision(_A.STOP),
    (_S.STOPPED, _P.STOPPING): Decision(_A.STOP),
    (_S.STOPPED, _P.STOPPED): Decision(_A.NONE),
    (_S.STOPPED, _P.DELETING): Decision(_A.DELETE, refusal=_DELETION_COMMITTED),
    (_S.STOPPED, _P.DELETED): Decision(_A.DELETE, refusal=_DELETION_COMMITTED),
    # Restarting: a rolling update when started, otherwise a start; then back to Running.
    (_S.RESTARTING, _P.CREATING): Decision(_A.CREATE),
    (_S.RESTARTING, _P.CREATED): Decision(_A.START, settle_state=_S.RUNNING),
    (_S.RESTARTING, _P.STARTING): Decision(_A.START, settle_state=_S.RUNNING),
    (_S.RESTARTING, _P.STARTED): Decision(_A.RESTART, settle_state=_S.RUNNING),
    (_S.RESTARTING, _P.STOPPING): Decision(_A.START, settle_state=_S.RUNNING),
    (_S.RESTARTING, _P.STOPPED): Decision(_A.START, settle_state=_S.RUNNING),
    (_S.RESTARTING, _P.DELETING): Decision(_A.DELETE, refusal=_DELETION_COMMITTED),
    (_S.RESTARTING, _P.DELETED): Decision(_A.DELETE, refusal=_DELETION_COMMITTED),
    # Deleted: always the deletion cascade, from wherever the gateway is.
    **{(_S.DELETED, phase): Decision(_A.DELETE) for phase in GatewayPhase},
}


def decide(state: GatewayState, phase: GatewayPhase) -> Decision:
    return GATEWAY_TABLE[(GatewayState(state), GatewayPhase(phase))]


def target_phase(state: GatewayState) -> GatewayPhase:
    """The phase at which a gateway with this intent has converged."""
    return {
        _S.RUNNING: _P.STARTED,
        _S.RESTARTING: _P.STARTED,
        _S.STOPPED: _P.STOPPED,
        _S.DELETED: _P.DELETED,
    }[GatewayState(state)]


# The intent a held deletion gives back when an operator cancels it. It never began, so
# its phase is where the gateway stood: Started or Starting were to run, Stopped or
# Stopping to stay stopped. A gateway caught while being created may have been meant to
# run or not; it goes back to Stopped, which brings up nothing nobody confirmed
# (`gatewayflow start` runs it).
_INTENT_BEFORE_DELETION: dict[GatewayPhase, GatewayState] = {
    _P.STARTED: _S.RUNNING,
    _P.STARTING: _S.RUNNING,
    _P.STOPPED: _S.STOPPED,
    _P.STOPPING: _S.STOPPED,
    _P.CREATED: _S.STOPPED,
    _P.CREATING: _S.STOPPED,
}


def intent_before_deletion(phase: GatewayPhase) -> GatewayState | None:
    """The state a cancelled deletion restores; None once its deletion began."""
    return _INTENT_BEFORE_DELETION.get(GatewayPhase(phase))


class Request(StrEnum):
    """What a user may ask of a gateway from the CLI or the API."""

    START = "start"
    STOP = "stop"
    RESTART = "restart"
    DELETE = "delete"


class RequestRefused(PermanentError, ValueError):
    """A request that cannot be honoured in the gateway's current state."""


REQUEST_STATE: dict[Request, GatewayState] = {
    Request.START: _S.RUNNING,
    Request.STOP: _S.STOPPED,
    Request.RESTART: _S.RESTARTING,
    Request.DELETE: _S.DELETED,
}


def check_request(request: Request, state: GatewayState, phase: GatewayPhase) -> GatewayState:
    """The new state for a request, or RequestRefused with the reason."""
    if request is not Request.DELETE and (
        state is _S.DELETED or phase in (_P.DELETING, _P.DELETED)
    ):
        raise RequestRefused(f"cannot {request.value}: {_DELETION_COMMITTED}")
    if request is Request.RESTART and phase is _P.CREATING:
        raise RequestRefused("cannot restart: the gateway is still being created")
    return REQUEST_STATE[request]


class DomainAction(StrEnum):
    NONE = "none"
    APPLY_ROUTES = "apply-routes"  # create routes, plugin config, TLS, certificate
    REMOVE_ROUTES = "remove-routes"  # remove routes; keep TLS and certificate
    DELETE_ALL = "delete-all"  # remove every APISIX object and cert-manager Certificate
    REMOVE_DOCUMENT = "remove-document"


_DS = DomainState
_DP = DomainPhase

# For a RuntimeDomain the phase says whether its routes exist (Created) or not (Deleted).
DOMAIN_TABLE: dict[tuple[DomainState, DomainPhase], DomainAction] = {
    (_DS.ACTIVE, _DP.CREATING): DomainAction.APPLY_ROUTES,
    (_DS.ACTIVE, _DP.CREATED): DomainAction.NONE,
    (_DS.ACTIVE, _DP.DELETING): DomainAction.APPLY_ROUTES,
    (_DS.ACTIVE, _DP.DELETED): DomainAction.APPLY_ROUTES,
    (_DS.INACTIVE, _DP.CREATING): DomainAction.REMOVE_ROUTES,
    (_DS.INACTIVE, _DP.CREATED): DomainAction.REMOVE_ROUTES,
    (_DS.INACTIVE, _DP.DELETING): DomainAction.REMOVE_ROUTES,
    (_DS.INACTIVE, _DP.DELETED): DomainAction.NONE,
    (_DS.DELETED, _DP.CREATING): DomainAction.DELETE_ALL,
    (_DS.DELETED, _DP.CREATED): DomainAction.DELETE_ALL,
    (_DS.DELETED, _DP.DELETING): DomainAction.DELETE_ALL,
    (_DS.DELETED, _DP.DELETED): DomainAction.REMOVE_DOCUMENT,
}


def decide_domain(state: DomainState, phase: DomainPhase) -> DomainAction:
    return DOMAIN_TABLE[(DomainState(state), DomainPhase(phase))]


# The phases an operation may find when one of its steps completes: a step's phase is
# written only from these (the conditional update that keeps a stale step from winning).
_COMPLETES_FROM: dict[GatewayPhase, tuple[GatewayPhase, ...]] = {
    _P.CREATING: (_P.CREATING,),
    _P.CREATED: (_P.CREATING, _P.CREATED),
    _P.STARTING: (_P.STARTING,),
    _P.STARTED: (_P.STARTING, _P.STARTED),
    _P.STOPPING: (_P.STOPPING,),
    _P.STOPPED: (_P.STOPPING, _P.STOPPED),
    _P.DELETING: (_P.DELETING,),
    _P.DELETED: (_P.DELETING, _P.DELETED),
}

# The phases from which an operation may begin (begin_operation's conditional update).
_BEGINS_FROM: dict[GatewayPhase, tuple[GatewayPhase, ...]] = {
    _P.CREATING: (_P.CREATING,),
    _P.STARTING: (_P.CREATED, _P.STARTING, _P.STARTED, _P.STOPPING, _P.STOPPED),
    _P.STOPPING: (_P.CREATED, _P.STARTING, _P.STARTED, _P.STOPPING, _P.STOPPED),
    _P.DELETING: tuple(p for p in GatewayPhase if p is not _P.DELETED),
}


def completes_from(phase: GatewayPhase) -> tuple[GatewayPhase, ...]:
    return _COMPLETES_FROM[GatewayPhase(phase)]


def begins_from(phase: GatewayPhase) -> tuple[GatewayPhase, ...]:
    return _BEGINS_FROM.get(GatewayPhase(phase), (GatewayPhase(phase),))
