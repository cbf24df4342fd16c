"""A gateway's database: its `Database` document, and the runtime database and user."""

from pymongo.errors import OperationFailure

from gatewayflow.domain.documents import Database, utcnow
from gatewayflow.domain.naming import runtime_database, runtime_user, validate_gateway_id
from gatewayflow.domain.states import DatabasePhase, DatabaseState
from gatewayflow.store.client import Client, Db
from gatewayflow.store.errors import NotOwnedDatabase
from gatewayflow.store.per_gateway import PerGatewayRepository

USER_EXISTS = 51003
USER_NOT_FOUND = 11
# Written into every runtime database: it creates the database and names its owner.
MARKER_COLLECTION = "_meta"
MARKER_ID = "gateway"
# Runtime databases are `gw_<id with - as _>`: a gateway id has no `_`, so no two ids share one.
RUNTIME_PREFIX = "gw_"


class DatabaseRepository(PerGatewayRepository[Database, DatabaseState, DatabasePhase]):
    def __init__(self, db: Db) -> None:
        super().__init__(db, Database)


class RuntimeDatabases:
    """`gw_<id>` databases and their readWrite users on the runtime MongoDB.

    Passwords go to the server only; they are never logged nor put in an error message.
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, gateway_id: str, password: str) -> None:
        """Create the database and its user; idempotent.

        An existing user gets `password` (and its role) again, so the user always matches
        the Secret that the caller writes with the same password. An existing database
        without this gateway's owner marker is not ours: NotOwnedDatabase, nothing written.
        """
        name = runtime_database(validate_gateway_id(gateway_id))
        db = self._client[name]
        if self.exists(gateway_id):  # a database we made has its marker from the start
            self._check_owner(gateway_id, name)
        db[MARKER_COLLECTION].update_one(
            {"_id": MARKER_ID},
            {"$setOnInsert": {"gatewayId": gateway_id, "createdAt": utcnow()}},
            upsert=True,
        )
        self._check_owner(gateway_id, name)
        user = runtime_user(gateway_id)
        roles = [{"role": "readWrite", "db": name}]
        try:
            db.command("createUser", user, pwd=password, roles=roles)
        except OperationFailure as exc:
            if exc.code != USER_EXISTS:
                raise
            db.command("updateUser", user, pwd=password, roles=roles)

    def drop(self, gateway_id: str) -> None:
        """Drop the user, then the database; idempotent.

        Only a database whose marker names this gateway: NotOwnedDatabase otherwise, and
        nothing is dropped. The marker is written first and the database dropped last, so
        a database that is gone leaves no user of ours behind.
        """
        name = runtime_database(validate_gateway_id(gateway_id))
        owner = self.owner(name)  # read first: a database of ours needs no other lookup
        if owner != gateway_id:
            if not self.exists(gateway_id):
                return
            raise NotOwnedDatabase(name, gateway_id, owner)
        try:
            self._client[name].command("dropUser", runtime_user(gateway_id))
        except OperationFailure as exc:
            if exc.code != USER_NOT_FOUND:
                raise
        self._client.drop_database(name)

    def owner(self, name: str) -> str | None:
        """The gateway id the database's marker names; None without a marker."""
        marker = self._client[name][MARKER_COLLECTION].find_one({"_id": MARKER_ID})
        owner = None if marker is None else marker.get("gatewayId")
        return owner if isinstance(owner, str) else None

    def _check_owner(self, gateway_id: str, name: str) -> None:
        owner = self.owner(name)
        if owner != gateway_id:
            raise NotOwnedDatabase(name, gateway_id, owner)

    def names(self) -> list[str]:
        """Every runtime database (`gw_*`) on the server, owned by a gateway or not."""
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
