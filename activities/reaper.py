"""The orphan reaper's reads and writes: orphans found by the audit (inventory.orphans),
their first sightings, and adopting one so the ordinary deletion removes it."""

from datetime import timedelta

from activities.base import Activities, activity_method
from gatewayflow import inventory
from gatewayflow.domain import naming
from gatewayflow.domain.documents import utcnow
from gatewayflow.domain.messages import Orphan, OrphanScan, ReapInput


class ReaperActivities(Activities):
    @activity_method
    def find_orphans(self, input: ReapInput) -> OrphanScan:
        """Every region's orphans (one audit), each sighting recorded; due once seen for
        the grace period."""
        grace = (
            self.deps.settings.reap_grace_seconds
            if input.grace_seconds is None
            else input.grace_seconds
        )
        found = inventory.reapable(inventory.orphans(self.deps))
        first = self.deps.sightings.seen(sorted(found))
        if input.gateway_ids:
            found = {gid: items for gid, items in found.items() if gid in input.gateway_ids}
        now = utcnow()  # after the sightings: a grace of 0 makes a new one due
        scan = OrphanScan()
        installation = self.deps.settings.installation
        for orphan in inventory.described_orphans(found, first, timedelta(seconds=grace), now):
            orphan.workflow_id = naming.gateway_workflow_id(installation, orphan.gateway_id)
            (scan.due if orphan.due else scan.waiting).append(orphan)
        return scan

    @activity_method
    def adopt_orphan(self, orphan: Orphan) -> bool:
        """An ApiGateway document (state Deleted) for the leftovers, unless a gateway of
        that id exists again: then nothing of it is an orphan, and nothing is written."""
        return self.deps.gateways.adopt_orphan(orphan.gateway_id, orphan.region)

    @activity_method
    def record_reaped(self, orphan: Orphan) -> None:
        """Reaped: its sighting is forgotten (the metric counts its items by kind)."""
        self.deps.sightings.forget(orphan.gateway_id)
