"""`python -m bench.mass_deletion [--gateways 500] [--limit 20]`: a tenant off-boarded.

N gateways (Started) get `state: 'Deleted'` in one raw `update_many`, as an operator would
write it. Two worker processes share the task queue; GATEWAYFLOW_REGION_DELETION_LIMIT is
`--limit`. The deletion guard holds all but a quarter of them, as it should for a whole region
deleted at once; the run releases them as the operator of a deliberate off-boarding would
(`gatewayflow deletions release --region local`, every second while deletions still ask).
Printed: the time until every document and namespace is gone, and from the Kubernetes
API emulator's op log the most gateways deleting at one moment (from a gateway's first
delete call to its Namespace's removal), which must not exceed the limit; the deletion
queue is sampled while it drains. Runs on a stack of its own (temporary home,
free ports), stopped at the end. Figures only; nothing is asserted.
"""

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.context import DELETION_TIMEOUT, Bench
from bench.processes import ChildProcess
from control import service
from gatewayflow.settings import Settings
from gatewayflow.store.permits import PermitRepository
from gatewayflow_dev import stack as devstack
from tests.conftest import embedded_settings
from tests.emulator_admin import EmulatorAdmin, deletions_at_once

EMULATOR = {"deleteDelay": 0.05, "readyDelay": 0.05}
WAVE = 50
OUT = Path(__file__).resolve().parent / "results" / "mass_deletion.json"


async def provision(bench: Bench, settings: Settings, ids: list[str], console: Console) -> None:
    """Light gateways (one function, one trigger): the set-up is not what is measured."""
    connections = bench.connections(settings)
    for first in range(0, len(ids), WAVE):
        wave = ids[first : first + WAVE]
        await asyncio.gather(
            *(
                service.create_gateway(
                    settings, gid, functions=1, triggers=1, connections=connections
                )
                for gid in wave
            )
        )
        await bench.wait_started(settings, wave)
        console.log(f"provisioned {first + len(wave)} of {len(ids)}")


async def sample_queue(
    permits: PermitRepository,
    samples: list[tuple[float, int, int]],
    began: float,
    console: Console,
) -> None:
    """Every second a sample; every 30 s a line, so a long drain shows it moves."""
    while True:
        regions = await asyncio.to_thread(permits.regions)
        running = sum(len(r.get("holders") or []) for r in regions)
        queued = sum(len(r.get("queue") or []) for r in regions)
        elapsed = round(time.perf_counter() - began, 2)
        if len(samples) % 30 == 0:
            console.log(f"{elapsed:.0f} s: {running} deleting, {queued} queued")
        samples.append((elapsed, running, queued))
        await asyncio.sleep(1.0)


async def release_held(settings: Settings, released: list[str], console: Console) -> None:
    """The operator's answer to the deletion guard, until every deletion got past it."""
    while True:
        outcome = await service.release_deletions(settings, "local")
        if outcome.gateway_ids:
            released.extend(outcome.gateway_ids)
            console.log(f"released {len(outcome.gateway_ids)} deletion(s) held by the guard")
        await asyncio.sleep(1.0)


async def measure(n: int, limit: int, console: Console) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="gatewayflow-mass-"))
    settings = embedded_settings(home)
    console.log(f"starting the embedded stack in {home}")
    started = await asyncio.to_thread(devstack.start, settings)
    workers: list[ChildProcess] = []
    try:
        bench = await Bench.open(started.settings)
        admin = EmulatorAdmin.of(bench.settings)
        admin.set_config(**EMULATOR)
        scoped = bench.scoped("mass").model_copy(update={"region_deletion_limit": limit})
        for n_worker in (1, 2):
            worker = bench.worker_process(scoped)
            worker.name = f"{worker.name} #{n_worker}"
            worker.log_file = worker.log_file.with_name(f"mass-worker-{n_worker}.log")
            worker.env = worker.env | {
                "GATEWAYFLOW_DRIFT_INTERVAL": "0",
                "GATEWAYFLOW_REAP_INTERVAL": "0",
            }
            await asyncio.to_thread(worker.start)
            workers.append(worker)
        ids = [f"mass-{i:04d}" for i in range(n)]
        await provision(bench, scoped, ids, console)
        since = admin.last_seq()
        samples: list[tuple[float, int, int]] = []
        began = time.perf_counter()
        sampler = asyncio.create_task(
            sample_queue(PermitRepository(bench.db(scoped)), samples, began, console)
        )
        console.log(f"update_many: {n} gateways to state Deleted (limit {limit} per region)")
        released: list[str] = []
        releaser = asyncio.create_task(release_held(scoped, released, console))
        try:
            # Paced by the limit: the time grows with N (100 took 274 s on a loaded 2-core machine).
            budget = max(DELETION_TIMEOUT, 6.0 * len(ids))
            seconds = await bench.delete_all_and_time(scoped, ids, timeout=budget)
        finally:
            sampler.cancel()
            releaser.cancel()
        at_once = deletions_at_once(admin.entries(since), ids)
    finally:
        for worker in workers:
            await asyncio.to_thread(worker.stop)
        await asyncio.to_thread(devstack.stop, settings)
    shutil.rmtree(home, ignore_errors=True)
    return {
        "gateways": n,
        "limit": limit,
        "seconds": round(seconds, 1),
        "per_second": round(n / seconds, 2),
        "most_deleting_at_once": at_once,
        "most_queued": max((q for _, _, q in samples), default=0),
        "released_from_the_guard": len(released),
        "queue_samples": samples,
        "emulator": EMULATOR,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mass_deletion", description=__doc__)
    parser.add_argument("--gateways", type=int, default=500)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    console = Console()
    figures = asyncio.run(measure(args.gateways, args.limit, console))
    table = Table("measurement", "value", title="Mass deletion (one update_many)")
    table.add_row("gateways deleted", str(figures["gateways"]))
    table.add_row("limit per region", str(figures["limit"]))
    table.add_row("time until all gone", f"{figures['seconds']} s")
    table.add_row("deletions per second", str(figures["per_second"]))
    table.add_row("most deleting at once (op log)", str(figures["most_deleting_at_once"]))
    table.add_row("most queued at once", str(figures["most_queued"]))
    table.add_row("held by the deletion guard, released", str(figures["released_from_the_guard"]))
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    console.print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
