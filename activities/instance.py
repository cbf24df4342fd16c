"""The instance: Deployment and Service. Started, rolled, stopped, deleted."""

from temporalio import activity

from activities.errors import translated
from activities.recording import Waiting, begin_step, complete_step, recorded
from gatewayflow.cluster import manifests
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.deps import Deps
from gatewayflow.domain import naming
from gatewayflow.domain.messages import InstanceInput, ReadyCheck, StepInput, StepResult


def instance_refs(gateway_id: str) -> list[ObjectRef]:
    ns = naming.namespace(gateway_id)
    return [
        ObjectRef(Kind.DEPLOYMENT, ns, naming.deployment(gateway_id)),
        ObjectRef(Kind.SERVICE, ns, naming.service(gateway_id)),
    ]


class InstanceActivities:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    @activity.defn
    @translated
    @recorded
    def apply_instance(self, step: InstanceInput) -> StepResult:
        """Create or update; a new `restarted_at` makes it a rolling update."""
        gid = step.gateway_id
        gw = self.deps.gateways.require(gid)
        cluster = self.deps.cluster(step.region)
        cluster.apply(gid, manifests.deployment(gid, gw.instance, step.restarted_at))
        cluster.apply(gid, manifests.service(gid))
        return StepResult(step=step.step, created=[str(ref) for ref in instance_refs(gid)])

    @activity.defn
    @translated
    def check_instance_ready(self, step: InstanceInput) -> ReadyCheck:
        """One look at the Deployment; the workflow owns the deadline and the pauses (on
        its own clock), so a start's timeout is a timer, not an activity's sleep."""
        gid = step.gateway_id
        ns = naming.namespace(gid)
        why = self.deps.cluster(step.region).readiness(ns, naming.deployment(gid))
        begin_step(self.deps, step)  # a no-op unless it is the operation's first step
        if why is None:
            complete_step(self.deps, step)  # also clears what it waited on
            return ReadyCheck(ready=True)
        self.deps.gateways.record_progress(
            gid, waiting_on=f"Deployment {ns}/{gid} to be available: {why}"
        )
        return ReadyCheck(ready=False, why=why)

    @activity.defn
    @translated
    @recorded
    def delete_instance(self, step: StepInput) -> StepResult:
        """Pods go before the database they use: wait until they are really gone."""
        gid = step.gateway_id
        waiting = Waiting(self.deps, gid, "Deployment and Service to be gone")
        deleted = self.deps.cluster(step.region).delete_owned_and_wait(
            gid, instance_refs(gid), timeout=300, on_wait=waiting
        )
        return StepResult(step=step.step, removed=[str(ref) for ref in deleted])
