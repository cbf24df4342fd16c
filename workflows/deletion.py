"""GatewayDeletion: the ordered, idempotent teardown of everything a gateway owns."""

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from gatewayflow.domain.messages import DeletionInput, DeletionResult, PermitRequest
    from gatewayflow.domain.states import GatewayPhase, GatewayState
    from workflows import permits, search
    from workflows.operations import DELETE
    from workflows.steps import run_steps


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
        limited = workflow.patched(permits.PATCH)
        if limited:
            await permits.acquire(permit, lambda: self._granted, self._reset)
        try:
            steps = await run_steps(
                DELETE,
                DELETE.steps,
                gid,
                input.region,
                # The deletion's RuntimeDomain child outlives a terminated deletion.
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
        finally:
            if limited:
                await permits.release(permit)
        search.upsert(gid, phase=GatewayPhase.DELETED.value)
        workflow.set_current_details(f"gateway **{gid}** deleted: nothing left")
        return DeletionResult(gateway_id=gid, steps=steps)
