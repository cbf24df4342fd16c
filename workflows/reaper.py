"""OrphanReaper: removes what gateways left behind, run by a Temporal Schedule.

An orphan (resources of this installation whose ApiGateway document is gone, found by
the audit) is reaped only once it has been seen for the grace period. It is adopted (an
ApiGateway document with state Deleted is inserted, which fails if the gateway exists
again) and then removed by its own gateway workflow (this installation's, named by the
orphan): the same ordered, owned deletion steps, under the same per-region deletion
limit. Nothing without the orphan's ownership labels is touched. The run records what it
handed over and ends; each deletion shows in its gateway's progress. A run the limits
hold (gatewayflow/reap_limits.py) finds nothing due and adopts nothing; its result and
details say why.
"""

import asyncio

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.reaper import ReaperActivities
    from gatewayflow.domain import naming
    from gatewayflow.domain.messages import GatewayInput, Orphan, ReapInput, ReapResult
    from workflows import search
    from workflows.calls import call
    from workflows.gateway import GatewayWorkflow


@workflow.defn(name="OrphanReaper")
class OrphanReaper:
    @workflow.run
    async def run(self, input: ReapInput) -> ReapResult:
        scan = await call(
            ReaperActivities.find_orphans,
            input,
            summary="find orphans in every region; record first sightings; check the limits",
            waits=True,
        )
        result = ReapResult(waiting=scan.waiting, held=scan.held, hold=scan.hold)
        outcomes = await asyncio.gather(*(self._reap(orphan) for orphan in scan.due))
        for orphan, skipped in zip(scan.due, outcomes, strict=True):
            if skipped is None:
                result.reaped.append(orphan)
            else:
                result.skipped.append(f"{orphan.gateway_id}: {skipped}")
        if scan.hold:
            details = (
                f"**held** ({scan.hold.kind}), adopted nothing: {scan.hold.reason}. "
                "`gatewayflow reap` shows what a run would adopt and how to confirm it"
            )
        else:
            details = (
                f"reaped **{len(result.reaped)}**: "
                f"{', '.join(o.gateway_id for o in result.reaped)}"
                f"; waiting for the grace period: {len(result.waiting)}"
            )
        workflow.set_current_details(details)
        return result

    async def _reap(self, orphan: Orphan) -> str | None:
        """None once handed to its deletion, else why not."""
        gid = orphan.gateway_id
        wid = orphan.workflow_id or naming.unscoped_gateway_workflow_id(gid)
        adopted = await call(
            ReaperActivities.adopt_orphan,
            orphan,
            summary=f"adopt orphan {gid} ({', '.join(orphan.kinds)}): state Deleted",
        )
        if not adopted:
            return "a gateway of that id exists again"
        try:
            # Not waited for: a deletion that needs an operator (a foreign object in the
            # namespace) must not hold up the next run of the schedule.
            await workflow.start_child_workflow(
                GatewayWorkflow.run,
                GatewayInput(gateway_id=gid),
                id=wid,
                search_attributes=search.for_gateway(gid),
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"reap orphan {gid}",
            )
        except WorkflowAlreadyStartedError:
            # Its workflow is still running (idle since the document vanished): wake it.
            handle = workflow.get_external_workflow_handle(wid)
            await handle.signal(GatewayWorkflow.delete)
        await call(
            ReaperActivities.record_reaped,
            orphan,
            summary=f"reaping {gid}: {len(orphan.items)} items, by {wid}",
        )
        return None
