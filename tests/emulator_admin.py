"""The Kubernetes API emulator's admin API for tests: faults, timing and the operation log;
and the cluster's administrator, for a test that puts its own objects into a cluster.

The session stack is shared by every test, so each change here is undone in a `finally`
(`faults_injected`, `timing`), and the oplog is read filtered by a gateway's namespace
instead of being cleared.
"""

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubernetes import config as k8s_config

from gatewayflow.domain import naming
from gatewayflow.settings import Settings
from gatewayflow_dev.kube_emulator.kubeconfig import admin_kubeconfig

OpItem = dict[str, Any]


def cluster_admin(settings: Settings, context: str = "local") -> Any:
    """The official client (an ApiClient) as the cluster's administrator
    (HOME/admin.kubeconfig): what an operator puts into a gateway's namespace.
    settings.kubeconfig is the worker's, which the admission policy of deploy/worker.yaml
    keeps to the gateways' own objects."""
    assert settings.kubeconfig is not None, "settings must be resolved"
    return k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(admin_kubeconfig(Path(settings.kubeconfig))), context=context
    )


class EmulatorAdmin:
    """`/_admin/...` of one emulator; every call returns the state after it."""

    def __init__(self, root_url: str) -> None:
        self.root_url = root_url.rstrip("/")

    @classmethod
    def of(cls, settings: Settings) -> "EmulatorAdmin":
        """The emulator behind the kubeconfig of resolved `settings` (admin is at its root)."""
        assert settings.kubeconfig is not None, "settings must be resolved"
        config = json.loads(Path(settings.kubeconfig).read_text())
        server = urlsplit(config["clusters"][0]["cluster"]["server"])
        return cls(f"{server.scheme}://{server.netloc}")

    def _call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.root_url}/_admin/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    # -- faults ----------------------------------------------------------------------------
    def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "faults")
        return result

    def set_faults(self, rules: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PUT", "faults", {"seed": seed, "rules": rules})
        return result

    def clear_faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", "faults")
        return result

    @contextlib.contextmanager
    def faults_injected(self, rules: list[dict[str, Any]], seed: int = 0) -> Iterator[None]:
        self.set_faults(rules, seed)
        try:
            yield
        finally:
            self.clear_faults()

    # -- timing ----------------------------------------------------------------------------
    def config(self) -> dict[str, float]:
        result: dict[str, float] = self._call("GET", "config")
        return result

    def set_config(self, **timing: float) -> dict[str, float]:
        """`deleteDelay=` and/or `readyDelay=` in seconds (readyDelay < 0: never ready)."""
        result: dict[str, float] = self._call("PUT", "config", timing)
        return result

    @contextlib.contextmanager
    def timing(self, **timing: float) -> Iterator[None]:
        """Change the emulator's delays for a block, then put the previous ones back."""
        before = self.config()
        self.set_config(**timing)
        try:
            yield
        finally:
            self.set_config(**before)

    # -- operation log -----------------------------------------------------------------------
    def oplog(self, gateway_id: str, since: int = 0) -> list[OpItem]:
        """Entries of the gateway's namespace (and the Namespace itself) after seq `since`."""
        return of_gateway(gateway_id, self.oplog_since(since))

    def oplog_since(self, since: int = 0) -> list[OpItem]:
        """Every entry after seq `since` (read once, then split with `of_gateway`)."""
        items: list[OpItem] = self._call("GET", "oplog")["items"]
        return [item for item in items if item["seq"] > since]

    def requests_by_verb(self, region: str = "local") -> dict[str, int]:
        """API requests the emulator has received in `region`, by verb, since it started."""
        items = self._call("GET", f"requests?region={region}")["items"]
        counts: dict[str, int] = {}
        for item in items:
            counts[item["verb"]] = counts.get(item["verb"], 0) + int(item["count"])
        return counts

    def entries(self, since: int = 0) -> list[OpItem]:
        """Every entry after seq `since`, of every gateway."""
        items: list[OpItem] = self._call("GET", "oplog")["items"]
        return [item for item in items if item["seq"] > since]

    def last_seq(self) -> int:
        items = self._call("GET", "oplog")["items"]
        return int(items[-1]["seq"]) if items else 0


def of_gateway(gateway_id: str, items: list[OpItem]) -> list[OpItem]:
    """The entries of the gateway's namespace, and of the Namespace itself."""
    ns = naming.namespace(gateway_id)
    return [
        item
        for item in items
        if item["namespace"] == ns or (item["kind"] == "Namespace" and item["name"] == ns)
    ]


def deletion_step_of(gateway_id: str, item: OpItem) -> int:
    """The GatewayDeletion step (1-based, docs/operations.md) that removes this object."""
    kind, name = item["kind"], item["name"]
    stage_routes = {naming.stage_route(gateway_id, env) for env in naming.ENVIRONMENTS}
    steps = {
        "CronJob": 1,
        "ApisixPluginConfig": 4,
        "ApisixTls": 4,
        "Certificate": 4,
        "Deployment": 5,
        "Service": 5,
        "Secret": 6,
        "ConfigMap": 7,
        "RoleBinding": 7,  # goes with the namespace
        "Namespace": 7,
    }
    if kind == "ApisixRoute":
        return 3 if name in stage_routes else 4
    return steps[kind]


def deletion_order_violations(gateway_id: str, items: list[OpItem]) -> list[str]:
    """Every way the oplog of one deletion breaks the order of docs/operations.md.

    An object of a later step may only be deleted once every object of earlier steps is
    removed (each step waits until its objects are gone): so no Deployment delete before
    every ApisixRoute is removed, no Secret delete (the database step) before the
    Deployment is removed, and the Namespace delete comes last.
    """
    problems = []
    deletes = [i for i in items if i["verb"] == "delete"]
    removals = [i for i in items if i["verb"] == "removed"]
    for deleted in deletes:
        step = deletion_step_of(gateway_id, deleted)
        for removed in removals:
            earlier = deletion_step_of(gateway_id, removed)
            if earlier < step and removed["seq"] > deleted["seq"]:
                problems.append(
                    f"step {step} deleted {deleted['kind']} {deleted['name']} (seq "
                    f"{deleted['seq']}) before step {earlier} had removed {removed['kind']} "
                    f"{removed['name']} (seq {removed['seq']})"
                )
    namespace_deletes = [i for i in deletes if i["kind"] == "Namespace"]
    if len(namespace_deletes) != 1:
        problems.append(f"the Namespace was deleted {len(namespace_deletes)} times")
    elif deletes[-1] is not namespace_deletes[0]:
        last = deletes[-1]
        problems.append(f"the last delete is {last['kind']} {last['name']}, not the Namespace")
    return problems


def delete_counts(items: list[OpItem]) -> dict[tuple[str, str], int]:
    """How many times each object was deleted (a repeated delete of a terminating object
    changes nothing and is not logged, so anything above 1 is a second deletion)."""
    counts: dict[tuple[str, str], int] = {}
    for item in items:
        if item["verb"] == "delete":
            key = (item["kind"], item["name"])
            counts[key] = counts.get(key, 0) + 1
    return counts


def deletions_at_once(items: list[OpItem], gateway_ids: list[str]) -> int:
    """The most gateways deleting at the same moment, from the oplog: a gateway deletes
    from its first delete call (step 1, its CronJobs) until its Namespace is removed."""
    namespaces = {naming.namespace(gid): gid for gid in gateway_ids}
    began: dict[str, int] = {}
    ended: dict[str, int] = {}
    for item in items:
        ns = item["name"] if item["kind"] == "Namespace" else item["namespace"]
        gid = namespaces.get(ns)
        if gid is None:
            continue
        if item["verb"] == "delete":
            began.setdefault(gid, item["seq"])
        if item["verb"] == "removed" and item["kind"] == "Namespace":
            ended[gid] = item["seq"]
    edges = sorted(
        [(seq, 1) for seq in began.values()] + [(ended.get(gid, 1 << 62), -1) for gid in began]
    )
    most = running = 0
    for _seq, step in edges:
        running += step
        most = max(most, running)
    return most
