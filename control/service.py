"""The service layer of the CLI (or an API): requests, status, plan, audit, reap and replay.

MongoDB is the source of truth. A request is an update sent to the gateway's workflow
(update-with-start, control/intents.py): the workflow checks it against the transition
rules, writes the intent with a compare-and-set and answers with what it accepted. The
CLI, the demo, the tests and the bench all ask through `create_gateway` and
`request_gateway`.

Each service function takes the settings and returns a result. Expected failures (bad
input, a refused request, a server that does not answer) come out as `GatewayflowError`
whose message is the one sentence a user needs; read-only functions write nothing, not
even indexes.
"""

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from temporalio.client import Client
from temporalio.service import RPCError

from control.intents import SIGNAL_FOR_STATE, ask_gateway, notify_guard, signal_gateway
from gatewayflow import links
from gatewayflow.client import connect
from gatewayflow.deps import Deps
from gatewayflow.domain import naming
from gatewayflow.domain.deletion_guard import held_by_guard
from gatewayflow.domain.documents import ApiGateway
from gatewayflow.domain.errors import GatewayflowError, Unreachable
from gatewayflow.domain.messages import GuardNotice, ReapInput, ReapResult
from gatewayflow.domain.naming import InvalidGatewayId, validate_gateway_id
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request, RequestRefused, check_request, target_phase
from gatewayflow.settings import Settings
from gatewayflow.store.client import ping
from gatewayflow.store.errors import StoreError, StoreUnreachable
from gatewayflow.store.gateways import GatewayRepository
from gatewayflow.store.indexes import ensure_indexes

if TYPE_CHECKING:  # imported where used: a command that fails early loads neither
    from control.reaper import Preview
    from control.replay import GateRun, ReplayResult
    from gatewayflow.inventory import Item, PlanStep

REACH_TIMEOUT = 2.0
"""Seconds a command waits for a server before saying it cannot reach it."""
ANSWER_TIMEOUT = 60.0
"""Seconds a request waits for the gateway's workflow to answer (a worker must run)."""
GUARD_ANSWER_TIMEOUT = 5.0
"""Seconds `delete` waits to learn whether the deletion guard holds the deletion."""

OnChange = Callable[[ApiGateway | None], None]


# -- the service layer: settings in, results out -----------------------------------------


@dataclass(frozen=True)
class Connections:
    """Connections a caller keeps open across many requests (the demo, tests, the bench).

    Without them, each call opens and checks its own, as one CLI command does.
    """

    client: Client
    gateways: GatewayRepository


def converged(gateway: ApiGateway | None, want: GatewayState) -> bool:
    if gateway is None or want is GatewayState.DELETED:
        return gateway is None and want is GatewayState.DELETED  # the document is gone
    return gateway.state is want and gateway.phase is target_phase(want)


