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
import logging
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from devstack import stack
from devstack.demo_check import check_stack
from devstack.processes import DevstackError
from settings import Settings, SettingsError
from worker import run_worker

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
        asyncio.run(_serve(started.settings, run=worker))
    finally:
        if started.started:
            with console.status("Stopping the embedded stack..."):
                stack.stop(settings, started.started)
            console.print(f"Stopped: {', '.join(started.started)}")


@app.command()
def down() -> None:
    """Stop the embedded stack started by `gatewayflow up`."""
    settings = environment_settings()
    with errors_exit(), console.status("Stopping the embedded stack..."):
        stopped = stack.stop(settings)
    console.print(f"Stopped: {', '.join(stopped)}" if stopped else "No embedded stack was running.")


@app.command()
def demo() -> None:
    """Bring up the stack, show that every part answers, and bring it down again."""
    settings = environment_settings()
    started = start_stack(settings)
    try:
        checks = check_stack(started.settings)
        table = Table("part", "answer", title="Embedded stack")
        for check in checks:
            mark = "[green]ok[/]" if check.ok else "[red]FAILED[/]"
            table.add_row(check.name, f"{mark} {check.detail}")
        console.print(table)
        print_addresses(started.settings)
    finally:
        if started.started:
            with console.status("Stopping the embedded stack..."):
                stack.stop(settings, started.started)
    if not all(check.ok for check in checks):
        raise typer.Exit(1)


def environment_settings() -> Settings:
    """Settings exactly as the environment gives them, not yet filled from a running stack."""
    try:
        return Settings()
    except ValidationError as exc:
        fail(f"invalid setting: {exc}")


def start_stack(settings: Settings) -> stack.StackStart:
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
    except (DevstackError, SettingsError) as exc:
        fail(str(exc))


def fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(1)


async def _serve(settings: Settings, *, run: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
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
