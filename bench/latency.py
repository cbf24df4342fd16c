"""Latency: one deletion at a time, from the raw `state: 'Deleted'` write until the
ApiGateway document and the namespace are both gone; gatewayflow, then the tick baseline.

Both paths delete gateways provisioned the same way (through gatewayflow, full tree,
Started). The baseline's gateways live in a database of their own, provisioned by an
in-process worker without a dispatcher, whose idle gateway workflows are then terminated:
from the raw write on, only the tick loops touch them.
"""

import asyncio
from dataclasses import dataclass

from bench.context import Bench, in_process_worker
from bench.stats import Distribution
from bench.tick_baseline import TickBaseline
from gatewayflow.domain import naming
from gatewayflow.settings import Settings


@dataclass(frozen=True)
class LatencyResult:
    count: int
    gatewayflow: Distribution
    tick_baseline: Distribution
    baseline_activity_calls_per_deletion: float
    ratio_p50: float
    """tick baseline p50 / gatewayflow p50: how many times lower gatewayflow's latency is."""
    ratio_p95: float


async def provision_for_baseline(bench: Bench, settings: Settings, ids: list[str]) -> None:
    """Provision through gatewayflow in the baseline's database, then retire its workflows."""
    async with in_process_worker(settings, dispatcher=False):
        await bench.provision(settings, ids)
    for gid in ids:
        wid = naming.gateway_workflow_id(settings.installation, gid)
        await bench.client.get_workflow_handle(wid).terminate(
            reason="bench: the tick baseline deletes this gateway"
        )


async def measure(bench: Bench, gatewayflow: Settings, count: int) -> LatencyResult:
    """`gatewayflow` must have a worker process running on its database and queue."""
    baseline_settings = bench.scoped("tick")
    gf_ids = [f"lat-gf-{n:02d}" for n in range(count)]
    tick_ids = [f"lat-tick-{n:02d}" for n in range(count)]
    await asyncio.gather(
        bench.provision(gatewayflow, gf_ids),
        provision_for_baseline(bench, baseline_settings, tick_ids),
    )

    gf = [await bench.delete_and_time(gatewayflow, gid) for gid in gf_ids]

    baseline = TickBaseline(baseline_settings)
    await asyncio.to_thread(baseline.connect)
    stop = asyncio.Event()
    loop = asyncio.create_task(baseline.run(stop))
    try:
        tick = [await bench.delete_and_time(baseline_settings, gid) for gid in tick_ids]
    finally:
        stop.set()
        await loop
    gf_dist, tick_dist = Distribution.of(gf), Distribution.of(tick)
    return LatencyResult(
        count=count,
        gatewayflow=gf_dist,
        tick_baseline=tick_dist,
        baseline_activity_calls_per_deletion=baseline.activity_calls / count,
        ratio_p50=tick_dist.p50 / gf_dist.p50,
        ratio_p95=tick_dist.p95 / gf_dist.p95,
    )
