"""`python -m bench [--quick] [--profile] [--out PATH]`: every measurement on a stack of
its own. `--profile` has py-spy sample the worker during the burst of 100 deletions (the
largest burst in quick mode) and writes the profile next to the JSON.

The embedded default (Temporal dev server, SecantusDB, Kubernetes API emulator) is started
in a temporary GATEWAYFLOW_HOME on free ports and stopped at the end; its logs are kept
only if the run fails. Figures are ratios measured in one run, not assertions.
"""

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from bench import cost, latency, scale, throughput
from bench.context import Bench
from bench.report import Report, machine
from gatewayflow_dev import stack as devstack
from tests.conftest import embedded_settings
from tests.emulator_admin import EmulatorAdmin

# Short emulator delays, so that the figures measure orchestration, not the emulator's sleeps.
EMULATOR = {"deleteDelay": 0.05, "readyDelay": 0.05}
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclass(frozen=True)
class Plan:
    latency: int
    """Sequential deletions per path."""
    bursts: tuple[int, ...]
    """Gateways deleted at once."""
    unrelated: tuple[int, int]
    """Idle gateways present, few then many."""
    scale: int
    """Sequential deletions per scale run."""
    round_trips: int
    """gatewayflow deletions counted (the baseline: one)."""


FULL = Plan(latency=20, bursts=(50, 100, 200), unrelated=(100, 10_000), scale=10, round_trips=3)
QUICK = Plan(latency=3, bursts=(10,), unrelated=(100, 1_000), scale=3, round_trips=1)


async def measure(
    bench: Bench, plan: Plan, console: Console, profile_dir: Path | None
) -> dict[str, object]:
    # The engine bound paces nothing: the bursts measure orchestration with the per-region
    # deletion limit and the deletion guard out of the way (bench.mass_deletion measures the
    # pacing itself, and releases what the guard holds).
    limit = max(plan.bursts)
    gatewayflow = bench.scoped("gf").model_copy(
        update={"region_deletion_limit": limit, "deletion_guard_count": 1_000_000}
    )
    worker = bench.worker_process(gatewayflow)
    await asyncio.to_thread(worker.start)
    try:
        console.log(f"latency: {plan.latency} deletions each, gatewayflow then the tick baseline")
        lat = await latency.measure(bench, gatewayflow, plan.latency)
        console.log(f"throughput: bursts of {', '.join(map(str, plan.bursts))}, and the bound")
        tp = await throughput.measure(
            bench, gatewayflow, worker, plan.bursts, shape_of="lat-gf-00", profile_dir=profile_dir
        )
    finally:
        await asyncio.to_thread(worker.stop)
    console.log(f"scale: {plan.scale} deletions with {plan.unrelated} idle gateways")
    sc = await scale.measure(bench, plan.unrelated, plan.scale)
    console.log("cost: MongoDB, Kubernetes and Temporal work per deletion")
    rt = await cost.measure_round_trips(bench, plan.round_trips)
    return {"latency": lat, "throughput": tp, "scale": sc, "round_trips": rt}


async def run(plan: Plan, mode: str, console: Console, profile_dir: Path | None) -> Report:
    home = Path(tempfile.mkdtemp(prefix="gatewayflow-bench-"))
    settings = embedded_settings(home)
    began = time.monotonic()
    console.log(f"starting the embedded stack in {home}")
    started = await asyncio.to_thread(devstack.start, settings)
    try:
        bench = await Bench.open(started.settings)
        EmulatorAdmin.of(bench.settings).set_config(**EMULATOR)
        figures = await measure(bench, plan, console, profile_dir)
    except BaseException:
        console.log(f"bench failed; logs kept in {home / 'logs'}")
        raise
    finally:
        await asyncio.to_thread(devstack.stop, settings)
    shutil.rmtree(home, ignore_errors=True)
    return Report(
        mode=mode,
        machine=machine(),
        emulator=EMULATOR,
        seconds=round(time.monotonic() - began, 1),
        **figures,  # type: ignore[arg-type]
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run with small counts")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy profile of the worker during a burst"
    )
    args = parser.parse_args()
    profile_dir = args.out.parent / "profiles" if args.profile else None
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # Wide enough for the table when the output is a file or a pipe, not a terminal.
    console = Console(width=None if sys.stdout.isatty() else 170)
    report = asyncio.run(
        run(QUICK if args.quick else FULL, "quick" if args.quick else "full", console, profile_dir)
    )
    console.print(report.table())
    report.write_json(args.out)
    console.print(f"finished in {report.seconds:.0f}s; figures written to {args.out}")
    if profile_dir is not None:
        console.print(
            f"worker profile (collapsed stacks) in {profile_dir}: open it in speedscope "
            "(https://www.speedscope.app) or flamegraph.pl"
        )


if __name__ == "__main__":
    main()
