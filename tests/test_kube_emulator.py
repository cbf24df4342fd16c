"""The Kubernetes API emulator, through the official Python client, over HTTP."""

# The client's models make every field Optional, its methods take models rather than the
# plain manifests used here, and its watch and dynamic modules are untyped: these tests
# check those values at runtime, so mypy's checks of them are off in this file.
# mypy: disable-error-code="arg-type,union-attr,index,no-untyped-call,no-any-return"

import http.client
import json
import signal
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch
from kubernetes.dynamic import DynamicClient

from tests.kube_fixtures import Emulator, status_of, wait_until

DELETE_DELAY = 0.2
READY_DELAY = 0.5
LABEL = "gatewayflow.dev/gateway"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = Emulator(
        tmp_path_factory.mktemp("kube"),
        "--regions",
        "local,eu",
        "--delete-delay",
        str(DELETE_DELAY),
        "--ready-delay",
        str(READY_DELAY),
    ).start()
    yield emulator
    assert emulator.stop() == 0


@pytest.fixture(autouse=True)
def _reset(emulator: Emulator) -> Iterator[None]:
    yield
    emulator.request("DELETE", "/_admin/faults")
    emulator.request(
        "PUT", "/_admin/config", {"deleteDelay": DELETE_DELAY, "readyDelay": READY_DELAY}
    )


@pytest.fixture(scope="module")
def core(emulator: Emulator) -> client.CoreV1Api:
    return client.CoreV1Api(emulator.api("local"))


@pytest.fixture(scope="module")
def apps(emulator: Emulator) -> client.AppsV1Api:
    return client.AppsV1Api(emulator.api("local"))


def namespace(core: client.CoreV1Api, name: str) -> str:
    core.create_namespace({"metadata": {"name": name}})
    return name


def config_map(name: str, labels: dict[str, str] | None = None, **metadata: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}, **metadata}, "data": {"k": "v"}}


def deployment(name: str, replicas: int = 2) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name, "labels": {LABEL: name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "runtime:1"}]},
            },
        },
    }


