"""Deletion steps of GatewayDeletion that are not shared with stop."""

from activities.base import Activities, activity_method, step_activity
from activities.recording import Waiting, heartbeat, recorded_before
from gatewayflow.cluster.client import Cluster
from gatewayflow.cluster.errors import NotOwnedError
from gatewayflow.domain import naming
from gatewayflow.domain.messages import StepInput, StepResult
from gatewayflow.ownership import Owner


class DeletionActivities(Activities):
    @step_activity
    def delete_functions(self, step: StepInput) -> StepResult:
        removed = []
        for collection in self.deps.ownership.functions.documents:
            count = self.deps.children.delete_all(collection, step.gateway_id)
            removed.append(f"{count} {collection} docs")
        return StepResult(step=step.step, removed=removed)

    @step_activity
    def delete_stages(self, step: StepInput) -> StepResult:
        """Stage routes first (traffic), then the documents behind them."""
        gid = step.gateway_id
        part = self.deps.ownership.stages
        deleted = self.deps.cluster(step.region).delete_owned_and_wait(
            gid, part.removed(Owner(gid)), timeout=300, on_wait=heartbeat
        )
        removed = [str(ref) for ref in deleted]
        for collection in part.documents:
            count = self.deps.children.delete_all(collection, gid)
            removed.append(f"{count} {collection} docs")
        return StepResult(step=step.step, removed=removed)

    @step_activity
    def delete_database(self, step: StepInput) -> StepResult:
        """Only once the pods are gone: nothing writes to it any more."""
        gid = step.gateway_id
        cluster = self.deps.cluster(step.region)
        self.deps.runtime.drop(gid)
        deleted = cluster.delete_owned_and_wait(
            gid, self.deps.ownership.database.removed(Owner(gid)), timeout=120, on_wait=heartbeat
        )
        removed = [naming.runtime_database(gid), *map(str, deleted)]
        self.deps.databases.delete(gid)
        return StepResult(step=step.step, removed=[*removed, "Database doc"])

    @step_activity
    def delete_namespace(self, step: StepInput) -> StepResult:
        """Refuses to take anything it does not own down with the namespace: it looks
        before it starts, and again just before the namespace DELETE, since an object made
        while the ConfigMap went (a wait of up to two minutes) would go with it."""
        gid = step.gateway_id
        ns = naming.namespace(gid)
        cluster = self.deps.cluster(step.region)
        self._refuse_foreign(gid, cluster, ns)
        refs = self.deps.ownership.base.removed(Owner(gid))
        inside = [ref for ref in refs if ref.kind.namespaced]
        namespace = [ref for ref in refs if not ref.kind.namespaced]
        # What is in it is gone before the namespace goes: the namespace takes the worker's
        # RoleBinding with it, and with it the right to look inside.
        deleted = cluster.delete_owned_and_wait(gid, inside, timeout=120, on_wait=heartbeat)
        self._refuse_foreign(gid, cluster, ns)
        waiting = Waiting(self.deps, gid, f"namespace {ns} to be gone")
        deleted += cluster.delete_owned_and_wait(gid, namespace, timeout=600, on_wait=waiting)
        return StepResult(step=step.step, removed=[str(ref) for ref in deleted])

    def _refuse_foreign(self, gid: str, cluster: Cluster, ns: str) -> None:
        installation = self.deps.settings.installation
        heartbeat(f"looking for objects in {ns} without {naming.owner_selector(installation, gid)}")
        foreign = cluster.foreign_objects(gid, ns)
        if foreign:
            refused = NotOwnedError.in_namespace(ns, installation, gid, foreign)
            self.deps.gateways.record_progress(gid, error=str(refused))
            raise refused

    @activity_method
    @recorded_before
    def finalize_deletion(self, step: StepInput) -> StepResult:
        """Phase Deleted is recorded first: then the ApiGateway document goes, only while
        it is still the one being deleted (state and phase Deleted). A gateway created
        again, or a document replaced, meanwhile stays: its workflow acts on it next."""
        if not self.deps.gateways.remove_deleted(step.gateway_id):
            return StepResult(step=step.step)
        self.deps.deletion_guard.forget(step.region, step.gateway_id)
        return StepResult(step=step.step, removed=[f"ApiGateway {step.gateway_id}"])
