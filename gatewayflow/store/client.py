"""Connecting to MongoDB with timeouts that fail fast instead of hanging a worker."""

import time
from typing import Any

import pymongo
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import ConnectionFailure

from gatewayflow.store.errors import StoreUnreachable

RawDoc = dict[str, Any]
Db = Database[RawDoc]
Client = MongoClient[RawDoc]


def make_client(uri: str) -> Client:
    """A client that gives up on an unreachable server within seconds.

    Datetimes come back timezone-aware (UTC), as the pydantic documents hold them.
    """
    return MongoClient(
        uri,
        appname="gatewayflow",
        serverSelectionTimeoutMS=5_000,
        connectTimeoutMS=5_000,
        socketTimeoutMS=30_000,
        retryWrites=True,
        retryReads=True,
        tz_aware=True,
    )


def connect(uri: str, db_name: str) -> Db:
    """The gatewayflow database (`GATEWAYFLOW_DB`, default `gatewayflow`) on `uri`."""
    return make_client(uri)[db_name]


def ping(db: Db, timeout: float | None = None) -> None:
    """Raise StoreUnreachable unless the server answers (within `timeout` seconds).

    A server that refuses the connection is reported as soon as the client's monitor has
    seen it refuse, rather than after the whole server selection timeout.
    """
    deadline = time.monotonic() + (timeout or 30.0)
    while time.monotonic() < deadline:
        servers = db.client.topology_description.server_descriptions().values()
        if any(server.is_readable for server in servers):
            break
        errors = [server.error for server in servers]
        if errors and all(error is not None for error in errors):
            raise StoreUnreachable(str(errors[0]))
        time.sleep(0.02)
    try:
        with pymongo.timeout(max(0.1, deadline - time.monotonic())):
            db.command("ping")
    except ConnectionFailure as exc:
        raise StoreUnreachable(str(exc)) from exc