def error_of(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(client.ApiException) as caught:
        call(*args, **kwargs)
    status = status_of(caught.value)
    assert status["kind"] == "Status" and status["status"] == "Failure"
    assert status["code"] == caught.value.status
    return status


def is_gone(call: Any, *args: Any) -> bool:
    try:
        call(*args)
    except client.ApiException as error:
        return error.status == 404
    return False


def is_available(apps: client.AppsV1Api, name: str, ns: str) -> bool:
    dep = apps.read_namespaced_deployment(name, ns)
    available = next(c for c in dep.status.conditions if c.type == "Available")
    return (
        dep.status.observed_generation == dep.metadata.generation
        and (dep.status.available_replicas or 0) == dep.spec.replicas
        and available.status == "True"
    )


def test_health_and_discovery(emulator: Emulator) -> None:
    assert emulator.request("GET", "/healthz") == "ok"
    assert emulator.request("GET", "/clusters/local/version")["minor"] == "32"
    apps_v1 = emulator.request("GET", "/clusters/local/apis/apps/v1")
    deploy = next(r for r in apps_v1["resources"] if r["name"] == "deployments")
    assert deploy["kind"] == "Deployment" and deploy["namespaced"] is True
    assert deploy["shortNames"] == ["deploy"] and "watch" in deploy["verbs"]
    groups = {g["name"] for g in emulator.request("GET", "/clusters/local/apis")["groups"]}
    assert {"apps", "batch", "apisix.apache.org", "cert-manager.io"} <= groups


def test_create_get_replace_and_status_codes(core: client.CoreV1Api) -> None:
    ns = namespace(core, "crud")
    created = core.create_namespaced_config_map(ns, config_map("c", {LABEL: "g1"}))
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.metadata.labels == {LABEL: "g1"}
    read = core.read_namespaced_config_map("c", ns)
    assert read.metadata.resource_version == created.metadata.resource_version

    exists = error_of(core.create_namespaced_config_map, ns, config_map("c"))
    assert (exists["code"], exists["reason"]) == (409, "AlreadyExists")
    assert exists["details"] == {"name": "c", "kind": "configmaps"}
    missing = error_of(core.read_namespaced_config_map, "nope", ns)
    assert (missing["code"], missing["reason"]) == (404, "NotFound")
    assert missing["message"] == 'configmaps "nope" not found'
    bad_name = error_of(core.create_namespaced_config_map, ns, config_map("Bad_Name"))
    assert (bad_name["code"], bad_name["reason"]) == (422, "Invalid")
    assert bad_name["details"]["causes"][0]["field"] == "metadata.name"
    no_name = error_of(core.create_namespaced_config_map, ns, {"data": {}})
    assert (no_name["code"], no_name["reason"]) == (422, "Invalid")
    bad_ns = error_of(core.create_namespace, {"metadata": {"name": "has.dot"}})
    assert bad_ns["code"] == 422
    bad_label = error_of(core.create_namespaced_config_map, ns, config_map("l", {"a": "b c"}))
    assert bad_label["code"] == 422
    no_ns = error_of(core.create_namespaced_config_map, "absent", config_map("c"))
    assert (no_ns["code"], no_ns["reason"]) == (404, "NotFound")
    assert no_ns["details"] == {"name": "absent", "kind": "namespaces"}

    read.data = {"k": "v2"}
    replaced = core.replace_namespaced_config_map("c", ns, read)
    assert int(replaced.metadata.resource_version) > int(read.metadata.resource_version)
    read.data = {"k": "stale"}  # still carries the old resourceVersion
    stale = error_of(core.replace_namespaced_config_map, "c", ns, read)
    assert (stale["code"], stale["reason"]) == (409, "Conflict")
    assert core.read_namespaced_config_map("c", ns).data == {"k": "v2"}


def test_patch_formats_and_generation(core: client.CoreV1Api, apps: client.AppsV1Api) -> None:
    ns = namespace(core, "patching")
    core.create_namespaced_config_map(ns, config_map("c"))
    merged = core.patch_namespaced_config_map("c", ns, {"data": {"k": None, "n": "1"}})
    assert merged.data == {"n": "1"}
    json_patched = core.patch_namespaced_config_map(
        "c", ns, [{"op": "add", "path": "/data/m", "value": "2"}]
    )
    assert json_patched.data == {"n": "1", "m": "2"}
    stale = {"metadata": {"resourceVersion": "1"}, "data": {"x": "y"}}
    assert error_of(core.patch_namespaced_config_map, "c", ns, stale)["code"] == 409

    dep = apps.create_namespaced_deployment(ns, deployment("web"))
    assert dep.metadata.generation == 1
    relabeled = apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"x": "1"}}})
    assert relabeled.metadata.generation == 1
    rescaled = apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 3}})
    assert rescaled.metadata.generation == 2
    scale = apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 1}})
    assert scale.spec.replicas == 1
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 1


def test_secret_string_data_is_stored_as_data(core: client.CoreV1Api) -> None:
    ns = namespace(core, "secrets")
    secret = core.create_namespaced_secret(
        ns, {"metadata": {"name": "db"}, "stringData": {"password": "s3cret"}}
    )
    assert secret.data == {"password": "czNjcmV0"} and secret.type == "Opaque"
    assert secret.string_data is None


def test_label_and_field_selectors(core: client.CoreV1Api) -> None:
    for ns, gateway in (("sel-a", "a"), ("sel-b", "b")):
        namespace(core, ns)
        core.create_namespaced_config_map(ns, config_map("one", {LABEL: gateway, "tier": "x"}))
        core.create_namespaced_config_map(ns, config_map("two", {LABEL: gateway}))

    def names(**selectors: str) -> set[str]:
        items = core.list_config_map_for_all_namespaces(**selectors).items
        return {
            f"{c.metadata.namespace}/{c.metadata.name}"
            for c in items
            if c.metadata.namespace.startswith("sel-")
        }

    assert names(label_selector=f"{LABEL}=a") == {"sel-a/one", "sel-a/two"}
    assert names(label_selector=f"{LABEL}==b,tier") == {"sel-b/one"}
    assert names(label_selector=f"{LABEL}!=a") == {"sel-b/one", "sel-b/two"}
    assert names(label_selector=f"{LABEL} in (a, b),!tier") == {"sel-a/two", "sel-b/two"}
    assert names(label_selector=f"{LABEL} notin (a)") == {"sel-b/one", "sel-b/two"}
    assert names(field_selector="metadata.name=two") == {"sel-a/two", "sel-b/two"}
    assert names(field_selector="metadata.namespace=sel-b,metadata.name!=two") == {"sel-b/one"}
    in_a = core.list_namespaced_config_map("sel-a", label_selector="tier=x").items
    assert [c.metadata.name for c in in_a] == ["one"]
    bad = error_of(core.list_config_map_for_all_namespaces, label_selector="a in b")
    assert bad["code"] == 400


