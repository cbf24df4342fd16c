"""The embedded stack enforces deploy/worker.yaml's admission policy, over HTTP.

The stack's kubeconfig is the worker's ServiceAccount; its admin.kubeconfig is the
cluster's administrator, whom the policy leaves alone. Every write the worker makes in
any test passes the policy the product ships (tests/test_deletion.py and
tests/test_lifecycle.py run whole lives under it); here, through the official client,
what the worker does not own is refused as kube-apiserver refuses it.
"""

# The client's methods take models; plain manifests (dicts) work the same at runtime.
# mypy: disable-error-code="arg-type"

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from gatewayflow.domain import naming
from gatewayflow.settings import Settings
from tests.emulator_admin import cluster_admin

POLICY = "gatewayflow-worker-owns-what-it-writes"
DENIED = f"ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied request: "


@pytest.fixture
def worker(stack: Settings) -> Iterator[k8s.ApiClient]:
    """The official client as the worker: the kubeconfig the worker itself uses."""
    with k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(stack.kubeconfig), context="local"
    ) as api:
        yield api


@pytest.fixture
def admin(stack: Settings) -> Iterator[k8s.ApiClient]:
    with cluster_admin(stack) as api:
        yield api


def labelled(name: str, owner: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if owner is not None:
        metadata["labels"] = {naming.OWNER_LABEL: owner}
    return {"metadata": metadata}


def refusal(write: Callable[[], object]) -> dict[str, Any]:
    """The Status of a write the API server refuses."""
    with pytest.raises(ApiException) as refused:
        write()
    status: dict[str, Any] = json.loads(refused.value.body or "{}")
    return status


def test_the_worker_writes_its_own_namespace_and_what_it_holds(worker: k8s.ApiClient) -> None:
    """A Namespace reaches the policy with its own name as request.namespace and no
    namespaceObject: judged by its name and label, the worker's own goes through."""
    core = k8s.CoreV1Api(worker)
    gid = f"adm-{uuid.uuid4().hex[:8]}"
    ns = naming.namespace(gid)
    core.create_namespace(labelled(ns, gid))
    core.patch_namespace(ns, {"metadata": {"annotations": {"note": "patched"}}})
    core.create_namespaced_config_map(ns, labelled("settings", gid))
    core.patch_namespaced_config_map("settings", ns, {"data": {"k": "v"}})
    core.delete_namespaced_config_map("settings", ns)
    core.delete_namespace(ns)


def test_the_worker_cannot_write_what_it_does_not_own(
    worker: k8s.ApiClient, admin: k8s.ApiClient
) -> None:
    core, rbac = k8s.CoreV1Api(worker), k8s.RbacAuthorizationV1Api(worker)
    operator = k8s.CoreV1Api(admin)
    gid, other = f"adm-{uuid.uuid4().hex[:8]}", f"adm-{uuid.uuid4().hex[:8]}"
    ns, other_ns, theirs = naming.namespace(gid), naming.namespace(other), f"theirs-{gid}"
    core.create_namespace(labelled(ns, gid))
    # What others have: another gateway's namespace, an unlabelled namespace, and an
    # operator's ConfigMap in the worker's own namespace.
    operator.create_namespace(labelled(other_ns, other))
    operator.create_namespace(labelled(theirs))
    operator.create_namespaced_config_map(ns, labelled("operator-notes"))
    binding = {
        **labelled(f"{gid}-admin", gid),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "x"},
    }
    try:
        refused = {
            "an unlabelled object": lambda: core.create_namespaced_config_map(
                ns, labelled("unlabelled")
            ),
            "another gateway's namespace": lambda: core.create_namespaced_config_map(
                other_ns, labelled("mine", gid)
            ),
            "a namespace nobody labelled": lambda: core.create_namespaced_config_map(
                theirs, labelled("mine", gid)
            ),
            "a cluster-scoped object": lambda: rbac.create_cluster_role_binding(binding),
            "a namespace named for another label": lambda: core.create_namespace(
                labelled(naming.namespace(f"{gid}-x"), gid)
            ),
            "labelling a namespace": lambda: core.patch_namespace(
                theirs, {"metadata": {"labels": {naming.OWNER_LABEL: gid}}}
            ),
            "labelling an object": lambda: core.patch_namespaced_config_map(
                "operator-notes", ns, {"metadata": {"labels": {naming.OWNER_LABEL: gid}}}
            ),
            "deleting an unlabelled object": lambda: core.delete_namespaced_config_map(
                "operator-notes", ns
            ),
            "deleting a namespace nobody labelled": lambda: core.delete_namespace(theirs),
            "deleting a collection with an object not its own": lambda: (
                core.delete_collection_namespaced_config_map(ns)
            ),
        }
        for what, write in refused.items():
            status = refusal(write)
            assert (status["code"], status["reason"]) == (422, "Invalid"), (what, status)
            (cause,) = status["details"]["causes"]
            assert cause["message"].startswith(DENIED), (what, cause)
            assert status["message"].endswith(f"is forbidden: {cause['message']}"), what
        # Nothing of it happened.
        notes: Any = operator.read_namespaced_config_map("operator-notes", ns)
        assert notes.metadata.labels is None and notes.metadata.deletion_timestamp is None
        namespace: Any = operator.read_namespace(theirs)
        assert naming.OWNER_LABEL not in namespace.metadata.labels
        assert namespace.metadata.deletion_timestamp is None
        config_maps: Any = operator.list_namespaced_config_map(ns).items
        assert [cm.metadata.name for cm in config_maps] == ["operator-notes"]
        # The administrator is not the policy's concern.
        operator.patch_namespaced_config_map(
            "operator-notes", ns, {"metadata": {"labels": {"by": "operator"}}}
        )
    finally:
        operator.delete_namespace(ns)
        operator.delete_namespace(other_ns)
        operator.delete_namespace(theirs)
