"""A gateway's database: its `Database` document, and the runtime database and user."""

import contextlib

from pymongo.errors import DuplicateKeyError, OperationFailure

from gatewayflow.domain.documents import Database, utcnow
from gatewayflow.domain.naming import runtime_database, runtime_user, validate_gateway_id
from gatewayflow.domain.states import DatabasePhase, DatabaseState
from gatewayflow.store.client import Client, Db, RawDoc
from gatewayflow.store.errors import InstallationTaken, NotOwnedDatabase
from gatewayflow.store.per_gateway import PerGatewayRepository

USER_EXISTS = 51003
USER_NOT_FOUND = 11
# Written into every runtime database when it is made (a database exists once it holds a
# document): it tells the runtime which gateway it serves. The tenant's user can write it,
# so ownership is never read from it, only from the registry below.
MARKER_COLLECTION = "_meta"
MARKER_ID = "gateway"
# Runtime databases are `gw_<id with - as _>`: a gateway id has no `_`, so no two ids share one.
RUNTIME_PREFIX = "gw_"
REGISTRY_DATABASE = "gatewayflow_registry"
"""On the runtime MongoDB, beside the tenants' databases and out of their reach (a tenant's
user has readWrite on its own database only): which installation and gateway own each
runtime database, and which control database each installation is. Shared by every
installation using the server."""
REGISTRY = "RuntimeDatabases"  # _id: database name; installation, gatewayId, user
INSTALLATIONS = "Installations"  # _id: installation; key, database (the control database)


class DatabaseRepository(PerGatewayRepository[Database, DatabaseState, DatabasePhase]):
    def __init__(self, db: Db) -> None:
        super().__init__(db, Database)


