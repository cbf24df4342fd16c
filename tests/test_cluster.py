"""The cluster adapter against the Kubernetes API emulator, over real HTTP.

One emulator process serves the module (regions `local` and `eu`); every test works in
its own gateway's namespace so tests do not see each other's objects.
"""

import itertools
import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from gatewayflow.cluster import manifests
from gatewayflow.cluster.client import HEARTBEAT_SECONDS, Cluster, deployment_not_ready
from gatewayflow.cluster.errors import (
    NotOwnedError,
    PermanentClusterError,
    StillPresentError,
    TransientClusterError,
    classify,
)
from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.cluster.regions import Regions
from gatewayflow.domain import naming
from gatewayflow.domain.documents import CronTrigger, InstanceSpec
from gatewayflow.ownership import OWNERSHIP
from tests.conftest import free_ports
from tests.kube_fixtures import Emulator as EmulatorProcess

T = TypeVar("T")
INSTALLATION = "test-cluster"


class Emulator(EmulatorProcess):
    """The module's emulator process, with the fault injection these tests use."""

    def faults(self, rules: list[dict[str, Any]], seed: int = 0) -> None:
        self.request("PUT", "/_admin/faults", {"seed": seed, "rules": rules})

    def clear_faults(self) -> None:
        self.faults([])


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emu = Emulator(
        tmp_path_factory.mktemp("kube"),
        "--regions",
        "local,eu",
        "--delete-delay",
        "0.2",
        "--ready-delay",
        "0.5",
    )
    emu.start()
    try:
        yield emu
    finally:
        emu.stop(signal.SIGKILL)


@pytest.fixture(autouse=True)
def no_faults(emulator: Emulator) -> Iterator[None]:
    emulator.clear_faults()
    yield
    emulator.clear_faults()


@pytest.fixture(scope="module")
def local(emulator: Emulator) -> Iterator[Cluster]:
    cluster = Cluster(emulator.kubeconfig, "local", installation=INSTALLATION)
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def raw(emulator: Emulator) -> Iterator[k8s.ApiClient]:
    """The official client used directly, as someone else sharing the cluster would."""
    api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(emulator.kubeconfig), context="local"
    )
    yield api
    api.close()


@pytest.fixture
def gw(local: Cluster) -> str:
    """A fresh gateway id with its namespace created."""
    gateway_id = f"t{uuid.uuid4().hex[:8]}"
    local.ensure(gateway_id, manifests.namespace(INSTALLATION, gateway_id))
    return gateway_id


def foreign_config_map(raw: k8s.ApiClient, namespace: str, name: str) -> str:
    """Create a ConfigMap without our label; returns its resourceVersion."""
    body = k8s.V1ConfigMap(
        metadata=k8s.V1ObjectMeta(name=name, labels={"team": "someone-else"}), data={"k": "v"}
    )
    created = k8s.CoreV1Api(raw).create_namespaced_config_map(namespace, body)
    assert created.metadata is not None and created.metadata.resource_version is not None
    return created.metadata.resource_version


def held_config_map(gateway_id: str, name: str) -> dict[str, Any]:
    """An owned ConfigMap with a finalizer nobody will remove by itself."""
    manifest = manifests.config_map(INSTALLATION, gateway_id, "local")
    manifest["metadata"]["name"] = name
    manifest["metadata"]["finalizers"] = ["example.com/hold"]
    return manifest


def release(raw: k8s.ApiClient, namespace: str, name: str) -> None:
    k8s.CoreV1Api(raw).patch_namespaced_config_map(
        name, namespace, {"metadata": {"finalizers": None}}
    )


def test_ensure_twice_is_idempotent(local: Cluster, gw: str) -> None:
    first = local.ensure(gw, manifests.config_map(INSTALLATION, gw, "local"))
    second = local.ensure(gw, manifests.config_map(INSTALLATION, gw, "local"))
    assert first["metadata"]["uid"] == second["metadata"]["uid"]
    assert second["data"]["GATEWAY_ID"] == gw
    assert "password" not in json.dumps(second).lower()


