"""How the command line prints: one console, one way to fail, where a full trace goes."""

import os
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

from control.views import progress_line
from gatewayflow.domain.documents import ApiGateway

console = Console()


def fail(message: str) -> NoReturn:
    """One line on stdout, exit status 1: an expected failure the user can act on."""
    error_line(message)
    raise typer.Exit(1)


def error_line(message: str) -> None:
    console.print(Text.assemble(("error:", "red"), f" {message}"), soft_wrap=True)


def crash(exc: BaseException) -> NoReturn:
    """An unexpected failure: a short message here, the full trace in the home's log."""
    log = trace_file()
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as out:
            out.write(f"--- {datetime.now(UTC).isoformat(timespec='seconds')}\n")
            out.write("".join(traceback.format_exception(exc)))
        where = f"the full trace is in {log.resolve()}"
    except OSError:
        where = "the trace could not be written to " + str(log)
    error_line(f"unexpected {type(exc).__name__}: {exc}; {where}")
    raise SystemExit(2)


def trace_file() -> Path:
    """Under GATEWAYFLOW_HOME, next to the embedded stack's logs."""
    return Path(os.environ.get("GATEWAYFLOW_HOME", ".gatewayflow")) / "logs" / "gatewayflow.log"


def progress(gateway_id: str) -> Callable[[ApiGateway | None], None]:
    """Prints one line per change of a followed gateway."""
    return lambda gateway: console.print(progress_line(gateway, gateway_id))
