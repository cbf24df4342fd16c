"""The drift check: label-selected lists per kind and gateway namespace, compared with what
every converged gateway's phase implies (gatewayflow/ownership.py), and the record of a
repair."""

import random
from collections import defaultdict

from temporalio import activity

from activities.base import Activities, activity_method
from activities.provision import trigger_docs
from gatewayflow.cluster.client import labels_of
from gatewayflow.cluster.expected import Live, differences
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.domain import naming
from gatewayflow.domain.documents import ApiGateway, utcnow
from gatewayflow.domain.messages import DriftFinding, DriftReport
from gatewayflow.domain.naming import OWNER_LABEL
from gatewayflow.domain.states import DomainPhase, GatewayPhase
from gatewayflow.ownership import Owner


class DriftActivities(Activities):
    @activity_method
    def find_drift(self, regions: list[str]) -> DriftReport:
        """Compare every converged gateway (of `regions`, all when empty) with its objects.

        A gateway whose document changed while the objects were listed is left for the
        next round: an operation that began meanwhile is not drift.
        """
        installation = self.deps.settings.installation
        before = {gw.gateway_id: gw for gw in self.deps.gateways.converged()}
        wanted = sorted(
            {gw.region for gw in before.values() if not regions or gw.region in regions}
        )
        live: dict[tuple[str, str], dict[ObjectRef, dict[str, object]]] = defaultdict(dict)
        for region in wanted:
            cluster = self.deps.cluster(region)
            namespaces = cluster.list_labelled(Kind.NAMESPACE)
            # Namespaced kinds inside the converged gateways' namespaces that exist (the
            # worker may list them only there); a missing namespace has nothing in it.
            existing = {obj["metadata"]["name"] for obj in namespaces}
            inside = sorted(
                {naming.namespace(gid) for gid, gw in before.items() if gw.region == region}
                & existing
            )
            kinds = [kind for kind in self.deps.ownership.kinds() if kind.namespaced]
            listed = [namespaces] + [
                cluster.list_labelled(kind, ns) for kind in kinds for ns in inside
            ]
            for objects in listed:
                for obj in objects:
                    owner = labels_of(obj).get(OWNER_LABEL, "")  # this installation's only
                    live[(region, owner)][ObjectRef.of(obj)] = obj
            activity.heartbeat(f"listed {len(inside)} gateway namespace(s) in {region}")
        after = {gw.gateway_id: gw for gw in self.deps.gateways.converged()}
        self.deps.drift_checks.mark(wanted, utcnow())
        report = DriftReport(regions=wanted)
        for gid, gw in before.items():
            if gw.region not in wanted:
                continue
            report.checked += 1
            if not _unchanged(gw, after.get(gid)):
                continue
            expected = self.deps.ownership.expected(gw.phase, owner_of(gw, installation))
            found = differences(expected, _owned(live, gw))
            if found:
                report.drifted.append(
                    DriftFinding(
                        gateway_id=gid,
                        region=gw.region,
                        phase=gw.phase,
                        problems=[str(d) for d in found],
                        kinds=sorted({d.ref.kind.name for d in found}),
                        workflow_id=naming.gateway_workflow_id(installation, gid),
                    )
                )
        return _at_most(report, self.deps.settings.drift_max_repairs)

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


def _owned(live: dict[tuple[str, str], dict[ObjectRef, dict[str, object]]], gw: ApiGateway) -> Live:
    return live.get((gw.region, gw.gateway_id), {})


def _unchanged(before: ApiGateway, after: ApiGateway | None) -> bool:
    return (
        after is not None
        and after.phase is before.phase
        and after.state is before.state
        and after.progress.updated_at == before.progress.updated_at
    )


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
