"""`gatewayflow demo`: the whole story on the embedded default, in under two minutes.

Three gateways (one with a custom domain) are created with their full resource trees,
one is stopped and started, a hand-deleted Deployment comes back (drift repair), a gateway
whose document was removed by hand is reaped (orphan reaper), the others are deleted, and
the end proves that MongoDB and the cluster hold nothing of them. Progress is read from
the Mongo documents, exactly as a user of `gatewayflow status --watch` would see it.
"""

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text
from temporalio.client import Client

from control import reaper, service
from control.schedules import ensure_schedules
from control.views import (
    PHASE_STYLE,
    leftovers_table,
    orphans_table,
    progress_line,
    reap_table,
    step_text,
)
from control.worker import run_worker
from gatewayflow import links
from gatewayflow.client import connect
from gatewayflow.deps import Deps
from gatewayflow.domain import naming
from gatewayflow.domain.documents import ApiGateway
from gatewayflow.domain.states import GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.inventory import Item, leftovers, orphans
from gatewayflow.settings import Settings


@dataclass
class Board:
    """The live table: one row per gateway, refreshed from its document."""

    rows: dict[str, ApiGateway | None] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)

    def render(self, title: str) -> Table:
        table = Table("gateway", "state", "phase", "step", "completed", title=title)
        for gid, gw in self.rows.items():
            if gw is None:
                table.add_row(gid, "-", Text("removed", style="red"), "", "ApiGateway gone")
                continue
            p = gw.progress
            table.add_row(
                gid,
                gw.state.value,
                Text(gw.phase.value, style=PHASE_STYLE.get(gw.phase.value, "")),
                step_text(p),
                ", ".join(p.completed[-4:]),
            )
        return table


async def _follow(
    deps: Deps,
    ids: list[str],
    want: GatewayState,
    on_change: Callable[[str], Callable[[ApiGateway | None], None]],
) -> list[ApiGateway | None]:
    return await asyncio.gather(
        *(service.follow(deps.gateways, gid, want, on_change(gid), timeout=90) for gid in ids)
    )


async def _follow_all(
    console: Console, deps: Deps, ids: list[str], want: GatewayState, title: str
) -> None:
    board = Board(rows={gid: None for gid in ids})
    if console.is_terminal:
        with Live(board.render(title), console=console, refresh_per_second=8) as live:

            def on_change(gid: str) -> Callable[[ApiGateway | None], None]:
                def update(gw: ApiGateway | None) -> None:
                    board.rows[gid] = gw
                    live.update(board.render(title))

                return update

            results = await _follow(deps, ids, want, on_change)
    else:  # a log, not a terminal: one line per change

        def on_change(gid: str) -> Callable[[ApiGateway | None], None]:
            def update(gw: ApiGateway | None) -> None:
                console.print(Text(f"{gid:<10}") + progress_line(gw, gid))

            return update

        results = await _follow(deps, ids, want, on_change)
    for gid, gw in zip(ids, results, strict=True):
        if not service.converged(gw, want):
            reason = gw.progress.last_error if gw else "?"
            raise RuntimeError(f"{gid} did not reach {want.value}: {reason}")


async def run_demo(settings: Settings, console: Console) -> bool:
    """True when every gateway was deleted and nothing is left behind."""
    began = time.monotonic()
    suffix = secrets.token_hex(2)
    shop, blog, api = (f"{name}-{suffix}" for name in ("shop", "blog", "api"))
    ids = [shop, blog, api]
    client = await connect(settings)
    # The periodic work at the pace of a demo; put back as configured at the end.
    paced = settings.model_copy(update=DEMO_PACE)
    deps = Deps(paced)
    # Asked as `gatewayflow create|stop|start|delete` asks, on connections kept open.
    connections = service.Connections(client, deps.gateways)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(paced, stop=stop))
    try:
        console.rule("1. create three gateways with their full resource trees")
        await asyncio.gather(
            service.create_gateway(
                settings, shop, custom_domain=f"{shop}.example.com", connections=connections
            ),
            service.create_gateway(settings, blog, connections=connections),
            service.create_gateway(settings, api, functions=3, triggers=2, connections=connections),
        )
        await _follow_all(console, deps, ids, GatewayState.RUNNING, "creating")
        _print_inventory(console, deps, shop)

        console.rule(f"2. stop and start {blog}")
        await service.request_gateway(settings, blog, Request.STOP, connections=connections)
        await _follow_all(console, deps, [blog], GatewayState.STOPPED, f"stopping {blog}")
        await service.request_gateway(settings, blog, Request.START, connections=connections)
        await _follow_all(console, deps, [blog], GatewayState.RUNNING, f"starting {blog}")

        console.rule(f"3. drift: {shop}'s Deployment deleted by hand comes back")
        await _drift_scene(console, deps, shop)

        console.rule(f"4. an orphan: {api}'s ApiGateway document removed by hand is reaped")
        await _orphan_scene(console, client, deps, api)

        console.rule(f"5. delete {shop} and {blog} (state = Deleted)")
        for gid in (shop, blog):
            await service.request_gateway(settings, gid, Request.DELETE, connections=connections)
        await _follow_all(
            console, deps, [shop, blog], GatewayState.DELETED, "deleting: 8 steps each"
        )

        console.rule("6. verify that nothing is left behind")
        left = {gid: await asyncio.to_thread(leftovers, deps, gid) for gid in ids}
        left = {gid: items for gid, items in left.items() if items}
        leaks: dict[str, list[Item]] = await asyncio.to_thread(orphans, deps)
        clean = not left and not any(gid in leaks for gid in ids)
        if clean:
            console.print(
                "[green]✓[/] MongoDB (8 collections, runtime databases) and the cluster "
                f"(every owned kind) hold nothing of {', '.join(ids)}"
            )
        else:
            console.print(leftovers_table({**left, **leaks}))
        console.print(f"Temporal UI, every workflow of {shop}:")
        console.print(f"  {links.gateway_link(settings, shop)}", soft_wrap=True)
        deletion = naming.deletion_workflow_id(settings.installation, shop)
        deletion_link = (await service.workflow_links(settings, shop))[deletion]
        console.print(f"  {deletion}: {deletion_link}", soft_wrap=True)
        console.print(f"Demo finished in {time.monotonic() - began:.1f}s")
        return clean
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=60)
        await ensure_schedules(client, settings)