def test_delete_is_asynchronous(emulator: Emulator, core: client.CoreV1Api) -> None:
    ns = namespace(core, "async-delete")
    core.create_namespaced_config_map(ns, config_map("c"))
    core.create_namespaced_config_map(ns, config_map("fg"))
    emulator.request("PUT", "/_admin/config", {"deleteDelay": 0.5})
    started = time.monotonic()
    deleted = core.delete_namespaced_config_map("c", ns)
    assert deleted["status"] == "Success" and deleted["details"]["name"] == "c"
    assert core.read_namespaced_config_map("c", ns).metadata.deletion_timestamp is not None
    wait_until(lambda: is_gone(core.read_namespaced_config_map, "c", ns))
    assert time.monotonic() - started > 0.4

    # Something still holds the object (here a foreground deletion): the answer is the object.
    options = client.V1DeleteOptions(propagation_policy="Foreground", grace_period_seconds=0)
    held = core.delete_namespaced_config_map("fg", ns, body=options)
    assert held["metadata"]["deletionTimestamp"]
    assert held["metadata"]["deletionGracePeriodSeconds"] == 0
    bad = error_of(core.delete_namespaced_config_map, "x", ns, propagation_policy="Sometimes")
    assert (bad["code"], bad["reason"]) == (400, "BadRequest")


def test_finalizers_hold_deletion(core: client.CoreV1Api) -> None:
    ns = namespace(core, "finalizers")
    core.create_namespaced_config_map(ns, config_map("held", finalizers=["example.com/keep"]))
    core.delete_namespaced_config_map("held", ns)
    time.sleep(DELETE_DELAY * 3)
    held = core.read_namespaced_config_map("held", ns)
    assert held.metadata.deletion_timestamp and held.metadata.finalizers == ["example.com/keep"]
    more = {"metadata": {"finalizers": ["example.com/keep", "example.com/more"]}}
    assert error_of(core.patch_namespaced_config_map, "held", ns, more)["code"] == 422
    core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})
    wait_until(lambda: is_gone(core.read_namespaced_config_map, "held", ns))