class RuntimeDatabases:
    """`gw_<id>` databases and their readWrite users on the runtime MongoDB, each made and
    dropped only under its registration (REGISTRY_DATABASE) to this installation and
    gateway.

    Passwords go to the server only; they are never logged nor put in an error message.
    """

    def __init__(self, client: Client, installation: str) -> None:
        self._client = client
        self.installation = installation
        self._registry = client[REGISTRY_DATABASE][REGISTRY]

    def create(self, gateway_id: str, password: str) -> None:
        """Register the database, then create it and its user; idempotent.

        An existing user gets `password` (and its role) again, so the user always matches
        the Secret that the caller writes with the same password. A database registered to
        another installation or gateway, or one that exists unregistered, is not ours:
        NotOwnedDatabase, and nothing is written.
        """
        name = runtime_database(validate_gateway_id(gateway_id))
        self._register(gateway_id, name)
        db = self._client[name]
        db[MARKER_COLLECTION].update_one(
            {"_id": MARKER_ID},
            {"$setOnInsert": {"gatewayId": gateway_id, "createdAt": utcnow()}},
            upsert=True,
        )
        user = runtime_user(gateway_id)
        roles = [{"role": "readWrite", "db": name}]
        try:
            db.command("createUser", user, pwd=password, roles=roles)
        except OperationFailure as exc:
            if exc.code != USER_EXISTS:
                raise
            db.command("updateUser", user, pwd=password, roles=roles)

    def drop(self, gateway_id: str) -> None:
        """Drop the user, then the database, then the registration; idempotent.

        Only a database registered to this installation and gateway: NotOwnedDatabase
        otherwise, and nothing is dropped. The registration is written first and removed
        last, so nothing of ours is ever left without it.
        """
        name = runtime_database(validate_gateway_id(gateway_id))
        entry = self._registry.find_one({"_id": name})
        if entry is None:
            if not self.exists(gateway_id):
                return
            raise NotOwnedDatabase(name, gateway_id, self.installation, None)
        self._check(entry, gateway_id, name)
        try:
            self._client[name].command("dropUser", runtime_user(gateway_id))
        except OperationFailure as exc:
            if exc.code != USER_NOT_FOUND:
                raise
        self._client.drop_database(name)
        self._registry.delete_one({"_id": name})

    def owned(self, gateway_id: str) -> bool:
        """Whether the gateway's database is registered to it: something of it (the
        database, its user or the registration itself) may remain."""
        entry = self._registry.find_one({"_id": runtime_database(gateway_id)})
        return entry is not None and _owner(entry) == (self.installation, gateway_id)

    def registered(self) -> dict[str, str]:
        """Database name -> gateway id of every runtime database registered to this
        installation, whether the database still exists or not."""
        return {
            str(entry["_id"]): str(entry["gatewayId"])
            for entry in self._registry.find({"installation": self.installation})
            if isinstance(entry.get("gatewayId"), str)
        }

    def unregistered(self) -> list[str]:
        """Every runtime database registered to no one: made before the registry, or not
        by gatewayflow. Never made, changed or dropped by anyone (adoption aside)."""
        names = self.names()
        taken = {entry["_id"] for entry in self._registry.find({"_id": {"$in": names}}, {"_id": 1})}
        return [name for name in names if name not in taken]

    def ensure_indexes(self) -> None:
        """The registry's index for `registered` (one installation's databases)."""
        self._registry.create_index("installation", name="installation")

    def adopt(self, gateway_id: str) -> bool:
        """Register a database made before the registry (its owner marker names the
        gateway, no registration exists), for a gateway whose document is this
        installation's (gatewayflow/adoption.py). True when registered now."""
        name = runtime_database(validate_gateway_id(gateway_id))
        if self._registry.find_one({"_id": name}) is not None or not self.exists(gateway_id):
            return False
        marker = self._client[name][MARKER_COLLECTION].find_one({"_id": MARKER_ID})
        if marker is None or marker.get("gatewayId") != gateway_id:
            return False
        try:
            self._registry.insert_one(self._entry(gateway_id, name))
        except DuplicateKeyError:
            return False
        return True

    def register_installation(self, key: str, database: str) -> None:
        """Record that this installation is the control database `database` (its
        installation marker's `key`); InstallationTaken when another control database
        already is: both would take each other's gateways for orphans."""
        registry = self._client[REGISTRY_DATABASE][INSTALLATIONS]
        entry = {"key": key, "database": database, "createdAt": utcnow()}
        with contextlib.suppress(DuplicateKeyError):
            registry.insert_one({"_id": self.installation, **entry})
        taken = registry.find_one({"_id": self.installation}) or {}
        if taken.get("key") != key:
            raise InstallationTaken(self.installation, database, str(taken.get("database")))

    def forget_installation(self, key: str) -> None:
        """Remove this installation's registration (its control database is gone)."""
        self._client[REGISTRY_DATABASE][INSTALLATIONS].delete_one(
            {"_id": self.installation, "key": key}
        )

    def _register(self, gateway_id: str, name: str) -> None:
        entry = self._registry.find_one({"_id": name})
        if entry is None:
            if self.exists(gateway_id):  # made by someone else, or before the registry
                raise NotOwnedDatabase(name, gateway_id, self.installation, None)
            try:
                self._registry.insert_one(self._entry(gateway_id, name))
                return
            except DuplicateKeyError:
                entry = self._registry.find_one({"_id": name}) or {}
        self._check(entry, gateway_id, name)

    def _entry(self, gateway_id: str, name: str) -> RawDoc:
        return {
            "_id": name,
            "installation": self.installation,
            "gatewayId": gateway_id,
            "user": runtime_user(gateway_id),
            "createdAt": utcnow(),
        }

    def _check(self, entry: RawDoc, gateway_id: str, name: str) -> None:
        if _owner(entry) != (self.installation, gateway_id):
            raise NotOwnedDatabase(name, gateway_id, self.installation, _owner(entry))

    def names(self) -> list[str]:
        """Every runtime database (`gw_*`) on the server, whoever registered it."""
        return sorted(
            name for name in self._client.list_database_names() if name.startswith(RUNTIME_PREFIX)
        )

    def users(self, name: str) -> list[str]:
        """The users defined on one runtime database."""
        info = self._client[name].command("usersInfo")
        return sorted(str(user["user"]) for user in info.get("users", []))

    def exists(self, gateway_id: str) -> bool:
        name = runtime_database(gateway_id)
        return any(self._client.list_databases(filter={"name": name}, nameOnly=True))

    def user_exists(self, gateway_id: str) -> bool:
        db = self._client[runtime_database(gateway_id)]
        return bool(db.command("usersInfo", runtime_user(gateway_id))["users"])


def _owner(entry: RawDoc) -> tuple[str, str]:
    return str(entry.get("installation")), str(entry.get("gatewayId"))
