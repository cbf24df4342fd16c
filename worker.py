"""The worker process: a Temporal worker on task queue `gatewayflow`, plus the dispatcher."""

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig
from temporalio.worker import Worker

from metrics import metrics_interceptors, start_metrics
from settings import Settings, load_settings
from store.client import connect as connect_db

log = logging.getLogger("gatewayflow.worker")


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A Temporal client with the pydantic data converter (and mTLS or an API key)."""
    tls: bool | TLSConfig = settings.temporal_tls or settings.temporal_api_key is not None
    if settings.temporal_tls_cert and settings.temporal_tls_key:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
        )
    return await Client.connect(
        settings.temporal_address or f"127.0.0.1:{settings.temporal_port}",
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        tls=tls,
        api_key=settings.temporal_api_key,
        runtime=runtime,
    )


def build_worker(client: Client, settings: Settings, executor: ThreadPoolExecutor) -> Worker:
    from activities.registry import all_activities
    from workflows.registry import ALL_WORKFLOWS

    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=list(ALL_WORKFLOWS),
        activities=all_activities(settings),
        activity_executor=executor,
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        interceptors=metrics_interceptors(settings),
        # Heartbeats carry cancellation: a delete stops a waiting start within a second.
        max_heartbeat_throttle_interval=timedelta(seconds=1),
    )


async def run_worker(
    settings: Settings, *, stop: asyncio.Event | None = None, dispatcher: bool | None = None
) -> None:
    """Run until `stop` is set (or forever), then shut down cleanly."""
    stop = stop or asyncio.Event()
    runtime = None
    if settings.metrics_port is not None:
        runtime = start_metrics(settings, connect_db(settings.mongodb_uri or "", settings.db_name))
    client = await connect(settings, runtime)
    with ThreadPoolExecutor(max_workers=settings.max_concurrent_activities) as executor:
        worker = build_worker(client, settings, executor)
        tasks: list[asyncio.Task[None]] = []
        if settings.dispatcher if dispatcher is None else dispatcher:
            from dispatcher import run_dispatcher

            tasks.append(asyncio.create_task(run_dispatcher(client, settings, stop)))
        async with worker:
            log.info(
                "worker running on task queue %r at %s (namespace %s)",
                settings.task_queue,
                settings.temporal_address,
                settings.temporal_namespace,
            )
            await stop.wait()
            log.info("worker shutting down")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_settings()

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop=stop)

    asyncio.run(_run())


if __name__ == "__main__":
    main()
