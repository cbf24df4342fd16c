"""Which installation a control database (GATEWAYFLOW_DB) belongs to: one marker document,
written by the first worker that starts on it, checked by every worker after it."""

import contextlib
import uuid

from pymongo.errors import DuplicateKeyError

from gatewayflow.domain.documents import utcnow
from gatewayflow.store.client import Db
from gatewayflow.store.errors import InstallationMismatch

COLLECTION = "Installation"
MARKER_ID = "installation"


def claim(db: Db, installation: str) -> str:
    """Mark the database as `installation`'s, or check that it is; returns the marker's
    key (a random id of this control database). InstallationMismatch when the database
    belongs to another installation: nothing of it may be acted on by this process."""
    marker = {"installation": installation, "key": uuid.uuid4().hex, "createdAt": utcnow()}
    with contextlib.suppress(DuplicateKeyError):
        db[COLLECTION].insert_one({"_id": MARKER_ID, **marker})
    found = db[COLLECTION].find_one({"_id": MARKER_ID}) or {}
    if found.get("installation") != installation:
        raise InstallationMismatch(db.name, str(found.get("installation")), installation)
    return str(found["key"])


def key_of(db: Db) -> str | None:
    """The key of the database's marker; None before any worker started on it."""
    found = db[COLLECTION].find_one({"_id": MARKER_ID})
    return None if found is None else str(found.get("key"))
