"""Turns every change of intent in MongoDB into a signal to the gateway's workflow.

A change stream (resume token persisted) reacts at once; a periodic sweep signals (and
starts, if need be) the workflow of every gateway whose phase does not match its state,
so nothing is left stuck even if an event is lost or change streams are unavailable.
A gateway that cannot be signalled is logged, counted and skipped: it never blocks others.
Signal-with-start is idempotent per workflow id, so duplicate dispatchers are harmless.
"""

import asyncio
import contextlib
import logging
import threading

from pymongo.errors import PyMongoError
from temporalio.client import Client

from control.intents import SIGNAL_FOR_STATE, signal_gateway
from gatewayflow import tracing
from gatewayflow.domain.documents import utcnow
from gatewayflow.metrics import CHANGE_STREAM_LAG, CHANGE_STREAM_UP, DISPATCH_FAILURES
from gatewayflow.settings import Settings
from gatewayflow.store.client import Db, connect
from gatewayflow.store.dispatcher import ChangeFeed, GatewayEvent
from gatewayflow.store.errors import ChangeStreamsUnavailable
from gatewayflow.store.gateways import GatewayRepository
from gatewayflow.store.indexes import ensure_indexes

log = logging.getLogger("gatewayflow.dispatcher")


async def deliver(
    client: Client, settings: Settings, gateway_id: str, signal: str, source: str
) -> bool:
    """Signal one gateway; a failure is logged, counted and skipped, never raised.

    One gateway Temporal refuses (an id longer than its limit, say) must not hold up any
    other: the feed moves on to the next event, the sweep to the next gateway, and the
    next sweep tries this one again. With tracing on, each delivery starts a trace: the
    workflow's work for this change continues it.
    """
    try:
        with tracing.gateway_span(f"dispatch {signal}", gateway_id, source=source):
            await signal_gateway(client, settings, gateway_id, signal)
    except Exception as exc:
        DISPATCH_FAILURES.labels(source=source).inc()
        log.warning(
            "%s: cannot signal gateway %s (%s: %s); skipped, the next sweep tries again",
            source,
            _shown(gateway_id),
            type(exc).__name__,
            exc,
        )
        return False
    return True


async def sweep_once(client: Client, settings: Settings, gateways: GatewayRepository) -> int:
    """Signal-with-start every unconverged gateway with its intent's own signal; returns
    how many were signalled.

    Idle workflows that missed an event get the signal too, a gateway whose workflow is
    not running gets one started, and a delete preempts an operation in flight whether
    or not a change stream saw it. Deleted gateways come first.
    """
    unconverged = await asyncio.to_thread(gateways.unconverged)
    signalled = 0
    for gateway_id, state, _phase in unconverged:
        if await deliver(client, settings, gateway_id, SIGNAL_FOR_STATE[state], "sweep"):
            signalled += 1
    if unconverged:
        log.info("sweep signalled %d of %d unconverged gateway(s)", signalled, len(unconverged))
    return signalled


def _shown(gateway_id: str, limit: int = 80) -> str:
    """An id for a log line: a broken document's id can be any length."""
    return repr(gateway_id if len(gateway_id) <= limit else gateway_id[:limit] + "...")


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Wait `seconds`, or less when `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _sweep_forever(
    client: Client, settings: Settings, gateways: GatewayRepository, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            await sweep_once(client, settings, gateways)
        except Exception:  # a failed sweep is retried on the next tick
            log.exception("sweep failed")
        await _pause(stop, settings.sweep_interval_seconds)


async def _follow_changes(
    client: Client, settings: Settings, feed: ChangeFeed, stop: asyncio.Event
) -> None:
    """The feed runs in a thread; each event is signalled before the next is asked for,
    so the persisted resume token never gets ahead of what was handled. An event that
    cannot be delivered is skipped (and left to the sweep), so it never blocks the feed."""
    loop = asyncio.get_running_loop()
    halt = threading.Event()

    def pump() -> None:
        for event in feed.events(halt):
            signal = SIGNAL_FOR_STATE[event.state]
            handled = asyncio.run_coroutine_threadsafe(
                deliver(client, settings, event.gateway_id, signal, "change-stream"), loop
            )
            if handled.result():
                _record_lag(event)

    follower = asyncio.create_task(asyncio.to_thread(pump))
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({follower, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if follower.done():
            follower.result()  # the feed ended by itself: raise its error
    finally:
        halt.set()
        stopper.cancel()
        await asyncio.gather(follower, stopper, return_exceptions=True)


def _record_lag(event: GatewayEvent) -> None:
    if event.written_at is not None:
        # Another clock than ours wrote the time: never below 0.
        CHANGE_STREAM_LAG.observe(max(0.0, (utcnow() - event.written_at).total_seconds()))


def _following(open: bool) -> None:
    CHANGE_STREAM_UP.set(1 if open else 0)


async def _opened(settings: Settings, stop: asyncio.Event) -> Db | None:
    """The database with its indexes, tried again (1 s doubling to 30 s) until the server
    answers: a worker started while MongoDB is down dispatches once it is back, rather
    than never. None when `stop` is set first."""
    delay = 1.0
    while not stop.is_set():
        try:
            db = await asyncio.to_thread(connect, settings.mongodb_uri or "", settings.db_name)
            await asyncio.to_thread(ensure_indexes, db)
            return db
        except PyMongoError as exc:
            log.warning("dispatcher: MongoDB unreachable (%s); trying again in %.0fs", exc, delay)
        await _pause(stop, delay)
        delay = min(delay * 2, 30.0)
    return None


async def run_dispatcher(client: Client, settings: Settings, stop: asyncio.Event) -> None:
    """The change stream and the sweep, until `stop` is set."""
    db = await _opened(settings, stop)
    if db is None:
        return
    gateways = GatewayRepository(db)
    sweeper = asyncio.create_task(_sweep_forever(client, settings, gateways, stop))
    try:
        if not settings.change_streams:
            log.info("change streams off: the sweep alone converges")
            await stop.wait()
        while not stop.is_set():
            try:
                feed = ChangeFeed(db, following=_following)
                await _follow_changes(client, settings, feed, stop)
            except ChangeStreamsUnavailable as exc:
                _following(False)
                log.warning("change streams unavailable (%s): the sweep alone converges", exc)
                await stop.wait()
            except Exception:
                _following(False)
                log.exception("change feed failed; reopening from the saved resume token")
                await asyncio.sleep(1)
    finally:
        _following(False)
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