def test_namespace_terminates_its_contents_then_goes(
    emulator: Emulator, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    ns = namespace(core, "terminating")
    apps.create_namespaced_deployment(ns, deployment("web"))
    core.create_namespaced_config_map(ns, config_map("held", finalizers=["example.com/keep"]))
    assert core.read_namespace(ns).status.phase == "Active"
    core.delete_namespace(ns)
    assert core.read_namespace(ns).status.phase == "Terminating"
    forbidden = error_of(core.create_namespaced_config_map, ns, config_map("late"))
    assert (forbidden["code"], forbidden["reason"]) == (403, "Forbidden")
    assert "being terminated" in forbidden["message"]
    wait_until(lambda: is_gone(apps.read_namespaced_deployment, "web", ns))
    time.sleep(DELETE_DELAY * 2)
    assert core.read_namespace(ns).status.phase == "Terminating"  # the finalizer holds it
    core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": []}})
    wait_until(lambda: is_gone(core.read_namespace, ns))
    removed = [
        (e["kind"], e["name"])
        for e in emulator.oplog()
        if e["verb"] == "removed" and ns in (e["namespace"], e["name"])
    ]
    assert removed[-1] == ("Namespace", ns)
    assert {("Deployment", "web"), ("ConfigMap", "held")} <= set(removed)


def test_deployment_readiness_and_rolling_update(
    emulator: Emulator, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    ns = namespace(core, "rollout")
    created = apps.create_namespaced_deployment(ns, deployment("web", replicas=2))
    assert not created.status.available_replicas
    assert created.status.replicas == 2
    wait_until(lambda: is_available(apps, "web", ns))
    ready = apps.read_namespaced_deployment("web", ns).status
    assert (ready.ready_replicas, ready.updated_replicas) == (2, 2)

    restart = {"spec": {"template": {"metadata": {"annotations": {"restartedAt": "now"}}}}}
    rolled = apps.patch_namespaced_deployment("web", ns, restart)
    assert rolled.metadata.generation == 2 and rolled.status.observed_generation == 2
    assert not rolled.status.available_replicas
    assert [c.status for c in rolled.status.conditions if c.type == "Available"] == ["False"]
    wait_until(lambda: is_available(apps, "web", ns))

    emulator.request("PUT", "/_admin/config", {"readyDelay": -1})
    apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 3}})
    time.sleep(READY_DELAY * 2)
    assert not is_available(apps, "web", ns)
    emulator.request("PUT", "/_admin/config", {"readyDelay": 0})
    wait_until(lambda: is_available(apps, "web", ns))


def test_watch_streams_changes(core: client.CoreV1Api) -> None:
    ns = namespace(core, "watching")
    core.create_namespaced_config_map(ns, config_map("before", {"w": "1"}))
    listed = core.list_namespaced_config_map(ns)
    core.create_namespaced_config_map(ns, config_map("c", {"w": "1"}))
    core.patch_namespaced_config_map("c", ns, {"data": {"k": "2"}})
    core.patch_namespaced_config_map("c", ns, {"metadata": {"labels": {"w": None}}})
    core.delete_namespaced_config_map("before", ns)
    events = []
    started = time.monotonic()
    for event in watch.Watch().stream(
        core.list_namespaced_config_map,
        ns,
        label_selector="w=1",
        resource_version=listed.metadata.resource_version,
        timeout_seconds=1,
    ):
        events.append((event["type"], event["object"].metadata.name))
    assert time.monotonic() - started < 3
    assert events[:4] == [
        ("ADDED", "c"),
        ("MODIFIED", "c"),
        ("DELETED", "c"),  # the label no longer matches the selector
        ("MODIFIED", "before"),  # deletionTimestamp set
    ]
    assert events[4:] == [("DELETED", "before")]


def test_watch_sends_bookmarks_and_ends_at_its_timeout(core: client.CoreV1Api) -> None:
    ns = namespace(core, "bookmarked")
    core.create_namespaced_config_map(ns, config_map("c"))
    listed = core.list_namespaced_config_map(ns)
    core.create_namespaced_config_map(ns, config_map("d"))
    started = time.monotonic()
    events = [
        (event["type"], event["raw_object"])
        for event in watch.Watch().stream(
            core.list_namespaced_config_map,
            ns,
            resource_version=listed.metadata.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=2,
        )
    ]
    assert 2 <= time.monotonic() - started < 4
    assert events[0][0] == "ADDED" and events[0][1]["metadata"]["name"] == "d"
    bookmarks = [obj for kind, obj in events if kind == "BOOKMARK"]
    assert bookmarks, "a quiet watch with allowWatchBookmarks sends bookmarks"
    latest = core.list_namespace().metadata.resource_version
    assert bookmarks[-1]["kind"] == "ConfigMap"
    assert int(bookmarks[-1]["metadata"]["resourceVersion"]) <= int(latest)
    assert int(bookmarks[-1]["metadata"]["resourceVersion"]) >= int(
        events[0][1]["metadata"]["resourceVersion"]
    )
    # Without allowWatchBookmarks, no bookmark.
    quiet = watch.Watch().stream(
        core.list_namespaced_config_map,
        ns,
        resource_version=latest,
        timeout_seconds=1,
    )
    assert [event["type"] for event in quiet] == []


