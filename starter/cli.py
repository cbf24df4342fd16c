"""The `gatewayflow` command line: the app, and how every failure reaches the user.

Commands live in `starter.gateways` and `starter.deletions` (each calls one function of
`control.service`) and `starter.stack` (the embedded stack, a dev install). An expected failure is a
`GatewayflowError`: one line, exit 1. Anything else is a bug: a short line naming the log
file under GATEWAYFLOW_HOME that holds the full trace, exit 2.
"""

import os
import sys

import typer

from gatewayflow.domain.errors import GatewayflowError
from starter import deletions, gateways, stack
from starter.output import crash, error_line

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Durable lifecycle orchestration for API gateways, on Temporal.",
)
stack.register(app)
gateways.register(app)
deletions.register(app)


def main() -> None:
    try:
        app()
    except GatewayflowError as exc:
        error_line(str(exc))
        # Leave without interpreter finalization: a Temporal connect that never answered
        # still has a native thread that may call back into a finalizing interpreter.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    except Exception as exc:  # a bug: the trace goes to the log, not over the user
        crash(exc)


if __name__ == "__main__":
    main()
