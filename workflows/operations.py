"""Each operation once, as its ordered steps (docs/operations.md).

Running an operation is one loop over its steps (workflows/steps.py); step numbers,
progress totals, the phase each step records, the UI texts, `plan` and the replay test
all derive from these declarations; nothing counts steps by hand.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.deletion import DeletionActivities
    from activities.domain import DOMAIN_STEP
    from activities.gateway import GatewayActivities
    from activities.instance import InstanceActivities
    from activities.provision import ProvisionActivities
    from activities.triggers import TriggerActivities
    from gatewayflow.domain import naming
    from gatewayflow.domain.messages import StepInput
    from gatewayflow.domain.states import DomainState, GatewayPhase
    from gatewayflow.domain.transitions import GatewayAction

In = TypeVar("In", bound=StepInput)


@dataclass(frozen=True)
class Step(Generic[In]):
    """One step: its name in progress, what it does (`title`, for plan and progress), how
    the UI names its activity (`summary`, with {gid}, {ns} and {db} filled in) and the
    activity that runs.

    The activity gets the step's place in the operation (`StepInput`), and more where the
    step says so: `suspend` (a TriggersInput with that flag), `instance` (an
    InstanceInput: the start timeout and the operation's rollout stamp), `rollout` (an
    InstanceInput with a new rollout stamp, so the Deployment rolls).

    With `domain` set, the child RuntimeDomainWorkflow converges to that state first, then
    the activity (`record_step`) records the step like any other. With `until_ready` (what
    the step waits for), the activity is one look that answers a ReadyCheck, taken again
    after pauses on the workflow's clock until it is ready or the start timeout passes.
    Steps that `wait` on asynchronous Kubernetes deletion heartbeat, so they can be
    cancelled and a crashed worker's attempt is retried within the heartbeat timeout. A
    `local` step is a few MongoDB writes that never wait: it runs as a local activity.
    """

    name: str
    title: str
    summary: str
    activity: Callable[[Any, In], Any]
    domain: DomainState | None = None
    suspend: bool | None = None
    instance: bool = False
    rollout: bool = False
    until_ready: str | None = None
    waits: bool = False
    local: bool = False

    def describe(self, gateway_id: str) -> str:
        return self.fill(self.summary, gateway_id)

    @staticmethod
    def fill(text: str, gateway_id: str) -> str:
        return text.format(
            gid=gateway_id,
            ns=naming.namespace(gateway_id),
            db=naming.runtime_database(gateway_id),
        )


@dataclass(frozen=True)
class Operation:
    """An operation's phase while it runs, the phase its last step records, its steps."""

    name: str
    during: GatewayPhase
    done: GatewayPhase
    steps: tuple[Step[Any], ...]

    @property
    def total(self) -> int:
        return len(self.steps)

    def number(self, step: Step[Any]) -> int:
        return self.steps.index(step) + 1

    def phase(self, step: Step[Any]) -> GatewayPhase:
        return self.done if step == self.steps[-1] else self.during

    def next(self, step: Step[Any]) -> Step[Any] | None:
        number = self.number(step)
        return self.steps[number] if number < self.total else None

    def input(self, step: Step[Any], gateway_id: str, region: str) -> StepInput:
        """The step's place in the operation: what the activity records when done."""
        following = self.next(step)
        return StepInput(
            gateway_id=gateway_id,
            region=region,
            phase=self.phase(step),
            step=step.name,
            number=self.number(step),
            next_step=None if following is None else following.name,
        )

    def details(self, step: Step[Any]) -> str:
        """The workflow's current details while the step runs."""
        return f"**step {self.number(step)} of {self.total}**: {step.name}: {step.title}"


def _domain(target: DomainState, title: str) -> Step[StepInput]:
    summary = f"record step {DOMAIN_STEP}"
    return Step(
        DOMAIN_STEP, title, summary, GatewayActivities.record_step, domain=target, local=True
    )


# -- the base of a gateway: created once, ensured again (idempotently) by start ----------
NAMESPACE = Step(
    "namespace",
    "Namespace and ConfigMap",
    "ensure Namespace {ns}, ConfigMap",
    ProvisionActivities.create_namespace,
)
DATABASE = Step(
    "database",
    "runtime database, its user and Secret; Database document",
    "ensure runtime database {db}, user, Secret",
    ProvisionActivities.create_database,
)
DOMAIN_ACTIVE = _domain(DomainState.ACTIVE, "child RuntimeDomain workflow to Active")
STAGES = Step(
    "stages",
    "Stage, Environment and ClientApp documents; stage ApisixRoutes",
    "ensure Stage, Environment, ClientApp docs; stage ApisixRoutes in {ns}",
    ProvisionActivities.create_stages,
)
FUNCTIONS = Step(
    "functions",
    "a CloudFunction document per function",
    "ensure CloudFunction docs of {gid}",
    ProvisionActivities.create_functions,
)
TRIGGERS = Step(
    "triggers",
    "CronTrigger documents, CronJobs (suspended)",
    "ensure CronTrigger docs, CronJobs in {ns}",
    ProvisionActivities.create_triggers,
)
BASE = (NAMESPACE, DATABASE, DOMAIN_ACTIVE, STAGES, FUNCTIONS, TRIGGERS)

