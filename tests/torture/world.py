"""The world the torture machine acts on: its own embedded stack, worker processes, the
`gatewayflow` command line, and the counts every rule adds to.

One world serves a whole run (the stack is started once); each Hypothesis example is an
episode with a database and task queue of its own, so a leftover of one episode can never
be mistaken for a fault of the next.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from pymongo import MongoClient

from gatewayflow.settings import Settings
from gatewayflow_dev import stack as devstack
from tests.conftest import SESSION_TIMING, embedded_settings, stack_env
from tests.emulator_admin import EmulatorAdmin, OpItem, cluster_admin
from tests.worker_process import WorkerProcess

REGIONS = {"local": "local", "eu": "eu"}
SWEEP_SECONDS = 2.0
START_TIMEOUT_SECONDS = 6.0
"""A start that is not ready by then goes back to Stopped (pods that never get ready)."""
GUARD_COUNT = 1_000_000
"""The deletion guard out of the way: an episode deletes most of what it made, and its
invariants expect every deletion to finish (tests/test_deletion_guard.py tests the guard)."""
DELETION_LIMIT = 2
"""Deletions at once per region: small enough that an episode's last deletions queue."""
STACK_KINDS = ("temporal", "mongo", "kube")
PROCESS_KINDS = ("worker", *STACK_KINDS)
GATEWAYFLOW = Path(sys.executable).parent / "gatewayflow"
_TORTURE_SETTINGS: dict[str, Any] = {
    "regions": REGIONS,
    "sweep_interval_seconds": SWEEP_SECONDS,
    "start_timeout_seconds": START_TIMEOUT_SECONDS,
    "region_deletion_limit": DELETION_LIMIT,
    "deletion_guard_count": GUARD_COUNT,
}


@dataclass
class Counts:
    """What a run went through: the figures of the report."""

    rules: Counter[str] = field(default_factory=Counter)
    kills: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(PROCESS_KINDS, 0)))
    faults: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    deletions: int = 0
    reaped: int = 0
    episodes: int = 0
    cli_calls: int = 0
    first_failure: list[str] = field(default_factory=list)
    rules_by_episode: list[list[str]] = field(default_factory=list)


