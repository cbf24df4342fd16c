"""`gatewayflow reap`: the manual form of the scheduled orphan reaper.

A dry run (the default) lists every orphan with when it was first seen and whether the
grace period has passed; it changes nothing. `--apply` runs the OrphanReaper workflow now,
on the worker, exactly as the schedule does: the same adoption, the same ordered, owned
deletion steps, the same result.
"""

import uuid
from datetime import timedelta

from temporalio.client import Client

from gatewayflow.deps import Deps
from gatewayflow.domain.documents import utcnow
from gatewayflow.domain.messages import Orphan, ReapInput, ReapResult
from gatewayflow.inventory import described_orphans, orphans, reapable
from gatewayflow.settings import Settings
from workflows.reaper import OrphanReaper


def dry_run(deps: Deps) -> list[Orphan]:
    """Every orphan of every region, as the reaper sees it; read-only."""
    grace = timedelta(seconds=deps.settings.reap_grace_seconds)
    found = reapable(orphans(deps))
    return described_orphans(found, deps.sightings.first_seen(), grace, utcnow())


def manual_workflow_id(settings: Settings) -> str:
    return f"orphan-reaper/{settings.task_queue}/manual-{uuid.uuid4().hex[:8]}"


async def apply(
    client: Client,
    settings: Settings,
    grace_seconds: float,
    workflow_id: str,
    gateway_ids: list[str] | None = None,
) -> ReapResult:
    """Run the reaper now (only on `gateway_ids` when given) and wait for its result;
    the worker does the work."""
    return await client.execute_workflow(
        OrphanReaper.run,
        ReapInput(grace_seconds=grace_seconds, gateway_ids=gateway_ids or []),
        id=workflow_id,
        task_queue=settings.task_queue,
        execution_timeout=timedelta(hours=1),
        static_summary="gatewayflow reap --apply",
    )
