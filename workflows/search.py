"""Search attributes that make every workflow of a gateway findable in the UI and CLI."""

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

GATEWAY_ID = SearchAttributeKey.for_keyword("GatewayId")
GATEWAY_STATE = SearchAttributeKey.for_keyword("GatewayState")
GATEWAY_PHASE = SearchAttributeKey.for_keyword("GatewayPhase")


def for_gateway(gateway_id: str, phase: str | None = None) -> TypedSearchAttributes:
    """Start-time attributes for a child workflow of a gateway."""
    pairs: list[SearchAttributePair[str]] = [SearchAttributePair(GATEWAY_ID, gateway_id)]
    if phase is not None:
        pairs.append(SearchAttributePair(GATEWAY_PHASE, phase))
    return TypedSearchAttributes(pairs)


def upsert(gateway_id: str, state: str | None = None, phase: str | None = None) -> None:
    updates = [GATEWAY_ID.value_set(gateway_id)]
    if state is not None:
        updates.append(GATEWAY_STATE.value_set(state))
    if phase is not None:
        updates.append(GATEWAY_PHASE.value_set(phase))
    workflow.upsert_search_attributes(updates)
