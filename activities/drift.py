"""The drift check: label-selected lists per kind and gateway namespace, compared with what
every converged gateway's phase implies (gatewayflow/ownership.py), and the record of a
repair."""

import random
from collections import defaultdict

from temporalio import activity

from activities.base import Activities, activity_method
from activities.provision import trigger_docs
from gatewayflow.cluster.client import labels_of
from gatewayflow.cluster.errors import ClusterError
from gatewayflow.cluster.expected import Expected, Manifest, differences
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.domain import naming
from gatewayflow.domain.documents import ApiGateway, utcnow
from gatewayflow.domain.errors import GatewayflowError
from gatewayflow.domain.images import check_runtime_image
from gatewayflow.domain.messages import DriftFinding, DriftReport
from gatewayflow.domain.naming import OWNER_LABEL
from gatewayflow.domain.states import DomainPhase, GatewayPhase
from gatewayflow.ownership import Owner

Owned = dict[str, dict[ObjectRef, Manifest]]
"""A region's labelled objects by owning gateway id."""

MAX_FAILURES_LISTED = 20
"""Reasons a round records for what it left unchecked; the count covers the rest."""


class DriftActivities(Activities):
    @activity_method
    def find_drift(self, regions: list[str]) -> DriftReport:
        """Compare every converged gateway (placed in `regions`, all when empty) with its
        objects, in the region it was placed in.

        A gateway whose document changed while the objects were listed is left for the
        next round: an operation that began meanwhile is not drift. A region that cannot
        be listed, or a document that cannot name its objects or names a runtime image
        not allowed, leaves those gateways unchecked this round (each reason in the
        report) and the others are checked.
        """
        installation = self.deps.settings.installation
        before = {gw.gateway_id: gw for gw in self.deps.gateways.converged()}
        report = DriftReport()
        by_region: dict[str, dict[str, Expected]] = defaultdict(dict)
        allowed = self.deps.settings.allowed_runtime_images
        for gid, gw in before.items():
            if regions and gw.placed_region not in regions:
                continue
            try:
                naming.validate_gateway_id(gid)
                if gw.phase is GatewayPhase.STARTED:  # a repair would apply it
                    check_runtime_image(gw.instance.image, allowed)
                expected = self.deps.ownership.expected(gw.phase, owner_of(gw, installation))
            except (ValueError, GatewayflowError) as err:
                _unchecked(report, 1, f"gateway {gid!r}: {err}")
                continue
            by_region[gw.placed_region][gid] = expected
        report.regions = sorted(by_region)
        live: dict[str, Owned] = {}
        for region in report.regions:
            try:
                live[region] = self._listed(region, sorted(by_region[region]))
            except ClusterError as err:
                count = len(by_region.pop(region))
                _unchecked(report, count, f"region {region!r}: {count} gateway(s): {err}")
        after = {gw.gateway_id: gw for gw in self.deps.gateways.converged()}
        self.deps.drift_checks.mark(sorted(live), utcnow())
        for region, gateways in by_region.items():
            for gid, expected in gateways.items():
                report.checked += 1
                gw = before[gid]
                if not _unchanged(gw, after.get(gid)):
                    continue
                found = differences(expected, live[region].get(gid, {}))
                if found:
                    report.drifted.append(
                        DriftFinding(
                            gateway_id=gid,
                            region=region,
                            phase=gw.phase,
                            problems=[str(d) for d in found],
                            kinds=sorted({d.ref.kind.name for d in found}),
                            workflow_id=naming.gateway_workflow_id(installation, gid),
                        )
                    )
        report.drifted.sort(key=lambda f: f.gateway_id)
        return _at_most(report, self.deps.settings.drift_max_repairs)

    def _listed(self, region: str, gateway_ids: list[str]) -> Owned:
        """The labelled objects of the region's gateways: one list of the Namespaces, then
        one per kind inside each of their namespaces that exists (the worker may list them
        only there), as metadata but for the kinds whose body is compared. A heartbeat
        after each list: a slow cluster slows the round, never times it out."""
        cluster = self.deps.cluster(region)
        with_body = self.deps.ownership.kinds_with_body()
        namespaces = cluster.list_labelled(Kind.NAMESPACE, metadata_only=True)
        listed = [(Kind.NAMESPACE, obj) for obj in namespaces]
        existing = {obj["metadata"]["name"] for obj in namespaces}
        inside = sorted({naming.namespace(gid) for gid in gateway_ids} & existing)
        kinds = [kind for kind in self.deps.ownership.kinds() if kind.namespaced]
        for n, ns in enumerate(inside, start=1):
            for kind in kinds:
                found = cluster.list_labelled(kind, ns, metadata_only=kind not in with_body)
                listed += [(kind, obj) for obj in found]
                activity.heartbeat(f"{region}: listing namespace {n} of {len(inside)}")
        owned: Owned = defaultdict(dict)
        for kind, obj in listed:
            metadata = obj["metadata"]
            namespace = metadata.get("namespace") if kind.namespaced else None
            ref = ObjectRef(kind, namespace, metadata["name"])
            owned[labels_of(obj).get(OWNER_LABEL, "")][ref] = obj
        return owned

    @activity_method
    def record_drift_repair(self, finding: DriftFinding) -> bool:
        """Record what is being repaired; a started gateway's missing domain objects also
        put its RuntimeDomain back to Creating, so that the start makes them again (the
        domain's workflow makes them only when its phase says so)."""
        gid = finding.gateway_id
        domain = [f"{ref} " for ref in self.deps.ownership.domain.removed(Owner(gid))]
        if finding.phase is GatewayPhase.STARTED and any(
            problem.startswith(ref) for problem in finding.problems for ref in domain
        ):
            self.deps.domains.set_phase(gid, DomainPhase.CREATING)
        return self.deps.gateways.record_drift_repair(gid, finding.problems)


def owner_of(gw: ApiGateway, installation: str) -> Owner:
    """What the drift check knows of a gateway: its document (triggers by count)."""
    triggers = trigger_docs(gw.gateway_id, gw.triggers, gw.functions)
    return Owner(
        gw.gateway_id,
        installation=installation,
        region=gw.placed_region,
        custom_domain=gw.custom_domain,
        instance=gw.instance,
        triggers=triggers,
    )


def _unchanged(before: ApiGateway, after: ApiGateway | None) -> bool:
    return (
        after is not None
        and after.phase is before.phase
        and after.state is before.state
        and after.progress.updated_at == before.progress.updated_at
    )


def _unchecked(report: DriftReport, count: int, why: str) -> None:
    """Gateways left out of this round, and why (the first few reasons)."""
    activity.logger.warning("drift check: not checked: %s", why)
    report.unchecked += count
    if len(report.failures) < MAX_FAILURES_LISTED:
        report.failures.append(why)


def _at_most(report: DriftReport, limit: int) -> DriftReport:
    """A round repairs at most `limit` gateways: a drift of thousands at once (a region's
    cluster rebuilt, a wrong kubeconfig) must not become thousands of signals and
    operations in one burst. A random draw, so that gateways whose repair cannot be
    signalled never keep the others waiting."""
    found = len(report.drifted)
    if found > limit:
        report.drifted = sorted(random.sample(report.drifted, limit), key=lambda f: f.gateway_id)
        report.deferred = found - limit
    return report
