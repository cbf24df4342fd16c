"""RuntimeDomain: APISIX routes, plugin config, TLS and the custom-domain Certificate."""

from temporalio import activity

from activities.errors import translated
from activities.recording import heartbeat
from gatewayflow.cluster import manifests
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.deps import Deps
from gatewayflow.domain import naming
from gatewayflow.domain.documents import RuntimeDomain
from gatewayflow.domain.messages import DomainInput, DomainStatus, DomainStep
from gatewayflow.domain.states import DomainPhase, DomainState
from gatewayflow.domain.transitions import DomainAction

DOMAIN_STEP = "runtime-domain"  # the step of a gateway operation this child workflow is


def route_refs(gateway_id: str) -> list[ObjectRef]:
    ns = naming.namespace(gateway_id)
    return [
        ObjectRef(Kind.APISIX_ROUTE, ns, naming.domain_route(gateway_id, env))
        for env in naming.ENVIRONMENTS
    ]


def all_refs(gateway_id: str) -> list[ObjectRef]:
    """Routes first (traffic), then what they use."""
    ns = naming.namespace(gateway_id)
    return [
        *route_refs(gateway_id),
        ObjectRef(Kind.APISIX_PLUGIN_CONFIG, ns, naming.plugin_config(gateway_id)),
        *(
            ObjectRef(Kind.APISIX_TLS, ns, naming.tls(gateway_id, env))
            for env in naming.ENVIRONMENTS
        ),
        ObjectRef(Kind.APISIX_TLS, ns, naming.custom_tls(gateway_id)),
        ObjectRef(Kind.CERTIFICATE, ns, naming.certificate(gateway_id)),
    ]


def _status(doc: RuntimeDomain | None, gateway_id: str) -> DomainStatus:
    if doc is None:
        return DomainStatus(
            gateway_id=gateway_id,
            exists=False,
            state=DomainState.DELETED,
            phase=DomainPhase.DELETED,
        )
    return DomainStatus(gateway_id=gateway_id, exists=True, state=doc.state, phase=doc.phase)


class DomainActivities:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    @activity.defn
    @translated
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
        # namespace's deletion, after the database (found by tests/torture). So a domain
        # not yet Deleted moves to (Deleted, Deleting) in one write; one that is already
        # keeps its phase (a second round trip, only then).
        doc = domains.moved(
            gid, state=target, phase=DomainPhase.DELETING, unless_state=DomainState.DELETED
        )
        return doc if doc is not None else domains.get(gid)

    @activity.defn
    @translated
    def converge_domain(self, step: DomainStep) -> DomainStatus:
        """Each phase write also reads the document back: no separate reads."""
        gid = step.gateway_id
        action = DomainAction(step.action)
        domains = self.deps.domains
        if action is DomainAction.REMOVE_DOCUMENT:
            domains.delete(gid)
            return _status(None, gid)
        cluster = self.deps.cluster(step.region)
        if action is DomainAction.APPLY_ROUTES:
            doc = domains.moved(gid, phase=DomainPhase.CREATING)
            assert doc is not None, "apply needs the RuntimeDomain document"
            for obj in self._manifests(doc):
                cluster.ensure(gid, obj)
                heartbeat(f"applied {ObjectRef.of(obj)}")
            doc = domains.moved(gid, phase=DomainPhase.CREATED)
        else:
            refs = route_refs(gid) if action is DomainAction.REMOVE_ROUTES else all_refs(gid)
            doc = domains.moved(gid, phase=DomainPhase.DELETING)
            # Routes are deleted first (traffic), then what they use; all awaited together.
            cluster.delete_owned_and_wait(gid, refs, timeout=300, on_wait=heartbeat)
            if doc is not None:
                doc = domains.moved(gid, phase=DomainPhase.DELETED)
        return _status(doc, gid)

    @staticmethod
    def _manifests(doc: RuntimeDomain) -> list[dict[str, object]]:
        gid = doc.gateway_id
        objects = [manifests.plugin_config(gid)]
        for env in naming.ENVIRONMENTS:
            host = doc.hosts.get(env) or naming.host(gid, env, doc.region)
            objects.append(manifests.tls(gid, env, host))
        if doc.custom_domain:
            objects.append(manifests.certificate(gid, doc.custom_domain))
            objects.append(manifests.custom_tls(gid, doc.custom_domain))
        for env in naming.ENVIRONMENTS:
            host = doc.hosts.get(env) or naming.host(gid, env, doc.region)
            objects.append(manifests.domain_route(gid, env, host, naming.plugin_config(gid)))
        return objects