def test_ensure_over_foreign_object_is_refused_and_leaves_it(
    local: Cluster, raw: k8s.ApiClient, gw: str
) -> None:
    ns, name = naming.namespace(gw), naming.config_map(gw)
    version = foreign_config_map(raw, ns, name)
    with pytest.raises(NotOwnedError) as caught:
        local.ensure(gw, manifests.config_map(INSTALLATION, gw, "local"))
    assert f"ConfigMap {ns}/{name}" in str(caught.value)
    assert f"no {naming.OWNER_LABEL} label" in str(caught.value)
    assert f"no {naming.INSTALLATION_LABEL} label" in str(caught.value)
    with pytest.raises(NotOwnedError):
        local.apply(gw, manifests.config_map(INSTALLATION, gw, "local"))
    after = local.get(ObjectRef(Kind.CONFIG_MAP, ns, name))
    assert after is not None
    assert after["metadata"]["resourceVersion"] == version
    assert after["data"] == {"k": "v"}


def test_object_of_another_gateway_is_not_owned(local: Cluster, gw: str) -> None:
    other = manifests.config_map(INSTALLATION, gw, "local")
    other["metadata"]["labels"][naming.OWNER_LABEL] = "someone"
    with pytest.raises(PermanentClusterError, match="lacks"):
        local.ensure(gw, other)
    local.ensure("someone", other)
    with pytest.raises(NotOwnedError, match=f"{naming.OWNER_LABEL}=someone"):
        local.delete_owned(gw, ObjectRef.of(other))


def test_an_object_of_the_same_gateway_in_another_installation_is_not_owned(
    emulator: Emulator, local: Cluster, gw: str
) -> None:
    """Another installation sharing the cluster, with a gateway of the same id: its
    objects are neither changed, deleted, listed nor counted as ours, and ours not as its."""
    other = Cluster(emulator.kubeconfig, "local", installation="other-installation")
    mine = local.ensure(gw, manifests.config_map(INSTALLATION, gw, "local"))
    ref = ObjectRef.of(mine)
    try:
        theirs = manifests.config_map("other-installation", gw, "local")
        with pytest.raises(PermanentClusterError, match="lacks"):
            local.ensure(gw, theirs)  # never writes another installation's label
        with pytest.raises(NotOwnedError, match="of installation 'other-installation'") as caught:
            other.ensure(gw, theirs)
        assert f"{naming.INSTALLATION_LABEL}={INSTALLATION}" in str(caught.value)
        with pytest.raises(NotOwnedError):
            other.delete_owned(gw, ref)
        with pytest.raises(NotOwnedError):
            other.delete_owned_and_wait(gw, [ref], timeout=5)
        assert other.list_owned(gw, Kind.CONFIG_MAP, naming.namespace(gw)) == []
        assert other.owned_refs(gw, Kind.NAMESPACE) == []
        assert naming.namespace(gw) not in other.gateway_namespaces()
        listed = other.list_labelled(Kind.NAMESPACE)
        assert all(obj["metadata"]["name"] != naming.namespace(gw) for obj in listed)
        assert str(ref) in {str(o) for o in other.foreign_objects(gw, naming.namespace(gw))}
        assert naming.namespace(gw) in local.gateway_namespaces()
        assert local.get(ref) is not None
    finally:
        other.close()


def test_objects_made_before_installations_are_adopted_by_label(
    emulator: Emulator, local: Cluster, raw: k8s.ApiClient
) -> None:
    """Objects with the gateway's label alone are nobody's until adopted: then ours,
    the namespace last; another gateway's are left as they are."""
    gid = f"t{uuid.uuid4().hex[:8]}"
    ns = naming.namespace(gid)
    legacy = {naming.OWNER_LABEL: gid}
    core = k8s.CoreV1Api(raw)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns, labels=legacy)))
    for name in (naming.config_map(gid), "other-gateways"):
        labels = legacy if name != "other-gateways" else {naming.OWNER_LABEL: "someone"}
        body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name, labels=labels))
        core.create_namespaced_config_map(ns, body)
    config_map = ObjectRef(Kind.CONFIG_MAP, ns, naming.config_map(gid))
    with pytest.raises(NotOwnedError):
        local.delete_owned(gid, config_map)
    assert gid in local.unadopted_gateways()

    adopted = local.adopt(gid, OWNERSHIP.kinds())

    assert [str(ref) for ref in adopted] == [str(config_map), f"Namespace {ns}"]
    assert gid not in local.unadopted_gateways()
    assert local.gateway_namespaces()[ns] == gid
    assert local.adopt(gid, OWNERSHIP.kinds()) == []  # nothing left
    others = local.get(ObjectRef(Kind.CONFIG_MAP, ns, "other-gateways"))
    assert others is not None and naming.INSTALLATION_LABEL not in others["metadata"]["labels"]
    assert local.delete_owned(gid, config_map)


