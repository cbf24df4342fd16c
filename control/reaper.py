"""`gatewayflow reap`: the manual form of the scheduled orphan reaper.

A dry run (the default) lists every orphan with when it was first seen and whether the
grace period has passed, and what `--apply` would do now, limits included; it changes
nothing. `--apply` runs the OrphanReaper workflow now, on the worker, exactly as the
schedule does: the same limits, the same adoption, the same ordered, owned deletion steps,
the same result.
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import Client

from gatewayflow import reap_limits
from gatewayflow.deps import Deps
from gatewayflow.domain.documents import utcnow
from gatewayflow.domain.messages import Orphan, OrphanScan, ReapInput, ReapResult
from gatewayflow.inventory import audit_regions, described_orphans, orphans, reapable
from gatewayflow.settings import Settings
from workflows.reaper import OrphanReaper


@dataclass
class Preview:
    orphans: list[Orphan]  # as the schedule sees them: due after GATEWAYFLOW_REAP_GRACE
    run: OrphanScan  # what a run with the given input would do now


def preview(deps: Deps, input: ReapInput) -> Preview:
    """Every orphan of every region, and what a reaper run with `input` would adopt now
    or why it would hold; read-only (the run records a sighting first: an orphan not yet
    seen counts as seen now)."""
    settings = deps.settings
    regions = audit_regions(deps)
    census = reap_limits.take_census(deps, regions)
    found = reapable(orphans(deps, regions))
    if input.gateway_ids:
        found = {gid: items for gid, items in found.items() if gid in input.gateway_ids}
    first_seen, now = deps.sightings.first_seen(), utcnow()
    listed = described_orphans(
        found, first_seen, timedelta(seconds=settings.reap_grace_seconds), now
    )
    grace = settings.reap_grace_seconds if input.grace_seconds is None else input.grace_seconds
    seen = {gid: first_seen.get(gid, now) for gid in found}
    run = OrphanScan()
    for orphan in described_orphans(found, seen, timedelta(seconds=grace), now):
        (run.due if orphan.due else run.waiting).append(orphan)
    return Preview(listed, reap_limits.limited(run, census, settings, input.confirm))


def dry_run(deps: Deps) -> list[Orphan]:
    """Every orphan of every region, as the reaper sees it; read-only."""
    return preview(deps, ReapInput()).orphans


def manual_workflow_id(settings: Settings) -> str:
    return f"orphan-reaper/{settings.task_queue}/manual-{uuid.uuid4().hex[:8]}"


async def apply(
    client: Client,
    settings: Settings,
    grace_seconds: float,
    workflow_id: str,
    gateway_ids: list[str] | None = None,
    confirm: int | None = None,
) -> ReapResult:
    """Run the reaper now (only on `gateway_ids` when given; through its limits if it
    adopts exactly `confirm`) and wait for its result; the worker does the work."""
    return await client.execute_workflow(
        OrphanReaper.run,
        ReapInput(grace_seconds=grace_seconds, gateway_ids=gateway_ids or [], confirm=confirm),
        id=workflow_id,
        task_queue=settings.task_queue,
        execution_timeout=timedelta(hours=1),
        static_summary="gatewayflow reap --apply"
        + ("" if confirm is None else f" --confirm {confirm}"),
    )
