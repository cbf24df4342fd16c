"""Payloads between workflows and activities: ids and intents only, never secrets."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from gatewayflow.domain.states import DomainPhase, DomainState, GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request


class Intent(BaseModel):
    """What MongoDB (the source of truth) says the user wants, and where the gateway is."""

    gateway_id: str
    exists: bool
    state: GatewayState = GatewayState.RUNNING
    phase: GatewayPhase = GatewayPhase.CREATING
    region: str = "local"
    malformed: str | None = None
    # Set while a failed operation waits for its next attempt; a new request clears it.
    next_attempt_at: datetime | None = None


class PhaseUpdate(BaseModel):
    """The start of an operation: its phase and a fresh progress record."""

    gateway_id: str
    phase: GatewayPhase
    operation: str
    total_steps: int
    # Only while the state is still this one: the intent the operation was decided on.
    expected_state: GatewayState


class StateUpdate(BaseModel):
    gateway_id: str
    state: GatewayState
    reason: str | None = None  # recorded as progress.lastError when set
    expected_state: GatewayState | None = None  # only if the state is still this one


class ProgressUpdate(BaseModel):
    gateway_id: str
    step: str | None = None
    step_number: int | None = None
    waiting_on: str | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None  # after a failure: when the next attempt is


class StepInput(BaseModel):
    """One step of an operation: which gateway, and the phase to record when done.

    `next_step` is the step that follows in the operation: the record of this one's
    completion names it as the current step, so one write per step keeps the progress
    record current.
    """

    gateway_id: str
    region: str = "local"
    phase: GatewayPhase
    step: str
    number: int | None = None  # position in the operation, for progress
    next_step: str | None = None


class StepResult(BaseModel):
    step: str
    removed: list[str] = Field(default_factory=list)
    created: list[str] = Field(default_factory=list)


class InstanceInput(StepInput):
    restarted_at: str | None = None
    timeout_seconds: float = 900.0


class TriggersInput(StepInput):
    suspend: bool


class DomainInput(BaseModel):
    gateway_id: str
    region: str = "local"
    target: DomainState
    step_number: int | None = None  # the gateway operation's step this child is


class DomainStatus(BaseModel):
    gateway_id: str
    exists: bool
    state: DomainState = DomainState.ACTIVE
    phase: DomainPhase = DomainPhase.CREATING


class DomainStep(BaseModel):
    gateway_id: str
    region: str = "local"
    action: str


class Backoff(BaseModel):
    """After a failed operation: how many failed in a row, when to try again, and the
    state that failed (another state is a new intent, tried at once)."""

    failures: int
    retry_at: datetime
    state: GatewayState


class ReadyCheck(BaseModel):
    """One look at a gateway's Deployment."""

    ready: bool
    why: str | None = None  # what is missing, when not ready


class GatewayInput(BaseModel):
    gateway_id: str
    start_timeout_seconds: float = 900.0
    # Continue-as-new after this many handled actions (besides the server's suggestion).
    max_actions_per_run: int = 200
    # ... or once the history holds this many events, whatever the workflow is doing.
    max_history_length: int = 5000
    # Carried over a continue-as-new, so a failing gateway keeps its backoff.
    backoff: Backoff | None = None


class GatewayProgress(BaseModel):
    """Answer of the `progress` query."""

    gateway_id: str
    state: GatewayState | None = None
    phase: GatewayPhase | None = None
    action: str | None = None
    detail: str = ""
    last_error: str | None = None
    actions_this_run: int = 0


class DeletionInput(BaseModel):
    gateway_id: str
    region: str = "local"


class DeletionResult(BaseModel):
    gateway_id: str
    steps: list[StepResult] = Field(default_factory=list)


class DriftFinding(BaseModel):
    """How one converged gateway's objects differ from what its phase implies.

    `problems` name each object ("Deployment gw-x/x missing"); `kinds` the kinds involved.
    """

    gateway_id: str
    region: str = "local"
    phase: GatewayPhase
    problems: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    # The gateway's workflow, in the checking installation; "" in findings recorded before
    # installations, which meant `gateway/<id>`.
    workflow_id: str = ""


class DriftReport(BaseModel):
    """One round of the drift check: how many gateways were looked at, which drifted."""

    checked: int = 0
    regions: list[str] = Field(default_factory=list)
    drifted: list[DriftFinding] = Field(default_factory=list)
    """Repaired this round: at most GATEWAYFLOW_DRIFT_MAX_REPAIRS of those found."""
    deferred: int = 0
    """Found drifted but left to later rounds (drawn again at random from what is found)."""
    signalled: list[str] = Field(default_factory=list)
    unchecked: int = 0
    """Converged gateways not compared this round: their region could not be listed, or
    their document cannot name their objects. The next round tries them again."""
    failures: list[str] = Field(default_factory=list)
    """Why, per region or gateway (the first few)."""


class PermitRequest(BaseModel):
    """A deletion asking for (or giving back) one of its region's deletion permits."""

    gateway_id: str
    region: str = "local"