def test_delete_owned_never_deletes_a_foreign_object(
    local: Cluster, raw: k8s.ApiClient, gw: str
) -> None:
    ns = naming.namespace(gw)
    foreign_config_map(raw, ns, "theirs")
    local.ensure(gw, manifests.config_map(INSTALLATION, gw, "local"))
    theirs = ObjectRef(Kind.CONFIG_MAP, ns, "theirs")

    with pytest.raises(NotOwnedError):
        local.delete_owned(gw, theirs)
    assert [str(obj) for obj in local.foreign_objects(gw, ns)] == [str(theirs)]
    deleted = [
        ref
        for ref in map(ObjectRef.of, local.list_owned(gw, Kind.CONFIG_MAP, ns))
        if local.delete_owned(gw, ref)
    ]

    assert deleted == [ObjectRef(Kind.CONFIG_MAP, ns, naming.config_map(gw))]
    local.wait_until_gone(deleted, timeout=5)
    assert local.get(theirs) is not None
    assert [obj["metadata"]["name"] for obj in local.list_all(Kind.CONFIG_MAP, ns)] == ["theirs"]


def test_delete_of_a_missing_object_is_done(local: Cluster, gw: str) -> None:
    ref = ObjectRef(Kind.DEPLOYMENT, naming.namespace(gw), "never-created")
    assert local.delete_owned(gw, ref) is False
    local.wait_until_gone(ref, timeout=1)


def test_wait_until_gone_follows_asynchronous_deletion(local: Cluster, gw: str) -> None:
    ref = ObjectRef.of(local.ensure(gw, manifests.service(INSTALLATION, gw)))
    assert local.delete_owned(gw, ref) is True
    waits: list[str] = []
    local.wait_until_gone(ref, timeout=5, poll=0.05, on_wait=waits.append)
    assert local.get(ref) is None
    assert waits, "deletion is asynchronous: the first polls must still see the Service"
    assert str(ref) in waits[0]
    assert local.delete_owned(gw, ref) is False


def test_finalizer_keeps_an_object_until_removed(
    local: Cluster, raw: k8s.ApiClient, gw: str
) -> None:
    ref = ObjectRef.of(local.ensure(gw, held_config_map(gw, "held")))
    assert local.delete_owned(gw, ref) is True
    with pytest.raises(StillPresentError) as caught:
        local.wait_until_gone(ref, timeout=0.6)
    assert caught.value.remaining == [ref]
    assert str(ref) in str(caught.value) and "example.com/hold" in str(caught.value)
    assert isinstance(caught.value, TransientClusterError)
    # Still there, terminating: creating it again must wait, not adopt it.
    with pytest.raises(TransientClusterError, match="being deleted"):
        local.ensure(gw, held_config_map(gw, "held"))

    release(raw, ref.namespace or "", ref.name)
    local.wait_until_gone(ref, timeout=5)


def test_namespace_deletion_waits_until_its_contents_are_gone(
    local: Cluster, raw: k8s.ApiClient, gw: str
) -> None:
    ns = ObjectRef(Kind.NAMESPACE, None, naming.namespace(gw))
    local.ensure(gw, held_config_map(gw, "held"))
    local.ensure(gw, manifests.service(INSTALLATION, gw))
    assert local.delete_owned(gw, ns) is True

    with pytest.raises(StillPresentError) as caught:
        local.wait_until_gone(ns, timeout=1)
    message = str(caught.value)
    assert f"still contains ConfigMap {ns.name}/held" in message
    assert f"Service {ns.name}/{gw}" not in message, "the Service went with the namespace"
    with pytest.raises(PermanentClusterError) as refused:
        local.ensure(gw, manifests.config_map(INSTALLATION, gw, "local"))
    assert refused.value.status == 403

    release(raw, ns.name, "held")
    local.wait_until_gone(ns, timeout=10)
    assert local.list_all(Kind.CONFIG_MAP, ns.name) == []


