"""Running one step of an operation: its activity, or the RuntimeDomain child first."""

from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from gatewayflow.domain import naming
    from gatewayflow.domain.messages import DomainInput, StepInput, StepResult
    from workflows import search
    from workflows.calls import call
    from workflows.operations import Operation, Step
    from workflows.runtime_domain import RuntimeDomainWorkflow

In = TypeVar("In", bound=StepInput)

LOCAL_STEPS = "local-short-steps"


async def run_step(
    operation: Operation,
    step: Step[In],
    arg: In,
    *,
    timeout: timedelta | None = None,
    parent_close_policy: ParentClosePolicy = ParentClosePolicy.TERMINATE,
) -> StepResult:
    """Show the step in the workflow's details, then run it.

    `parent_close_policy` applies to the RuntimeDomain child of a domain step.
    """
    workflow.set_current_details(operation.details(step))
    gid = arg.gateway_id
    if step.domain is not None:
        await workflow.execute_child_workflow(
            RuntimeDomainWorkflow.run,
            DomainInput(
                gateway_id=gid, region=arg.region, target=step.domain, step_number=arg.number
            ),
            id=naming.domain_workflow_id(gid),
            search_attributes=search.for_gateway(gid),
            parent_close_policy=parent_close_policy,
            static_summary=f"RuntimeDomain {gid} -> {step.domain.value}",
            execution_timeout=timedelta(hours=1),
        )
    # Short steps as local activities: one server round trip fewer each (histories
    # recorded before run them as activities).
    local = step.local and workflow.patched(LOCAL_STEPS)
    return await call(
        step.activity,
        arg,
        summary=step.describe(gid),
        waits=step.waits,
        local=local,
        timeout=timeout,
    )


async def run_steps(
    operation: Operation,
    steps: tuple[Step[StepInput], ...],
    gateway_id: str,
    region: str,
    *,
    parent_close_policy: ParentClosePolicy = ParentClosePolicy.TERMINATE,
) -> list[StepResult]:
    """Steps that need nothing but their place in the operation, in order."""
    return [
        await run_step(
            operation,
            step,
            operation.input(step, gateway_id, region),
            parent_close_policy=parent_close_policy,
        )
        for step in steps
    ]
