"""One detached server process of the embedded stack, tracked by a pid file.

The process runs in its own session so it outlives the command that started it
(`gatewayflow up --detach`) and is stopped later from another process (`gatewayflow down`).
A pid file is trusted only while /proc/<pid>/cmdline still names our program and our
home directory: a pid left by a crash, or reused by an unrelated process, is discarded.
"""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gatewayflow.domain.errors import GatewayflowError

PROBE_INTERVAL = 0.2

# Servers started by this process. Holding their Popen keeps Python from warning that a
# detached child "is still running"; polling it reaps the child once it exits.
_children: dict[int, "subprocess.Popen[bytes]"] = {}


class DevstackError(GatewayflowError):
    """The embedded stack cannot be started or stopped; the message says what to do."""


class PortInUseError(DevstackError):
    """A port we need is held by a program that is not our healthy server."""


@dataclass(frozen=True)
class Port:
    number: int
    purpose: str
    env_var: str


@dataclass(frozen=True)
class ManagedProcess:
    """A server we start detached, recognise by its command line, probe and stop.

    `identity` lists argv entries (or their file names) that only our process has, such
    as the program name and its data path under `home`. `probe` answers once, quickly,
    whether the server serves; it may raise, which counts as "not yet".
    """

    name: str
    args: Sequence[str]
    home: Path
    ports: Sequence[Port]
    identity: Sequence[str]
    probe: Callable[[], bool]
    cwd: Path | None = None

    @property
    def pid_file(self) -> Path:
        return self.home / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of our live process, or None; a stale pid file is removed."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            pid = None
        if pid is not None and _alive(pid) and self._is_ours(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def is_running(self) -> bool:
        return self.pid() is not None

    def is_healthy(self) -> bool:
        return self.is_running() and self._probe()

    def start(self, timeout: float = 60.0) -> bool:
        """Start the server unless ours already serves; True if this call started it.

        Our process that stays unhealthy (for example, started with other ports) is
        stopped and started again.
        """
        if self.is_running():
            try:
                self.wait_healthy(min(timeout, 15.0))
                return False
            except DevstackError:
                self.stop()
        self.check_ports_free()
        self._spawn()
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return True

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_running():
                raise DevstackError(f"{self.name} exited during start.{self._log_tail()}")
            if self._probe():
                return
            if time.monotonic() >= deadline:
                raise DevstackError(
                    f"{self.name} did not become healthy within {timeout:.0f}s.{self._log_tail()}"
                )
            time.sleep(PROBE_INTERVAL)

    def stop(self, grace: float = 10.0) -> bool:
        """SIGTERM, then SIGKILL after `grace` seconds; True if a process was running."""
        pid = self.pid()
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, grace):
            _signal_group(pid, signal.SIGKILL)
            if not _wait_gone(pid, 10.0):
                raise DevstackError(f"{self.name} (pid {pid}) survived SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        return True

    def _spawn(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            try:
                process = subprocess.Popen(
                    list(self.args),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd or self.home,
                    start_new_session=True,
                )
            except FileNotFoundError as exc:
                raise DevstackError(
                    f"cannot run {self.args[0]!r} for {self.name}: not found. Install the "
                    "embedded stack with: pip install -e ./devstack (make demo does)"
                ) from exc
        _children[process.pid] = process
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(f"{process.pid}\n")
        tmp.replace(self.pid_file)

    def check_ports_free(self) -> None:
        for port in self.ports:
            if port_in_use(port.number):
                raise PortInUseError(
                    f"port {port.number} ({port.purpose}) on 127.0.0.1 is already in use by "
                    f"another program; set {port.env_var} to choose another port"
                )

    def _probe(self) -> bool:
        try:
            return self.probe()
        except Exception:
            return False

    def _is_ours(self, pid: int) -> bool:
        argv = _settled_cmdline(pid)
        names = set(argv) | {Path(a).name for a in argv}
        return all(part in names for part in self.identity)

    def _log_tail(self, lines: int = 15) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"\nLast lines of {self.log_file}:\n" + "\n".join(tail)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something listens on (or holds) host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """False once the process has fully exited (reaped here when we started it).

    A killed multi-threaded process shows as a zombie while its other threads still
    exit and hold its sockets, so a zombie counts as gone only with one thread left.
    """
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    try:
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
    except OSError:
        return False
    zombie = status.get("State", "").strip().startswith(("Z", "X"))
    return not zombie or int(status.get("Threads", "1")) > 1


def _settled_cmdline(pid: int, timeout: float = 10.0) -> list[str]:
    """The argv of a live process.

    /proc/<pid>/cmdline reads empty for a moment while a process execs (even after
    Popen returned) and while it exits, so wait until it reads non-empty or the process
    is gone.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return []
        if raw or not _alive(pid) or time.monotonic() >= deadline:
            return [a.decode(errors="replace") for a in raw.split(b"\0") if a]
        time.sleep(0.01)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process and anything it spawned (it leads its own session)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
