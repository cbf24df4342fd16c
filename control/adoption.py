"""A worker's start-up: its installation claimed and what the installation made before
installations adopted (gatewayflow/adoption.py), then its gateways' workflows that still
run under the ids of that time (`gateway/<id>`) asked to hand over to their ids in the
installation (`gateway/<installation>/<id>`), each once its current operation is done."""

import asyncio
import contextlib
import logging

from pymongo.errors import PyMongoError
from temporalio.client import Client
from temporalio.service import RPCError

from gatewayflow import adoption
from gatewayflow.deps import Deps
from gatewayflow.domain import naming
from gatewayflow.settings import Settings
from workflows.gateway import GatewayWorkflow

log = logging.getLogger("gatewayflow.adoption")


async def adopt(client: Client, settings: Settings, deps: Deps, stop: asyncio.Event) -> bool:
    """False when `stop` was set before the claim could be made (MongoDB down: tried
    again from 1 s doubling to 30 s). Raises InstallationMismatch or InstallationTaken:
    the worker must not start. What cannot be adopted now is adopted at the next start."""
    delay = 1.0
    while True:
        try:
            await asyncio.to_thread(adoption.claim, deps)
            break
        except PyMongoError as exc:
            log.warning(
                "MongoDB unreachable (%s); claiming the installation again in %.0fs", exc, delay
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        if stop.is_set():
            return False
        delay = min(delay * 2, 30.0)
    try:
        adopted = await asyncio.to_thread(adoption.adopt, deps)
        asked = await hand_over_unscoped(client, settings)
    except (PyMongoError, RPCError) as exc:
        log.warning("adoption cut short (%s); taken up again at the next start", exc)
        return True
    if adopted.objects or adopted.databases:
        log.info(
            "installation %s adopted %d object(s) and %d runtime database(s) made before "
            "installations",
            settings.installation,
            len(adopted.objects),
            len(adopted.databases),
        )
    if asked:
        log.info("asked %d workflow(s) of unscoped ids to hand over", len(asked))
    return True


async def hand_over_unscoped(client: Client, settings: Settings) -> list[str]:
    """Send the hand-over signal to every running GatewayWorkflow of this task queue whose
    id has no installation; returns their ids. Those of other task queues are other
    installations': left alone."""
    query = (
        "WorkflowType = 'GatewayWorkflow' AND ExecutionStatus = 'Running' "
        f"AND TaskQueue = '{settings.task_queue}'"
    )
    asked = []
    async for execution in client.list_workflows(query):
        installation, gid = naming.workflow_scope(execution.id)
        if installation or execution.id != naming.unscoped_gateway_workflow_id(gid):
            continue
        try:
            naming.validate_gateway_id(gid)
        except naming.InvalidGatewayId:
            continue
        successor = naming.gateway_workflow_id(settings.installation, gid)
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        await handle.signal(GatewayWorkflow.retire, successor)
        asked.append(execution.id)
    return asked
