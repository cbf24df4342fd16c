"""The pure domain: every (state, phase) pair has exactly one reaction."""

import itertools

import pytest
from pydantic import ValidationError

from gatewayflow.domain import naming
from gatewayflow.domain.documents import ApiGateway
from gatewayflow.domain.states import DomainPhase, DomainState, GatewayPhase, GatewayState
from gatewayflow.domain.transitions import (
    DOMAIN_TABLE,
    GATEWAY_TABLE,
    DomainAction,
    GatewayAction,
    Request,
    RequestRefused,
    begins_from,
    check_request,
    completes_from,
    decide,
    decide_domain,
    target_phase,
)

ALL_PAIRS = list(itertools.product(GatewayState, GatewayPhase))


def test_gateway_table_is_total() -> None:
    assert len(ALL_PAIRS) == 32
    assert set(GATEWAY_TABLE) == set(ALL_PAIRS)


@pytest.mark.parametrize(("state", "phase"), ALL_PAIRS)
def test_every_gateway_pair_is_decided(state: GatewayState, phase: GatewayPhase) -> None:
    decision = decide(state, phase)
    converged = phase is target_phase(state) and state is not GatewayState.RESTARTING
    if state is GatewayState.DELETED:
        # Deleted always runs the cascade, whatever the phase: the vn8ofl case included.
        assert decision.action is GatewayAction.DELETE and decision.refusal is None
    elif phase in (GatewayPhase.DELETING, GatewayPhase.DELETED):
        # A deletion cannot be undone: any other intent is refused and recorded.
        assert decision.action is GatewayAction.DELETE and decision.refusal
    elif converged:
        assert decision.action is GatewayAction.NONE
    else:
        assert decision.action is not GatewayAction.NONE
    if state is GatewayState.RESTARTING and phase not in (
        GatewayPhase.CREATING,
        GatewayPhase.DELETING,
        GatewayPhase.DELETED,
    ):
        assert decision.settle_state is GatewayState.RUNNING


def test_vn8ofl_stopped_gateway_marked_deleted_is_deleted() -> None:
    assert decide(GatewayState.DELETED, GatewayPhase.STOPPED).action is GatewayAction.DELETE


def test_restart_of_a_started_gateway_is_a_rolling_update() -> None:
    assert decide(GatewayState.RESTARTING, GatewayPhase.STARTED).action is GatewayAction.RESTART


def test_decide_accepts_raw_strings_from_mongo() -> None:
    assert decide("Stopped", "Started").action is GatewayAction.STOP  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        decide("Paused", "Started")  # type: ignore[arg-type]


@pytest.mark.parametrize(("state", "phase"), list(itertools.product(DomainState, DomainPhase)))
def test_every_domain_pair_is_decided(state: DomainState, phase: DomainPhase) -> None:
    action = decide_domain(state, phase)
    if state is DomainState.DELETED:
        expected = (
            DomainAction.REMOVE_DOCUMENT
            if phase is DomainPhase.DELETED
            else DomainAction.DELETE_ALL
        )
        assert action is expected
    elif state is DomainState.ACTIVE:
        assert (action is DomainAction.NONE) == (phase is DomainPhase.CREATED)
    else:
        assert (action is DomainAction.NONE) == (phase is DomainPhase.DELETED)
    assert len(DOMAIN_TABLE) == 12


@pytest.mark.parametrize("what", [Request.START, Request.STOP, Request.RESTART])
@pytest.mark.parametrize("phase", [GatewayPhase.DELETING, GatewayPhase.DELETED])
def test_requests_are_refused_once_deletion_began(what: Request, phase: GatewayPhase) -> None:
    with pytest.raises(RequestRefused, match="being deleted"):
        check_request(what, GatewayState.DELETED, phase)


def test_delete_is_always_accepted() -> None:
    for state, phase in ALL_PAIRS:
        assert check_request(Request.DELETE, state, phase) is GatewayState.DELETED


def test_phase_conditions_cover_every_phase() -> None:
    for phase in GatewayPhase:
        assert phase in completes_from(phase)
        assert begins_from(phase)
    assert GatewayPhase.DELETED not in begins_from(GatewayPhase.DELETING)


@pytest.mark.parametrize(
    "bad",
    [
        *("", "UPPER", "under_score", "-lead", "trail-", "9starts-with-digit", "a" * 31, "a.b"),
        # `$` alone also matches before a final newline: the whole id must match.
        *("abc\n", "abc\n\n", "\nabc", "ab c"),
    ],
)
def test_invalid_gateway_ids_are_rejected(bad: str) -> None:
    with pytest.raises(naming.InvalidGatewayId):
        naming.validate_gateway_id(bad)


def test_derived_names_follow_the_inventory() -> None:
    gid = "shop"
    assert naming.namespace(gid) == "gw-shop"
    assert naming.cron_job(gid, "t1") == "shop-trigger-t1"
    assert naming.stage_route(gid, "dev") == "shop-stage-dev"
    assert naming.domain_route(gid, "prod") == "shop-prod"
    assert naming.tls(gid, "staging") == "shop-staging-tls"
    assert naming.certificate(gid) == "shop-runtime-custom-domain"
    longest = "a" * naming.MAX_ID_LENGTH
    assert len(naming.cron_job(longest, "t100")) <= 52


def test_documents_round_trip_in_camel_case() -> None:
    gw = ApiGateway(gateway_id="shop", custom_domain="api.example.com")
    raw = gw.to_mongo()
    assert raw["gatewayId"] == "shop" and raw["customDomain"] == "api.example.com"
    assert ApiGateway.model_validate(raw) == gw
    with pytest.raises(ValidationError):
        ApiGateway.model_validate({"gatewayId": "x", "state": "Bogus"})
