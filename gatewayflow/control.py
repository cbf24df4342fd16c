"""What the CLI (or an API) does to gateways: write the intent, signal, follow progress.

MongoDB is the source of truth: a request is checked against the transition rules,
written with a conditional update, and only then signalled to `gateway/<id>`.
"""

import asyncio
import time
from collections.abc import Callable

from temporalio.client import Client

from gatewayflow.dispatcher import SIGNAL_FOR_STATE, signal_gateway
from gatewayflow.domain.documents import ApiGateway
from gatewayflow.domain.naming import validate_gateway_id
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request, RequestRefused, check_request, target_phase
from gatewayflow.settings import Settings
from gatewayflow.store.errors import StateChangeRefused
from gatewayflow.store.gateways import GatewayRepository

TERMINAL_PHASES = (GatewayPhase.DELETING, GatewayPhase.DELETED)
_REQUEST_ATTEMPTS = 5


async def create(
    client: Client,
    settings: Settings,
    gateways: GatewayRepository,
    gateway: ApiGateway,
) -> ApiGateway:
    validate_gateway_id(gateway.gateway_id)
    await asyncio.to_thread(gateways.insert, gateway)
    await signal_gateway(client, settings, gateway.gateway_id, "reconcile")
    return gateway


async def request(
    client: Client,
    settings: Settings,
    gateways: GatewayRepository,
    gateway_id: str,
    what: Request,
) -> ApiGateway:
    """Refused requests raise RequestRefused and change nothing.

    The write is a compare-and-set on the state the request was checked against: when
    someone else changed the state in between (a delete, say), the request is checked
    again against the new state, so it never undoes an intent it did not see.
    """
    validate_gateway_id(gateway_id)
    refuse = () if what is Request.DELETE else TERMINAL_PHASES
    for _attempt in range(_REQUEST_ATTEMPTS):
        current = await asyncio.to_thread(gateways.require, gateway_id)
        state = check_request(what, current.state, current.phase)
        try:
            updated = await asyncio.to_thread(
                gateways.set_state,
                gateway_id,
                state,
                expected=current.state,
                refuse_if_phase_in=refuse,
            )
        except StateChangeRefused as exc:
            if exc.current_state == current.state.value:
                raise RequestRefused(str(exc)) from exc  # the phase refused it
            continue  # the state changed under us: check the request again
        await signal_gateway(client, settings, gateway_id, SIGNAL_FOR_STATE[state])
        return updated
    raise RequestRefused(f"cannot {what.value} {gateway_id}: its state keeps changing; try again")


def converged(gateway: ApiGateway | None, want: GatewayState) -> bool:
    if gateway is None or want is GatewayState.DELETED:
        return gateway is None  # deleted means the document is gone
    return gateway.state is want and gateway.phase is target_phase(want)


async def follow(
    gateways: GatewayRepository,
    gateway_id: str,
    want: GatewayState,
    on_change: Callable[[ApiGateway | None], None],
    *,
    timeout: float = 1800.0,
    poll: float = 0.2,
) -> ApiGateway | None:
    """Poll the document until the intent is reached, the state changes under us, or timeout.

    Returns the last gateway (None once deleted). Raises TimeoutError.
    """
    deadline = time.monotonic() + timeout
    last: tuple[object, ...] | None = None
    seen_want = False
    while True:
        gw = await asyncio.to_thread(gateways.get, gateway_id)
        key = (
            None
            if gw is None
            else (
                gw.state,
                gw.phase,
                gw.progress.step,
                tuple(gw.progress.completed),
                gw.progress.last_error,
                gw.progress.waiting_on,
            )
        )
        if key != last:
            on_change(gw)
            last = key
        if converged(gw, want) or gw is None:
            return gw
        if gw.state is want or (
            want is GatewayState.RUNNING and gw.state is GatewayState.RESTARTING
        ):
            seen_want = True
        elif seen_want:
            # The system settled it elsewhere (e.g. a start that timed out goes to Stopped).
            return gw
        if time.monotonic() > deadline:
            raise TimeoutError(f"gateway {gateway_id} did not reach {want.value} in {timeout:.0f}s")
        await asyncio.sleep(poll)