class World:
    """The stack of a torture run, in `home` on free ports."""

    def __init__(self, home: Path) -> None:
        base = embedded_settings(home)
        self.unresolved = base.model_copy(update=_TORTURE_SETTINGS)
        self.settings: Settings = self.unresolved
        self.counts = Counts()
        self.logs = home / "torture-logs"
        self.timing = dict(SESSION_TIMING)
        self.deadline = float("inf")
        self.max_episodes: int | None = None
        self.shrink_seconds = float("inf")
        self.shrink_deadline = float("inf")
        self.ended = False
        """Set when an episode was refused (`over`): the run's normal end, unless failed."""
        self.started = time.monotonic()
        self._oplog_saved: list[OpItem] = []
        self._oplog_offset = 0
        self._mongo: MongoClient[dict[str, Any]] | None = None
        self._fault_kinds: list[str] = []
        self._fired: Counter[str] = Counter()
        self.seed = 0

    # -- the stack -----------------------------------------------------------------------
    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        started = devstack.start(self.unresolved)
        self.settings = started.settings.model_copy(update=_TORTURE_SETTINGS)
        self.admin.set_config(**self.timing)

    def stop(self) -> None:
        if self._mongo is not None:
            self._mongo.close()
        devstack.stop(self.unresolved)

    @property
    def admin(self) -> EmulatorAdmin:
        return EmulatorAdmin.of(self.settings)

    @property
    def mongo(self) -> MongoClient[dict[str, Any]]:
        if self._mongo is None:
            self._mongo = MongoClient(self.settings.mongodb_uri, serverSelectionTimeoutMS=30000)
        return self._mongo

    def kube(self, region: str = "local") -> k8s.ApiClient:
        """An operator's client: the foreign objects it makes are not the worker's."""
        api: k8s.ApiClient = cluster_admin(self.settings, region)
        return api

    def kill(self, kind: str, downtime: float = 0.0) -> None:
        """SIGKILL one server of the stack (its whole process group), then start it again."""
        process = devstack.all_processes(self.unresolved)[kind]
        if kind == "kube":
            self.save_oplog()  # the emulator keeps its op log and faults in memory only
            self._harvest()
        pid = process.pid()
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
            process.stop()  # reaps it and removes the pid file
            self.counts.kills[kind] += 1
        time.sleep(downtime)
        process.start(120.0)
        if kind == "kube":
            self.admin.set_config(**self.timing)

    def ensure_up(self) -> None:
        """Every server of the stack serves (a kill rule restarts at once; this is a net)."""
        for kind, process in devstack.all_processes(self.unresolved).items():
            if not process.is_healthy():
                if kind == "kube":
                    self.save_oplog()
                process.start(120.0)
                if kind == "kube":
                    self.admin.set_config(**self.timing)

    # -- the emulator's fault rules and timing ----------------------------------------------
    def set_faults(self, rules: list[tuple[str, dict[str, Any]]]) -> None:
        """Install `rules` (kind, rule) in every region, seeded by the run's seed."""
        self._harvest()
        self._fault_kinds = [kind for kind, _rule in rules]
        self.admin.set_faults([rule for _kind, rule in rules], seed=self.seed)

    def clear_faults(self) -> Counter[str]:
        """Remove every fault rule; how often each kind fired since the last call."""
        self._harvest()
        self.admin.clear_faults()
        self._fault_kinds = []
        fired, self._fired = self._fired, Counter()
        return fired

    def injected(self) -> int:
        """How often the fault rules now installed have fired."""
        try:
            rules = self.admin.faults().get("rules", [])
        except OSError:
            return 0
        return sum(int(rule.get("injected", 0)) for rule in rules)

    def _harvest(self) -> None:
        try:
            rules = self.admin.faults().get("rules", [])
        except OSError:
            return
        for kind, rule in zip(self._fault_kinds, rules, strict=False):
            self._fired[kind] += int(rule.get("injected", 0))
        self._fault_kinds = []

    def set_timing(self, **timing: float) -> None:
        self.timing.update(timing)
        self.admin.set_config(**self.timing)

    # -- the emulator's op log, across its restarts ----------------------------------------
    def save_oplog(self) -> None:
        try:
            current = self.admin.oplog_since(0)
        except OSError:
            return
        self._oplog_saved += [{**i, "seq": i["seq"] + self._oplog_offset} for i in current]
        if self._oplog_saved:
            self._oplog_offset = self._oplog_saved[-1]["seq"]

    def oplog(self) -> list[OpItem]:
        """Every entry since the episode began, numbered in one sequence across restarts."""
        current = self.admin.oplog_since(0)
        return self._oplog_saved + [{**i, "seq": i["seq"] + self._oplog_offset} for i in current]

    def clear_oplog(self) -> None:
        self.admin._call("DELETE", "oplog")
        self._oplog_saved, self._oplog_offset = [], 0

    # -- workers and the command line --------------------------------------------------------
    def spawn_worker(self, settings: Settings, name: str) -> WorkerProcess:
        return WorkerProcess(settings, self.logs / f"{name}.log")

    def cli(self, settings: Settings, *args: str, timeout: float = 120.0) -> tuple[int, str]:
        """`gatewayflow ARGS` as a user runs it: exit code and output (stdout + stderr)."""
        self.counts.cli_calls += 1
        try:
            done = subprocess.run(
                [str(GATEWAYFLOW), *args],
                env={**stack_env(settings), "COLUMNS": "200"},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            return -9, str(out)
        return done.returncode, done.stdout + done.stderr

    def say(self, line: str) -> None:
        """One line of the run's trace, with the time since the stack came up."""
        print(f"[{time.monotonic() - self.started:7.1f}s] {line}", flush=True)

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def over(self) -> bool:
        """No more episodes: time or episodes are used up; after a failure, the time its
        shrinking may take (`shrink_seconds` from the failure) is."""
        if self.counts.first_failure:
            return time.monotonic() > self.shrink_deadline
        used_up = self.max_episodes is not None and self.counts.episodes >= self.max_episodes
        return used_up or self.time_left() <= 0

    def fail(self, episode: int, ran: list[str], what: str) -> None:
        """Write down a failure as it happens. The first one is the run's: however the
        run ends (its shrinking cut short, say), it has failed."""
        self.say(f"episode {episode}: FAILED {what}")
        if self.counts.first_failure:
            return
        self.counts.first_failure = [
            f"episode {episode} (rules {', '.join(ran)}): {what}",
        ]
        self.shrink_deadline = time.monotonic() + self.shrink_seconds


def results_json(counts: Counts, seed: int, seconds: float) -> dict[str, Any]:
    return {
        "seed": seed,
        "seconds": round(seconds, 1),
        "episodes": counts.episodes,
        "rules": sum(counts.rules.values()),
        "rules_by_name": dict(sorted(counts.rules.items())),
        "deletions": counts.deletions,
        "reaped": counts.reaped,
        "kills": dict(counts.kills),
        "faults": dict(sorted(counts.faults.items())),
        "violations": dict(sorted(counts.violations.items())),
        "cli_calls": counts.cli_calls,
        "first_failure": counts.first_failure,
        "rules_by_episode": counts.rules_by_episode,
    }


def write_results(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
