"""Connecting to MongoDB with timeouts that fail fast instead of hanging a worker."""

from typing import Any

from pymongo import MongoClient
from pymongo.database import Database

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


def ping(db: Db) -> None:
    """Raise a pymongo error unless the server answers."""
    db.command("ping")