async def follow(
    gateways: GatewayRepository,
    gateway_id: str,
    want: GatewayState,
    on_change: OnChange,
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


@dataclass
class Tracked:
    """A gateway as a command found or left it, with the UI links of its workflows."""

    gateway: ApiGateway
    want: GatewayState
    links: dict[str, str]
    """Workflow id -> Temporal UI link (the run's page, or a query when no run is known)."""
    _gateways: GatewayRepository = field(repr=False)
    drift_checked_at: datetime | None = None
    """When the drift check last looked at the gateway's region (`gatewayflow status`)."""
    held: str | None = None
    """Why the deletion guard holds the gateway's deletion, and what to run; None if not."""

    async def follow(self, on_change: OnChange) -> ApiGateway | None:
        """Follow live progress until the intent is reached; GatewayflowError if it is not."""
        gateway_id, want = self.gateway.gateway_id, self.want
        try:
            gw = await follow(self._gateways, gateway_id, want, on_change)
        except TimeoutError as exc:
            raise GatewayflowError(str(exc)) from exc
        if gw is None and want is not GatewayState.DELETED:
            raise GatewayflowError(f"{gateway_id} is gone: it was deleted meanwhile")
        if not converged(gw, want):
            assert gw is not None
            raise GatewayflowError(
                f"{gateway_id} settled at {gw.state.value}/{gw.phase.value}: "
                f"{gw.progress.last_error or 'no error recorded'}"
            )
        return gw


async def create_gateway(
    settings: Settings,
    gateway_id: str,
    *,
    region: str = "local",
    custom_domain: str | None = None,
    functions: int = 2,
    triggers: int = 1,
    connections: Connections | None = None,
) -> Tracked:
    """Insert a new gateway (state Running) and signal its workflow."""
    with _expected():
        validate_gateway_id(gateway_id)
        gateway = ApiGateway(
            gateway_id=gateway_id,
            region=region,
            custom_domain=custom_domain,
            functions=functions,
            triggers=triggers,
        )
        gateways = connections.gateways if connections else _gateways(settings, indexes=True)
        client = connections.client if connections else await _temporal(settings)
        await asyncio.to_thread(gateways.insert, gateway)
        run_id = await signal_gateway(client, settings, gateway_id, SIGNAL_FOR_STATE[gateway.state])
    return _tracked(settings, gateways, gateway, GatewayState.RUNNING, run_id)


async def request_gateway(
    settings: Settings,
    gateway_id: str,
    what: Request,
    *,
    connections: Connections | None = None,
) -> Tracked:
    """Ask the gateway's workflow for a stop, start, restart or delete (an update): it
    checks the request, writes the intent and answers."""
    with _expected():
        validate_gateway_id(gateway_id)
        gateways = connections.gateways if connections else _gateways(settings, indexes=True)
        # Refused at once, without a round trip, when the document already refuses it; an
        # unknown gateway starts no workflow. The workflow checks again before writing.
        current = await asyncio.to_thread(gateways.require, gateway_id)
        check_request(what, current.state, current.phase)
        client = connections.client if connections else await _temporal(settings)
        try:
            _accepted, run_id = await asyncio.wait_for(
                ask_gateway(client, settings, gateway_id, what), timeout=ANSWER_TIMEOUT
            )
        except TimeoutError as exc:
            wid = naming.gateway_workflow_id(settings.installation, gateway_id)
            raise GatewayflowError(
                f"{wid} did not answer the {what.value} request in "
                f"{ANSWER_TIMEOUT:.0f}s: is a worker running on task queue "
                f"{settings.task_queue}? See `gatewayflow status {gateway_id}`."
            ) from exc
        gateway = await asyncio.to_thread(gateways.require, gateway_id)
        if what is Request.DELETE:
            gateway = await _guard_answer(gateways, gateway)
    want = GatewayState.RUNNING if what is Request.RESTART else gateway.state
    tracked = _tracked(settings, gateways, gateway, want, run_id)
    if held_by_guard(gateway.progress.waiting_on):
        tracked.held = gateway.progress.waiting_on
    return tracked


async def _guard_answer(gateways: GatewayRepository, gateway: ApiGateway) -> ApiGateway:
    """The gateway once its workflow has asked the deletion guard (it does so as soon as
    it has written the delete): begun, held, or gone; as it is after a few seconds
    otherwise (an operation the delete preempts is still finishing its step)."""
    deadline = time.monotonic() + GUARD_ANSWER_TIMEOUT
    current: ApiGateway | None = gateway
    while current is not None and time.monotonic() < deadline:
        began = current.phase in (GatewayPhase.DELETING, GatewayPhase.DELETED)
        if began or held_by_guard(current.progress.waiting_on):
            return current
        await asyncio.sleep(0.1)
        current = await asyncio.to_thread(gateways.get, gateway.gateway_id)
    return current or gateway


def list_gateways(settings: Settings) -> list[ApiGateway]:
    """Every gateway, read-only."""
    with _expected():
        return _gateways(settings).list()


class GatewayGone(GatewayflowError):
    """A gateway whose document its deletion removed: when, and that deletion's run."""

    def __init__(self, gateway_id: str, deleted_at: datetime, link: str) -> None:
        when = deleted_at.isoformat(timespec="seconds")
        super().__init__(f"{gateway_id} was deleted at {when}")
        self.gateway_id = gateway_id
        self.deleted_at = deleted_at
        self.link = link


async def gateway_status(settings: Settings, gateway_id: str) -> Tracked:
    """One gateway and the links of its three workflows, read-only. GatewayGone for a
    gateway whose completed deletion Temporal still remembers."""
    with _expected():
        validate_gateway_id(gateway_id)
        deps = _reader(settings)
        found = deps.gateways.get(gateway_id)
        if found is None:
            await _raise_if_deleted(settings, gateway_id)
        gateway = deps.gateways.require(gateway_id)
        checked = deps.drift_checks.last(gateway.placed_region)
    want = gateway.state if gateway.state is not GatewayState.RESTARTING else GatewayState.RUNNING
    links = await workflow_links(settings, gateway_id)
    held = gateway.progress.waiting_on if held_by_guard(gateway.progress.waiting_on) else None
    return Tracked(gateway, want, links, deps.gateways, drift_checked_at=checked, held=held)


async def _raise_if_deleted(settings: Settings, gateway_id: str) -> None:
    """The latest completed deletion of this id on this task queue, from Temporal's
    visibility (by the GatewayId search attribute); nothing when there is none."""
    query = (
        f"GatewayId = '{gateway_id}' AND WorkflowType = 'GatewayDeletion' "
        f"AND ExecutionStatus = 'Completed' AND TaskQueue = '{settings.task_queue}'"
    )
    try:
        client = await _temporal(settings)
        async for run in client.list_workflows(query, limit=1):
            if run.close_time is not None:
                link = links.run_link(settings, run.id, run.run_id)
                raise GatewayGone(gateway_id, run.close_time, link)
    except Unreachable:
        return  # the document is what counts: "no gateway" stands


async def workflow_links(settings: Settings, gateway_id: str) -> dict[str, str]:
    """The UI link of each workflow of a gateway: its latest run, or a query when none is
    known (not started yet, or Temporal does not answer: the status still shows)."""
    installation = settings.installation
    ids = (
        naming.gateway_workflow_id(installation, gateway_id),
        naming.deletion_workflow_id(installation, gateway_id),
        naming.domain_workflow_id(installation, gateway_id),
    )
    try:
        client = await _temporal(settings)
        runs = await asyncio.gather(*(_latest_run(client, wid) for wid in ids))
    except Unreachable:
        runs = [None] * len(ids)
    return {
        wid: links.workflow_link(settings, wid, run) for wid, run in zip(ids, runs, strict=True)
    }


def deletion_plan(settings: Settings, gateway_id: str) -> list["PlanStep"]:
    """Every document and object a deletion would remove, step by step; changes nothing."""
    from control.plan import plan

    with _expected():
        validate_gateway_id(gateway_id)
        deps = _reader(settings)
        gateway = deps.gateways.require(gateway_id)
        with _cluster_errors(settings, deps, gateway.region):
            return plan(deps, gateway_id)


def audit(settings: Settings, regions: Sequence[str] = ()) -> dict[str, list["Item"]]:
    """Resources of gateways whose ApiGateway document is gone (leaks), read-only: in the
    given regions, or every configured region when none is given."""
    from gatewayflow import inventory

    with _expected():
        deps = _reader(settings)
        with ExitStack() as checks:
            wanted = _regions_checked(checks, settings, deps, regions)
            return inventory.orphans(deps, wanted)


def deletion_queues(settings: Settings) -> list[dict[str, Any]]:
    """Per region: the deletions holding a permit and those queued for one, read-only."""
    with _expected():
        return _reader(settings).permits.regions()


def deletion_guards(settings: Settings) -> list[dict[str, Any]]:
    """Per region: the deletions the guard admitted lately and those it holds, read-only."""
    with _expected():
        return _reader(settings).deletion_guard.regions()


@dataclass
class GuardOutcome:
    """What `gatewayflow deletions release|cancel` did in a region."""

    region: str
    gateway_ids: list[str]
    """The held deletions it released or cancelled."""
    unsignalled: list[str] = field(default_factory=list)
    """Whose workflow is not running: its next run asks the guard and finds the verdict."""
    restored: dict[str, GatewayState | None] = field(default_factory=dict)
    """Cancel: the intent each gave back (None: not yet, when the command stopped waiting)."""


async def release_deletions(settings: Settings, region: str) -> GuardOutcome:
    """Let every deletion the guard holds in `region` proceed (still under the region's
    deletion limit), and wake their workflows."""
    with _expected():
        deps = _reader(settings)
        client = await _temporal(settings)
        ensure_indexes(deps.db)
        ids = deps.deletion_guard.release(region, settings.deletion_guard_window_seconds)
        notice = GuardNotice(action="release", reason="released by an operator")
        return await _notify(client, settings, GuardOutcome(region, ids), notice)


async def cancel_deletions(
    settings: Settings, region: str, reason: str, *, wait: float = 30.0
) -> GuardOutcome:
    """Cancel every deletion the guard holds in `region`: each one's workflow gives the
    gateway back the intent it had before (the deletion never began). Waits up to `wait`
    seconds to report the intent each gave back."""
    with _expected():
        deps = _reader(settings)
        client = await _temporal(settings)
        ensure_indexes(deps.db)
        ids = deps.deletion_guard.cancel(region, reason)
        outcome = await _notify(
            client,
            settings,
            GuardOutcome(region, ids),
            GuardNotice(action="cancel", reason=reason),
        )
        deadline = time.monotonic() + wait
        pending = set(ids)
        while True:
            for gid in sorted(pending):
                gw = await asyncio.to_thread(deps.gateways.get, gid)
                if gw is None or gw.state is not GatewayState.DELETED:
                    outcome.restored[gid] = gw.state if gw is not None else None
                    pending.discard(gid)
            if not pending or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        for gid in pending:
            outcome.restored[gid] = None
        return outcome


async def _notify(
    client: Client, settings: Settings, outcome: GuardOutcome, notice: GuardNotice
) -> GuardOutcome:
    """Signal each held deletion's workflow, a few at a time."""
    gate = asyncio.Semaphore(20)

    async def one(gid: str) -> None:
        async with gate:
            if not await notify_guard(client, settings, gid, notice):
                outcome.unsignalled.append(gid)

    await asyncio.gather(*(one(gid) for gid in outcome.gateway_ids))
    return outcome


def preview_reap(
    settings: Settings, grace_seconds: float, gateway_ids: Sequence[str] = ()
) -> "Preview":
    """The orphans (only `gateway_ids` when given), with when each was first seen and
    whether its grace period is over, and what `reap --apply --grace grace_seconds` would
    adopt now or why it would hold; read-only."""
    from control import reaper

    with _expected():
        for gid in gateway_ids:
            validate_gateway_id(gid)
        deps = _reader(settings)
        with ExitStack() as checks:
            _regions_checked(checks, settings, deps)
            wanted = ReapInput(grace_seconds=grace_seconds, gateway_ids=list(gateway_ids))
            return reaper.preview(deps, wanted)


async def reap_orphans(
    settings: Settings,
    grace_seconds: float,
    gateway_ids: Sequence[str] = (),
    on_start: Callable[[str], None] = lambda link: None,
    confirm: int | None = None,
) -> ReapResult:
    """Run the OrphanReaper now, on the worker (only on `gateway_ids` when given; through
    its limits if it adopts exactly `confirm`), and wait for its result; `on_start` gets
    the link to its run in the Temporal UI first."""
    from control import reaper

    with _expected():
        for gid in gateway_ids:
            validate_gateway_id(gid)
        client = await _temporal(settings)
        wid = reaper.manual_workflow_id(settings)
        on_start(links.workflow_link(settings, wid))
        return await reaper.apply(client, settings, grace_seconds, wid, list(gateway_ids), confirm)


def _regions_checked(
    checks: ExitStack, settings: Settings, deps: Deps, regions: Sequence[str] = ()
) -> list[str]:
    """The given regions (every configured one when none), each API server checked and
    its errors reported as ours for the rest of `checks`."""
    from gatewayflow import inventory

    if settings.kubeconfig is None or not settings.kubeconfig.exists():
        checks.enter_context(_cluster_errors(settings, deps, "any"))
    wanted = list(regions) or inventory.audit_regions(deps)
    for region in wanted:
        checks.enter_context(_cluster_errors(settings, deps, region))
    return wanted


async def replay_histories(
    settings: Settings,
    files: Sequence[Path] = (),
    *,
    workflow_id: str | None = None,
    query: str | None = None,
) -> list["ReplayResult"]:
    """Replay history files and/or the runs the server has for an id or a query."""
    from control import replay

    if not files and workflow_id is None and query is None:
        raise GatewayflowError("give history files, --workflow-id or --query")
    with _expected():
        try:
            histories = [replay.load_history(path) for path in files]
        except replay.HistoryFormatError as exc:
            raise GatewayflowError(str(exc)) from exc
        if workflow_id is not None or query is not None:
            client = await _temporal(settings)
            try:
                found = await replay.fetch_histories(client, workflow_id=workflow_id, query=query)
            except RPCError as exc:
                raise GatewayflowError(f"cannot list workflows: {exc.message}") from exc
            if not found:
                raise GatewayflowError(f"no workflow found for {workflow_id or query}")
            histories.extend(found)
        return await replay.replay_histories(histories)


async def replay_gate(
    settings: Settings,
    query: str | None,
    limit: int,
    on_result: Callable[[int, int, "ReplayResult"], None],
) -> "GateRun":
    """Replay what the server holds of `query` (default: this task queue's workflows),
    running first, at most `limit`, until the first that does not replay."""
    from control import replay

    wanted = replay.gate_query(settings.task_queue, query)
    with _expected():
        client = await _temporal(settings)
        try:
            run = await replay.gate(client, wanted, limit, on_result)
        except RPCError as exc:
            raise GatewayflowError(f"cannot list workflows: {exc.message}") from exc
    if not run.replayed:
        raise GatewayflowError(f"no workflow found for {wanted}: nothing to replay")
    return run


# -- connections --------------------------------------------------------------------------


@contextmanager
def _expected() -> Iterator[None]:
    """Turn the errors a user can act on, from every layer below, into a GatewayflowError."""
    try:
        yield
    except GatewayflowError:
        raise
    except (InvalidGatewayId, RequestRefused, StoreError) as exc:
        raise GatewayflowError(str(exc)) from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise GatewayflowError(f"invalid input: {problems}") from exc


def _reader(settings: Settings) -> Deps:
    """Connections for a read-only command: MongoDB checked, no index created."""
    deps = Deps(settings, indexes=False)
    _check_mongo(settings, deps)
    return deps


def _gateways(settings: Settings, *, indexes: bool = False) -> GatewayRepository:
    """The ApiGateway collection, checked; `indexes` for commands that write."""
    deps = _reader(settings)
    if indexes:
        ensure_indexes(deps.db)
    return deps.gateways


def _check_mongo(settings: Settings, deps: Deps) -> None:
    try:
        ping(deps.db, timeout=REACH_TIMEOUT)
    except StoreUnreachable as exc:
        raise Unreachable(
            "MongoDB", settings.mongodb_uri or "", settings.remedy("MONGODB_URI")
        ) from exc


@contextmanager
def _cluster_errors(settings: Settings, deps: Deps, region: str) -> Iterator[None]:
    """Check that the region's API server answers, then report its errors as ours."""
    from gatewayflow.cluster.errors import ClusterError

    part = f"the Kubernetes API of region {region}"
    kubeconfig = settings.kubeconfig
    if kubeconfig is None or not kubeconfig.exists():
        raise Unreachable(part, f"{kubeconfig} (no such kubeconfig)", settings.remedy("KUBECONFIG"))
    try:
        cluster = deps.cluster(region)
        try:
            cluster.ping()
        except ClusterError as exc:
            if exc.status is None:  # no answer at all, rather than a refusal
                raise Unreachable(part, cluster.host, settings.remedy("KUBECONFIG")) from exc
            raise
        yield
    except ClusterError as exc:
        raise GatewayflowError(str(exc)) from exc


async def _temporal(settings: Settings) -> Client:
    address = settings.temporal_address or ""
    try:
        return await asyncio.wait_for(connect(settings), timeout=REACH_TIMEOUT + 1)
    except (RuntimeError, TimeoutError) as exc:
        raise Unreachable("Temporal", address, settings.remedy("TEMPORAL_ADDRESS")) from exc


async def _latest_run(client: Client, workflow_id: str) -> str | None:
    try:
        described = await client.get_workflow_handle(workflow_id).describe(
            rpc_timeout=timedelta(seconds=REACH_TIMEOUT)
        )
    except RPCError:
        return None  # not started yet, or not visible: the link becomes a query
    return described.run_id


def _tracked(
    settings: Settings,
    gateways: GatewayRepository,
    gateway: ApiGateway,
    want: GatewayState,
    run_id: str | None,
) -> Tracked:
    wid = naming.gateway_workflow_id(settings.installation, gateway.gateway_id)
    return Tracked(gateway, want, {wid: links.workflow_link(settings, wid, run_id)}, gateways)
