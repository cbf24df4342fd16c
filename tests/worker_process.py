"""`python worker.py` as a real process, for tests that kill it or run several."""

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from gatewayflow.settings import Settings
from tests.conftest import stack_env

REPO = Path(__file__).resolve().parent.parent
READY_LINE = "worker running on task queue"


class WorkerProcess:
    """One `python worker.py` with the harness's settings, its output in a log file."""

    def __init__(self, settings: Settings, log_file: Path) -> None:
        self.log_file = log_file
        with log_file.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "worker.py"],
                env=stack_env(settings),
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while READY_LINE not in self.log():
            assert self.process.poll() is None, f"worker exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"worker not ready in 60s:\n{self.log()}"
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to Temporal; activities in flight are lost."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def worker_processes(settings: Settings, logs: Path) -> Iterator[Callable[[], WorkerProcess]]:
    """A factory of worker processes; all of them are stopped at the end, and their logs
    are printed (pytest shows them when the test fails)."""
    started: list[WorkerProcess] = []

    def spawn() -> WorkerProcess:
        worker = WorkerProcess(settings, logs / f"worker-{len(started) + 1}.log")
        started.append(worker)
        return worker

    try:
        yield spawn
    finally:
        for worker in started:
            worker.stop()
            print(f"--- {worker.log_file.name} ---\n{worker.log()[-4000:]}")
