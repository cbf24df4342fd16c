"""The instance: Deployment and Service. Started, rolled, stopped, deleted."""

from activities.base import Activities, activity_method, step_activity
from activities.recording import Waiting, begin_step, complete_step
from gatewayflow.domain import naming
from gatewayflow.domain.images import check_runtime_image
from gatewayflow.domain.messages import InstanceInput, ReadyCheck, StepInput, StepResult
from gatewayflow.ownership import Owner


class InstanceActivities(Activities):
    @step_activity
    def apply_instance(self, step: InstanceInput) -> StepResult:
        """Create or update; a new `restarted_at` makes it a rolling update. The image is
        checked against the allowed ones here too: the document may change after the
        start began."""
        gid = step.gateway_id
        gw = self.deps.gateways.require(gid)
        check_runtime_image(gw.instance.image, self.deps.settings.allowed_runtime_images)
        cluster = self.deps.cluster(step.region)
        part = self.deps.ownership.instance
        owner = Owner(
            gid,
            installation=self.deps.settings.installation,
            region=step.region,
            instance=gw.instance,
            restarted_at=step.restarted_at,
        )
        for obj in part.manifests(owner):
            cluster.apply(gid, obj)
        return StepResult(step=step.step, created=[str(ref) for ref in part.made(owner)])

    @activity_method
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

    @step_activity
    def delete_instance(self, step: StepInput) -> StepResult:
        """Pods go before the database they use: wait until they are really gone."""
        gid = step.gateway_id
        waiting = Waiting(self.deps, gid, "Deployment and Service to be gone")
        deleted = self.deps.cluster(step.region).delete_owned_and_wait(
            gid, self.deps.ownership.instance.removed(Owner(gid)), timeout=300, on_wait=waiting
        )
        return StepResult(step=step.step, removed=[str(ref) for ref in deleted])
