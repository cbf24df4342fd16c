"""A worker in this process on its own task queue and database, and helpers to drive it.

The isolation rule: every harness has a database (GATEWAYFLOW_DB) and task queue of its
own, and at its end every workflow on its task queue is ended, the namespaces and
runtime databases of its gateways are deleted and its database is dropped. So no test
sees another's gateways, and the order in which tests run does not matter.
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from control import service
from control.schedules import remove_schedules
from control.worker import run_worker
from gatewayflow.client import connect
from gatewayflow.deps import Deps
from gatewayflow.domain import naming
from gatewayflow.domain.documents import ApiGateway
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.settings import Settings
from gatewayflow.store import installation
from gatewayflow.store.errors import NotOwnedDatabase
from gatewayflow.store.gateways import GatewayRepository
from tests.oracles import traces

# Where each intent comes to rest, as the README states it (not read from the product).
CONVERGED_PHASE = {
    GatewayState.RUNNING: GatewayPhase.STARTED,
    GatewayState.RESTARTING: GatewayPhase.STARTED,
    GatewayState.STOPPED: GatewayPhase.STOPPED,
    GatewayState.DELETED: GatewayPhase.DELETED,
}


def unique_id(prefix: str = "gw") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Harness:
    settings: Settings
    client: Client
    deps: Deps

    @property
    def gateways(self) -> GatewayRepository:
        return self.deps.gateways

    @property
    def connections(self) -> service.Connections:
        return service.Connections(self.client, self.gateways)

    async def create(self, gateway_id: str, **options: Any) -> ApiGateway:
        """As `gatewayflow create` asks; `options` are its (region, custom_domain, ...)."""
        tracked = await service.create_gateway(
            self.settings, gateway_id, connections=self.connections, **options
        )
        return tracked.gateway

    async def request(self, gateway_id: str, what: Request) -> ApiGateway:
        """As `gatewayflow stop|start|restart|delete` asks: an update the workflow answers."""
        tracked = await service.request_gateway(
            self.settings, gateway_id, what, connections=self.connections
        )
        return tracked.gateway

    async def wait_for(
        self, gateway_id: str, state: GatewayState, timeout: float = 90.0
    ) -> ApiGateway | None:
        """Until the document shows `state` at the phase it converges to (written here,
        not asked of the product): None once a wanted deletion removed it. A document
        that vanished when another state was wanted fails at once."""
        want_phase = CONVERGED_PHASE[state]
        deadline = time.monotonic() + timeout
        seen: tuple[object, ...] | None = None
        while True:
            gw = await asyncio.to_thread(self.gateways.get, gateway_id)
            if gw is None:
                assert state is GatewayState.DELETED, (
                    f"{gateway_id}: waiting for {state.value}, but its document is gone "
                    f"(last seen {seen})"
                )
                # The deletion ends after the document goes: its permit is given back.
                await self._until_closed(
                    naming.deletion_workflow_id(self.settings.installation, gateway_id), deadline
                )
                return None
            seen = (gw.state.value, gw.phase.value, gw.progress.step, gw.progress.last_error)
            # A deletion ends with the document gone, never at a phase.
            if gw.state is state and gw.phase is want_phase and state is not GatewayState.DELETED:
                return gw
            assert time.monotonic() < deadline, (
                f"{gateway_id} did not reach {state.value}/{want_phase.value} in {timeout:g}s; "
                f"stopped at {seen}"
            )
            await asyncio.sleep(0.1)

    async def _until_closed(self, workflow_id: str, deadline: float) -> None:
        while await self.workflow_status(workflow_id) is WorkflowExecutionStatus.RUNNING:
            assert time.monotonic() < deadline, f"{workflow_id} still running"
            await asyncio.sleep(0.1)

    async def wait_phase(
        self, gateway_id: str, phase: GatewayPhase, timeout: float = 60.0
    ) -> ApiGateway:
        async with asyncio.timeout(timeout):
            while True:
                gw = await asyncio.to_thread(self.gateways.get, gateway_id)
                if gw is not None and gw.phase is phase:
                    return gw
                await asyncio.sleep(0.1)

    async def workflow_status(self, workflow_id: str) -> WorkflowExecutionStatus | None:
        """None while the workflow has not been started."""
        try:
            return (await self.client.get_workflow_handle(workflow_id).describe()).status
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return None
            raise

    async def traces(self, gateway_id: str) -> list[str]:
        """What is left of the gateway anywhere, by the independent oracle."""
        return await asyncio.to_thread(traces, self.settings, self.deps.db.client, gateway_id)

    def converged_phase(self, state: GatewayState) -> GatewayPhase:
        return CONVERGED_PHASE[state]


async def pollers(client: Client, task_queue: str) -> set[str]:
    """Identities polling both the workflow and the activity task queue."""
    polling: list[set[str]] = []
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        request = DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind
        )
        response = await client.workflow_service.describe_task_queue(request)
        polling.append({poller.identity for poller in response.pollers})
    return polling[0] & polling[1]


async def wait_for_pollers(
    client: Client, task_queue: str, identity_prefix: str = "", timeout: float = 60.0
) -> None:
    """Until a worker (whose identity starts with `identity_prefix`) polls both queues."""
    async with asyncio.timeout(timeout):
        while not any(p.startswith(identity_prefix) for p in await pollers(client, task_queue)):
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, client: Client) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop=stop))
    try:
        waiting = asyncio.create_task(wait_for_pollers(client, settings.task_queue))
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            waiting.cancel()
            task.result()
        await waiting
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)


async def end_workflows(client: Client, task_queue: str) -> None:
    """Terminate every running workflow of the task queue (children run on it too)."""
    query = f"TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running'"
    async for wf in client.list_workflows(query):
        with contextlib.suppress(RPCError):  # it may have ended meanwhile
            await client.get_workflow_handle(wf.id, run_id=wf.run_id).terminate("test ended")


def remove_gateways(settings: Settings, deps: Deps) -> None:
    """Delete the namespaces (labelled with the gateway and the harness's installation)
    and runtime databases of every gateway the harness's database knows of, then drop that
    database and the installation's registration."""
    ids: set[str] = set()
    for collection in deps.db.list_collection_names():
        ids.update(str(v) for v in deps.db[collection].distinct("gatewayId"))
    api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(settings.kubeconfig), context="local"
    )
    with api:
        core = k8s.CoreV1Api(api)
        deleted = []
        for gid in ids:
            with contextlib.suppress(ValueError):
                naming.validate_gateway_id(gid)
                with contextlib.suppress(ApiException):
                    namespace = core.read_namespace(naming.namespace(gid))
                    labels = (namespace.metadata and namespace.metadata.labels) or {}
                    if labels == labels | naming.owner_labels(settings.installation, gid):
                        core.delete_namespace(naming.namespace(gid))
                        deleted.append(naming.namespace(gid))
                with contextlib.suppress(NotOwnedDatabase):  # another installation's
                    deps.runtime.drop(gid)
        # Gone before the next test starts, so no test sees another's namespaces.
        deadline = time.monotonic() + 60
        for name in deleted:
            while time.monotonic() < deadline:
                try:
                    core.read_namespace(name)
                except ApiException as err:
                    if err.status == 404:
                        break
                    raise
                time.sleep(0.05)
    key = installation.key_of(deps.db)
    if key is not None:
        deps.runtime.forget_installation(key)
    deps.db.client.drop_database(settings.db_name)


