"""What the shipped configuration exposes: published ports, MongoDB credentials, URIs the
CLI prints, and a Temporal connection configured like the `temporal` CLI's."""

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import celpy
import pytest
import yaml
from celpy.adapter import json_to_cel
from rich.console import Console
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from control.views import where_to_look
from gatewayflow.client import connect
from gatewayflow.settings import Settings, SettingsError, load_settings
from starter import stack
from tests.test_deploy import SETTINGS_VARS

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "hunter2-not-for-print"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def test_compose_publishes_on_localhost_only_and_mongodb_requires_a_password() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to the network"
    mongo = services["mongo"]
    env = mongo["environment"]
    assert env["MONGO_INITDB_ROOT_USERNAME"]
    # The password is the operator's, from the environment; compose refuses to start without.
    assert env["MONGO_INITDB_ROOT_PASSWORD"].startswith("${GATEWAYFLOW_MONGO_PASSWORD:?")
    assert "--keyFile" in mongo["command"]  # a replica set with auth needs one
    assert "MONGO_INITDB_ROOT_PASSWORD" in " ".join(mongo["healthcheck"]["test"])
    workers = [s for s in services.values() if s.get("image", "").startswith("gatewayflow-worker")]
    assert workers
    for worker in workers:
        uri = urlsplit(worker["environment"]["MONGODB_URI"])
        assert uri.username == env["MONGO_INITDB_ROOT_USERNAME"]
        assert uri.password == "${GATEWAYFLOW_MONGO_PASSWORD}"


def settings_with_credentials(tmp_path: Path) -> Settings:
    return Settings.model_construct(
        home=tmp_path,
        temporal_address="127.0.0.1:7233",
        temporal_namespace="default",
        temporal_ui_url="http://127.0.0.1:8233",
        mongodb_uri=f"mongodb://admin:{PASSWORD}@db1:27017,db2:27017/?replicaSet=rs0",
        runtime_mongodb_uri=f"mongodb://runtime:{PASSWORD}@rt:27017/?authSource=admin",
        db_name="gatewayflow",
        kubeconfig=tmp_path / "kubeconfig",
        ui_port=8233,
    )


