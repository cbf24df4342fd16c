"""Commands on gateways: each parses, calls one function of `control.service`, prints."""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from control import service
from control.views import (
    deletion_guard_text,
    deletion_queue,
    hold_text,
    leftovers_table,
    orphans_table,
    plan_table,
    reap_preview_text,
    reap_table,
    status_detail,
    status_table,
    where_to_look,
)
from gatewayflow import links
from gatewayflow.domain.transitions import Request
from gatewayflow.settings import Settings, load_settings
from starter.output import console, fail, progress

if TYPE_CHECKING:
    from control.replay import ReplayResult

GatewayId = Annotated[str, typer.Argument(help="The gateway id (a DNS-1123 label).")]
Wait = Annotated[bool, typer.Option("--wait", help="Follow live progress until done.")]

REQUESTS: dict[Request, str] = {
    Request.STOP: "Stop: routes off, CronJobs suspended, pods gone; data and certificates kept.",
    Request.START: "Start a stopped gateway and wait for its Deployment to be ready.",
    Request.RESTART: "A rolling update of the gateway's Deployment.",
    Request.DELETE: "Set state = Deleted: the GatewayDeletion workflow removes everything it owns.",
}


def register(app: typer.Typer) -> None:
    app.command()(create)
    for what, help_text in REQUESTS.items():
        app.command(name=what.value, help=help_text)(_request_command(what))
    app.command()(status)
    app.command()(plan)
    app.command()(audit)
    app.command()(reap)
    app.command()(replay)


def create(
    gateway_id: GatewayId,
    region: Annotated[str, typer.Option(help="Region (kubeconfig context).")] = "local",
    custom_domain: Annotated[str | None, typer.Option(help="A custom domain.")] = None,
    functions: Annotated[int, typer.Option(min=0, max=100)] = 2,
    triggers: Annotated[int, typer.Option(min=0, max=100)] = 1,
    wait: Wait = False,
) -> None:
    """Create a gateway (state Running): the system provisions and starts it."""
    settings = load_settings()

    async def run() -> None:
        tracked = await service.create_gateway(
            settings,
            gateway_id,
            region=region,
            custom_domain=custom_domain,
            functions=functions,
            triggers=triggers,
        )
        console.print(f"Created {gateway_id} (state Running, phase Creating).")
        await _accepted(settings, tracked, wait)

    asyncio.run(run())


def _request_command(what: Request) -> Callable[[str, bool], None]:
    def command(gateway_id: GatewayId, wait: Wait = False) -> None:
        settings = load_settings()

        async def run() -> None:
            tracked = await service.request_gateway(settings, gateway_id, what)
            gw = tracked.gateway
            console.print(f"{gateway_id}: state -> {gw.state.value} (phase {gw.phase.value})")
            if tracked.held is not None:
                console.print(f"[yellow]held[/] by {tracked.held}", soft_wrap=True)
            await _accepted(settings, tracked, wait)

        asyncio.run(run())

    return command


async def _accepted(settings: Settings, tracked: service.Tracked, wait: bool) -> None:
    gateway_id = tracked.gateway.gateway_id
    [link] = tracked.links.values()
    console.print(where_to_look(settings, gateway_id, link), soft_wrap=True)
    if wait:
        await tracked.follow(progress(gateway_id))
        console.print(f"[green]✓[/] {gateway_id}: {tracked.want.value}")


