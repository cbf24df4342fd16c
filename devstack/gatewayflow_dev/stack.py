"""The embedded stack: Temporal dev server, SecantusDB and the Kubernetes API emulator.

Each part runs as a detached process under GATEWAYFLOW_HOME, so the stack outlives the
command that started it. `start` records the addresses in GATEWAYFLOW_HOME/stack.json,
where `Settings.resolved()` finds them. A part whose address is already set
(TEMPORAL_ADDRESS, MONGODB_URI, KUBECONFIG) is a real server and is not started.
"""

import fcntl
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gatewayflow.settings import STACK_FILE, Settings
from gatewayflow_dev.kube import kube_process, kube_url, kubeconfig_path
from gatewayflow_dev.mongo import mongo_process, mongodb_uri
from gatewayflow_dev.processes import DevstackError, ManagedProcess
from gatewayflow_dev.temporal import temporal_address, temporal_process, temporal_ui_url

COMPONENTS = ("temporal", "mongo", "kube")


@dataclass(frozen=True)
class StackStart:
    settings: Settings
    """Resolved settings pointing at the running stack."""
    started: tuple[str, ...]
    """Parts this call started; the others were running already or are real servers."""


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    address: str
    pid: int | None
    healthy: bool
    log_file: Path


def all_processes(settings: Settings) -> dict[str, ManagedProcess]:
    return {
        "temporal": temporal_process(settings),
        "mongo": mongo_process(settings),
        "kube": kube_process(settings),
    }


def embedded_processes(settings: Settings) -> dict[str, ManagedProcess]:
    """The parts to run here: those not pointed at a real server by the environment."""
    external = {
        "temporal": settings.temporal_address is not None,
        "mongo": settings.mongodb_uri is not None,
        "kube": settings.kubeconfig is not None,
    }
    return {name: p for name, p in all_processes(settings).items() if not external[name]}


def start(
    settings: Settings,
    *,
    timeout: float = 90.0,
    on_ready: Callable[[str, bool], None] | None = None,
) -> StackStart:
    """Start every embedded part in parallel; a healthy running part is reused.

    `settings` must be unresolved (as read from the environment) so that a real server
    can be told from the embedded default. `on_ready(name, started)` reports each part
    as it becomes healthy. If a part fails, the parts this call started are stopped.
    """
    processes = embedded_processes(settings)
    with _lock(settings), ThreadPoolExecutor(max_workers=len(COMPONENTS)) as pool:
        for process in processes.values():
            if not process.is_running():
                process.check_ports_free()  # fail before starting anything
        futures = {
            name: pool.submit(_start_one, process, timeout, on_ready)
            for name, process in processes.items()
        }
        started, errors = [], []
        for name, future in futures.items():
            try:
                if future.result():
                    started.append(name)
            except DevstackError as exc:
                errors.append(str(exc))
        if errors:
            list(pool.map(lambda name: processes[name].stop(), started))
            raise DevstackError("\n".join(errors))
        if processes:
            _write_stack_file(settings, processes)
    return StackStart(settings=settings.resolved(), started=tuple(started))


def stop(settings: Settings, names: tuple[str, ...] = COMPONENTS) -> list[str]:
    """Stop the named parts (all by default); returns the names that were running."""
    if not settings.home.exists():
        return []
    processes = all_processes(settings)
    with _lock(settings), ThreadPoolExecutor(max_workers=len(COMPONENTS)) as pool:
        was_running = list(pool.map(lambda name: processes[name].stop(), names))
        stopped = [name for name, was in zip(names, was_running, strict=True) if was]
        if not any(p.is_running() for p in processes.values()):
            settings.stack_file.unlink(missing_ok=True)
    return stopped


def status(settings: Settings) -> list[ComponentStatus]:
    """Every embedded part, running or not, as configured by `settings`."""
    addresses = {
        "temporal": temporal_address(settings),
        "mongo": mongodb_uri(settings),
        "kube": kube_url(settings),
    }
    return [
        ComponentStatus(
            name=name,
            address=addresses[name],
            pid=process.pid(),
            healthy=process.is_healthy(),
            log_file=process.log_file,
        )
        for name, process in all_processes(settings).items()
    ]


def _start_one(
    process: ManagedProcess, timeout: float, on_ready: Callable[[str, bool], None] | None
) -> bool:
    started = process.start(timeout)
    if on_ready is not None:
        on_ready(process.name, started)
    return started


def _write_stack_file(settings: Settings, processes: dict[str, ManagedProcess]) -> None:
    stack: dict[str, str] = {}
    if "temporal" in processes:
        stack["temporal_address"] = temporal_address(settings)
        stack["temporal_ui_url"] = temporal_ui_url(settings)
    if "mongo" in processes:
        stack["mongodb_uri"] = mongodb_uri(settings)
    if "kube" in processes:
        stack["kubeconfig"] = str(kubeconfig_path(settings))
    path = settings.home.resolve() / STACK_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stack, indent=2) + "\n")
    tmp.replace(path)


@contextmanager
def _lock(settings: Settings) -> Iterator[None]:
    """One start or stop at a time per home, across processes."""
    lock_file = settings.home.resolve() / "run" / "stack.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
