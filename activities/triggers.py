"""Cron triggers: CronJobs suspended while stopped, deleted before their documents."""

from temporalio import activity

from activities.errors import translated
from activities.recording import heartbeat, recorded
from gatewayflow.cluster import manifests
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.deps import Deps
from gatewayflow.domain import naming
from gatewayflow.domain.documents import CronTrigger
from gatewayflow.domain.messages import StepInput, StepResult, TriggersInput
from gatewayflow.store.parsing import raise_malformed


class TriggerActivities:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def _triggers(self, gateway_id: str) -> list[CronTrigger]:
        """Every trigger; a malformed one stops the step, named (MalformedDocument)."""
        return self.deps.children.load(CronTrigger, gateway_id, on_malformed=raise_malformed)

    @activity.defn
    @translated
    @recorded
    def set_triggers_suspended(self, step: TriggersInput) -> StepResult:
        gid = step.gateway_id
        cluster = self.deps.cluster(step.region)
        changed = []
        for trigger in self._triggers(gid):
            cluster.apply(gid, manifests.cron_job(gid, trigger, suspend=step.suspend))
            changed.append(naming.cron_job(gid, trigger.trigger_id))
        return StepResult(step=step.step, created=changed)

    @activity.defn
    @translated
    @recorded
    def delete_triggers(self, step: StepInput) -> StepResult:
        """Step 1: every owned CronJob (found by label, not only by document), then docs.

        One list of the CronJobs finds both; a CronJob a document names that lacks the
        label stops the step before anything is deleted.
        """
        gid = step.gateway_id
        ns = naming.namespace(gid)
        named = [
            ObjectRef(Kind.CRON_JOB, ns, naming.cron_job(gid, t.trigger_id))
            for t in self._triggers(gid)
        ]
        deleted = self.deps.cluster(step.region).delete_owned_and_wait(
            gid, named, every_owned=[(Kind.CRON_JOB, ns)], timeout=300, on_wait=heartbeat
        )
        count = self.deps.children.delete_all("CronTrigger", gid)
        removed = [str(ref) for ref in sorted(deleted, key=str)]
        return StepResult(step=step.step, removed=[*removed, f"{count} CronTrigger docs"])
