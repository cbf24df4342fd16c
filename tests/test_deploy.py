"""docker-compose.yml and deploy/: valid files, every setting one settings.py knows, a
ClusterRole that grants exactly what the cluster adapter asks the API server for, and an
admission policy that lets the worker write what it owns and nothing else.

Offline: the compose file is checked against the Compose Specification schema vendored by
check-jsonschema, the manifests against the Kubernetes schemas of kubernetes-validate.
"""

import inspect
import itertools
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from pydantic import AliasChoices
from temporalio.common import SearchAttributeKey

from gatewayflow.cluster import manifests
from gatewayflow.cluster.client import IN_CLUSTER, Cluster, Manifest
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.domain import naming
from gatewayflow.domain.documents import CronTrigger, InstanceSpec
from gatewayflow.ownership import OWNERSHIP
from gatewayflow.settings import TEMPORAL_ENV_VARS, Settings
from gatewayflow_dev.kube_emulator import admission
from gatewayflow_dev.kube_emulator.auth import ADMIN, user_named
from gatewayflow_dev.kube_emulator.errors import ApiError
from gatewayflow_dev.kube_emulator.kinds import KINDS as EMULATOR_KINDS
from tests.kube_fixtures import Emulator
from workflows import search

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
WORKER = REPO / "deploy" / "worker.yaml"
DEV_CRDS = REPO / "deploy" / "dev-crds.yaml"
KUBERNETES = "1.33"  # the k3s of docker-compose.yml
INSTALLATION = "test-deploy"
BUILT_IN_GROUPS = {"", "apps", "batch", "rbac.authorization.k8s.io"}
# What the worker must be granted: every kind a gateway owns.
KINDS = OWNERSHIP.kinds()
NAMESPACED = [kind for kind in KINDS if kind.namespaced]

Triple = tuple[str, str, str]  # (apiGroup, resource, verb), as RBAC rules grant them


def _alias(choices: Any) -> str:
    assert isinstance(choices, AliasChoices)
    return str(choices.choices[0])


