"""What can go wrong in the store, each error naming the gateway or document concerned."""

from pydantic import ValidationError

from gatewayflow.domain.errors import GatewayflowError, PermanentError, TransientError
from gatewayflow.domain.states import GatewayPhase, GatewayState


class StoreError(GatewayflowError):
    """Base of every store error. Each is permanent but `StoreUnreachable` (the server
    did not answer a check of the connection); a connection lost during an activity is
    pymongo's own error, which the activity retry policy retries."""


class UnknownGateway(StoreError, PermanentError, LookupError):
    def __init__(self, gateway_id: str) -> None:
        super().__init__(f"no gateway {gateway_id!r}")
        self.gateway_id = gateway_id


class GatewayExists(StoreError, PermanentError):
    def __init__(self, gateway_id: str) -> None:
        super().__init__(f"gateway {gateway_id!r} already exists")
        self.gateway_id = gateway_id


class StateChangeRefused(StoreError, PermanentError):
    """A conditional state change that the gateway's current state or phase does not allow."""

    def __init__(
        self,
        gateway_id: str,
        state: GatewayState,
        phase: GatewayPhase | str,
        current_state: GatewayState | str | None = None,
    ) -> None:
        now = f"state {current_state}, " if current_state is not None else ""
        super().__init__(
            f"gateway {gateway_id!r} cannot change to state {state.value}: "
            f"it is in {now}phase {phase}"
        )
        self.gateway_id = gateway_id
        self.state = state
        self.phase = phase
        self.current_state = current_state


class NotOwnedDatabase(StoreError, PermanentError):
    """A runtime database not registered to this installation and gateway: never made,
    changed or dropped."""

    def __init__(
        self, name: str, gateway_id: str, installation: str, owner: tuple[str, str] | None
    ) -> None:
        registered = (
            f"it is registered to gateway {owner[1]!r} of installation {owner[0]!r}"
            if owner
            else "it exists but is registered to no gateway"
        )
        super().__init__(
            f"runtime database {name} is not owned by gateway {gateway_id!r} of installation "
            f"{installation!r}: {registered}; left untouched"
        )
        self.name = name
        self.gateway_id = gateway_id
        self.owner = owner


class InstallationTaken(StoreError, PermanentError):
    """Another control database is already this installation: the two would take each
    other's gateways for orphans."""

    def __init__(self, installation: str, database: str, taken_by: str) -> None:
        super().__init__(
            f"installation {installation!r} is already the installation of another control "
            f"database ({taken_by!r}, in the runtime MongoDB's registry); this process uses "
            f"GATEWAYFLOW_DB={database!r}. Point GATEWAYFLOW_DB at that database, or give "
            "this one its own GATEWAYFLOW_INSTALLATION. If that database is gone for good, "
            f"remove its registration: db.getSiblingDB('gatewayflow_registry')"
            f".Installations.deleteOne({{_id: '{installation}'}})"
        )


class InstallationMismatch(StoreError, PermanentError):
    """The control database belongs to another installation than this process is."""

    def __init__(self, database: str, recorded: str, installation: str) -> None:
        super().__init__(
            f"database {database!r} (GATEWAYFLOW_DB) belongs to installation {recorded!r}, "
            f"but this process is installation {installation!r} (GATEWAYFLOW_INSTALLATION, "
            "or derived from GATEWAYFLOW_DB when unset): set GATEWAYFLOW_INSTALLATION="
            f"{recorded} to run that installation, or point GATEWAYFLOW_DB at this one's "
            "database"
        )


class MalformedDocument(StoreError, PermanentError):
    """A stored document that does not validate; reported, never allowed to crash a process."""

    def __init__(
        self, collection: str, doc_id: object, problems: str, gateway_id: object = None
    ) -> None:
        who = f"{collection} document {gateway_id!r}" if gateway_id else f"{collection} document"
        super().__init__(f"{who} (_id {doc_id}) is malformed: {problems}")
        self.collection = collection
        self.doc_id = doc_id
        self.gateway_id = gateway_id
        self.problems = problems

    @classmethod
    def from_validation(
        cls, collection: str, raw: dict[str, object], exc: ValidationError
    ) -> "MalformedDocument":
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(document)'}: {err['msg']}"
            for err in exc.errors()
        )
        return cls(collection, raw.get("_id"), problems, raw.get("gatewayId"))


class ChangeStreamsUnavailable(StoreError, PermanentError):
    """The MongoDB server cannot open change streams (e.g. a standalone mongod)."""


class StoreUnreachable(StoreError, TransientError):
    """The MongoDB server did not answer."""
