"""A deletion's permit of its region (at most GATEWAYFLOW_REGION_DELETION_LIMIT at once).

In the manner of Temporal's mutex sample, but the queue lives in MongoDB so every worker
shares it: the deletion asks (an activity that never blocks), and while queued waits in
workflow code, holding no activity slot, until the release that freed a permit signals it
(`permit_granted`) or a minute passes (then it asks again, in case that signal was lost).
"""

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.permits import PermitActivities
    from gatewayflow.domain import naming
    from gatewayflow.domain.messages import PermitPlace, PermitRequest
    from gatewayflow.domain.states import GatewayPhase
    from workflows import search
    from workflows.calls import call

QUEUED_PHASE = "DeletionQueued"  # the GatewayPhase search attribute while queued
SIGNAL = "permit_granted"
_RECHECK = timedelta(minutes=1)


async def acquire(
    request: PermitRequest, granted: Callable[[], bool], reset: Callable[[], None]
) -> None:
    """Return once this deletion holds a permit of its region."""
    gid, region = request.gateway_id, request.region
    queued = False
    while True:
        reset()
        place = await call(
            PermitActivities.acquire_permit,
            request,
            summary=f"deletion permit of region {region} for {gid}",
        )
        if place.granted:
            if queued:
                search.upsert(gid, phase=GatewayPhase.DELETING.value)
            await _wake(place, but=gid)
            return
        if not queued:
            search.upsert(gid, phase=QUEUED_PHASE)
            queued = True
        workflow.set_current_details(
            f"**queued** for a deletion permit of region {region}: {place.ahead} ahead, "
            f"{place.running} of {place.limit} deleting"
        )
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(granted, timeout=_RECHECK)


async def release(request: PermitRequest) -> None:
    """Give the permit back and wake the deletions it went to."""
    place = await call(
        PermitActivities.release_permit,
        request,
        summary=f"release the deletion permit of region {request.region}",
    )
    await _wake(place, but=request.gateway_id)


async def _wake(place: PermitPlace, but: str) -> None:
    """Signal the deletions just given a permit (not this one itself)."""

    own = workflow.info().workflow_id  # a deletion wakes deletions of its own installation

    async def signal(gid: str) -> None:
        wid = naming.related_workflow_id(own, naming.DELETION_WORKFLOW, gid)
        handle = workflow.get_external_workflow_handle(wid)
        try:
            await handle.signal(SIGNAL)
        except Exception as err:  # not running any more: it asks again when it runs
            workflow.logger.info("could not wake the deletion of %s: %r", gid, err)

    await asyncio.gather(*(signal(gid) for gid in place.promoted if gid != but))
