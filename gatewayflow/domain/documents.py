"""The MongoDB documents of one gateway, as pydantic models (camelCase on the wire)."""

from datetime import UTC, datetime

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from gatewayflow.domain.naming import ENVIRONMENTS
from gatewayflow.domain.states import (
    DatabasePhase,
    DatabaseState,
    DomainPhase,
    DomainState,
    GatewayPhase,
    GatewayState,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Document(BaseModel):
    """Base of every stored document: camelCase fields, unknown fields kept."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        populate_by_name=True,
        extra="ignore",
    )

    gateway_id: str
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    def to_mongo(self) -> dict[str, object]:
        return self.model_dump(by_alias=True, mode="python")


class InstanceSpec(BaseModel):
    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel)

    image: str = "gatewayflow/runtime:1.0"
    replicas: int = Field(default=1, ge=0, le=20)
    cpu: str = "100m"
    memory: str = "128Mi"


class DriftRecord(BaseModel):
    """The drift check's last look at a gateway, and the last repair it caused."""

    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel)

    checked_at: datetime | None = None
    repaired_at: datetime | None = None
    repaired: list[str] = Field(default_factory=list)  # "Deployment gw-x/x missing", ...
    repairs: int = 0


class Progress(BaseModel):
    """Where a gateway is, readable from the Mongo document alone."""

    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel)

    operation: str | None = None
    step: str | None = None
    step_number: int = 0
    total_steps: int = 0
    completed: list[str] = Field(default_factory=list)
    last_error: str | None = None
    # After a failed operation: when the workflow tries again (unless asked sooner).
    next_attempt_at: datetime | None = None
    waiting_on: str | None = None
    updated_at: datetime | None = None
    drift: DriftRecord = Field(default_factory=DriftRecord)


class CancelledDeletion(BaseModel):
    """The last held deletion of this gateway that an operator cancelled
    (`gatewayflow deletions cancel`): when, why, and the intent it gave back."""

    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel)

    at: datetime
    reason: str
    restored: GatewayState


class ApiGateway(Document):
    state: GatewayState = GatewayState.RUNNING
    phase: GatewayPhase = GatewayPhase.CREATING
    region: str = "local"
    # Where the gateway's resources live: the region at creation, fixed from then on
    # (docs/guarantees.md). A later change of `region` is refused, never acted on.
    resource_region: str | None = None
    custom_domain: str | None = None
    instance: InstanceSpec = Field(default_factory=InstanceSpec)
    functions: int = Field(default=2, ge=0, le=100)
    triggers: int = Field(default=1, ge=0, le=100)
    progress: Progress = Field(default_factory=Progress)
    deletion_cancelled: CancelledDeletion | None = None

    @property
    def placed_region(self) -> str:
        """The region every action uses: where the resources were created."""
        return self.resource_region or self.region


class RuntimeDomain(Document):
    state: DomainState = DomainState.ACTIVE
    phase: DomainPhase = DomainPhase.CREATING
    region: str = "local"
    custom_domain: str | None = None
    hosts: dict[str, str] = Field(default_factory=dict)


class Database(Document):
    state: DatabaseState = DatabaseState.ACTIVE
    phase: DatabasePhase = DatabasePhase.CREATING
    name: str
    user: str
    secret_name: str


class Stage(Document):
    name: str


class Environment(Document):
    name: str


class ClientApp(Document):
    environment: str
    name: str
    client_id: str


class CloudFunction(Document):
    name: str
    runtime: str = "python3.11"


class CronTrigger(Document):
    trigger_id: str
    function_name: str
    schedule: str = "*/5 * * * *"


LEAF_COLLECTIONS: tuple[str, ...] = (
    "Stage",
    "Environment",
    "ClientApp",
    "CloudFunction",
    "CronTrigger",
)
COLLECTIONS: tuple[str, ...] = ("ApiGateway", "RuntimeDomain", "Database", *LEAF_COLLECTIONS)

__all__ = ["COLLECTIONS", "ENVIRONMENTS", "LEAF_COLLECTIONS"]
