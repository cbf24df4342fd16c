"""What every sender puts to a gateway's workflow (`gateway/<installation>/<id>`): its
signals and updates.

The CLI's service asks with an update (the workflow checks the request, writes the
intent and answers); the dispatcher, which finds the intent already in MongoDB, only
signals. Both start the workflow when it is not running.
"""

from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.workflow import UpdateMethodMultiParam

from gatewayflow import tracing
from gatewayflow.domain import naming
from gatewayflow.domain.messages import GatewayInput, GuardNotice, RequestAccepted
from gatewayflow.domain.states import GatewayState
from gatewayflow.domain.transitions import Request, RequestRefused
from gatewayflow.settings import Settings
from workflows import search
from workflows.gateway import GatewayWorkflow

# Each request's update, by reference: its name and result type are the workflow's own.
UPDATE_FOR_REQUEST: dict[Request, UpdateMethodMultiParam[[GatewayWorkflow], Any]] = {
    Request.START: GatewayWorkflow.start_request,
    Request.STOP: GatewayWorkflow.stop_request,
    Request.RESTART: GatewayWorkflow.restart_request,
    Request.DELETE: GatewayWorkflow.delete_request,
}

# The signal for an intent already in MongoDB: nothing new, so never a request the
# workflow would write again; a `delete`, which preempts the operation in flight and
# which the workflow finds already written. By name: signal-with-start takes one.
SIGNAL_FOR_STATE: dict[GatewayState, str] = {
    GatewayState.RUNNING: GatewayWorkflow.reconcile.__name__,
    GatewayState.STOPPED: GatewayWorkflow.reconcile.__name__,
    GatewayState.RESTARTING: GatewayWorkflow.reconcile.__name__,
    GatewayState.DELETED: GatewayWorkflow.delete.__name__,
}


async def signal_gateway(
    client: Client, settings: Settings, gateway_id: str, signal: str = "reconcile"
) -> str:
    """Signal the gateway's workflow, starting it first if it is not running; returns its
    run id."""
    handle = await client.start_workflow(
        GatewayWorkflow.run,
        GatewayInput(gateway_id=gateway_id, start_timeout_seconds=settings.start_timeout_seconds),
        id=naming.gateway_workflow_id(settings.installation, gateway_id),
        task_queue=settings.task_queue,
        start_signal=signal,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=search.for_gateway(gateway_id),
        static_summary=f"gateway {gateway_id}",
    )
    return handle.result_run_id or ""


async def ask_gateway(
    client: Client, settings: Settings, gateway_id: str, what: Request
) -> tuple[RequestAccepted, str]:
    """Send a request as an update to the gateway's workflow, starting it if it is not
    running (update-with-start); returns the workflow's answer and its run id.

    RequestRefused, with the workflow's reason, when the rules refuse it.
    """
    start = WithStartWorkflowOperation(
        GatewayWorkflow.run,
        GatewayInput(gateway_id=gateway_id, start_timeout_seconds=settings.start_timeout_seconds),
        id=naming.gateway_workflow_id(settings.installation, gateway_id),
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=search.for_gateway(gateway_id),
        static_summary=f"gateway {gateway_id}",
    )
    try:
        with tracing.gateway_span(f"request {what.value}", gateway_id):
            accepted: RequestAccepted = await client.execute_update_with_start_workflow(
                UPDATE_FOR_REQUEST[what], start_workflow_operation=start
            )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        why = cause.message if isinstance(cause, ApplicationError) else str(cause)
        raise RequestRefused(why) from exc
    handle = await start.workflow_handle()
    return accepted, handle.result_run_id or ""


async def notify_guard(
    client: Client, settings: Settings, gateway_id: str, notice: GuardNotice
) -> bool:
    """Tell a held deletion's workflow that an operator released or cancelled it; False
    when it is not running (its next run asks the guard itself)."""
    handle = client.get_workflow_handle(
        naming.gateway_workflow_id(settings.installation, gateway_id)
    )
    try:
        await handle.signal(GatewayWorkflow.deletion_guard, notice)
    except RPCError:
        return False
    return True
