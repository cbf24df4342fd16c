"""The worker's composition: the installation claimed and adopted, a Temporal worker on
task queue `gatewayflow`, the schedules and the dispatcher.

Both entry points (`python worker.py` and `gatewayflow up`) run it through
`until_signalled`, so SIGINT and SIGTERM are handled in this one place.
"""

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from gatewayflow.client import connect
from gatewayflow.deps import Deps
from gatewayflow.metrics import metrics_interceptors, start_metrics
from gatewayflow.settings import Settings
from gatewayflow.store.client import connect as connect_db

log = logging.getLogger("gatewayflow.worker")


def build_worker(
    client: Client, settings: Settings, executor: ThreadPoolExecutor, deps: Deps | None = None
) -> Worker:
    from activities.registry import all_activities
    from workflows.registry import ALL_WORKFLOWS

    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=list(ALL_WORKFLOWS),
        activities=all_activities(settings, deps),
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
    from control.adoption import adopt
    from control.schedules import ensure_schedules

    deps = Deps(settings)
    # Before anything acts: a worker of another installation stops here.
    if not await adopt(client, settings, deps, stop):
        return
    await ensure_schedules(client, settings)
    with ThreadPoolExecutor(max_workers=settings.max_concurrent_activities) as executor:
        worker = build_worker(client, settings, executor, deps)
        tasks: list[asyncio.Task[None]] = []
        if settings.dispatcher if dispatcher is None else dispatcher:
            from control.dispatcher import run_dispatcher

            dispatching = asyncio.create_task(run_dispatcher(client, settings, stop))
            dispatching.add_done_callback(lambda task: _ended(task, stop))
            tasks.append(dispatching)
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
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise RuntimeError("the dispatcher failed") from task.exception()


def _ended(task: "asyncio.Task[None]", stop: asyncio.Event) -> None:
    """A dispatcher that dies must not leave a worker that looks healthy and dispatches
    nothing: the worker stops, with an error, for its supervisor to restart it."""
    if not task.cancelled() and task.exception() is not None:
        log.error("the dispatcher failed; stopping the worker", exc_info=task.exception())
        stop.set()


async def until_signalled(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `run(stop)`; SIGINT or SIGTERM sets `stop` for a clean shutdown."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run(stop)