def until_ready(cluster: Cluster, namespace: str, name: str, timeout: float = 10) -> None:
    """Look at the Deployment until it is ready, as a start does (between timers)."""
    deadline = time.monotonic() + timeout
    while (why := cluster.readiness(namespace, name)) is not None:
        assert time.monotonic() < deadline, f"{namespace}/{name} not ready: {why}"
        time.sleep(0.05)


def test_readiness_through_a_rolling_update(local: Cluster, gw: str) -> None:
    ns, name = naming.namespace(gw), naming.deployment(gw)
    spec = InstanceSpec(replicas=2)
    created = local.ensure(gw, manifests.deployment(INSTALLATION, gw, spec))
    assert deployment_not_ready(created) is not None
    assert local.readiness(ns, name) is not None
    until_ready(local, ns, name)

    ready = local.get(ObjectRef(Kind.DEPLOYMENT, ns, name))
    assert ready is not None and deployment_not_ready(ready) is None
    rolled = local.apply(
        gw, manifests.deployment(INSTALLATION, gw, spec, restarted_at="2026-01-01T00:00:00Z")
    )
    assert rolled["metadata"]["generation"] > ready["metadata"]["generation"]
    annotations = rolled["spec"]["template"]["metadata"]["annotations"]
    assert annotations[manifests.RESTARTED_AT] == "2026-01-01T00:00:00Z"
    assert local.readiness(ns, name), "a new generation is not rolled out at once"

    until_ready(local, ns, name)
    # Applying the same manifest again changes nothing and needs no new rollout.
    again = local.apply(gw, manifests.deployment(INSTALLATION, gw, spec))
    assert again["metadata"]["generation"] == rolled["metadata"]["generation"]
    assert deployment_not_ready(again) is None


def test_apply_suspends_and_resumes_a_cron_job(local: Cluster, gw: str) -> None:
    trigger = CronTrigger(gateway_id=gw, trigger_id="a1", function_name="hello")
    running = local.apply(gw, manifests.cron_job(INSTALLATION, gw, trigger, suspend=False))
    assert running["spec"]["suspend"] is False
    suspended = local.apply(gw, manifests.cron_job(INSTALLATION, gw, trigger, suspend=True))
    assert suspended["spec"]["suspend"] is True
    assert suspended["metadata"]["uid"] == running["metadata"]["uid"]
    live = local.get(ObjectRef(Kind.CRON_JOB, naming.namespace(gw), naming.cron_job(gw, "a1")))
    assert live is not None and live["spec"]["suspend"] is True
    assert live["spec"]["schedule"] == trigger.schedule


def test_readiness_reports_a_missing_deployment(local: Cluster, gw: str) -> None:
    assert local.readiness(naming.namespace(gw), "absent") == "it does not exist"


@pytest.mark.parametrize(
    ("status", "transient"), [(429, True), (500, True), (503, True), (422, False), (403, False)]
)
def test_classify_api_errors(
    emulator: Emulator, emulator_once: Cluster, gw: str, status: int, transient: bool
) -> None:
    emulator.faults([{"verb": "get", "status": status, "count": 1}])
    with pytest.raises(Exception) as caught:
        emulator_once.get(ObjectRef(Kind.NAMESPACE, None, naming.namespace(gw)))
    error = caught.value
    assert classify(error) is error
    assert isinstance(error, TransientClusterError if transient else PermanentClusterError)
    assert error.status == status
    if status == 429:
        assert isinstance(error, TransientClusterError) and error.retry_after == 1.0


