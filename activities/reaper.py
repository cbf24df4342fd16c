"""The orphan reaper's reads and writes: orphans found by the audit (inventory.orphans),
their first sightings, the run's limits (reap_limits), and adopting one so the ordinary
deletion removes it."""

from datetime import timedelta

from pymongo.errors import PyMongoError
from temporalio import activity

from activities.base import Activities, activity_method
from gatewayflow import inventory, reap_limits
from gatewayflow.domain import naming
from gatewayflow.domain.documents import utcnow
from gatewayflow.domain.messages import Orphan, OrphanScan, ReapInput


class ReaperActivities(Activities):
    @activity_method
    def find_orphans(self, input: ReapInput) -> OrphanScan:
        """Every region's orphans (one audit), each sighting recorded; due once seen for
        the grace period. Nothing is due when the run must hold (its `hold` says why)."""
        settings = self.deps.settings
        grace = settings.reap_grace_seconds if input.grace_seconds is None else input.grace_seconds
        regions = inventory.audit_regions(self.deps)
        try:
            census = reap_limits.take_census(self.deps, regions)
        except PyMongoError as exc:
            return OrphanScan(hold=reap_limits.unreachable(settings, exc))
        found = inventory.reapable(
            inventory.orphans(self.deps, regions, on_progress=activity.heartbeat)
        )
        first = self.deps.sightings.seen(sorted(found))
        if input.gateway_ids:
            found = {gid: items for gid, items in found.items() if gid in input.gateway_ids}
        now = utcnow()  # after the sightings: a grace of 0 makes a new one due
        scan = OrphanScan()
        installation = self.deps.settings.installation
        for orphan in inventory.described_orphans(found, first, timedelta(seconds=grace), now):
            orphan.workflow_id = naming.gateway_workflow_id(installation, orphan.gateway_id)
            (scan.due if orphan.due else scan.waiting).append(orphan)
        return reap_limits.limited(scan, census, settings, input.confirm)

    @activity_method
    def adopt_orphan(self, orphan: Orphan) -> bool:
        """An ApiGateway document (state Deleted) for the leftovers, unless a gateway of
        that id exists again: then nothing of it is an orphan, and nothing is written."""
        return self.deps.gateways.adopt_orphan(orphan.gateway_id, orphan.region)

    @activity_method
    def record_reaped(self, orphan: Orphan) -> None:
        """Reaped: its sighting is forgotten (the metric counts its items by kind)."""
        self.deps.sightings.forget(orphan.gateway_id)