def test_the_cli_never_prints_a_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_with_credentials(tmp_path)
    console = Console(record=True, width=200)
    monkeypatch.setattr(stack, "console", console)
    console.print(where_to_look(settings, "shop"))  # after every command on a gateway
    stack.print_addresses(settings)  # `gatewayflow up`
    printed = console.export_text()
    assert PASSWORD not in printed
    assert "mongodb://admin:***@db1:27017,db2:27017/?replicaSet=rs0" in printed
    assert "mongodb://runtime:***@rt:27017/?authSource=admin" in printed


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """The process environment with no setting of ours and no temporal.toml in reach."""
    for name in SETTINGS_VARS | {"TEMPORAL_TLS_CERT", "TEMPORAL_TLS_KEY"}:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GATEWAYFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "absent.toml"))
    return monkeypatch


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ("TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH"),
        ("TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_CLIENT_CERT_PATH"),
        ("TEMPORAL_TLS_CERT", "TEMPORAL_TLS_CLIENT_CERT_PATH"),  # the old name, unread now
    ],
)
def test_half_set_tls_stops_start_up_naming_the_variable(
    given: str, named: str, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pem = tmp_path / "client.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    clean_env.setenv(given, str(pem))
    with pytest.raises(SettingsError, match=named):
        load_settings()


@pytest.mark.asyncio(loop_scope="session")
async def test_the_temporal_connection_comes_from_a_temporal_cli_profile(
    stack: Settings, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A temporal.toml profile, as `temporal` itself reads it, picks the server; the
    standard variables override it."""
    toml = tmp_path / "temporal.toml"
    toml.write_text(
        f'[profile.default]\naddress = "127.0.0.1:1"\n\n'
        f'[profile.embedded]\naddress = "{stack.temporal_address}"\nnamespace = "default"\n'
    )
    clean_env.setenv("TEMPORAL_CONFIG_FILE", str(toml))
    clean_env.setenv("TEMPORAL_PROFILE", "embedded")
    settings = load_settings()
    assert settings.temporal_address == stack.temporal_address
    client = await connect(settings)
    answer = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=settings.temporal_namespace)
    )
    assert answer.namespace_info.name == "default"

    clean_env.setenv("TEMPORAL_ADDRESS", "127.0.0.1:2")  # a variable beats the profile
    assert load_settings().temporal_address == "127.0.0.1:2"
    clean_env.delenv("TEMPORAL_ADDRESS")
    clean_env.setenv("TEMPORAL_PROFILE", "missing")
    with pytest.raises(SettingsError, match="missing"):
        load_settings()


# -- the worker's privileges (deploy/worker.yaml) ------------------------------------------

WORKER_SA = "system:serviceaccount:gatewayflow-system:gatewayflow-worker"


def worker_docs() -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for doc in yaml.safe_load_all((REPO / "deploy" / "worker.yaml").read_text()):
        if doc:
            kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def test_the_worker_holds_no_cluster_wide_right_on_what_gateways_hold() -> None:
    """Bound cluster-wide: namespaces, creating a RoleBinding, binding one named role.
    No Secret read, no Deployment or CronJob write outside a gateway's namespace."""
    kinds = worker_docs()
    roles = {role["metadata"]["name"]: role for role in kinds["ClusterRole"]}
    bound = [binding["roleRef"]["name"] for binding in kinds["ClusterRoleBinding"]]
    cluster_wide = {
        (group, resource, verb)
        for name in bound
        for rule in roles[name]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert {r for _, r, _ in cluster_wide} <= {"namespaces", "rolebindings", "clusterroles"}
    assert ("rbac.authorization.k8s.io", "rolebindings", "create") in cluster_wide
    assert not any(
        verb in ("get", "list", "watch") for _, r, verb in cluster_wide if r != "namespaces"
    )


def admits(policy: dict[str, Any], request: dict[str, Any]) -> bool:
    """What the API server decides for `request` under the ValidatingAdmissionPolicy: its
    CEL evaluated as Kubernetes does (match conditions, then variables, then validations)."""
    spec = policy["spec"]
    env = celpy.Environment()

    def evaluate(expression: str, activation: dict[str, Any]) -> Any:
        return env.program(env.compile(expression)).evaluate(activation)

    activation: dict[str, Any] = {
        name: json_to_cel(request.get(name))
        for name in ("request", "object", "oldObject", "namespaceObject")
    }
    if not all(evaluate(c["expression"], activation) for c in spec["matchConditions"]):
        return True  # not the worker: the policy does not apply
    variables: dict[str, Any] = {}
    for variable in spec["variables"]:
        activation["variables"] = json_to_cel(variables)
        variables[variable["name"]] = evaluate(variable["expression"], activation)
    activation["variables"] = json_to_cel(variables)
    return all(bool(evaluate(v["expression"], activation)) for v in spec["validations"])


def labelled(name: str, owner: str | None, namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if owner is not None:
        metadata["labels"] = {"gatewayflow.dev/gateway": owner}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"metadata": metadata}


def request_of(
    operation: str,
    kind: str,
    obj: dict[str, Any],
    *,
    old: dict[str, Any] | None = None,
    namespace: dict[str, Any] | None = None,
    user: str = WORKER_SA,
) -> dict[str, Any]:
    ns = obj["metadata"].get("namespace", "")
    return {
        "request": {
            "operation": operation,
            "kind": {"kind": kind},
            "namespace": ns,
            "userInfo": {"username": user},
        },
        "object": None if operation == "DELETE" else obj,
        "oldObject": obj if operation == "DELETE" else old,
        "namespaceObject": namespace,
    }


def test_the_cluster_confines_the_workers_writes_to_its_labelled_namespaces() -> None:
    (policy,) = worker_docs()["ValidatingAdmissionPolicy"]
    gw_a = labelled("gw-a", "a")
    system = labelled("kube-system", None)
    allowed = [
        request_of("CREATE", "Namespace", labelled("gw-a", "a")),
        request_of("DELETE", "Namespace", labelled("gw-a", "a")),
        request_of(
            "CREATE", "RoleBinding", labelled("gatewayflow-gateway", "a", "gw-a"), namespace=gw_a
        ),
        request_of("CREATE", "Secret", labelled("a-db", "a", "gw-a"), namespace=gw_a),
        request_of(
            "UPDATE",
            "CronJob",
            labelled("a-trigger-t1", "a", "gw-a"),
            old=labelled("a-trigger-t1", "a", "gw-a"),
            namespace=gw_a,
        ),
        request_of("DELETE", "Deployment", labelled("a", "a", "gw-a"), namespace=gw_a),
        # Someone else is not concerned by this policy.
        request_of(
            "DELETE",
            "Deployment",
            labelled("x", None, "kube-system"),
            namespace=system,
            user="admin",
        ),
    ]
    denied = [
        # Binding its role where it has no business, even with a label on the binding.
        request_of(
            "CREATE",
            "RoleBinding",
            labelled("gatewayflow-gateway", "a", "kube-system"),
            namespace=system,
        ),
        # Adopting a namespace by labelling it.
        request_of("UPDATE", "Namespace", labelled("kube-system", "a"), old=system),
        request_of("CREATE", "Namespace", labelled("kube-x", "a")),
        request_of("CREATE", "ClusterRoleBinding", labelled("admin", "a")),
        # Unlabelled objects, another gateway's label, another gateway's namespace.
        request_of("DELETE", "Deployment", labelled("theirs", None, "gw-a"), namespace=gw_a),
        request_of("CREATE", "Secret", labelled("b-db", "b", "gw-a"), namespace=gw_a),
        request_of(
            "UPDATE",
            "ConfigMap",
            labelled("theirs", "a", "gw-a"),
            old=labelled("theirs", None, "gw-a"),
            namespace=gw_a,
        ),
    ]
    assert [admits(policy, r) for r in allowed] == [True] * len(allowed)
    assert [admits(policy, r) for r in denied] == [False] * len(denied)
