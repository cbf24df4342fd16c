"""The Kubernetes API emulator (gatewayflow_dev.kube_emulator) run as a server process.

It writes HOME/kubeconfig, which the official client and kubectl use to reach it, with
one context per region (GATEWAYFLOW_REGIONS; by default the single region `local`). That
kubeconfig is the worker's identity, its ServiceAccount (GATEWAYFLOW_SERVICE_ACCOUNT), and
every write passes the admission policy of the repository's deploy/worker.yaml, as on a
cluster where that file is applied. HOME/admin.kubeconfig is an administrator's, which
the policy leaves alone: what an operator, or a test, uses to put its own objects there.
"""

import sys
import urllib.request
from pathlib import Path

from gatewayflow.settings import Settings
from gatewayflow_dev.processes import ManagedProcess, Port

HOST = "127.0.0.1"
DEFAULT_REGION = "local"
# Absent when the dev stack is installed without the repository (no policy then).
WORKER_MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "worker.yaml"


def kube_url(settings: Settings) -> str:
    return f"http://{HOST}:{settings.kube_port}"


def kubeconfig_path(settings: Settings) -> Path:
    return settings.home.resolve() / "kubeconfig"


def worker_user(settings: Settings) -> str:
    """The user name of the worker's ServiceAccount, as the API server authenticates it."""
    namespace, name = settings.service_account.split("/")
    return f"system:serviceaccount:{namespace}:{name}"


def kube_process(settings: Settings) -> ManagedProcess:
    home = settings.home.resolve()
    args = [
        sys.executable,
        "-m",
        "gatewayflow_dev.kube_emulator",
        "--host",
        HOST,
        "--port",
        str(settings.kube_port),
        "--home",
        str(home),
        "--regions",
        ",".join(settings.context_for(region) for region in settings.regions) or DEFAULT_REGION,
        "--user",
        worker_user(settings),
    ]
    if WORKER_MANIFESTS.is_file():
        args += ["--admission-policy", str(WORKER_MANIFESTS)]
    return ManagedProcess(
        name="kube",
        args=args,
        home=home,
        ports=(Port(settings.kube_port, "Kubernetes API", "GATEWAYFLOW_KUBE_PORT"),),
        identity=("gatewayflow_dev.kube_emulator", str(home)),
        probe=lambda: kube_serves(settings),
        cwd=Path(__file__).resolve().parent.parent,
    )


def kube_serves(settings: Settings) -> bool:
    with urllib.request.urlopen(f"{kube_url(settings)}/healthz", timeout=2) as response:
        return response.status == 200 and kubeconfig_path(settings).exists()