def test_classify_a_real_invalid_object(local: Cluster, gw: str) -> None:
    manifest = manifests.config_map(INSTALLATION, gw, "local")
    manifest["metadata"]["name"] = "Not_Valid"
    with pytest.raises(PermanentClusterError) as caught:
        local.ensure(gw, manifest)
    assert caught.value.status == 422 and caught.value.reason == "Invalid"
    assert "Not_Valid" in str(caught.value)


def test_classify_connection_refused(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "nowhere",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{free_ports(1)[0]}"}}
                ],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "nowhere", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    cluster = Cluster(
        kubeconfig, "nowhere", installation=INSTALLATION, attempts=1, request_timeout=2
    )
    try:
        with pytest.raises(TransientClusterError, match="connection to the API server failed"):
            cluster.get(ObjectRef(Kind.NAMESPACE, None, "any"))
    finally:
        cluster.close()
    assert isinstance(classify(ConnectionRefusedError("refused")), TransientClusterError)


def test_a_dropped_connection_is_transient(
    emulator: Emulator, emulator_once: Cluster, gw: str
) -> None:
    emulator.faults([{"verb": "create", "drop": True, "count": 1}])
    with pytest.raises(TransientClusterError, match="connection to the API server failed"):
        emulator_once.ensure(gw, manifests.service(INSTALLATION, gw))
    assert emulator_once.ensure(gw, manifests.service(INSTALLATION, gw))["metadata"]["name"] == gw


def test_short_transient_errors_are_retried_inside_the_adapter(
    emulator: Emulator, local: Cluster, gw: str
) -> None:
    ref = ObjectRef(Kind.NAMESPACE, None, naming.namespace(gw))
    emulator.faults(
        [
            {"verb": "get", "status": 503, "count": 1},
            {"verb": "get", "status": 429, "retryAfter": 1, "count": 1},
        ]
    )
    started = time.monotonic()
    assert local.get(ref) is not None
    assert time.monotonic() - started >= 1.0, "Retry-After was not honoured"

    emulator.faults([{"verb": "get", "status": 429, "retryAfter": 30, "count": 1}])
    started = time.monotonic()
    with pytest.raises(TransientClusterError) as caught:
        local.get(ref)
    assert isinstance(caught.value, TransientClusterError) and caught.value.retry_after == 30
    assert time.monotonic() - started < 5, "a long Retry-After belongs to the activity retry"


def test_regions_are_independent_clusters(emulator: Emulator) -> None:
    regions = Regions(emulator.kubeconfig, installation=INSTALLATION)
    try:
        local, eu = regions.cluster("local"), regions.cluster("eu")
        assert regions.cluster("local") is local
        gateway_id = f"r{uuid.uuid4().hex[:8]}"
        ns = ObjectRef(Kind.NAMESPACE, None, naming.namespace(gateway_id))
        local.ensure(gateway_id, manifests.namespace(INSTALLATION, gateway_id))
        assert local.get(ns) is not None
        assert eu.get(ns) is None
        with pytest.raises(PermanentClusterError, match="local") as caught:
            regions.cluster("mars")
        assert "eu" in str(caught.value)
    finally:
        regions.close()

    mapped = Regions(emulator.kubeconfig, {"europe": "eu"}, installation=INSTALLATION)
    try:
        assert mapped.cluster("europe").context == "eu"
        with pytest.raises(PermanentClusterError, match="unknown region 'local'"):
            mapped.cluster("local")
    finally:
        mapped.close()


@pytest.fixture
def emulator_once(emulator: Emulator) -> Iterator[Cluster]:
    """A cluster that does not retry, to see each error as it comes."""
    cluster = Cluster(emulator.kubeconfig, "local", installation=INSTALLATION, attempts=1)
    yield cluster
    cluster.close()


def retried(operation: Callable[[], T], attempts: int = 30) -> T:
    """The activity retry policy in miniature: transient errors only, short backoff."""
    for _ in range(attempts - 1):
        try:
            return operation()
        except TransientClusterError:
            time.sleep(0.05)
    return operation()


