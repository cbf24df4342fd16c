"""Cron triggers: CronJobs suspended while stopped, deleted before their documents."""

from activities.base import Activities, step_activity
from activities.recording import heartbeat
from gatewayflow.cluster.kinds import ObjectRef
from gatewayflow.domain.documents import CronTrigger
from gatewayflow.domain.messages import StepInput, StepResult, TriggersInput
from gatewayflow.ownership import Owner
from gatewayflow.store.parsing import raise_malformed


class TriggerActivities(Activities):
    def _triggers(self, gateway_id: str) -> list[CronTrigger]:
        """Every trigger; a malformed one stops the step, named (MalformedDocument)."""
        return self.deps.children.load(CronTrigger, gateway_id, on_malformed=raise_malformed)

    @step_activity
    def set_triggers_suspended(self, step: TriggersInput) -> StepResult:
        gid = step.gateway_id
        cluster = self.deps.cluster(step.region)
        owner = Owner(
            gid,
            installation=self.deps.settings.installation,
            region=step.region,
            triggers=self._triggers(gid),
            suspended=step.suspend,
        )
        changed = []
        for obj in self.deps.ownership.triggers.manifests(owner):
            cluster.apply(gid, obj)
            changed.append(ObjectRef.of(obj).name)
        return StepResult(step=step.step, created=changed)

    @step_activity
    def delete_triggers(self, step: StepInput) -> StepResult:
        """Step 1: every owned CronJob (found by label, not only by document), then docs.

        One list of the CronJobs finds both; a CronJob a document names that lacks the
        label stops the step before anything is deleted.
        """
        gid = step.gateway_id
        part = self.deps.ownership.triggers
        owner = Owner(gid, triggers=self._triggers(gid))
        deleted = self.deps.cluster(step.region).delete_owned_and_wait(
            gid,
            part.removed(owner),
            every_owned=part.labelled(gid),
            timeout=300,
            on_wait=heartbeat,
        )
        removed = [str(ref) for ref in sorted(deleted, key=str)]
        for collection in part.documents:
            count = self.deps.children.delete_all(collection, gid)
            removed.append(f"{count} {collection} docs")
        return StepResult(step=step.step, removed=removed)
