"""`python -m bench.emulator`: the Kubernetes API emulator's CPU per request, by size.

The emulator must not be the bottleneck of the other measurements: its cost per request
should stay flat as the cluster grows. One emulator process (its own home, a free port) is
filled with ConfigMaps, ten per namespace as a gateway's objects would be, up to each size;
at each size a fixed mix of requests (create, get, patch, list of one namespace, delete)
runs and the emulator's CPU seconds are read from /proc around it. The idle CPU (its
ticker alone) is measured too. Figures are printed; nothing is asserted.
"""

# The client's methods take models; plain manifests (dicts) work the same at runtime.
# mypy: disable-error-code="arg-type"

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client
from rich.console import Console
from rich.table import Table

from bench.processes import cpu_seconds
from tests.kube_fixtures import Emulator

PER_NAMESPACE = 10
MIX = ("create", "get", "patch", "list", "delete")
SIZES = (10, 100, 500, 2000)


@dataclass(frozen=True)
class SizeFigures:
    objects: int
    requests: int
    cpu_ms_per_request: float
    idle_cpu_ms_per_second: float


def config_map(name: str) -> dict[str, object]:
    return {"metadata": {"name": name, "labels": {"bench": "emulator"}}, "data": {"k": "v" * 200}}


def fill(core: client.CoreV1Api, have: int, want: int) -> None:
    """Create ConfigMaps (and their namespaces) until `want` objects exist."""
    for n in range(have, want):
        namespace = f"fill-{n // PER_NAMESPACE}"
        if n % PER_NAMESPACE == 0:
            core.create_namespace({"metadata": {"name": namespace}})
        else:
            core.create_namespaced_config_map(namespace, config_map(f"c{n}"))


def request_mix(core: client.CoreV1Api, rounds: int) -> int:
    """`rounds` times the mix of MIX on a fresh ConfigMap; returns the requests sent."""
    for n in range(rounds):
        name = f"mix-{n}"
        core.create_namespaced_config_map("fill-0", config_map(name))
        core.read_namespaced_config_map(name, "fill-0")
        core.patch_namespaced_config_map(name, "fill-0", {"data": {"k": str(n)}})
        core.list_namespaced_config_map("fill-0")
        core.delete_namespaced_config_map(name, "fill-0")
    return rounds * len(MIX)


def measure_size(
    core: client.CoreV1Api, pid: int, objects: int, rounds: int, settle: float
) -> SizeFigures:
    time.sleep(settle)  # let the mix's deletions of the last size finish
    idle_before, idle_began = cpu_seconds(pid), time.monotonic()
    time.sleep(2.0)
    idle = (cpu_seconds(pid) - idle_before) / (time.monotonic() - idle_began)
    before = cpu_seconds(pid)
    requests = request_mix(core, rounds)
    time.sleep(settle)  # the removals the deletes started are part of their cost
    spent = cpu_seconds(pid) - before - idle * settle
    return SizeFigures(objects, requests, 1000 * spent / requests, 1000 * idle)


def measure(sizes: tuple[int, ...], rounds: int, console: Console) -> list[SizeFigures]:
    home = Path(tempfile.mkdtemp(prefix="gatewayflow-bench-emulator-"))
    emulator = Emulator(home, "--delete-delay", "0.05", "--ready-delay", "0.05").start()
    try:
        assert emulator.process is not None
        core = client.CoreV1Api(emulator.api())
        figures, have = [], 0
        for size in sizes:
            console.log(f"filling to {size} objects")
            fill(core, have, size)
            have = size
            figures.append(measure_size(core, emulator.process.pid, size, rounds, settle=0.5))
        return figures
    finally:
        emulator.stop()


def table(figures: list[SizeFigures]) -> Table:
    result = Table(
        "objects",
        "requests",
        "emulator CPU ms / request",
        "idle CPU ms / s",
        title=f"Kubernetes API emulator cost by size (mix: {', '.join(MIX)})",
    )
    for f in figures:
        result.add_row(
            f"{f.objects:,}",
            str(f.requests),
            f"{f.cpu_ms_per_request:.2f}",
            f"{f.idle_cpu_ms_per_second:.1f}",
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator", description=__doc__)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--rounds", type=int, default=100, help="mixes per size")
    args = parser.parse_args()
    console = Console()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    console.print(table(measure(sizes, args.rounds, console)))


if __name__ == "__main__":
    main()
