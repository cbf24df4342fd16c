"""Handing a gateway over from its workflow id of the versions before installations
(`gateway/<id>`) to its installation's (`gateway/<installation>/<id>`), so that two
workflows never act on one gateway (README, "Installations")."""

import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.gateway import GatewayActivities
    from gatewayflow.domain.messages import GatewayInput, HandOver
    from workflows import search
    from workflows.calls import call

# How often a new run looks whether the run it takes over from has ended.
_POLL = timedelta(seconds=1)


async def take_over(gateway_id: str) -> None:
    """Act only once the gateway's workflow of the versions before installations, if one
    still runs, has handed over. Only the first run of an installation's id looks."""
    handover = HandOver(gateway_id=gateway_id, successor=workflow.info().workflow_id)
    while await call(
        GatewayActivities.unscoped_run_active,
        handover,
        summary=f"take over from gateway/{gateway_id} if it still runs",
        local=True,
    ):
        workflow.set_current_details(f"waiting for gateway/{gateway_id} to hand over")
        await workflow.sleep(_POLL)


async def hand_over(
    run: Callable[[Any, GatewayInput], Awaitable[str]],
    input: GatewayInput,
    successor: str,
) -> str:
    """Start the successor (`run`, the gateway workflow; unless a request started it
    already) and end: it waits until this run has ended before it acts."""
    gid = input.gateway_id
    workflow.set_current_details(f"handing over to {successor}")
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await workflow.start_child_workflow(
            run,
            input,
            id=successor,
            search_attributes=search.for_gateway(gid),
            parent_close_policy=ParentClosePolicy.ABANDON,
            static_summary=f"gateway {gid}",
        )
    await workflow.wait_condition(workflow.all_handlers_finished)
    return f"gateway {gid} handed over to {successor}"
