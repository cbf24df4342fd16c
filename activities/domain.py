"""RuntimeDomain: APISIX routes, plugin config, TLS and the custom-domain Certificate."""

from activities.base import Activities, activity_method
from activities.recording import heartbeat
from gatewayflow.cluster.kinds import ObjectRef
from gatewayflow.domain import naming
from gatewayflow.domain.documents import RuntimeDomain
from gatewayflow.domain.messages import DomainInput, DomainStatus, DomainStep
from gatewayflow.domain.states import DomainPhase, DomainState
from gatewayflow.domain.transitions import DomainAction
from gatewayflow.ownership import Owner, WhenStopped

DOMAIN_STEP = "runtime-domain"  # the step of a gateway operation this child workflow is


def _status(doc: RuntimeDomain | None, gateway_id: str) -> DomainStatus:
    if doc is None:
        return DomainStatus(
            gateway_id=gateway_id,
            exists=False,
            state=DomainState.DELETED,
            phase=DomainPhase.DELETED,
        )
    return DomainStatus(gateway_id=gateway_id, exists=True, state=doc.state, phase=doc.phase)


class DomainActivities(Activities):
    @activity_method
    def set_domain_target(self, target: DomainInput) -> DomainStatus:
        """Write the target state; a missing document is created (Active) or cleaned up."""
        gid = target.gateway_id
        if target.step_number == 1:  # later steps were named by the record of the one before
            self.deps.gateways.record_progress(gid, step=DOMAIN_STEP, step_number=1)
        doc = self._moved_to(gid, target.target)
        if doc is not None:
            return _status(doc, gid)
        if target.target is DomainState.ACTIVE:
            gw = self.deps.gateways.require(gid)
            region = gw.placed_region
            doc = RuntimeDomain(
                gateway_id=gid,
                region=region,
                custom_domain=gw.custom_domain,
                hosts={env: naming.host(gid, env, region) for env in naming.ENVIRONMENTS},
            )
            return _status(self.deps.domains.upsert(doc), gid)
        # Nothing recorded, but objects may have been half-made: clean them up anyway.
        return DomainStatus(
            gateway_id=gid, exists=False, state=target.target, phase=DomainPhase.DELETING
        )

    def _moved_to(self, gid: str, target: DomainState) -> RuntimeDomain | None:
        """The target written, and the document read back in the same round trip."""
        domains = self.deps.domains
        if target is not DomainState.DELETED:
            return domains.moved(gid, state=target)
        # Phase Deleted says only that the routes are gone: a stopped (Inactive) domain
        # keeps its TLS, plugin config and Certificate, which step 4 removes. Without
        # this, (Deleted, Deleted) would only remove the document and leave them to the
        # namespace's deletion, after the database. So a domain not yet Deleted moves to
        # (Deleted, Deleting) in one write; one that is already keeps its phase (a second
        # round trip, only then).
        doc = domains.moved(
            gid, state=target, phase=DomainPhase.DELETING, unless_state=DomainState.DELETED
        )
        return doc if doc is not None else domains.get(gid)

    @activity_method
    def converge_domain(self, step: DomainStep) -> DomainStatus:
        """Each phase write also reads the document back: no separate reads."""
        gid = step.gateway_id
        action = DomainAction(step.action)
        domains = self.deps.domains
        if action is DomainAction.REMOVE_DOCUMENT:
            domains.delete(gid)
            return _status(None, gid)
        cluster = self.deps.cluster(step.region)
        part = self.deps.ownership.domain
        if action is DomainAction.APPLY_ROUTES:
            doc = domains.moved(gid, phase=DomainPhase.CREATING)
            assert doc is not None, "apply needs the RuntimeDomain document"
            owner = Owner(
                gid,
                installation=self.deps.settings.installation,
                region=doc.region,
                custom_domain=doc.custom_domain,
                hosts=doc.hosts,
            )
            for obj in part.manifests(owner):
                cluster.ensure(gid, obj)
                heartbeat(f"applied {ObjectRef.of(obj)}")
            doc = domains.moved(gid, phase=DomainPhase.CREATED)
        else:
            if action is DomainAction.REMOVE_ROUTES:  # the routes: what a stopped gateway has not
                refs = part.removed(Owner(gid), only=lambda o: o.when_stopped is WhenStopped.GONE)
            else:
                refs = part.removed(Owner(gid))
            doc = domains.moved(gid, phase=DomainPhase.DELETING)
            # Routes are deleted first (traffic), then what they use; all awaited together.
            cluster.delete_owned_and_wait(gid, refs, timeout=300, on_wait=heartbeat)
            if doc is not None:
                doc = domains.moved(gid, phase=DomainPhase.DELETED)
        return _status(doc, gid)
