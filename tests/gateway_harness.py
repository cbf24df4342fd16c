"""A worker in this process on its own task queue and database, and helpers to drive it."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from temporalio.client import Client

from gatewayflow import control
from gatewayflow.client import connect
from gatewayflow.deps import Deps
from gatewayflow.domain.documents import ApiGateway
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request, target_phase
from gatewayflow.inventory import Item, leftovers
from gatewayflow.schedules import remove_schedules
from gatewayflow.settings import Settings
from gatewayflow.store.gateways import GatewayRepository
from gatewayflow.worker import run_worker


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

    async def create(self, gateway_id: str, **fields: object) -> ApiGateway:
        gw = ApiGateway(gateway_id=gateway_id, **fields)
        return await control.create(self.client, self.settings, self.gateways, gw)

    async def request(self, gateway_id: str, what: Request) -> ApiGateway:
        return await control.request(self.client, self.settings, self.gateways, gateway_id, what)

    async def wait_for(
        self, gateway_id: str, state: GatewayState, timeout: float = 90.0
    ) -> ApiGateway | None:
        gw = await control.follow(
            self.gateways, gateway_id, state, lambda _snap: None, timeout=timeout
        )
        assert control.converged(gw, state), (
            f"{gateway_id} stopped at {gw and (gw.state, gw.phase, gw.progress)}"
        )
        return gw

    async def wait_phase(
        self, gateway_id: str, phase: GatewayPhase, timeout: float = 60.0
    ) -> ApiGateway:
        async with asyncio.timeout(timeout):
            while True:
                gw = await asyncio.to_thread(self.gateways.get, gateway_id)
                if gw is not None and gw.phase is phase:
                    return gw
                await asyncio.sleep(0.1)

    async def leftovers(self, gateway_id: str) -> list[Item]:
        return await asyncio.to_thread(leftovers, self.deps, gateway_id)

    def converged_phase(self, state: GatewayState) -> GatewayPhase:
        return target_phase(state)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop=stop))
    try:
        await asyncio.sleep(0.5)
        if task.done():
            task.result()
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)


@contextlib.asynccontextmanager
async def harness(
    stack: Settings, *, worker: bool = True, **overrides: object
) -> AsyncIterator[Harness]:
    """Unique database and task queue per harness, so tests never see each other's data;
    `overrides` are further settings (e.g. `metrics_port`)."""
    suffix = uuid.uuid4().hex[:8]
    settings = stack.model_copy(
        update={
            "db_name": f"gf_test_{suffix}",
            "task_queue": f"gatewayflow-test-{suffix}",
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
            async with running_worker(settings):
                yield h
        else:
            yield h
    finally:
        await remove_schedules(client, settings)
