"""GatewayDeletion: the ordered, idempotent teardown of everything a gateway owns."""

from datetime import timedelta

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from gatewayflow.domain import naming
    from gatewayflow.domain.messages import (
        DeletionInput,
        DeletionResult,
        DomainInput,
        StepInput,
        StepResult,
    )
    from gatewayflow.domain.states import DomainState, GatewayPhase
    from gatewayflow.domain.steps import DELETION_STEP_TITLES, DELETION_STEPS, DeletionStep
    from workflows import search
    from workflows.calls import call
    from workflows.runtime_domain import RuntimeDomainWorkflow

# Steps that are one activity each; the runtime domain is a child workflow.
STEP_ACTIVITIES: dict[DeletionStep, str] = {
    DeletionStep.TRIGGERS: "delete_triggers",
    DeletionStep.FUNCTIONS: "delete_functions",
    DeletionStep.STAGES: "delete_stages",
    DeletionStep.INSTANCE: "delete_instance",
    DeletionStep.DATABASE: "delete_database",
    DeletionStep.NAMESPACE: "delete_namespace",
    DeletionStep.FINALIZE: "finalize_deletion",
}

# Steps that wait for asynchronous Kubernetes deletion: they heartbeat, so a crashed
# worker's step is retried within the heartbeat timeout and a wait can be cancelled.
_WAITING_STEPS = (
    DeletionStep.TRIGGERS,
    DeletionStep.STAGES,
    DeletionStep.INSTANCE,
    DeletionStep.DATABASE,
    DeletionStep.NAMESPACE,
)

_SUMMARIES: dict[DeletionStep, str] = {
    DeletionStep.TRIGGERS: "delete CronJobs in {ns}, then CronTrigger docs",
    DeletionStep.FUNCTIONS: "delete CloudFunction docs of {gid}",
    DeletionStep.STAGES: "delete stage ApisixRoutes in {ns}; Stage, Environment, ClientApp docs",
    DeletionStep.INSTANCE: "delete Deployment {gid}, Service {gid} in {ns}; wait until gone",
    DeletionStep.DATABASE: "drop runtime database {db}, its user, Secret {gid}-db, Database doc",
    DeletionStep.NAMESPACE: "delete ConfigMap {gid}-config, Namespace {ns}; wait until gone",
    DeletionStep.FINALIZE: "phase Deleted, then remove ApiGateway document {gid}",
}


@workflow.defn(name="GatewayDeletion")
class GatewayDeletion:
    """One step at a time, each recorded in the ApiGateway document when done."""

    def __init__(self) -> None:
        self._step = 0

    @workflow.query
    def current_step(self) -> int:
        return self._step

    @workflow.run
    async def run(self, input: DeletionInput) -> DeletionResult:
        gid = input.gateway_id
        ns = naming.namespace(gid)
        search.upsert(gid, state="Deleted", phase=GatewayPhase.DELETING.value)
        result = DeletionResult(gateway_id=gid)
        total = len(DELETION_STEPS)
        for number, step in enumerate(DELETION_STEPS, start=1):
            self._step = number
            workflow.set_current_details(
                f"**step {number} of {total}**: {step.value}: {DELETION_STEP_TITLES[step]}"
            )
            phase = GatewayPhase.DELETED if step is DeletionStep.FINALIZE else GatewayPhase.DELETING
            step_input = StepInput(
                gateway_id=gid, region=input.region, phase=phase, step=step.value, number=number
            )
            if step is DeletionStep.RUNTIME_DOMAIN:
                await workflow.execute_child_workflow(
                    RuntimeDomainWorkflow.run,
                    DomainInput(
                        gateway_id=gid,
                        region=input.region,
                        target=DomainState.DELETED,
                        step_number=number,
                    ),
                    id=naming.domain_workflow_id(gid),
                    search_attributes=search.for_gateway(gid),
                    parent_close_policy=ParentClosePolicy.ABANDON,
                    static_summary=f"RuntimeDomain {gid} -> Deleted",
                    execution_timeout=timedelta(hours=1),
                )
                done = await call(
                    "record_step", step_input, StepResult, summary=f"record step {step.value}"
                )
            else:
                done = await call(
                    STEP_ACTIVITIES[step],
                    step_input,
                    StepResult,
                    summary=_SUMMARIES[step].format(
                        ns=ns, gid=gid, db=naming.runtime_database(gid)
                    ),
                    waits=step in _WAITING_STEPS,
                )
            result.steps.append(done)
        search.upsert(gid, phase=GatewayPhase.DELETED.value)
        workflow.set_current_details(f"gateway **{gid}** deleted: nothing left")
        return result
