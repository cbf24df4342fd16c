"""What every measurement shares: the stack, clients, workers, and gateways to delete.

Each measurement works in a MongoDB database and on a task queue of its own, so that the
gatewayflow path, the tick baseline and the engine bound never see each other's work.
Gateways are provisioned through gatewayflow itself (full tree, Started) and deleted by a
raw `state: 'Deleted'` write, as an operator's `updateOne` would.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from temporalio.client import Client

from bench.processes import ROOT, ChildProcess
from control import service
from control.worker import run_worker
from gatewayflow.client import connect
from gatewayflow.cluster.client import Cluster
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.cluster.regions import Regions
from gatewayflow.domain import naming
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.settings import Settings
from gatewayflow.store.client import Client as MongoClient
from gatewayflow.store.client import Db, make_client
from gatewayflow.store.gateways import GatewayRepository
from gatewayflow_dev import stack as devstack
from tests.conftest import stack_env

REGION = "local"
PROVISION_TIMEOUT = 600.0
PROVISION_WAVE = 50
DELETION_TIMEOUT = 600.0


async def create_full_tree(
    settings: Settings, connections: service.Connections, gateway_id: str
) -> None:
    """3 stages, 3 environments (and their client apps), 3 functions, 2 cron triggers and
    a custom domain (so a Certificate and a fourth ApisixTls), asked as `gatewayflow
    create` asks."""
    await service.create_gateway(
        settings,
        gateway_id,
        custom_domain=f"{gateway_id}.example.com",
        functions=3,
        triggers=2,
        connections=connections,
    )


@dataclass
class Bench:
    settings: Settings
    """Resolved settings of the bench's own stack."""
    client: Client
    mongo: MongoClient
    """Created before any command listener is registered: its commands are never counted."""
    cluster: Cluster

    @classmethod
    async def open(cls, settings: Settings) -> "Bench":
        assert settings.kubeconfig is not None, "settings must be resolved"
        return cls(
            settings=settings,
            client=await connect(settings),
            mongo=make_client(settings.mongodb_uri or ""),
            cluster=Regions(settings.kubeconfig, installation=settings.installation).cluster(
                REGION
            ),
        )

    def scoped(self, name: str) -> Settings:
        """Settings with a database and task queue of their own."""
        return self.settings.model_copy(
            update={"db_name": f"bench_{name.replace('-', '_')}", "task_queue": f"bench-{name}"}
        )

    def db(self, settings: Settings) -> Db:
        return self.mongo[settings.db_name]

    def connections(self, settings: Settings) -> service.Connections:
        """What a request to `settings`' gateways goes through, kept open for the run."""
        return service.Connections(self.client, GatewayRepository(self.db(settings)))

    def stack_pids(self) -> dict[str, int]:
        """Pids of the Temporal server, SecantusDB and the Kubernetes API emulator."""
        pids = {name: p.pid() for name, p in devstack.all_processes(self.settings).items()}
        return {name: pid for name, pid in pids.items() if pid is not None}

    def worker_process(self, settings: Settings) -> ChildProcess:
        """`python worker.py` (Temporal worker + dispatcher) on `settings`' database and queue."""
        return ChildProcess(
            name=f"worker {settings.task_queue}",
            args=[str(ROOT / "worker.py")],
            env=stack_env(settings),
            log_file=self.settings.home / "logs" / f"{settings.task_queue}.log",
            ready_line="worker running on task queue",
        )

    # -- gateways -----------------------------------------------------------------------

    async def provision(self, settings: Settings, ids: Sequence[str]) -> None:
        """Create the gateways through gatewayflow and wait until every one is Started.

        In waves of PROVISION_WAVE: set-up is not measured, and a wave no larger than the
        worker's activity slots keeps it from overloading the 2-core machine.
        """
        connections = self.connections(settings)
        for first in range(0, len(ids), PROVISION_WAVE):
            wave = ids[first : first + PROVISION_WAVE]
            await asyncio.gather(*(create_full_tree(settings, connections, gid) for gid in wave))
            await self.wait_started(settings, wave)

    async def wait_started(self, settings: Settings, ids: Sequence[str]) -> None:
        col = self.db(settings)["ApiGateway"]
        query = {"gatewayId": {"$in": list(ids)}, "phase": GatewayPhase.STARTED.value}
        deadline = time.monotonic() + PROVISION_TIMEOUT
        while await asyncio.to_thread(col.count_documents, query) < len(ids):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"not Started after {PROVISION_TIMEOUT:.0f}s: {self._late(settings, ids)}"
                )
            await asyncio.sleep(0.5)

    def _late(self, settings: Settings, ids: Sequence[str]) -> list[str]:
        col = self.db(settings)["ApiGateway"]
        return [
            f"{doc['gatewayId']} {doc.get('phase')} {doc.get('progress', {}).get('lastError')}"
            for doc in col.find({"gatewayId": {"$in": list(ids)}, "phase": {"$ne": "Started"}})
        ]

    def request_deletion(self, settings: Settings, ids: Sequence[str]) -> None:
        """The raw write an operator would do: only `state`, nothing else."""
        self.db(settings)["ApiGateway"].update_many(
            {"gatewayId": {"$in": list(ids)}}, {"$set": {"state": GatewayState.DELETED.value}}
        )

    def _namespace_gone(self, gateway_id: str) -> bool:
        return (
            self.cluster.get(ObjectRef(Kind.NAMESPACE, None, naming.namespace(gateway_id))) is None
        )

    async def delete_and_time(
        self, settings: Settings, gateway_id: str, poll: float = 0.02
    ) -> float:
        """Seconds from the raw write until the ApiGateway document and the namespace are gone."""
        col = self.db(settings)["ApiGateway"]
        began = time.perf_counter()
        await asyncio.to_thread(self.request_deletion, settings, [gateway_id])
        while True:
            gone = (
                await asyncio.to_thread(col.find_one, {"gatewayId": gateway_id}, {"_id": 1}) is None
            )
            if gone and await asyncio.to_thread(self._namespace_gone, gateway_id):
                return time.perf_counter() - began
            if time.perf_counter() - began > DELETION_TIMEOUT:
                raise TimeoutError(f"{gateway_id} not deleted after {DELETION_TIMEOUT:.0f}s")
            await asyncio.sleep(poll)

    async def delete_all_and_time(
        self,
        settings: Settings,
        ids: Sequence[str],
        poll: float = 0.1,
        timeout: float = DELETION_TIMEOUT,
    ) -> float:
        """Seconds from one raw write for all `ids` until every document and namespace is gone."""
        col = self.db(settings)["ApiGateway"]
        namespaces = {naming.namespace(gid) for gid in ids}
        began = time.perf_counter()
        await asyncio.to_thread(self.request_deletion, settings, ids)
        while True:
            left = await asyncio.to_thread(col.count_documents, {"gatewayId": {"$in": list(ids)}})
            if left == 0:
                live = await asyncio.to_thread(self.cluster.list_all, Kind.NAMESPACE)
                if not namespaces & {obj["metadata"]["name"] for obj in live}:
                    return time.perf_counter() - began
            if time.perf_counter() - began > timeout:
                raise TimeoutError(f"{left} of {len(ids)} gateways not deleted in {timeout:.0f}s")
            await asyncio.sleep(poll)


@asynccontextmanager
async def in_process_worker(settings: Settings, *, dispatcher: bool) -> AsyncIterator[None]:
    """A gatewayflow worker in this process, for provisioning and for counting round trips."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop=stop, dispatcher=dispatcher))
    try:
        await asyncio.sleep(0.5)
        if task.done():
            task.result()
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)