def test_deletecollection_by_label(core: client.CoreV1Api) -> None:
    ns = namespace(core, "collection")
    for name, gateway in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        core.create_namespaced_config_map(ns, config_map(name, {LABEL: gateway}))
    core.delete_collection_namespaced_config_map(ns, label_selector=f"{LABEL}=a")
    wait_until(
        lambda: [c.metadata.name for c in core.list_namespaced_config_map(ns).items] == ["b1"]
    )


def test_custom_resources_and_cronjobs(emulator: Emulator, core: client.CoreV1Api) -> None:
    ns = namespace(core, "custom")
    api = emulator.api("local")
    custom = client.CustomObjectsApi(api)
    route = {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixRoute",
        "metadata": {"name": "r1", "labels": {LABEL: "g"}},
        "spec": {"http": []},
    }
    custom.create_namespaced_custom_object("apisix.apache.org", "v2", ns, "apisixroutes", route)
    patched = custom.patch_namespaced_custom_object(
        "apisix.apache.org", "v2", ns, "apisixroutes", "r1", {"spec": {"http": [{"name": "x"}]}}
    )
    assert patched["metadata"]["generation"] == 2
    listed = custom.list_cluster_custom_object(
        "apisix.apache.org", "v2", "apisixroutes", label_selector=f"{LABEL}=g"
    )
    assert [r["metadata"]["name"] for r in listed["items"]] == ["r1"]

    dynamic = DynamicClient(api)
    certificates = dynamic.resources.get(api_version="cert-manager.io/v1", kind="Certificate")
    certificates.create(
        namespace=ns,
        body={
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": {"name": "custom-domain"},
            "spec": {"secretName": "tls"},
        },
    )
    assert certificates.get(namespace=ns, name="custom-domain").spec.secretName == "tls"
    tls = dynamic.resources.get(api_version="apisix.apache.org/v2", kind="ApisixTls")
    assert tls.get(namespace=ns).items == []

    batch = client.BatchV1Api(api)
    batch.create_namespaced_cron_job(
        ns,
        {
            "metadata": {"name": "g-trigger-1"},
            "spec": {
                "schedule": "*/5 * * * *",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [{"name": "t", "image": "curl"}],
                                "restartPolicy": "Never",
                            }
                        }
                    }
                },
            },
        },
    )
    suspended = batch.patch_namespaced_cron_job("g-trigger-1", ns, {"spec": {"suspend": True}})
    assert suspended.spec.suspend is True


def test_fault_429_carries_retry_after(emulator: Emulator, core: client.CoreV1Api) -> None:
    ns = namespace(core, "faults")
    once = {"verb": "list", "kind": "ConfigMap", "status": 429, "retryAfter": 1, "count": 1}
    emulator.request("PUT", "/_admin/faults", {"seed": 1, "rules": [once]})
    no_retries = client.CoreV1Api(emulator.api("local", retries=False))
    with pytest.raises(client.ApiException) as caught:
        no_retries.list_namespaced_config_map(ns)
    assert caught.value.status == 429
    assert caught.value.headers["Retry-After"] == "1"
    assert status_of(caught.value)["reason"] == "TooManyRequests"
    no_retries.list_namespace()  # other verbs and kinds are untouched
    assert emulator.request("GET", "/_admin/faults")["rules"][0]["injected"] == 1

    # The client's default urllib3 retries wait out a 429 that carries Retry-After.
    emulator.request("PUT", "/_admin/faults", {"seed": 1, "rules": [once]})
    started = time.monotonic()
    assert core.list_namespaced_config_map(ns).items == []
    assert time.monotonic() - started >= 1
    assert emulator.request("GET", "/_admin/faults")["rules"][0]["injected"] == 1


def test_faults_are_reproducible_with_a_seed(emulator: Emulator, core: client.CoreV1Api) -> None:
    ns = namespace(core, "seeded")
    core.create_namespaced_config_map(ns, config_map("c"))
    faults = {"seed": 42, "rules": [{"verb": "get", "rate": 0.5, "status": 503}]}

    def outcomes() -> list[int]:
        emulator.request("PUT", "/_admin/faults", faults)
        codes = []
        for _ in range(20):
            try:
                core.read_namespaced_config_map("c", ns)
                codes.append(200)
            except client.ApiException as error:
                codes.append(error.status)
        return codes

    first = outcomes()
    assert first == outcomes()
    assert set(first) == {200, 503}