# -- the instance --------------------------------------------------------------------------
RESUME_TRIGGERS = Step(
    "resume-triggers",
    "CronJobs resumed",
    "resume CronJobs in {ns}",
    TriggerActivities.set_triggers_suspended,
    suspend=False,
)
APPLY_INSTANCE = Step(
    "instance",
    "Deployment and Service applied",
    "apply Deployment {gid}, Service {gid} in {ns}",
    InstanceActivities.apply_instance,
    instance=True,
)
ROLL_INSTANCE = Step(
    "instance",
    "rolling update of the Deployment",
    "rolling update of Deployment {gid}, Service {gid} in {ns}",
    InstanceActivities.apply_instance,
    rollout=True,
)
WAIT_READY = Step(
    "wait-ready",
    "Deployment available",
    "is Deployment {ns}/{gid} available?",
    InstanceActivities.check_instance_ready,
    instance=True,
    until_ready="Deployment {ns}/{gid}",
)
DOMAIN_INACTIVE = _domain(DomainState.INACTIVE, "child RuntimeDomain workflow to Inactive")
SUSPEND_TRIGGERS = Step(
    "suspend-triggers",
    "CronJobs suspended",
    "suspend CronJobs in {ns}",
    TriggerActivities.set_triggers_suspended,
    suspend=True,
)
REMOVE_INSTANCE = Step(
    "instance",
    "Deployment and Service, until gone",
    "delete Deployment {gid}, Service {gid} in {ns}; wait until gone",
    InstanceActivities.delete_instance,
    waits=True,
)

# -- deletion: traffic goes before pods, pods before their database ------------------------
DELETE_TRIGGERS = Step(
    "triggers",
    "CronJobs, then CronTrigger documents",
    "delete CronJobs in {ns}, then CronTrigger docs",
    TriggerActivities.delete_triggers,
    waits=True,
)
DELETE_FUNCTIONS = Step(
    "functions",
    "CloudFunction documents",
    "delete CloudFunction docs of {gid}",
    DeletionActivities.delete_functions,
    local=True,
)
DELETE_STAGES = Step(
    "stages-and-routes",
    "stage ApisixRoutes; Stage, Environment and ClientApp documents",
    "delete stage ApisixRoutes in {ns}; Stage, Environment, ClientApp docs",
    DeletionActivities.delete_stages,
    waits=True,
)
DOMAIN_DELETED = _domain(DomainState.DELETED, "child RuntimeDomain workflow to Deleted")
DELETE_DATABASE = Step(
    "database",
    "runtime database and user, Secret, Database document",
    "drop runtime database {db}, its user, Secret {gid}-db, Database doc",
    DeletionActivities.delete_database,
    waits=True,
)
DELETE_NAMESPACE = Step(
    "namespace",
    "ConfigMap and namespace, until gone",
    "delete ConfigMap {gid}-config, Namespace {ns}; wait until gone",
    DeletionActivities.delete_namespace,
    waits=True,
)
FINALIZE = Step(
    "finalize",
    "phase Deleted, then the ApiGateway document",
    "phase Deleted, then remove ApiGateway document {gid}",
    DeletionActivities.finalize_deletion,
    local=True,
)

_P = GatewayPhase
CREATE = Operation("create", _P.CREATING, _P.CREATED, BASE)
START = Operation(
    "start", _P.STARTING, _P.STARTED, (*BASE, RESUME_TRIGGERS, APPLY_INSTANCE, WAIT_READY)
)
RESTART = Operation("restart", _P.STARTING, _P.STARTED, (*BASE, ROLL_INSTANCE, WAIT_READY))
STOP = Operation(
    "stop", _P.STOPPING, _P.STOPPED, (DOMAIN_INACTIVE, SUSPEND_TRIGGERS, REMOVE_INSTANCE)
)
DELETE = Operation(
    "delete",
    _P.DELETING,
    _P.DELETED,
    (
        DELETE_TRIGGERS,
        DELETE_FUNCTIONS,
        DELETE_STAGES,
        DOMAIN_DELETED,
        REMOVE_INSTANCE,
        DELETE_DATABASE,
        DELETE_NAMESPACE,
        FINALIZE,
    ),
)

# What each decision of the entity workflow runs.
FOR_ACTION: dict[GatewayAction, Operation] = {
    GatewayAction.CREATE: CREATE,
    GatewayAction.START: START,
    GatewayAction.RESTART: RESTART,
    GatewayAction.STOP: STOP,
    GatewayAction.DELETE: DELETE,
}
