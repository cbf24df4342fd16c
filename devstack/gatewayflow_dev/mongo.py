"""MongoDB for the embedded stack: SecantusDB, a MongoDB-wire server over WiredTiger.

SecantusDB is GPL-2.0: it only ever runs as a separate process through its
`secantusd-py` command and is never imported. `--sync-on-commit` is required: without it
writes acknowledged in the last second before a SIGKILL of the server are lost.
"""

import shutil
import sys
from pathlib import Path

from pymongo import MongoClient

from gatewayflow.settings import Settings
from gatewayflow_dev.processes import ManagedProcess, Port

HOST = "127.0.0.1"


def secantusd_binary() -> str:
    beside = Path(sys.executable).parent / "secantusd-py"
    if beside.exists():
        return str(beside)
    return shutil.which("secantusd-py") or "secantusd-py"


def mongodb_uri(settings: Settings) -> str:
    return f"mongodb://{HOST}:{settings.mongo_port}/?directConnection=true"


def mongo_process(settings: Settings) -> ManagedProcess:
    home = settings.home.resolve()
    storage = str(home / "mongo")
    args = [
        secantusd_binary(),
        "--host",
        HOST,
        "--port",
        str(settings.mongo_port),
        "--storage-path",
        storage,
        "--sync-on-commit",
    ]
    return ManagedProcess(
        name="mongo",
        args=args,
        home=home,
        ports=(Port(settings.mongo_port, "MongoDB", "GATEWAYFLOW_MONGO_PORT"),),
        identity=("secantusd-py", storage),
        probe=lambda: mongo_serves(mongodb_uri(settings)),
    )


def mongo_serves(uri: str) -> bool:
    client: MongoClient[dict[str, object]] = MongoClient(
        uri, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000
    )
    with client:
        return bool(client.admin.command("ping").get("ok"))