def test_fault_latency_and_dropped_connections(emulator: Emulator, core: client.CoreV1Api) -> None:
    emulator.request(
        "PUT",
        "/_admin/faults",
        {
            "rules": [
                {"verb": "list", "kind": "Namespace", "latency": 0.4, "count": 1},
                {"verb": "get", "kind": "Namespace", "drop": True},
            ]
        },
    )
    started = time.monotonic()
    core.list_namespace()
    assert time.monotonic() - started >= 0.4
    host = urllib.parse.urlsplit(emulator.url).netloc
    connection = http.client.HTTPConnection(host, timeout=5)
    connection.request("GET", "/clusters/local/api/v1/namespaces/default")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        connection.getresponse()
    bad = {"rules": [{"verb": "fly"}]}
    with pytest.raises(Exception, match="400"):
        emulator.request("PUT", "/_admin/faults", bad)


def test_oplog_records_calls_and_removals_in_order(
    emulator: Emulator, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    emulator.request("DELETE", "/_admin/oplog?region=local")
    ns = namespace(core, "oplog")
    apps.create_namespaced_deployment(ns, deployment("web"))
    core.create_namespaced_config_map(ns, config_map("cfg", {LABEL: "web"}))
    apps.delete_namespaced_deployment("web", ns)
    wait_until(lambda: is_gone(apps.read_namespaced_deployment, "web", ns))
    core.patch_namespaced_config_map("cfg", ns, {"data": {"k": "2"}})
    core.patch_namespaced_config_map("cfg", ns, {"data": {"k": "2"}})  # a no-op: not logged
    core.delete_namespaced_config_map("cfg", ns)
    entries = emulator.oplog("local")
    assert [(e["verb"], e["kind"], e["name"]) for e in entries] == [
        ("create", "Namespace", ns),
        ("create", "Deployment", "web"),
        ("create", "ConfigMap", "cfg"),
        ("delete", "Deployment", "web"),
        ("removed", "Deployment", "web"),
        ("patch", "ConfigMap", "cfg"),
        ("delete", "ConfigMap", "cfg"),
    ]
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    assert entries[2]["labels"] == {LABEL: "web"} and entries[2]["namespace"] == ns
    assert {e["region"] for e in entries} == {"local"}


def test_regions_are_independent_clusters(emulator: Emulator) -> None:
    local = client.CoreV1Api(emulator.api("local"))
    eu = client.CoreV1Api(emulator.api("eu"))
    local.create_namespace({"metadata": {"name": "regional"}})
    assert is_gone(eu.read_namespace, "regional")
    eu_ns = eu.create_namespace({"metadata": {"name": "regional"}})
    assert eu_ns.metadata.uid != local.read_namespace("regional").metadata.uid
    eu.delete_namespace("regional")
    wait_until(lambda: is_gone(eu.read_namespace, "regional"))
    assert local.read_namespace("regional").status.phase == "Active"
    assert [e["name"] for e in emulator.oplog("eu") if e["verb"] == "removed"] == ["regional"]


def test_state_survives_restarts(tmp_path: Path) -> None:
    emulator = Emulator(tmp_path, "--regions", "local").start()
    try:
        core = client.CoreV1Api(emulator.api())
        ns = core.create_namespace({"metadata": {"name": "kept"}})
        core.create_namespaced_config_map("kept", config_map("c", {LABEL: "g"}))
        version = core.list_namespaced_config_map("kept").metadata.resource_version
        assert emulator.stop(signal.SIGKILL) == -signal.SIGKILL  # as a crash would

        emulator.start()
        core = client.CoreV1Api(emulator.api())
        assert core.read_namespace("kept").metadata.uid == ns.metadata.uid
        kept = core.read_namespaced_config_map("c", "kept")
        assert kept.metadata.labels == {LABEL: "g"}
        newer = core.create_namespaced_config_map("kept", config_map("d"))
        assert int(newer.metadata.resource_version) > int(version)
        names = [c.metadata.name for c in core.list_namespaced_config_map("kept").items]
        assert names == ["c", "d"]

        with pytest.raises(client.ApiException) as caught:  # history older than the restart
            list(
                watch.Watch().stream(
                    core.list_namespaced_config_map, "kept", resource_version="1", timeout_seconds=1
                )
            )
        assert caught.value.status == 410
        assert emulator.stop(signal.SIGTERM) == 0

        emulator.start()  # a clean stop keeps everything too
        core = client.CoreV1Api(emulator.api())
        names = [c.metadata.name for c in core.list_namespaced_config_map("kept").items]
        assert names == ["c", "d"]
        assert emulator.stop(signal.SIGTERM) == 0
    finally:
        if not emulator.process_exited():
            emulator.stop(signal.SIGKILL)


def test_sigkill_in_the_middle_of_writes_keeps_every_answered_write(tmp_path: Path) -> None:
    """Writes go to an append-only log, folded into a snapshot every ~1,000 lines: a
    kill at any moment (here while a writer keeps going, after at least one compaction)
    loses no write the emulator has answered, and a torn last line does not stop it."""
    emulator = Emulator(tmp_path, "--regions", "local").start()
    try:
        core = client.CoreV1Api(emulator.api(retries=False))
        core.create_namespace({"metadata": {"name": "busy"}})
        core.create_namespaced_config_map("busy", config_map("counter"))
        created: list[str] = []
        counted = 0
        stop = threading.Event()

        def write() -> None:
            nonlocal counted
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    core.create_namespaced_config_map("busy", config_map(f"c{n}"))
                    created.append(f"c{n}")
                    core.patch_namespaced_config_map("counter", "busy", {"data": {"n": str(n)}})
                    counted = n
                except (client.ApiException, OSError, urllib3.exceptions.HTTPError):
                    return  # the emulator is gone

        writer = threading.Thread(target=write)
        writer.start()
        wait_until(lambda: len(created) >= 700, timeout=60)
        snapshot = json.loads((tmp_path / "kube" / "local.json").read_text())
        assert snapshot["resourceVersion"] > 2, "a compaction ran while the writer wrote"
        assert emulator.stop(signal.SIGKILL) == -signal.SIGKILL
        stop.set()
        writer.join(timeout=10)
        acknowledged, last_count = list(created), counted

        emulator.start()
        core = client.CoreV1Api(emulator.api())
        kept = {c.metadata.name for c in core.list_namespaced_config_map("busy").items}
        assert set(acknowledged) <= kept
        assert int(core.read_namespaced_config_map("counter", "busy").data["n"]) >= last_count
        core.create_namespaced_config_map("busy", config_map("after"))  # it still writes
        assert emulator.stop(signal.SIGTERM) == 0
    finally:
        if not emulator.process_exited():
            emulator.stop(signal.SIGKILL)


def test_faults_file_applies_from_the_start(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    rule = {"verb": "create", "kind": "Namespace", "status": 500}
    faults.write_text(json.dumps({"seed": 3, "rules": [rule]}))
    emulator = Emulator(tmp_path / "home", "--faults", str(faults)).start()
    try:
        core = client.CoreV1Api(emulator.api())
        failed = error_of(core.create_namespace, {"metadata": {"name": "x"}})
        assert (failed["code"], failed["reason"]) == (500, "InternalError")
        assert emulator.request("GET", "/_admin/faults")["seed"] == 3
    finally:
        assert emulator.stop() == 0


POLICIES = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: no-red}
spec:
  matchConstraints:
    resourceRules:
      - {apiGroups: ["", "apps"], apiVersions: ["*"], resources: ["*"], operations: ["*"]}
  matchConditions:
    - {name: not-the-admin, expression: "request.userInfo.username != 'kubernetes-admin'"}
  variables:
    - {name: target, expression: "request.operation == 'DELETE' ? oldObject : object"}
  validations:
    - expression: "!has(variables.target.metadata.labels) ||
        !('color' in variables.target.metadata.labels) ||
        variables.target.metadata.labels.color != 'red'"
      messageExpression: "'no red in ' + request.namespace"
      reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: no-red-anywhere}
