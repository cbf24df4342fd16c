"""The no-op worker process: NoopChain and its activity, with gatewayflow's worker limits.

Run as `python -m bench.noop_worker` with the same environment as `worker.py`; like the
gatewayflow worker it runs sync activities in a thread pool of
GATEWAYFLOW_MAX_CONCURRENT_ACTIVITIES threads.
"""

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from temporalio.worker import Worker

from bench.noop import NoopChain, noop
from gatewayflow.client import connect
from gatewayflow.settings import load_settings

log = logging.getLogger("bench.noop_worker")


async def run() -> None:
    settings = load_settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await connect(settings)
    with ThreadPoolExecutor(max_workers=settings.max_concurrent_activities) as executor:
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[NoopChain],
            activities=[noop],
            activity_executor=executor,
            max_concurrent_activities=settings.max_concurrent_activities,
            max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        )
        async with worker:
            log.info("no-op worker running on task queue %r", settings.task_queue)
            await stop.wait()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run())


if __name__ == "__main__":
    main()