def full_inventory(gateway_id: str) -> list[dict[str, Any]]:
    triggers = [
        CronTrigger(gateway_id=gateway_id, trigger_id=t, function_name=f"fn-{t}")
        for t in ("a", "b")
    ]
    hosts = {env: naming.host(gateway_id, env, "local") for env in naming.ENVIRONMENTS}
    return [
        manifests.namespace(INSTALLATION, gateway_id),
        manifests.role_binding(INSTALLATION, gateway_id, "gatewayflow-system/gatewayflow-worker"),
        manifests.config_map(INSTALLATION, gateway_id, "local"),
        manifests.db_secret(INSTALLATION, gateway_id, naming.runtime_user(gateway_id), "s3cret"),
        manifests.deployment(INSTALLATION, gateway_id, InstanceSpec()),
        manifests.service(INSTALLATION, gateway_id),
        *(manifests.cron_job(INSTALLATION, gateway_id, t, suspend=False) for t in triggers),
        *(
            manifests.stage_route(INSTALLATION, gateway_id, env, host)
            for env, host in hosts.items()
        ),
        manifests.plugin_config(INSTALLATION, gateway_id),
        *(
            manifests.domain_route(
                INSTALLATION, gateway_id, env, host, naming.plugin_config(gateway_id)
            )
            for env, host in hosts.items()
        ),
        *(manifests.tls(INSTALLATION, gateway_id, env, host) for env, host in hosts.items()),
        manifests.certificate(INSTALLATION, gateway_id, "api.example.com"),
        manifests.custom_tls(INSTALLATION, gateway_id, "api.example.com"),
    ]


@pytest.fixture
def quick_retrying(emulator: Emulator) -> Iterator[Cluster]:
    """A short in-adapter backoff keeps the chaos test fast; the retry logic is the same."""
    cluster = Cluster(emulator.kubeconfig, "local", installation=INSTALLATION, backoff=0.02)
    yield cluster
    cluster.close()


def test_full_inventory_survives_a_30_percent_error_rate(
    emulator: Emulator, quick_retrying: Cluster
) -> None:
    local = quick_retrying
    gateway_id = f"c{uuid.uuid4().hex[:8]}"
    ns = naming.namespace(gateway_id)
    inventory = full_inventory(gateway_id)
    owned = {kind.name for kind in OWNERSHIP.kinds()}
    assert {m["kind"] for m in inventory} == owned, "every kind a gateway owns is exercised"
    # 10% each of 500, 503 and 429: each rule draws only when the ones before did not fire.
    emulator.faults(
        [
            {"status": 500, "rate": 0.1},
            {"status": 503, "rate": 0.1 / 0.9},
            {"status": 429, "retryAfter": 0, "rate": 0.1 / 0.8},
        ],
        seed=20260101,
    )

    created = [ObjectRef.of(retried(partial(local.ensure, gateway_id, m))) for m in inventory]
    until_ready(local, ns, gateway_id)
    for manifest in inventory:
        if manifest["kind"] == Kind.CRON_JOB.name:
            manifest["spec"]["suspend"] = True
            retried(partial(local.apply, gateway_id, manifest))

    # Deletion in the order of the deletion workflow; the namespace last.
    namespace_ref, *contents = created
    order = [
        Kind.CRON_JOB,
        Kind.APISIX_ROUTE,
        Kind.APISIX_TLS,
        Kind.CERTIFICATE,
        Kind.APISIX_PLUGIN_CONFIG,
        Kind.DEPLOYMENT,
        Kind.SERVICE,
        Kind.SECRET,
        Kind.CONFIG_MAP,
        Kind.ROLE_BINDING,
    ]
    for ref in sorted(contents, key=lambda ref: order.index(ref.kind)):
        retried(partial(local.delete_owned, gateway_id, ref))
    retried(partial(local.wait_until_gone, contents, timeout=5, poll=0.05))
    assert retried(partial(local.foreign_objects, gateway_id, ns)) == []
    retried(partial(local.delete_owned, gateway_id, namespace_ref))
    retried(partial(local.wait_until_gone, namespace_ref, timeout=10, poll=0.05))

    injected = {
        rule["status"]: rule["injected"]
        for rule in emulator.request("GET", "/_admin/faults")["rules"]
    }
    emulator.clear_faults()
    assert all(count > 0 for count in injected.values()), injected
    assert local.get(namespace_ref) is None
    for kind in {ref.kind for ref in contents}:
        assert local.list_owned(gateway_id, kind) == [], kind


