"""The orphan reaper's reads and writes: orphans found by the audit (inventory.orphans),
their first sightings, and adopting one so the ordinary deletion removes it."""

from collections import Counter
from datetime import timedelta

from temporalio import activity

from activities.errors import translated
from gatewayflow import inventory
from gatewayflow.deps import Deps
from gatewayflow.domain.documents import utcnow
from gatewayflow.domain.messages import Orphan, OrphanScan, ReapInput


class ReaperActivities:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    @activity.defn
    @translated
    def find_orphans(self, input: ReapInput) -> OrphanScan:
        """Every region's orphans, each sighting recorded; due once seen for the grace."""
        grace = (
            self.deps.settings.reap_grace_seconds
            if input.grace_seconds is None
            else input.grace_seconds
        )
        scan = OrphanScan()
        for region in self.deps.known_regions():
            found = inventory.orphans(self.deps, region)
            first = self.deps.sightings.seen(region, sorted(found))
            if input.gateway_ids:
                found = {gid: items for gid, items in found.items() if gid in input.gateway_ids}
            now = utcnow()  # after the sightings: a grace of 0 makes a new one due
            for gid, items in found.items():
                seen = first.get(gid, now)
                orphan = Orphan(
                    gateway_id=gid,
                    region=region,
                    items=[f"{item.where}: {item}" for item in items],
                    kinds=dict(Counter(item.kind for item in items)),
                    first_seen=seen.isoformat(timespec="seconds"),
                    due=now - seen >= timedelta(seconds=grace),
                )
                (scan.due if orphan.due else scan.waiting).append(orphan)
            activity.heartbeat(f"looked for orphans in {region}")
        return scan

    @activity.defn
    @translated
    def adopt_orphan(self, orphan: Orphan) -> bool:
        """An ApiGateway document (state Deleted) for the leftovers, unless a gateway of
        that id exists again: then nothing of it is an orphan, and nothing is written."""
        return self.deps.gateways.adopt_orphan(orphan.gateway_id, orphan.region)

    @activity.defn
    @translated
    def record_reaped(self, orphan: Orphan) -> None:
        """Reaped: its sighting is forgotten (the metric counts its items by kind)."""
        self.deps.sightings.forget(orphan.region, orphan.gateway_id)
