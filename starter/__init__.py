"""The `gatewayflow` command line: parse, call one service function, print."""

from starter.cli import app, main

__all__ = ["app", "main"]
