"""The worker process: a Temporal worker on task queue `gatewayflow`, plus the dispatcher."""

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from settings import Settings, load_settings

log = logging.getLogger("gatewayflow.worker")


async def connect(settings: Settings) -> Client:
    """A Temporal client with the pydantic data converter."""
    tls = settings.temporal_tls or settings.temporal_api_key is not None
    return await Client.connect(
        settings.temporal_address or f"127.0.0.1:{settings.temporal_port}",
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        tls=tls,
        api_key=settings.temporal_api_key,
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
    )


async def run_worker(
    settings: Settings, *, stop: asyncio.Event | None = None, dispatcher: bool | None = None
) -> None:
    """Run until `stop` is set (or forever), then shut down cleanly."""
    stop = stop or asyncio.Event()
    client = await connect(settings)
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
