"""The kubeconfigs that point kubectl and the Python client at the emulated clusters.

One cluster, user and context per region, all named after the region; the first region
is the current context. HOME/kubeconfig authenticates as the emulator's user,
HOME/admin.kubeconfig (same clusters and contexts) as its admin (see `auth`). Written as
JSON (a YAML subset, which every kubeconfig reader accepts) through a temporary file and
`os.replace`, so a reader never sees half a file.
"""

import json
import os
from pathlib import Path
from typing import Any

ADMIN_KUBECONFIG = "admin.kubeconfig"


def admin_kubeconfig(kubeconfig: Path) -> Path:
    """The admin's kubeconfig written next to `kubeconfig`."""
    return kubeconfig.with_name(ADMIN_KUBECONFIG)


def kubeconfig(server_url: str, regions: list[str], token: str) -> dict[str, Any]:
    """The kubeconfig document; `server_url` is the emulator's root URL."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": r, "cluster": {"server": f"{server_url}/clusters/{r}"}} for r in regions
        ],
        "users": [{"name": r, "user": {"token": token}} for r in regions],
        "contexts": [{"name": r, "context": {"cluster": r, "user": r}} for r in regions],
        "current-context": regions[0],
        "preferences": {},
    }


def write_kubeconfig(path: Path, server_url: str, regions: list[str], token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(kubeconfig(server_url, regions, token), indent=2) + "\n")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
