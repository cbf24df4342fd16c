"""GatewayDeletion: the ordered, idempotent teardown of everything a gateway owns."""

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.gateway import GatewayActivities
    from gatewayflow.domain import naming
    from gatewayflow.domain.messages import DeletionInput, DeletionResult, PermitRequest
    from gatewayflow.domain.states import GatewayPhase, GatewayState
    from workflows import permits, search
    from workflows.calls import call
    from workflows.operations import DELETE
    from workflows.steps import run_operation


@workflow.defn(name="GatewayDeletion")
class GatewayDeletion:
    """The steps of `operations.DELETE`, one at a time, each recorded in the ApiGateway
    document when done; with a permit of the region, so that a mass deletion never has
    more than GATEWAYFLOW_REGION_DELETION_LIMIT of them at once (workflows/permits.py)."""

    def __init__(self) -> None:
        self._granted = False

    @workflow.signal(name=permits.SIGNAL)
    def permit_granted(self) -> None:
        self._granted = True

    def _reset(self) -> None:
        self._granted = False

    @workflow.run
    async def run(self, input: DeletionInput) -> DeletionResult:
        gid = input.gateway_id
        search.upsert(gid, state=GatewayState.DELETED.value, phase=GatewayPhase.DELETING.value)
        permit = PermitRequest(gateway_id=gid, region=input.region)
        await permits.acquire(permit, lambda: self._granted, self._reset)
        try:
            ran = await run_operation(
                DELETE,
                gid,
                input.region,
                # The deletion's RuntimeDomain child outlives a terminated deletion.
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
        finally:
            await permits.release(permit)
        search.upsert(gid, phase=GatewayPhase.DELETED.value)
        workflow.set_current_details(f"gateway **{gid}** deleted: nothing left")
        return DeletionResult(gateway_id=gid, steps=ran.steps)


async def delete_in_child(gateway_id: str, region: str) -> None:
    """Run GatewayDeletion as a child of the gateway's workflow, or follow the one an
    earlier run of that workflow started; fails when the deletion failed."""
    gid = gateway_id
    wid = naming.related_workflow_id(workflow.info().workflow_id, naming.DELETION_WORKFLOW, gid)
    workflow.set_current_details(f"deleting {gid}: see child {wid}")
    try:
        await workflow.execute_child_workflow(
            GatewayDeletion.run,
            DeletionInput(gateway_id=gid, region=region),
            id=wid,
            search_attributes=search.for_gateway(gid, GatewayPhase.DELETING.value),
            parent_close_policy=ParentClosePolicy.ABANDON,
            static_summary=f"delete gateway {gid}",
        )
    except WorkflowAlreadyStartedError:
        workflow.set_current_details(f"following the running {wid}")
        await call(
            GatewayActivities.wait_for_deletion,
            gid,
            summary=f"wait for the result of {wid}",
            waits=True,
        )
