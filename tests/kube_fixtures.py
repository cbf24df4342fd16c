"""Running the Kubernetes API emulator as a real process for tests.

The emulator is started with `--port 0` and a fresh home; the port it picked is read
back from the kubeconfig it writes, so concurrent test runs never race for a port.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config

from gatewayflow_dev.kube_emulator.kubeconfig import admin_kubeconfig

REPO = Path(__file__).resolve().parent.parent


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, every: float = 0.05) -> Any:
    """Poll until `condition()` is truthy and return its value; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


class Emulator:
    """One emulator process and the ways a test talks to it."""

    def __init__(self, home: Path, *args: str) -> None:
        self.home = home
        self.args = args
        self.kubeconfig = home / "kubeconfig"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> "Emulator":
        self.home.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.unlink(missing_ok=True)
        with open(self.home / "emulator.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gatewayflow_dev.kube_emulator",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--home",
                    str(self.home),
                    *self.args,
                ],
                cwd=REPO,
                stdout=log,
                stderr=log,
            )
        wait_until(lambda: self.kubeconfig.exists() or self.process_exited(), timeout=15)
        if self.process_exited():
            raise AssertionError(f"the emulator exited: {self.log()}")
        server = json.loads(self.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        self.url = server.rsplit("/clusters/", 1)[0]
        return self

    def process_exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def log(self) -> str:
        return (self.home / "emulator.log").read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the process with `sig` and return its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
        return self.process.wait(timeout=15)

    def api(
        self, region: str = "local", retries: bool = True, admin: bool = False
    ) -> client.ApiClient:
        """A client for one region, as the emulator's user or (`admin`) its administrator;
        `retries=False` turns off urllib3's retries, which otherwise repeat a 429 or 503
        that carries a Retry-After header."""
        configuration = client.Configuration()
        kubeconfig = admin_kubeconfig(self.kubeconfig) if admin else self.kubeconfig
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), context=region, client_configuration=configuration
        )
        if not retries:
            configuration.retries = False
        return client.ApiClient(configuration)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """A JSON call to the emulator outside the Kubernetes API (admin, health)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = response.read()
        try:
            return json.loads(payload)
        except ValueError:
            return payload.decode()

    def oplog(self, region: str = "local") -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.request("GET", f"/_admin/oplog?region={region}")["items"]
        return items


def status_of(error: client.ApiException) -> dict[str, Any]:
    """The `Status` object of an API error."""
    status: dict[str, Any] = json.loads(error.body or "{}")
    return status
