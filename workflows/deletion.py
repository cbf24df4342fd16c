"""GatewayDeletion: the ordered, idempotent teardown of everything a gateway owns."""

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from gatewayflow.domain.messages import DeletionInput, DeletionResult
    from gatewayflow.domain.states import GatewayPhase, GatewayState
    from workflows import search
    from workflows.operations import DELETE
    from workflows.steps import run_steps


@workflow.defn(name="GatewayDeletion")
class GatewayDeletion:
    """The steps of `operations.DELETE`, one at a time, each recorded in the ApiGateway
    document when done."""

    @workflow.run
    async def run(self, input: DeletionInput) -> DeletionResult:
        gid = input.gateway_id
        search.upsert(gid, state=GatewayState.DELETED.value, phase=GatewayPhase.DELETING.value)
        steps = await run_steps(
            DELETE,
            DELETE.steps,
            gid,
            input.region,
            # The deletion's RuntimeDomain child outlives a terminated deletion.
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        search.upsert(gid, phase=GatewayPhase.DELETED.value)
        workflow.set_current_details(f"gateway **{gid}** deleted: nothing left")
        return DeletionResult(gateway_id=gid, steps=steps)