DEMO_PACE = {"drift_interval_seconds": 2.0}


async def _until(what: str, done: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(done):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(0.2)


async def _drift_scene(console: Console, deps: Deps, gid: str) -> None:
    ns = naming.namespace(gid)
    console.print(f"$ kubectl -n {ns} delete deployment {gid}")
    api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(deps.settings.kubeconfig), context="local"
    )
    apps = k8s.AppsV1Api(api)
    began = time.monotonic()
    try:
        apps.delete_namespaced_deployment(gid, ns)

        def present() -> bool:
            try:
                apps.read_namespaced_deployment(gid, ns)
            except ApiException as err:
                if err.status == 404:
                    return False
                raise
            return True

        await _until(f"Deployment {ns}/{gid} deleted", lambda: not present())
        console.print(
            f"  gone; the drift check (every {DEMO_PACE['drift_interval_seconds']:.0f}s, "
            "one labelled list per kind and namespace) finds it and signals repair to "
            f"{naming.gateway_workflow_id(deps.settings.installation, gid)}"
        )
        await _until(f"Deployment {ns}/{gid} back", present)
        await _follow_all(console, deps, [gid], GatewayState.RUNNING, f"repairing {gid}")
    finally:
        api.close()
    drift = deps.gateways.require(gid).progress.drift
    console.print(
        f"[green]✓[/] back after {time.monotonic() - began:.1f}s; progress.drift: "
        f"{', '.join(drift.repaired)} ({drift.repairs} repair)"
    )
    console.print(f"  see [bold]gatewayflow status {gid}[/] (drift check row)")


async def _orphan_scene(console: Console, client: Client, deps: Deps, gid: str) -> None:
    """The reaper run of the schedule, on this one orphan: a shared cluster may hold other
    databases' gateways, which this demo must not touch."""
    console.print(f"> db.ApiGateway.deleteOne({{gatewayId: '{gid}'}})")
    await asyncio.to_thread(deps.db["ApiGateway"].delete_one, {"gatewayId": gid})
    found = await asyncio.to_thread(reaper.dry_run, deps)
    console.print(orphans_table([o for o in found if o.gateway_id == gid]))
    grace = deps.settings.reap_grace_seconds
    console.print(
        f"  `gatewayflow reap` lists it; the reaper schedule removes it once seen for "
        f"{grace:.0f}s (GATEWAYFLOW_REAP_GRACE). Now, by hand: "
        f"[bold]gatewayflow reap --apply --gateway {gid}[/]"
    )
    began = time.monotonic()
    wid = reaper.manual_workflow_id(deps.settings)
    result = await reaper.apply(client, deps.settings, 0.0, wid, [gid])
    console.print(reap_table(result))

    def reaped() -> bool:
        return not leftovers(deps, gid) and deps.gateways.get(gid) is None

    await _until(f"{gid} reaped", reaped, timeout=120)
    console.print(
        f"[green]✓[/] reaped in {time.monotonic() - began:.1f}s through the ordinary deletion "
        "steps: namespace, objects, runtime database and documents"
    )
    console.print(f"  the reaper run: {links.workflow_link(deps.settings, wid)}", soft_wrap=True)


def _print_inventory(console: Console, deps: Deps, gateway_id: str) -> None:
    from control.plan import plan

    steps = plan(deps, gateway_id)
    count = sum(len(step.items) for step in steps)
    kinds = sorted({item.kind for step in steps for item in step.items})
    console.print(
        f"{gateway_id} owns {count} documents and objects: {', '.join(kinds)} "
        f"(see [bold]gatewayflow plan {gateway_id}[/])"
    )
