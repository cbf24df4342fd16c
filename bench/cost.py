"""Cost: MongoDB round trips per deletion, counted in-process with a command listener.

A listener registered with `pymongo.monitoring.register` is carried by every client
created afterwards, so it is registered before the in-process worker (and the tick
baseline) create theirs; the bench's own client exists already and is never counted.
The window of one deletion runs from the raw write until the document and the namespace
are gone, plus `SETTLE` seconds for what follows (the gateway workflow's last read).
Polling is part of the count: for gatewayflow the change feed's getMore, two a second when
idle and, on SecantusDB, one more for every write to the server (its awaitData getMore
returns an empty batch on any write); for the baseline, the two claims a second of its
tick loops.

Worker CPU seconds and peak RSS per 100 deletions come from the throughput bursts
(`throughput.Burst`), where the worker is a process of its own.
"""

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pymongo import monitoring

from bench.context import Bench, in_process_worker
from bench.latency import provision_for_baseline
from bench.tick_baseline import TickBaseline
from gatewayflow.settings import Settings

SETTLE = 0.5


class CommandCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window: Counter[str] | None = None

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            if self._window is not None:
                self._window[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    @contextmanager
    def window(self) -> Iterator[Counter[str]]:
        counts: Counter[str] = Counter()
        with self._lock:
            self._window = counts
        try:
            yield counts
        finally:
            with self._lock:
                self._window = None


@dataclass(frozen=True)
class RoundTrips:
    deletions: int
    per_deletion: float
    by_command: dict[str, float]
    """Per deletion, by command name."""

    @property
    def without_getmore(self) -> float:
        """Without the change feed's getMore, which SecantusDB answers on every write."""
        return self.per_deletion - self.by_command.get("getMore", 0.0)

    @classmethod
    def of(cls, windows: list[Counter[str]]) -> "RoundTrips":
        total: Counter[str] = sum(windows, Counter())
        n = len(windows)
        return cls(
            deletions=n,
            per_deletion=sum(total.values()) / n,
            by_command={name: count / n for name, count in total.most_common()},
        )


@dataclass(frozen=True)
class RoundTripResult:
    gatewayflow: RoundTrips
    tick_baseline: RoundTrips


async def _counted(
    bench: Bench, counter: CommandCounter, settings: Settings, gateway_id: str
) -> Counter[str]:
    with counter.window() as counts:
        await bench.delete_and_time(settings, gateway_id)
        await asyncio.sleep(SETTLE)
    return counts


async def measure_round_trips(bench: Bench, count: int) -> RoundTripResult:
    """Registers a global listener: run it last, it stays for the life of the process."""
    counter = CommandCounter()
    monitoring.register(counter)

    gatewayflow = bench.scoped("rt")
    ids = [f"rt-gf-{n}" for n in range(count)]
    async with in_process_worker(gatewayflow, dispatcher=True):
        await bench.provision(gatewayflow, ids)
        gf = [await _counted(bench, counter, gatewayflow, gid) for gid in ids]

    baseline_settings = bench.scoped("rt-tick")
    await provision_for_baseline(bench, baseline_settings, ["rt-tick-0"])
    baseline = TickBaseline(baseline_settings)
    await asyncio.to_thread(baseline.connect)
    stop = asyncio.Event()
    loop = asyncio.create_task(baseline.run(stop))
    try:
        tick = [await _counted(bench, counter, baseline_settings, "rt-tick-0")]
    finally:
        stop.set()
        await loop
    return RoundTripResult(RoundTrips.of(gf), RoundTrips.of(tick))
