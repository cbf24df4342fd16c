"""The kubeconfig that points kubectl and the Python client at the emulated clusters.

One cluster, user and context per region, all named after the region; the first region
is the current context. Written as JSON (a YAML subset, which every kubeconfig reader
accepts) through a temporary file and `os.replace`, so a reader never sees half a file.
"""

import json
import os
from pathlib import Path
from typing import Any


def kubeconfig(server_url: str, regions: list[str]) -> dict[str, Any]:
    """The kubeconfig document; `server_url` is the emulator's root URL."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": r, "cluster": {"server": f"{server_url}/clusters/{r}"}} for r in regions
        ],
        "users": [{"name": r, "user": {}} for r in regions],
        "contexts": [{"name": r, "context": {"cluster": r, "user": r}} for r in regions],
        "current-context": regions[0],
        "preferences": {},
    }


def write_kubeconfig(path: Path, server_url: str, regions: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(kubeconfig(server_url, regions), indent=2) + "\n")
    os.replace(temporary, path)