@contextlib.asynccontextmanager
async def harness(
    stack: Settings, *, worker: bool = True, **overrides: object
) -> AsyncIterator[Harness]:
    """Unique database, task queue and installation per harness, so tests never see each
    other's data; `overrides` are further settings (e.g. `metrics_port`). Everything it
    made is removed at the end (see the module's docstring)."""
    suffix = uuid.uuid4().hex[:8]
    settings = stack.model_copy(
        update={
            "db_name": f"gf_test_{suffix}",
            "task_queue": f"gatewayflow-test-{suffix}",
            # Short, so that the links the CLI prints fit its test's terminal.
            "installation_name": f"t-{suffix}",
            "sweep_interval_seconds": 2.0,
            # Periodic schedules only where a test asks for them (and removed after it).
            "drift_interval_seconds": 0.0,
            "reap_interval_seconds": 0.0,
            **overrides,
        }
    )
    client = await connect(settings)
    deps = Deps(settings)
    h = Harness(settings=settings, client=client, deps=deps)
    try:
        if worker:
            async with running_worker(settings, client):
                yield h
        else:
            yield h
    finally:
        await remove_schedules(client, settings)
        await end_workflows(client, settings.task_queue)
        await asyncio.to_thread(remove_gateways, settings, deps)


async def closed_runs(client: Client, workflow_id: str, timeout: float = 30.0) -> int:
    """How many runs of `workflow_id` visibility lists, once it lists at least one and
    none of them is running (visibility follows the histories a moment later)."""
    async with asyncio.timeout(timeout):
        while True:
            runs = [wf async for wf in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
            if runs and all(wf.status is not WorkflowExecutionStatus.RUNNING for wf in runs):
                return len(runs)
            await asyncio.sleep(0.2)