# --- waits follow a watch -------------------------------------------------------------


def requests_by_verb(emulator: Emulator, region: str = "local") -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in emulator.request("GET", f"/_admin/requests?region={region}")["items"]:
        counts[item["verb"]] = counts.get(item["verb"], 0) + item["count"]
    return counts


def spent(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {verb: n - before.get(verb, 0) for verb, n in after.items() if n > before.get(verb, 0)}


def test_waits_follow_a_watch_instead_of_polling(
    emulator: Emulator, local: Cluster, gw: str
) -> None:
    ref = ObjectRef.of(local.ensure(gw, manifests.service(INSTALLATION, gw)))
    local.delete_owned(gw, ref)
    before = requests_by_verb(emulator)
    local.wait_until_gone(ref, timeout=10, poll=0.01)
    gone = spent(before, requests_by_verb(emulator))
    assert gone.get("watch", 0) >= 1 and gone.get("list") == 1, gone
    assert "get" not in gone, f"a wait by watch reads no object one by one: {gone}"


def test_a_wait_lists_again_when_its_watch_expires(
    emulator: Emulator, local: Cluster, raw: k8s.ApiClient, gw: str
) -> None:
    """The watch starts from the listed resourceVersion; if more than the server's
    history (1,000 events) happened since, it answers 410 Gone and the wait lists again."""
    ns = naming.namespace(gw)
    ref = ObjectRef.of(local.ensure(gw, held_config_map(gw, "held")))
    local.delete_owned(gw, ref)
    foreign_config_map(raw, ns, "busy")
    core = k8s.CoreV1Api(raw)
    before = requests_by_verb(emulator)

    def meanwhile(description: str) -> None:
        if len(calls) == 0:  # after the first list, before the first watch
            for n in range(1001):
                core.patch_namespaced_config_map("busy", ns, {"data": {"n": str(n)}})
            release(raw, ns, "held")
        calls.append(description)

    calls: list[str] = []
    local.wait_until_gone(ref, timeout=30, on_wait=meanwhile)
    assert local.get(ref) is None
    used = spent(before, requests_by_verb(emulator))
    assert used.get("list") == 2, f"listed once, then again after the 410: {used}"


def test_a_wait_polls_where_it_cannot_watch(emulator: Emulator, local: Cluster, gw: str) -> None:
    ref = ObjectRef.of(local.ensure(gw, manifests.service(INSTALLATION, gw)))
    emulator.faults([{"verb": "watch", "status": 403}])  # e.g. a role without `watch`
    local.delete_owned(gw, ref)
    before = requests_by_verb(emulator)
    local.wait_until_gone(ref, timeout=10, poll=0.05)
    used = spent(before, requests_by_verb(emulator))
    assert local.get(ref) is None
    assert used.get("watch", 0) >= 1 and used.get("get", 0) >= 1, used


def test_a_long_wait_keeps_calling_on_wait(local: Cluster, gw: str) -> None:
    """Activities heartbeat in `on_wait`: a quiet watch must not leave them silent."""
    ref = ObjectRef.of(local.ensure(gw, held_config_map(gw, "held")))
    local.delete_owned(gw, ref)
    calls: list[float] = []
    with pytest.raises(StillPresentError):
        local.wait_until_gone(ref, timeout=5, on_wait=lambda _: calls.append(time.monotonic()))
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert len(calls) >= 3 and max(gaps) < 2 * HEARTBEAT_SECONDS, calls


def test_delete_owned_and_wait_deletes_together_and_waits_once(
    emulator: Emulator, local: Cluster, raw: k8s.ApiClient, gw: str
) -> None:
    ns = naming.namespace(gw)
    refs = [
        ObjectRef.of(local.ensure(gw, manifest))
        for manifest in (
            manifests.service(INSTALLATION, gw),
            manifests.config_map(INSTALLATION, gw, "local"),
            manifests.stage_route(INSTALLATION, gw, "dev", "dev.example.com"),
            manifests.stage_route(INSTALLATION, gw, "prod", "prod.example.com"),
        )
    ]
    missing = ObjectRef(Kind.SECRET, ns, "never-created")
    deleted = local.delete_owned_and_wait(gw, [*refs, missing], timeout=10)
    assert deleted == refs
    assert all(local.get(ref) is None for ref in refs)

    foreign_config_map(raw, ns, "theirs")
    mine = ObjectRef.of(local.ensure(gw, manifests.service(INSTALLATION, gw)))
    theirs = ObjectRef(Kind.CONFIG_MAP, ns, "theirs")
    with pytest.raises(NotOwnedError):
        local.delete_owned_and_wait(gw, [mine, theirs], timeout=10)
    assert local.get(mine) is not None and local.get(theirs) is not None, "nothing deleted"


def test_delete_owned_and_wait_reads_each_kind_once(
    emulator: Emulator, local: Cluster, raw: k8s.ApiClient, gw: str
) -> None:
    """One list per kind, one delete per object, the wait following a watch from that
    list: no get. Named objects and, for `every_owned`, whatever else carries the label."""
    ns = naming.namespace(gw)
    routes = [
        ObjectRef.of(
            local.ensure(gw, manifests.stage_route(INSTALLATION, gw, env, f"{env}.example.com"))
        )
        for env in naming.ENVIRONMENTS
    ]
    jobs = [
        ObjectRef.of(local.ensure(gw, manifests.cron_job(INSTALLATION, gw, trigger, suspend=False)))
        for trigger in (
            CronTrigger(gateway_id=gw, trigger_id=t, function_name="f") for t in ("a1", "b2")
        )
    ]
    before = requests_by_verb(emulator)
    deleted = local.delete_owned_and_wait(
        gw, [*routes, jobs[0]], every_owned=[(Kind.CRON_JOB, ns)], timeout=10
    )
    used = spent(before, requests_by_verb(emulator))
    assert deleted == [*routes, *jobs]
    assert all(local.get(ref) is None for ref in deleted)
    assert used["list"] == 2 and used["delete"] == 5 and "get" not in used, used

    # A named object without the label stops it before anything is deleted.
    foreign_config_map(raw, ns, "theirs")
    mine = ObjectRef.of(
        local.ensure(
            gw,
            manifests.cron_job(
                INSTALLATION,
                gw,
                CronTrigger(gateway_id=gw, trigger_id="c3", function_name="f"),
                suspend=False,
            ),
        )
    )
    theirs = ObjectRef(Kind.CONFIG_MAP, ns, "theirs")
    with pytest.raises(NotOwnedError):
        local.delete_owned_and_wait(gw, [theirs], every_owned=[(Kind.CRON_JOB, ns)], timeout=10)
    assert local.get(mine) is not None and local.get(theirs) is not None, "nothing deleted"


def test_delete_owned_all_reads_nothing_one_by_one(
    emulator: Emulator, local: Cluster, gw: str
) -> None:
    ns = naming.namespace(gw)
    for env in naming.ENVIRONMENTS:
        local.ensure(gw, manifests.stage_route(INSTALLATION, gw, env, f"{env}.example.com"))
    before = requests_by_verb(emulator)
    deleted = local.delete_owned_all(gw, Kind.APISIX_ROUTE, ns)
    used = spent(before, requests_by_verb(emulator))
    assert len(deleted) == len(naming.ENVIRONMENTS)
    assert used == {"list": 1, "delete": len(deleted)}, used
    local.wait_until_gone(deleted, timeout=10)

    # A delete that fails (here a 503; also a uid that no longer matches, as the object
    # was replaced since the list) is done again from a fresh read.
    ref = ObjectRef.of(local.ensure(gw, manifests.service(INSTALLATION, gw)))
    emulator.faults([{"verb": "delete", "status": 503, "count": 1}])
    before = requests_by_verb(emulator)
    assert local.delete_owned_all(gw, Kind.SERVICE, ns) == [ref]
    assert spent(before, requests_by_verb(emulator)) == {"list": 1, "get": 1, "delete": 2}
    local.wait_until_gone(ref, timeout=10)