def status(
    gateway_id: Annotated[str | None, typer.Argument(help="One gateway; all when omitted.")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Follow live.")] = False,
) -> None:
    """State, phase, current step, last error and the Temporal UI links. Writes nothing."""
    settings = load_settings()
    if gateway_id is None:
        console.print(status_table(service.list_gateways(settings)))
        limit = settings.region_deletion_limit
        console.print(deletion_queue(service.deletion_queues(settings), limit))
        held = deletion_guard_text(service.deletion_guards(settings))
        if held is not None:
            console.print(held, soft_wrap=True)
        console.print(f"Temporal UI: {links.query_link(settings, 'GatewayId IS NOT NULL')}")
        return

    async def run() -> None:
        try:
            tracked = await service.gateway_status(settings, gateway_id)
        except service.GatewayGone as gone:
            console.print(f"{gone}: its deletion completed and removed its document")
            console.print(f"The deletion: {gone.link}", soft_wrap=True)
            return
        detail = status_detail(tracked.gateway, tracked.links, tracked.drift_checked_at)
        console.print(detail, soft_wrap=True)
        if watch:
            await tracked.follow(progress(gateway_id))

    asyncio.run(run())


def plan(gateway_id: GatewayId) -> None:
    """Dry run: every document and object the deletion would remove, step by step."""
    settings = load_settings()
    steps = service.deletion_plan(settings, gateway_id)
    console.print(plan_table(gateway_id, steps))
    total = sum(len(step.items) for step in steps)
    console.print(f"{total} items in {len(steps)} steps; nothing was changed.")
    console.print(where_to_look(settings, gateway_id), soft_wrap=True)


def audit(
    region: Annotated[
        list[str] | None, typer.Option(help="Only this region (repeatable); default: all.")
    ] = None,
) -> None:
    """Find leaks: resources of gateways whose ApiGateway document is gone, in every region
    and on the runtime MongoDB (databases and users). Exit 1 if any."""
    found = service.audit(load_settings(), region or ())
    if found:
        console.print(leftovers_table(found))
        fail(f"{len(found)} deleted gateway(s) left resources behind")
    console.print("[green]✓[/] nothing left behind: every owned resource has its gateway")


def reap(
    apply: Annotated[
        bool, typer.Option("--apply", help="Remove the orphans now (default: a dry run).")
    ] = False,
    grace: Annotated[
        float, typer.Option(help="With --apply: only orphans seen at least this many seconds.")
    ] = 0.0,
    gateway: Annotated[
        list[str] | None, typer.Option(help="Only this orphan (repeatable).")
    ] = None,
    confirm: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="With --apply: take a run the reaper's limits hold through, if it adopts "
            "exactly this many (the number the dry run shows).",
        ),
    ] = None,
) -> None:
    """Orphans (resources whose gateway is gone): listed; removed with --apply."""
    settings = load_settings()
    chosen = gateway or []
    if not apply:
        preview = service.preview_reap(settings, grace, chosen)
        console.print(orphans_table(preview.orphans))
        console.print(
            f"{len(preview.orphans)} orphan(s); nothing was changed. The schedule removes one "
            f"once seen for {settings.reap_grace_seconds:.0f}s.",
            soft_wrap=True,
        )
        console.print(reap_preview_text(preview.run, grace, chosen), soft_wrap=True)
        return

    def started(link: str) -> None:
        console.print(f"Reaping on the worker: {link}", soft_wrap=True)

    result = asyncio.run(service.reap_orphans(settings, grace, chosen, started, confirm))
    console.print(reap_table(result))
    if result.hold is not None:
        fail(f"adopted nothing: {hold_text(result.hold, grace, chosen)}")
    console.print(f"Reaped {len(result.reaped)}; `gatewayflow audit` checks what is left.")


def replay(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="History JSON: `temporal workflow show --output json`, or tctl's."),
    ] = None,
    workflow_id: Annotated[
        str | None, typer.Option(help="Replay every run of this workflow, from the server.")
    ] = None,
    query: Annotated[
        str | None,
        typer.Option(
            help="Replay every run this visibility query finds, e.g. \"GatewayId='gw1'\"."
        ),
    ] = None,
    from_server: Annotated[
        bool,
        typer.Option(
            "--from-server",
            help="Before a rollout: replay the server's running and recent closed runs of "
            "this task queue (or of --query), stopping at the first that does not replay.",
        ),
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="With --from-server: at most this many runs (default 1000)."),
    ] = None,
) -> None:
    """Replay workflow histories against the current code. Exit 1 if one does not replay."""
    settings = load_settings()
    if from_server:
        if files or workflow_id is not None:
            fail("--from-server replays what the server holds: no files or --workflow-id")
        _replay_gate(settings, query, limit or 1000)
        return
    if limit is not None:
        fail("--limit goes with --from-server")
    from control.replay import results_table  # with the SDK's replayer: only here

    results = asyncio.run(
        service.replay_histories(settings, files or [], workflow_id=workflow_id, query=query)
    )
    console.print(results_table(results))
    for result in results:
        link = links.run_link(settings, result.workflow_id, result.run_id)
        console.print(f"{result.workflow_id}: {link}", soft_wrap=True, highlight=False)
    broken = [r for r in results if not r.ok]
    if broken:
        fail(
            "; ".join(
                f"{r.workflow_id} ({r.workflow_type}) does not replay: {r.error}" for r in broken
            )
        )
    console.print(f"[green]✓[/] {len(results)} histories replay against the current code")


def _replay_gate(settings: Settings, query: str | None, limit: int) -> None:
    """One line per history as it replays (n of total); the first that does not stops it."""

    def replayed(n: int, total: int, result: "ReplayResult") -> None:
        mark = "[green]✓[/]" if result.ok else "[red]✗[/]"
        console.print(
            f"{n:>5} of {total}  {mark} {result.workflow_id} ({result.workflow_type})",
            soft_wrap=True,
            highlight=False,
        )

    run = asyncio.run(service.replay_gate(settings, query, limit, replayed))
    broken = run.broken
    if broken is not None:
        link = links.run_link(settings, broken.workflow_id, broken.run_id)
        where = f" at {broken.event}" if broken.event else ""
        fail(
            f"{broken.workflow_id} ({broken.workflow_type}) does not replay{where}: "
            f"{broken.error}; {link}"
        )
    console.print(
        f"[green]✓[/] {run.replayed} histories of {run.query} replay against the current code",
        soft_wrap=True,
        highlight=False,
    )