class PermitPlace(BaseModel):
    """Where a deletion stands: granted, or how many are ahead of it in the queue."""

    granted: bool
    ahead: int = 0
    running: int = 0
    queued: int = 0
    limit: int = 0
    promoted: list[str] = Field(default_factory=list)  # given a permit by this call


class GuardRequest(BaseModel):
    """A deletion asking the deletion guard of its region, before its first step."""

    gateway_id: str
    region: str = "local"
    phase: GatewayPhase  # Deleting or Deleted: it began already, and is never held


class Admission(StrEnum):
    ADMITTED = "admitted"
    HELD = "held"
    CANCELLED = "cancelled"  # by `gatewayflow deletions cancel`: give the intent back


class GuardVerdict(BaseModel):
    """The guard's answer, with the figures behind it (for progress and details)."""

    admission: Admission
    reason: str | None = None  # the operator's, when cancelled
    held: int = 0  # deletions of the region held now
    recent: int = 0  # deletions the guard admitted in the region within its window
    window: float = 0.0  # that window, in seconds


class GuardNotice(BaseModel):
    """`gatewayflow deletions release|cancel` to a held deletion's workflow: ask again."""

    action: str  # "release" or "cancel"
    reason: str


class GuardCancel(BaseModel):
    """Give back the intent of a held deletion an operator cancelled."""

    gateway_id: str
    region: str = "local"
    reason: str


class GuardGaveBack(BaseModel):
    """The intent a cancelled held deletion gave back; None when it could not."""

    gateway_id: str
    restored: GatewayState | None = None


class Orphan(BaseModel):
    """Resources of a gateway whose ApiGateway document is gone."""

    gateway_id: str
    region: str = "local"
    items: list[str] = Field(default_factory=list)
    kinds: dict[str, int] = Field(default_factory=dict)  # kind -> how many items
    first_seen: str = ""  # ISO time the reaper first saw it
    due: bool = False  # seen for at least the grace period
    # The workflow that deletes it, in the reaping installation; "" in orphans recorded
    # before installations, which meant `gateway/<id>`.
    workflow_id: str = ""


class ReapInput(BaseModel):
    grace_seconds: float | None = None  # None: the worker's GATEWAYFLOW_REAP_GRACE
    gateway_ids: list[str] = Field(default_factory=list)  # only these; empty: every orphan
    # An operator's `--confirm N`: a run that adopts exactly N goes through its limits.
    confirm: int | None = None


class HoldKind(StrEnum):
    """Why a reaper run adopted nothing (the label of `gatewayflow_reaper_held_total`)."""

    UNREACHABLE = "unreachable"  # the gateways collection could not be read
    EMPTY = "empty"  # no gateway document at all, while labelled objects exist
    LIMIT = "limit"  # more orphans than GATEWAYFLOW_REAP_MAX or _MAX_SHARE allow
    UNCONFIRMED = "unconfirmed"  # `--confirm N`, but the run would adopt another number


class ReapHold(BaseModel):
    """A reaper run that adopts nothing, and why."""

    kind: HoldKind
    reason: str
    would_adopt: int = 0  # what `gatewayflow reap --apply --confirm N` must name

    @property
    def confirmable(self) -> bool:
        return self.kind is not HoldKind.UNREACHABLE


class OrphanScan(BaseModel):
    due: list[Orphan] = Field(default_factory=list)
    waiting: list[Orphan] = Field(default_factory=list)
    held: list[Orphan] = Field(default_factory=list)  # due, but not adopted: see `hold`
    hold: ReapHold | None = None


class ReapResult(BaseModel):
    """What a reaper run handed to deletion (`reaped`: each adopted and being deleted by
    its `gateway/<id>` workflow), and what it saw but left for a later run."""

    reaped: list[Orphan] = Field(default_factory=list)
    waiting: list[Orphan] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)  # with the reason
    held: list[Orphan] = Field(default_factory=list)
    hold: ReapHold | None = None


class HandOver(BaseModel):
    """A gateway's workflow taking over from the run of the id it had before
    installations (`gateway/<id>`)."""

    gateway_id: str
    successor: str  # the workflow id taking over: `gateway/<installation>/<id>`


RETIRE_SIGNAL = "retire"
"""Sent (with the successor's workflow id) to a gateway's workflow that runs under the id
of the versions before installations: it hands over once its current operation is done."""


class RequestInput(BaseModel):
    """A stop, start, restart or delete sent to `gateway/<id>` as a signal or an update."""

    gateway_id: str
    request: Request
    source: str  # "signal" or "update": the label of the refusal metric


class RequestOutcome(BaseModel):
    """What became of a request: its intent written (or already there), or why not."""

    gateway_id: str
    request: Request
    accepted: bool
    state: GatewayState | None = None
    phase: GatewayPhase | None = None
    written: bool = False
    refusal: str | None = None


class RequestAccepted(BaseModel):
    """The answer of an update: the intent now in MongoDB, and the operation that will
    carry it out (`none` when the gateway is already there)."""

    gateway_id: str
    request: Request
    state: GatewayState
    phase: GatewayPhase
    operation: str
