"""Child processes of the bench (workers) and what /proc says they cost.

Workers run as separate processes, as in production, so that their CPU time and peak
memory can be read from /proc without counting the bench's own work.
"""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; field 3 is fields[0]
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the peak resident set since start or since `reset_peak_rss`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def reset_peak_rss(pid: int) -> None:
    """Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class ChildProcess:
    """A Python process of ours (worker.py, the no-op worker), started and stopped by pid."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_file: Path
    ready_line: str
    popen: "subprocess.Popen[bytes] | None" = None

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} is not running"
        return self.popen.pid

    def start(self, timeout: float = 60.0) -> None:
        """Start it and wait until its log says it serves."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, *self.args],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while self.ready_line not in self.log_file.read_text(errors="replace"):
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready in {timeout:.0f}s; see {self.log_file}")
            time.sleep(0.1)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (a clean shutdown), SIGKILL if it does not exit in time."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


@dataclass(frozen=True)
class Usage:
    """CPU seconds of each process at one moment, by name."""

    cpu: dict[str, float]

    @classmethod
    def of(cls, pids: dict[str, int]) -> "Usage":
        return cls({name: cpu_seconds(pid) for name, pid in pids.items()})

    def since(self, earlier: "Usage") -> dict[str, float]:
        return {name: self.cpu[name] - earlier.cpu.get(name, 0.0) for name in self.cpu}


class Profiler:
    """py-spy sampling a running process (`py-spy record --pid`) until `stop`.

    The profile is written as collapsed stacks (one line per stack: frames joined by `;`,
    then the sample count), which speedscope or flamegraph.pl turn into a flame graph;
    `top` sums them by innermost frame for the report.
    """

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        out.parent.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).with_name("py-spy")
        self._popen = subprocess.Popen(
            [
                str(spy),
                "record",
                "--pid",
                str(pid),
                "--nonblocking",
                "--format",
                "raw",
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self, timeout: float = 60.0) -> None:
        """SIGINT makes py-spy write the profile and exit."""
        self._popen.send_signal(signal.SIGINT)
        _, err = self._popen.communicate(timeout=timeout)
        if not self.out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')}")

    def top(self, count: int = 8) -> list[tuple[str, float]]:
        """The innermost frames with the largest share of the samples."""
        samples: dict[str, int] = {}
        total = 0
        for line in self.out.read_text().splitlines():
            stack, _, number = line.rpartition(" ")
            if not stack or not number.isdigit():
                continue
            leaf = stack.rsplit(";", 1)[-1]
            samples[leaf] = samples.get(leaf, 0) + int(number)
            total += int(number)
        ranked = sorted(samples.items(), key=lambda item: -item[1])[:count]
        return [(frame, share / max(total, 1)) for frame, share in ranked]