# The model's variables and the standard TEMPORAL_* ones it reads through envconfig.
SETTINGS_VARS = {
    _alias(field.validation_alias) for field in Settings.model_fields.values()
} | TEMPORAL_ENV_VARS


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as the worker reads them from exactly this environment."""
    for name in SETTINGS_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def worker_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("image", "").startswith("gatewayflow-worker")
    }


# --- docker-compose.yml ------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_references_resolve() -> None:
    """What the schema cannot see: dependencies, volumes and files that must exist."""
    data = compose()
    services, volumes = data["services"], set(data["volumes"])
    for name, service in services.items():
        profiles = set(service.get("profiles", []))
        for dependency in service.get("depends_on", {}):
            needed = set(services[dependency].get("profiles", []))
            assert not needed or needed & profiles, f"{name} needs {dependency} of {needed}"
        for mount in service.get("volumes", []):
            if isinstance(mount, str):
                source = mount.split(":")[0]
                if source.startswith("."):
                    assert (REPO / source).is_file(), f"{name} mounts missing {source}"
                else:
                    assert source in volumes, f"{name} mounts undeclared volume {source}"
    for service in worker_services().values():
        assert (REPO / service["build"] / "Dockerfile").is_file()


def test_temporal_registers_the_search_attributes_the_workflows_use() -> None:
    temporal = compose()["services"]["temporal"]
    command = temporal["command"]
    assert command[:2] == ["server", "start-dev"]
    registered = {
        value for flag, value in itertools.pairwise(command) if flag == "--search-attribute"
    }
    used = {
        f"{key.name}={key.indexed_value_type.name.title()}"
        for key in vars(search).values()
        if isinstance(key, SearchAttributeKey)
    }
    assert used and registered == used
    defaults = Settings.model_construct()
    assert f"127.0.0.1:{defaults.temporal_port}:7233" in temporal["ports"]
    assert f"127.0.0.1:{defaults.ui_port}:8233" in temporal["ports"]


@pytest.mark.parametrize("name", sorted(worker_services()))
def test_compose_worker_settings_are_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = compose()
    service = data["services"][name]
    env = {key: str(value) for key, value in service["environment"].items()}
    assert set(env) <= SETTINGS_VARS, set(env) - SETTINGS_VARS
    settings = settings_from(env, monkeypatch)
    assert settings.kubeconfig is not None
    # The addresses name services of this file.
    assert settings.temporal_address is not None
    temporal_host, temporal_port = settings.temporal_address.split(":")
    assert temporal_host in data["services"] and temporal_port == "7233"
    mongo = urlsplit(settings.mongodb_uri or "")
    assert mongo.hostname in data["services"]
    replica_set = data["services"][mongo.hostname]["command"]
    assert f"replicaSet={replica_set[replica_set.index('--replSet') + 1]}" in mongo.query
    # The metrics port is the one published and probed.
    assert settings.metrics_port is not None
    assert f"127.0.0.1:{settings.metrics_port}:{settings.metrics_port}" in service["ports"]
    assert f":{settings.metrics_port}/healthz" in " ".join(service["healthcheck"]["test"])
    for dependency in ("temporal", mongo.hostname):
        assert service["depends_on"][dependency]["condition"] == "service_healthy"


# --- deploy/ -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [WORKER, DEV_CRDS], ids=lambda p: p.name)
def test_manifests_follow_the_kubernetes_schemas(path: Path) -> None:
    for doc in load_all(path):
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def test_worker_manifests_fit_together(monkeypatch: pytest.MonkeyPatch) -> None:
    kinds = by_kind(load_all(WORKER))
    (namespace,) = kinds["Namespace"]
    ns = namespace["metadata"]["name"]
    for docs in kinds.values():
        for doc in docs:
            if doc["kind"] not in (
                "Namespace",
                "ClusterRole",
                "ClusterRoleBinding",
                "ValidatingAdmissionPolicy",
                "ValidatingAdmissionPolicyBinding",
            ):
                assert doc["metadata"]["namespace"] == ns, doc["metadata"]
    (deployment,) = kinds["Deployment"]
    spec = deployment["spec"]
    pod = spec["template"]
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    (budget,) = kinds["PodDisruptionBudget"]
    assert budget["spec"]["selector"]["matchLabels"] == selector
    assert spec["replicas"] == 3 and budget["spec"]["maxUnavailable"] == 1

    (account,) = kinds["ServiceAccount"]
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    roles = {role["metadata"]["name"]: role for role in kinds["ClusterRole"]}
    assert set(roles) == {"gatewayflow-worker", manifests.GATEWAY_ROLE}
    (binding,) = kinds["ClusterRoleBinding"]  # the gateway role is bound per namespace only
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "gatewayflow-worker",
    }
    subject = {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": ns}
    assert binding["subjects"] == [subject]
    (policy,) = kinds["ValidatingAdmissionPolicy"]
    (policy_binding,) = kinds["ValidatingAdmissionPolicyBinding"]
    assert policy_binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert policy_binding["spec"]["validationActions"] == ["Deny"]
    username = f"system:serviceaccount:{ns}:{account['metadata']['name']}"
    assert f"'{username}'" in policy["spec"]["matchConditions"][0]["expression"]

    (container,) = pod["spec"]["containers"]
    config_maps = {doc["metadata"]["name"]: doc["data"] for doc in kinds["ConfigMap"]}
    (source,) = container["envFrom"]
    env = dict(config_maps[source["configMapRef"]["name"]])
    secrets = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in container["env"]}
    assert set(secrets) == {"MONGODB_URI", "TEMPORAL_API_KEY"}
    assert not secrets["MONGODB_URI"].get("optional") and secrets["TEMPORAL_API_KEY"]["optional"]
    assert set(env) | set(secrets) <= SETTINGS_VARS, (set(env) | set(secrets)) - SETTINGS_VARS
    settings = settings_from({**env, "MONGODB_URI": "mongodb://mongo:27017/"}, monkeypatch)

    # Probes and scrape annotations reach the metrics port the settings turn on.
    (port,) = container["ports"]
    assert port["containerPort"] == settings.metrics_port
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(settings.metrics_port)
    for key in ("requests", "limits"):
        assert set(container["resources"][key]) == {"cpu", "memory"}

    # Every region is this cluster, reached in-cluster with the pod's ServiceAccount, which
    # is the one each gateway namespace's RoleBinding names.
    assert settings.regions and set(settings.regions.values()) == {IN_CLUSTER}
    assert settings.service_account == f"{ns}/{account['metadata']['name']}"
    assert pod["spec"].get("automountServiceAccountToken", True)
    role_binding = manifests.role_binding(settings.installation, "shop", settings.service_account)
    assert role_binding["subjects"] == [subject]
    assert role_binding["roleRef"]["name"] == manifests.GATEWAY_ROLE


def test_dev_crds_serve_every_custom_kind() -> None:
    crds = {
        (doc["spec"]["group"], doc["spec"]["names"]["plural"]): doc for doc in load_all(DEV_CRDS)
    }
    custom = [kind for kind in KINDS if "/" in kind.api_version]
    custom = [kind for kind in custom if kind.api_version.split("/")[0] not in BUILT_IN_GROUPS]
    assert len(crds) == len(custom)
    for kind in custom:
        group, version = kind.api_version.split("/")
        crd = crds[(group, kind.plural)]
        assert crd["metadata"]["name"] == f"{kind.plural}.{group}"
        assert crd["spec"]["names"]["kind"] == kind.name
        assert crd["spec"]["scope"] == ("Namespaced" if kind.namespaced else "Cluster")
        assert [v["name"] for v in crd["spec"]["versions"] if v["served"]] == [version]


# --- RBAC: the roles against what the adapter really requests ---------------------------

# Discovery documents: readable by every authenticated user (the default ClusterRole
# system:discovery), so no role of ours grants them.
DISCOVERY = ("/api", "/apis", "/api/v1")


def authorized_as(method: str, path: str, query: list[tuple[str, str]]) -> Triple | None:
    """(apiGroup, resource, verb) the API server checks for a request, as its RequestInfo
    reads a resource path: /api/v1/... or /apis/<group>/<version>/..., then
    [namespaces/<ns>/]<resource>[/<name>]. None for a discovery document."""
    parts = path.strip("/").split("/")
    if path in DISCOVERY or (parts[0] == "apis" and len(parts) == 3):
        assert method == "GET", path
        return None
    if parts[0] == "api":
        group, rest = "", parts[2:]
    else:
        assert parts[0] == "apis", path
        group, rest = parts[1], parts[3:]
    if rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    assert 1 <= len(rest) <= 2, f"subresource or unknown path: {path}"
    resource, named = rest[0], len(rest) == 2
    if method == "GET":
        watch = ("watch", "true") in query or ("watch", "1") in query
        verb = "watch" if watch else "get" if named else "list"
    elif method == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}[method]
    return group, resource, verb


def namespace_of(path: str) -> str | None:
    parts = path.strip("/").split("/")
    if "namespaces" in parts[:4]:
        at = parts.index("namespaces")
        if len(parts) > at + 2:
            return parts[at + 1]
    return None


BIND = {"apiGroups", "resources", "verbs", "resourceNames"}


def granted(role: dict[str, Any]) -> set[Triple]:
    """What a role grants; a wildcard is allowed only to list (the foreign-object check),
    names only for `bind` (which role a RoleBinding may name)."""
    triples = set()
    for rule in role["rules"]:
        if set(rule) == BIND:
            assert rule["verbs"] == ["bind"], rule
            continue
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no names, no URLs
        for values in rule.values():
            assert "*" not in values or rule["verbs"] == ["list"], rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    triples.add((group, resource, verb))
    return triples


def covers(grants: set[Triple], triple: Triple) -> bool:
    group, resource, verb = triple
    return any(g in (group, "*") and r in (resource, "*") and v == verb for g, r, v in grants)


def public_operations() -> set[str]:
    return {name for name, _ in inspect.getmembers(Cluster, inspect.isfunction) if name[0] != "_"}


def manifest_of(kind: Kind, gid: str) -> Manifest:
    """A valid object of each kind, as the activities build them."""
    builders: dict[Kind, Callable[[], Manifest]] = {
        Kind.NAMESPACE: lambda: manifests.namespace(INSTALLATION, gid),
        Kind.ROLE_BINDING: lambda: manifests.role_binding(
            INSTALLATION, gid, "gatewayflow-system/worker"
        ),
        Kind.CONFIG_MAP: lambda: manifests.config_map(INSTALLATION, gid, "local"),
        Kind.SECRET: lambda: manifests.db_secret(INSTALLATION, gid, "user", "password"),
        Kind.SERVICE: lambda: manifests.service(INSTALLATION, gid),
        Kind.DEPLOYMENT: lambda: manifests.deployment(INSTALLATION, gid, InstanceSpec()),
        Kind.CRON_JOB: lambda: manifests.cron_job(
            INSTALLATION,
            gid,
            CronTrigger(gateway_id=gid, trigger_id="t1", function_name="fn-1"),
            True,
        ),
        Kind.APISIX_ROUTE: lambda: manifests.stage_route(
            INSTALLATION, gid, "dev", "dev.example.com"
        ),
        Kind.APISIX_PLUGIN_CONFIG: lambda: manifests.plugin_config(INSTALLATION, gid),
        Kind.APISIX_TLS: lambda: manifests.tls(INSTALLATION, gid, "dev", "dev.example.com"),
        Kind.CERTIFICATE: lambda: manifests.certificate(INSTALLATION, gid, "api.example.com"),
    }
    assert set(builders) == set(KINDS), "a new kind needs a manifest here"
    return builders[kind]()


def drive(cluster: Cluster, gid: str) -> None:
    """Every public operation of the adapter on every kind, as a gateway's life would:
    the RoleBinding made right after the Namespace, everything else inside it."""
    ns = naming.namespace(gid)
    namespace = manifest_of(Kind.NAMESPACE, gid)
    objects = [manifest_of(kind, gid) for kind in NAMESPACED]
    assert NAMESPACED[0] == Kind.ROLE_BINDING
    cluster.ping()  # discovery only: what the CLI asks before it reports an unreachable API
    for obj in [namespace, *objects]:
        cluster.ensure(gid, obj)
        cluster.ensure(gid, obj)  # exists: 409, then read and checked
        cluster.apply(gid, obj)
        cluster.get(ObjectRef.of(obj))
    cluster.list_owned(gid, Kind.NAMESPACE)
    cluster.list_all(Kind.NAMESPACE)
    cluster.owned_refs(gid, Kind.NAMESPACE)
    cluster.gateway_namespaces()
    cluster.list_labelled(Kind.NAMESPACE)
    cluster.unadopted_gateways()
    cluster.adopt(gid, NAMESPACED)  # ours already: only looks
    for kind in NAMESPACED:
        cluster.list_owned(gid, kind, ns)
        cluster.list_all(kind, ns)
        cluster.owned_refs(gid, kind, ns)
        cluster.list_labelled(kind, ns)
    cluster.readiness(ns, naming.deployment(gid))  # the start's one look
    assert cluster.foreign_objects(gid, ns) == []
    # Each wait starts while its deletion still runs (the emulator's delete delay), so it
    # watches every kind; the RoleBinding goes last: it grants the rest.
    for kind in reversed(NAMESPACED):
        cluster.wait_until_gone(cluster.delete_owned_all(gid, kind, ns), timeout=30)
    cluster.delete_owned(gid, ObjectRef.of(namespace))
    cluster.wait_until_gone(ObjectRef.of(namespace), timeout=30)
    again = cluster.ensure(gid, namespace)
    cluster.delete_owned_and_wait(gid, [ObjectRef.of(again)], timeout=30)
    cluster.close()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emu = Emulator(
        tmp_path_factory.mktemp("kube"), "--delete-delay", "0.5", "--ready-delay", "0.05"
    ).start()
    yield emu
    emu.stop()


def test_roles_grant_exactly_what_the_adapter_requests(emulator: Emulator) -> None:
    """Cluster-wide: what is requested outside a gateway namespace, or inside it before the
    worker's RoleBinding there exists. Per namespace: everything else."""
    cluster = Cluster(emulator.kubeconfig, "local", installation=INSTALLATION)
    cluster_wide: set[Triple] = set()
    in_namespace: set[Triple] = set()
    bound: set[str] = set()  # namespaces where the worker's RoleBinding exists
    send = cluster._request

    def recorded(method: str, path: str, **kwargs: Any) -> Manifest:
        triple = authorized_as(method, path, kwargs.get("query") or [])
        ns = namespace_of(path)
        if triple is not None:
            (in_namespace if ns in bound else cluster_wide).add(triple)
        answer = send(method, path, **kwargs)
        if triple == ("rbac.authorization.k8s.io", "rolebindings", "create") and ns:
            bound.add(ns)
        return answer

    cluster._request = recorded  # type: ignore[method-assign]
    open_watch = cluster._open_watch

    def recorded_watch(path: str, query: list[tuple[str, str]], **kwargs: Any) -> Any:
        triple = authorized_as("GET", path, [("watch", "true"), *query])
        if triple is not None:
            (in_namespace if namespace_of(path) in bound else cluster_wide).add(triple)
        return open_watch(path, query, **kwargs)

    cluster._open_watch = recorded_watch  # type: ignore[method-assign]
    called: set[str] = set()

    def recording(name: str, operation: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            called.add(name)
            return operation(*args, **kwargs)

        return call

    for name in public_operations():
        setattr(cluster, name, recording(name, getattr(cluster, name)))
    drive(cluster, f"rbac-{uuid.uuid4().hex[:8]}")
    assert called == public_operations(), "drive() must exercise every public operation"

    roles = {role["metadata"]["name"]: role for role in by_kind(load_all(WORKER))["ClusterRole"]}
    worker, gateway = granted(roles["gatewayflow-worker"]), granted(roles[manifests.GATEWAY_ROLE])
    assert worker == cluster_wide, "the cluster-wide role is exactly what is needed there"
    assert {t for t in cluster_wide if t[1] not in ("namespaces", "rolebindings")} == set()
    # Per namespace: each request granted, and every grant but the wildcard list needed.
    assert {t for t in in_namespace if not covers(gateway, t)} == set(), "requested, not granted"
    exact = {t for t in gateway if "*" not in t}
    assert exact - in_namespace == set(), "granted but never requested (least privilege)"
    groups = {kind: kind.api_version.rpartition("/")[0] for kind in KINDS}
    owned = {(groups[kind], kind.plural) for kind in NAMESPACED}
    assert owned == {(g, r) for g, r, _ in exact}
    (bind,) = [rule for rule in roles["gatewayflow-worker"]["rules"] if "resourceNames" in rule]
    assert bind["resourceNames"] == [manifests.GATEWAY_ROLE]


# --- the admission policy, as kube-apiserver evaluates it ---------------------------------
#
# The requests carry what kube-apiserver gives a policy (the emulator's `admission` module
# cites its source): a Namespace's own name as `request.namespace`, and no
# `namespaceObject` for a Namespace or any other cluster-scoped object.

WORKER_USER = user_named("system:serviceaccount:gatewayflow-system:gatewayflow-worker")
EMULATED = {kind.kind: kind for kind in EMULATOR_KINDS}


def labelled(name: str, owner: str | None, namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if owner is not None:
        metadata["labels"] = {naming.OWNER_LABEL: owner}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"metadata": metadata}


def write(
    operation: str,
    kind: str,
    obj: dict[str, Any],
    *,
    old: dict[str, Any] | None = None,
    namespace: dict[str, Any] | None = None,
) -> admission.Write:
    """A write as the store makes it: DELETE has the stored object as oldObject only."""
    deleting = operation == "DELETE"
    return admission.Write(
        operation=operation,
        kind=EMULATED[kind],
        namespace=obj["metadata"].get("namespace", ""),
        name=obj["metadata"]["name"],
        obj=None if deleting else obj,
        old=obj if deleting else old,
        namespace_obj=namespace,
    )


def denial(policy: admission.Admission, request: admission.Write, user: Any) -> str | None:
    """The API server's message for a denied request; None when it is admitted."""
    try:
        policy.check(request, user)
    except ApiError as error:
        assert (error.code, error.reason) == (422, "Invalid"), error.status()
        return error.message
    return None


def test_the_api_server_names_a_namespace_by_itself_and_gives_it_no_namespace_object() -> None:
    gw_a = labelled("gw-a", "a")
    for operation in ("CREATE", "UPDATE", "DELETE"):
        namespace = write(operation, "Namespace", gw_a, old=gw_a)
        request = admission.admission_request(namespace, WORKER_USER)
        assert request["namespace"] == "gw-a"
        assert admission.namespace_object(namespace) is None
    secret = write("CREATE", "Secret", labelled("a-db", "a", "gw-a"), namespace=gw_a)
    assert admission.admission_request(secret, WORKER_USER)["namespace"] == "gw-a"
    assert admission.namespace_object(secret) == {**gw_a, "spec": {}, "status": {}}
    binding = write("CREATE", "ClusterRoleBinding", labelled("admin", "a"))
    assert "namespace" not in admission.admission_request(binding, WORKER_USER)
    assert admission.namespace_object(binding) is None


def test_the_policy_admits_the_whole_life_of_a_gateway() -> None:
    """Its Namespace created, patched and deleted, and every object in it."""
    policy = admission.Admission.load(WORKER)
    gw_a = labelled("gw-a", "a")
    own = [
        write("CREATE", "Namespace", gw_a),
        write("UPDATE", "Namespace", gw_a, old=gw_a),
        write("DELETE", "Namespace", gw_a),
    ]
    for kind, name in (
        ("RoleBinding", "gatewayflow-gateway"),
        ("Secret", "a-db"),
        ("Deployment", "a"),
        ("CronJob", "a-trigger-t1"),
        ("ApisixRoute", "a-dev"),
    ):
        obj = labelled(name, "a", "gw-a")
        own += [
            write("CREATE", kind, obj, namespace=gw_a),
            write("UPDATE", kind, obj, old=obj, namespace=gw_a),
            write("DELETE", kind, obj, namespace=gw_a),
        ]
    denied = {f"{r.operation} {r.kind.kind}": denial(policy, r, WORKER_USER) for r in own}
    assert denied == dict.fromkeys(denied)


def test_the_policy_denies_the_worker_anything_it_does_not_own() -> None:
    policy = admission.Admission.load(WORKER)
    gw_a, gw_b = labelled("gw-a", "a"), labelled("gw-b", "b")
    system = labelled("kube-system", None)
    theirs = [
        # Namespaces not its own: unlabelled, named for another label, or labelled now.
        write("CREATE", "Namespace", labelled("kube-x", "a")),
        write("CREATE", "Namespace", labelled("gw-b", "a")),
        write("DELETE", "Namespace", system),
        write("UPDATE", "Namespace", labelled("kube-system", "a"), old=system),
        # Cluster-scoped objects other than its Namespaces, labelled or not.
        write("CREATE", "ClusterRoleBinding", labelled("admin", "a")),
        write("DELETE", "ClusterRoleBinding", labelled("admin", None)),
        # Its role bound where it has no business, even with its label on the binding.
        write(
            "CREATE",
            "RoleBinding",
            labelled("gatewayflow-gateway", "a", "kube-system"),
            namespace=system,
        ),
        # Another gateway's namespace, another gateway's label, no label.
        write("CREATE", "Secret", labelled("b-db", "a", "gw-b"), namespace=gw_b),
        write("CREATE", "Secret", labelled("b-db", "b", "gw-a"), namespace=gw_a),
        write("DELETE", "Deployment", labelled("theirs", None, "gw-a"), namespace=gw_a),
        # Taking an object over by labelling it.
        write(
            "UPDATE",
            "ConfigMap",
            labelled("theirs", "a", "gw-a"),
            old=labelled("theirs", None, "gw-a"),
            namespace=gw_a,
        ),
    ]
    for request in theirs:
        message = denial(policy, request, WORKER_USER)
        assert message is not None, request
        resource, name = request.kind.resource, request.name
        assert message.startswith(
            f'{resource} "{name}" is forbidden: ValidatingAdmissionPolicy '
            "'gatewayflow-worker-owns-what-it-writes' with binding "
            "'gatewayflow-worker-owns-what-it-writes' denied request: the gatewayflow worker"
        ), message
    # Anyone else is not this policy's concern.
    assert [denial(policy, r, ADMIN) for r in theirs] == [None] * len(theirs)