spec: {policyName: no-red, validationActions: [Deny]}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: not-blue}
spec:
  matchConstraints:
    resourceRules:
      - {apiGroups: [""], apiVersions: ["v1"], resources: ["configmaps"], operations: [CREATE]}
  validations:
    - {expression: "object.data.k != 'blue'", message: blue is discouraged}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: not-blue-warn}
spec: {policyName: not-blue, validationActions: [Warn]}
"""


@pytest.fixture(scope="module")
def policed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """An emulator whose kubeconfig is a developer, under the policies above."""
    home = tmp_path_factory.mktemp("policed")
    (home / "policies.yaml").write_text(POLICIES)
    emulator = Emulator(
        home, "--admission-policy", str(home / "policies.yaml"), "--user", "dev"
    ).start()
    yield emulator
    assert emulator.stop() == 0


def test_admission_policies_judge_every_write_of_their_user(policed: Emulator) -> None:
    dev = client.CoreV1Api(policed.api())
    admin_api = policed.api(admin=True)
    admin = client.CoreV1Api(admin_api)
    ns = namespace(dev, "paint")
    red = config_map("red", {"color": "red"})
    # The validation's reason and messageExpression make the API server's answer.
    status = error_of(dev.create_namespaced_config_map, ns, red)
    cause = "ValidatingAdmissionPolicy 'no-red' with binding 'no-red-anywhere' denied request"
    assert (status["code"], status["reason"]) == (403, "Forbidden")
    assert status["message"] == f'configmaps "red" is forbidden: {cause}: no red in paint'
    assert status["details"] == {
        "name": "red",
        "kind": "configmaps",
        "causes": [{"message": f"{cause}: no red in paint"}],
    }
    # The admin is not matched; then the developer may neither delete nor relabel it, and a
    # deletecollection that takes it along is refused as a whole.
    admin.create_namespaced_config_map(ns, red)
    dev.create_namespaced_config_map(ns, config_map("green", {"color": "green"}))
    assert error_of(dev.delete_namespaced_config_map, "red", ns)["code"] == 403
    recolor = {"metadata": {"labels": {"color": "red"}}}
    assert error_of(dev.patch_namespaced_config_map, "green", ns, recolor)["code"] == 403
    assert error_of(dev.delete_collection_namespaced_config_map, ns)["code"] == 403
    listed = dev.list_namespaced_config_map(ns).items
    assert {cm.metadata.name: cm.metadata.deletion_timestamp for cm in listed} == {
        "green": None,
        "red": None,
    }
    # `resources: ["*"]` names no subresource: scaling a red Deployment is not judged.
    apps = client.AppsV1Api(policed.api())
    red_deployment = deployment("crimson")
    red_deployment["metadata"]["labels"]["color"] = "red"
    client.AppsV1Api(admin_api).create_namespaced_deployment(ns, red_deployment)
    apps.patch_namespaced_deployment_scale("crimson", ns, {"spec": {"replicas": 3}})
    assert error_of(apps.delete_namespaced_deployment, "crimson", ns)["code"] == 403
    # Warn: admitted, with a Warning header.
    _, code, headers = dev.create_namespaced_config_map_with_http_info(
        ns, {"metadata": {"name": "sky"}, "data": {"k": "blue"}}
    )
    assert code == 201
    assert headers["Warning"] == (
        "299 - \"Validation failed for ValidatingAdmissionPolicy 'not-blue' with binding "
        "'not-blue-warn': blue is discouraged\""
    )
    admin.delete_namespace(ns)
    admin_api.close()


def test_a_token_nobody_was_given_is_unauthorized(policed: Emulator) -> None:
    configuration = client.Configuration()
    configuration.host = f"{policed.url}/clusters/local"
    configuration.api_key = {"authorization": "Bearer not-a-token"}
    with client.ApiClient(configuration) as api:
        status = error_of(client.CoreV1Api(api).list_namespace)
    assert (status["code"], status["reason"]) == (401, "Unauthorized")
