"""Running an operation: its declared steps in order (workflows/operations.py), one loop."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from gatewayflow.domain import naming
    from gatewayflow.domain.messages import (
        DomainInput,
        GatewayInput,
        InstanceInput,
        ReadyCheck,
        StepInput,
        StepResult,
        TriggersInput,
    )
    from workflows import search
    from workflows.calls import call
    from workflows.operations import Operation, Step
    from workflows.runtime_domain import RuntimeDomainWorkflow

In = TypeVar("In", bound=StepInput)

# An until-ready step looks again after each pause, doubling up to the maximum.
_READY_PAUSE_FIRST = timedelta(milliseconds=500)
_READY_PAUSE_MAX = timedelta(seconds=15)
_START_TIMEOUT: float = GatewayInput.model_fields["start_timeout_seconds"].default


class OperationStopped(Exception):
    """The operation stopped early: a delete came, or the intent it started from changed.
    Not a failure: the entity loop reads the intent again and acts on it."""


@dataclass
class Ran:
    """What an operation did: each step's result, and why it ended early if a step was
    not ready by the start timeout (the steps after it did not run)."""

    steps: list[StepResult] = field(default_factory=list)
    not_ready: str | None = None


def _go_on() -> None:
    pass


async def run_operation(
    operation: Operation,
    gateway_id: str,
    region: str,
    *,
    start_timeout: float = _START_TIMEOUT,
    after_step: Callable[[], None] = _go_on,
    parent_close_policy: ParentClosePolicy = ParentClosePolicy.TERMINATE,
) -> Ran:
    """Run the operation's steps in order.

    `after_step` is called after each step, and after each look of an until-ready step
    that finds it not ready: raising there (OperationStopped) stops the operation.
    `parent_close_policy` applies to the RuntimeDomain child of a domain step.
    """
    ran = Ran()
    rollout: str | None = None  # the stamp of this operation's rolling update, once made
    for step in operation.steps:
        if step.rollout:
            rollout = workflow.now().isoformat()
        arg = operation.input(step, gateway_id, region)
        if step.suspend is not None:
            arg = TriggersInput(**arg.model_dump(), suspend=step.suspend)
        elif step.instance or step.rollout:
            arg = InstanceInput(
                **arg.model_dump(), restarted_at=rollout, timeout_seconds=start_timeout
            )
        if step.until_ready is None:
            ran.steps.append(
                await run_step(operation, step, arg, parent_close_policy=parent_close_policy)
            )
            after_step()
        elif why := await _until_ready(operation, step, arg, start_timeout, after_step):
            ran.not_ready = why
            return ran
    return ran


async def run_step(
    operation: Operation,
    step: Step[In],
    arg: In,
    *,
    parent_close_policy: ParentClosePolicy = ParentClosePolicy.TERMINATE,
) -> StepResult:
    """Show the step in the workflow's details, then run it: the RuntimeDomain child
    first for a domain step, then its activity."""
    workflow.set_current_details(operation.details(step))
    gid = arg.gateway_id
    if step.domain is not None:
        await workflow.execute_child_workflow(
            RuntimeDomainWorkflow.run,
            DomainInput(
                gateway_id=gid, region=arg.region, target=step.domain, step_number=arg.number
            ),
            id=naming.related_workflow_id(workflow.info().workflow_id, naming.DOMAIN_WORKFLOW, gid),
            search_attributes=search.for_gateway(gid),
            parent_close_policy=parent_close_policy,
            static_summary=f"RuntimeDomain {gid} -> {step.domain.value}",
            execution_timeout=timedelta(hours=1),
        )
    result: StepResult = await call(
        step.activity, arg, summary=step.describe(gid), waits=step.waits, local=step.local
    )
    return result


async def _until_ready(
    operation: Operation,
    step: Step[In],
    arg: In,
    timeout: float,
    after_look: Callable[[], None],
) -> str | None:
    """Look after pauses on the workflow's clock (a timer, so a delete cancels it at once
    and the time-skipping test server can skip it); None once ready, else why not by the
    deadline."""
    assert step.until_ready is not None
    gid = arg.gateway_id
    deadline = workflow.now() + timedelta(seconds=timeout)
    pause = _READY_PAUSE_FIRST
    workflow.set_current_details(operation.details(step))
    while True:
        check: ReadyCheck = await call(
            step.activity, arg, summary=step.describe(gid), waits=step.waits, local=step.local
        )
        if check.ready:
            return None
        after_look()
        left = deadline - workflow.now()
        if left <= timedelta(0):
            what = step.fill(step.until_ready, gid)
            return f"{what} not ready after {timeout:g}s: {check.why}"
        await workflow.sleep(min(pause, left))
        pause = min(pause * 2, _READY_PAUSE_MAX)
