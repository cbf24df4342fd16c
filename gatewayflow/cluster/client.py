"""One region's Kubernetes API, as the idempotent operations the activities need.

Synchronous on purpose: activities run in a thread pool, and one `Cluster` (one pooled
`ApiClient`) is shared by all of them. Only objects carrying the gateway's ownership label
are ever patched or deleted.
"""

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import urllib3
from kubernetes import config
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

from gatewayflow.cluster.errors import (
    ClusterError,
    NotOwnedError,
    NotReadyError,
    PermanentClusterError,
    StillPresentError,
    TransientClusterError,
    classify,
)
from gatewayflow.cluster.kinds import NAMESPACED_KINDS, ForeignObject, Kind, ObjectRef, Resource
from gatewayflow.domain.naming import OWNER_LABEL, owner_selector

log = logging.getLogger(__name__)

T = TypeVar("T")
Manifest = dict[str, Any]
OnWait = Callable[[str], None]

MERGE_PATCH = "application/merge-patch+json"
# The context name that means "this pod's own cluster and ServiceAccount".
IN_CLUSTER = "in-cluster"
# Lists answered as metadata only, with plain JSON as the fallback of servers without it.
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
# Namespaced kinds that are records about a namespace, not content someone put there.
_NOT_CONTENT = frozenset({"Event", "Binding", "LocalSubjectAccessReview"})


def labels_of(obj: Manifest) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def is_owned(gateway_id: str, obj: Manifest) -> bool:
    return labels_of(obj).get(OWNER_LABEL) == gateway_id


def is_terminating(obj: Manifest) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


_FIRST_POLL = 0.02


class Cluster:
    """The API of one cluster (one kubeconfig context).

    Each public operation is idempotent and is retried here a few times on transient errors
    with a short backoff (honouring a short Retry-After); longer retries belong to the
    activity retry policy, so a transient error still ends up raised after that.
    """

    def __init__(
        self,
        kubeconfig: Path,
        context: str,
        *,
        attempts: int = 3,
        backoff: float = 0.2,
        max_inline_wait: float = 5.0,
        request_timeout: float = 30.0,
        pool_size: int = 32,
    ):
        self.context = context
        self._kubeconfig = kubeconfig
        self._pool_size = pool_size
        self._attempts = attempts
        self._backoff = backoff
        self._max_inline_wait = max_inline_wait
        self._request_timeout = request_timeout
        self._reload_lock = threading.Lock()
        self._api: ApiClient = self._connect()

    def _connect(self) -> ApiClient:
        """A client with credentials read now: from the kubeconfig, or the pod's own
        ServiceAccount for the context `in-cluster` (the official in-cluster loader, which
        also re-reads the projected token as it is rotated)."""
        configuration = Configuration()
        configuration.connection_pool_maxsize = self._pool_size
        # urllib3 would otherwise sleep through any Retry-After of a 429/503 by itself,
        # unseen and unbounded; the adapter decides how long to wait.
        configuration.retries = urllib3.Retry(total=2, respect_retry_after_header=False)
        try:
            if self.context == IN_CLUSTER:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=str(self._kubeconfig),
                    context=self.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except Exception as exc:
            where = "the pod's ServiceAccount" if self.context == IN_CLUSTER else self._kubeconfig
            raise classify(exc, during=f"context {self.context!r} of {where}") from exc
        return ApiClient(configuration)

    def _reload(self, stale: ApiClient) -> None:
        """Read the credentials again after a 401 (an expired or rotated token); once per
        stale client, however many threads met the 401."""
        with self._reload_lock:
            if self._api is stale:
                log.info("%s: 401 Unauthorized; reloading credentials", self.context)
                self._api = self._connect()

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        return f"Cluster(context={self.context!r}, host={self._api.configuration.host!r})"

    # -- operations ---------------------------------------------------------------------

    def ensure(self, gateway_id: str, manifest: Manifest) -> Manifest:
        """Create the object if missing; an existing one must be this gateway's.

        Returns the live object. An owned object that is still being deleted is a
        transient error: creating it again must wait until it is gone.
        """
        ref = self._owned_manifest_ref(gateway_id, manifest)
        return self._retrying(lambda: self._ensure(gateway_id, ref, manifest))

    def apply(self, gateway_id: str, manifest: Manifest) -> Manifest:
        """Create the object, or merge-patch an owned one to the manifest's labels,
        annotations and body (spec, data, ...). Used for suspend/resume and rolling updates.
        """
        ref = self._owned_manifest_ref(gateway_id, manifest)
        return self._retrying(lambda: self._apply(gateway_id, ref, manifest))

    def get(self, ref: ObjectRef) -> Manifest | None:
        return self._retrying(lambda: self._get(ref))

    def delete_owned(self, gateway_id: str, ref: ObjectRef) -> bool:
        """Request deletion of an object of this gateway.

        False when it is already gone; `NotOwnedError` (and nothing deleted) when it lacks
        the gateway's label. Deletion is asynchronous: see `wait_until_gone`.
        """
        return self._retrying(lambda: self._delete_owned(gateway_id, ref))

    def list_owned(
        self, gateway_id: str, kind: Kind, namespace: str | None = None
    ) -> list[Manifest]:
        """Objects of `kind` with the gateway's label, in one namespace or in all of them."""
        items = self._retrying(lambda: self._list(kind, namespace, owner_selector(gateway_id)))
        # Checked again here: deletion must not depend on the server's label selector alone.
        return [obj for obj in items if is_owned(gateway_id, obj)]

    def owned_refs(
        self, gateway_id: str, kind: Kind, namespace: str | None = None
    ) -> list[ObjectRef]:
        """What `list_owned` finds, read as metadata only (no Secret data): for audits."""
        path = kind.collection_path(namespace)
        items = self._retrying(partial(self._list_metadata, path, owner_selector(gateway_id)))
        return [_ref_of(kind, obj) for obj in items if is_owned(gateway_id, obj)]

    def gateway_namespaces(self) -> dict[str, str]:
        """Namespace name -> owning gateway id of every Namespace carrying the ownership
        label, found by label selector (no list of every namespace)."""
        path = Kind.NAMESPACE.collection_path()
        items = self._retrying(partial(self._list_metadata, path, OWNER_LABEL))
        return {obj["metadata"]["name"]: labels_of(obj)[OWNER_LABEL] for obj in items}

    def list_all(self, kind: Kind, namespace: str | None = None) -> list[Manifest]:
        return self._retrying(lambda: self._list(kind, namespace, None))

    def foreign_objects(self, gateway_id: str, namespace: str) -> list[ForeignObject]:
        """Objects in the namespace without the gateway's label, which deleting the
        namespace would destroy, of every kind the server serves (API discovery, as
        `kubectl api-resources --namespaced --verbs=list`), not only the kinds we create.

        Not counted: what Kubernetes itself puts in every namespace, events, and objects
        a controller made for an owner in the same namespace (ownerReferences: Pods of a
        Deployment, Jobs of a CronJob), which are judged by that owner.
        Only metadata is read: no Secret data.
        """
        listed = [
            (resource.kind, obj)
            for resource in self._retrying(self._namespaced_resources)
            for obj in self._retrying(
                partial(self._list_metadata, resource.collection_path(namespace))
            )
        ]
        here = {obj["metadata"].get("uid") for _, obj in listed}
        return [
            ForeignObject(kind, namespace, obj["metadata"]["name"])
            for kind, obj in listed
            if not is_owned(gateway_id, obj)
            and not _is_system_object(kind, obj)
            and not _has_owner_in(obj, here)
        ]

    def wait_until_gone(
        self,
        refs: ObjectRef | Sequence[ObjectRef],
        *,
        timeout: float,
        poll: float = 1.0,
        on_wait: OnWait | None = None,
    ) -> None:
        """Poll until every object is gone; `on_wait(description)` is called on each poll
        (activities heartbeat there, so the wait is cancellable).

        Polls start at 20 ms and double up to `poll`: most deletions finish in well under
        a second, and a fixed interval would add its whole length to every step.

        Raises `StillPresentError` naming what remains (for a namespace, also the objects
        that still block it) when `timeout` seconds pass.
        """
        pending = [refs] if isinstance(refs, ObjectRef) else list(refs)
        deadline = time.monotonic() + timeout
        interval = min(_FIRST_POLL, poll)
        while True:
            present: dict[ObjectRef, Manifest | None] = {}
            for ref in pending:
                try:
                    obj = self._get(ref)
                except TransientClusterError as err:
                    log.info("%s: cannot tell whether %s is gone yet: %s", self.context, ref, err)
                    present[ref] = None
                    continue
                if obj is not None:
                    present[ref] = obj
            if not present:
                return
            pending = list(present)
            description = "; ".join(_describe_presence(ref, obj) for ref, obj in present.items())
            if time.monotonic() >= deadline:
                raise StillPresentError(pending, self._with_blockers(present, description), timeout)
            if on_wait is not None:
                on_wait(f"waiting for deletion of {description}")
            time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
            interval = min(interval * 2, poll)

    def readiness(self, namespace: str, name: str) -> str | None:
        """One look at a Deployment: None when it is ready, else what is missing."""
        try:
            obj = self._get(ObjectRef(Kind.DEPLOYMENT, namespace, name))
        except TransientClusterError as err:
            return f"cannot read it: {err}"
        return "it does not exist" if obj is None else deployment_not_ready(obj)

    def wait_until_ready(
        self,
        namespace: str,
        name: str,
        *,
        timeout: float,
        poll: float = 0.5,
        on_wait: OnWait | None = None,
    ) -> None:
        """Poll a Deployment until its current generation is rolled out and available,
        as `kubectl rollout status` judges it: observedGeneration >= generation, every
        replica updated and no old one left, available replicas >= spec.replicas, and the
        Available condition True. Raises `NotReadyError` with what is missing.
        """
        ref = ObjectRef(Kind.DEPLOYMENT, namespace, name)
        deadline = time.monotonic() + timeout
        while True:
            why = self.readiness(namespace, name)
            if why is None:
                return
            if time.monotonic() >= deadline:
                raise NotReadyError(ref, why, timeout)
            if on_wait is not None:
                on_wait(f"waiting for {ref} to be ready: {why}")
            time.sleep(max(0.0, min(poll, deadline - time.monotonic())))

    # -- one attempt of each operation --------------------------------------------------

    def _ensure(self, gateway_id: str, ref: ObjectRef, manifest: Manifest) -> Manifest:
        try:
            return self._request("POST", ref.kind.collection_path(ref.namespace), body=manifest)
        except ClusterError as err:
            if err.status != 409:
                raise
        live = self._get(ref)
        if live is None:
            raise TransientClusterError(f"{ref} already existed but is gone now; create again")
        self._check_owned(gateway_id, ref, live)
        if is_terminating(live):
            raise TransientClusterError(f"{ref} is still being deleted; create it once gone")
        return live

    def _apply(self, gateway_id: str, ref: ObjectRef, manifest: Manifest) -> Manifest:
        live = self._get(ref)
        if live is None:
            return self._ensure(gateway_id, ref, manifest)
        self._check_owned(gateway_id, ref, live)
        if is_terminating(live):
            raise TransientClusterError(f"{ref} is still being deleted; apply it once gone")
        metadata = manifest["metadata"]
        patch: Manifest = {
            key: value
            for key, value in manifest.items()
            if key not in ("apiVersion", "kind", "metadata")
        }
        patch["metadata"] = {
            key: metadata[key] for key in ("labels", "annotations") if key in metadata
        }
        # The uid precondition makes sure the patch lands on the object just checked.
        patch["metadata"]["uid"] = live["metadata"]["uid"]
        return self._request("PATCH", ref.path, body=patch, content_type=MERGE_PATCH)

    def _get(self, ref: ObjectRef) -> Manifest | None:
        try:
            return self._request("GET", ref.path)
        except ClusterError as err:
            if err.status == 404:
                return None
            raise

    def _delete_owned(self, gateway_id: str, ref: ObjectRef) -> bool:
        live = self._get(ref)
        if live is None:
            return False
        self._check_owned(gateway_id, ref, live)
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Foreground",
            # Never delete a same-named object that replaced the one just checked.
            "preconditions": {"uid": live["metadata"]["uid"]},
        }
        try:
            self._request("DELETE", ref.path, body=options)
        except ClusterError as err:
            if err.status == 404:
                return False
            raise
        return True

    def _namespaced_resources(self) -> list[Resource]:
        """Every namespaced kind the server serves and can list, in the preferred version
        of each API group: what `kubectl api-resources --namespaced --verbs=list` shows."""
        group_versions = ["v1"]
        for group in self._request("GET", "/apis").get("groups") or []:
            preferred = group.get("preferredVersion") or (group.get("versions") or [{}])[0]
            if preferred.get("groupVersion"):
                group_versions.append(preferred["groupVersion"])
        resources = []
        for group_version in group_versions:
            path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
            for entry in self._request("GET", path).get("resources") or []:
                if (
                    entry.get("namespaced")
                    and "list" in (entry.get("verbs") or [])
                    and "/" not in entry["name"]  # a subresource such as deployments/scale
                    and entry["kind"] not in _NOT_CONTENT
                ):
                    resources.append(Resource(group_version, entry["kind"], entry["name"]))
        return resources

    def _list_metadata(self, path: str, selector: str | None = None) -> list[Manifest]:
        """Items of a collection as metadata only (PartialObjectMetadata): labels and
        names without bodies, so a Secret's data is never read."""
        query = [("labelSelector", selector)] if selector else []
        answer = self._request("GET", path, query=query, accept=METADATA_LIST)
        return list(answer.get("items") or [])

    def _list(self, kind: Kind, namespace: str | None, selector: str | None) -> list[Manifest]:
        query = [("labelSelector", selector)] if selector else []
        items: list[Manifest] = (
            self._request("GET", kind.collection_path(namespace), query=query).get("items") or []
        )
        for obj in items:
            # List items come without kind and apiVersion from a real API server.
            obj.setdefault("apiVersion", kind.api_version)
            obj.setdefault("kind", kind.value)
        return items

    # -- helpers ------------------------------------------------------------------------

    def _owned_manifest_ref(self, gateway_id: str, manifest: Manifest) -> ObjectRef:
        ref = ObjectRef.of(manifest)
        if not is_owned(gateway_id, manifest):
            raise PermanentClusterError(
                f"manifest of {ref} lacks {owner_selector(gateway_id)}; refusing to write it"
            )
        return ref

    @staticmethod
    def _check_owned(gateway_id: str, ref: ObjectRef, live: Manifest) -> None:
        if not is_owned(gateway_id, live):
            raise NotOwnedError.for_object(ref, gateway_id, labels_of(live))

    def _with_blockers(self, present: dict[ObjectRef, Manifest | None], description: str) -> str:
        """Add what still sits in each remaining namespace, the usual reason it stays."""
        for ref in present:
            if ref.kind is not Kind.NAMESPACE:
                continue
            try:
                inside = [
                    str(ObjectRef.of(obj))
                    for kind in NAMESPACED_KINDS
                    for obj in self._list(kind, ref.name, None)
                ]
            except ClusterError as err:
                description += f"; cannot list the contents of {ref}: {err}"
                continue
            if inside:
                description += f"; {ref} still contains {', '.join(inside)}"
        return description

    def _retrying(self, operation: Callable[[], T]) -> T:
        attempt = 1
        while True:
            try:
                return operation()
            except TransientClusterError as err:
                delay = err.retry_after
                if delay is None:
                    delay = self._backoff * 2 ** (attempt - 1)
                if attempt >= self._attempts or delay > self._max_inline_wait:
                    raise
                log.info(
                    "%s: attempt %d failed, retrying in %.2fs: %s",
                    self.context,
                    attempt,
                    delay,
                    err,
                )
                attempt += 1
                time.sleep(delay)

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Manifest | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Manifest:
        """One HTTP request through the official client (auth, TLS and pooling from the
        kubeconfig); every failure comes out classified."""
        api = self._api
        try:
            return self._send(api, method, path, query, body, content_type, accept)
        except ClusterError as err:
            if err.status != 401:
                raise
        # Credentials can expire (a projected ServiceAccount token lives an hour): read them
        # again and retry once before a 401 counts as permanent.
        self._reload(api)
        return self._send(self._api, method, path, query, body, content_type, accept)

    def _send(
        self,
        api: ApiClient,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: Manifest | None,
        content_type: str,
        accept: str,
    ) -> Manifest:
        during = f"[{self.context}] {method} {path}"
        try:
            request = api.param_serialize(
                method,
                quote(path),
                query_params=query or [],
                header_params={"Accept": accept, "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = api.call_api(*request, _request_timeout=self._request_timeout)
            response.read()  # type: ignore[no-untyped-call]
            if not 200 <= response.status <= 299:
                raise ApiException(http_resp=response)
            result: Manifest = json.loads(response.data) if response.data else {}
        except Exception as exc:
            raise classify(exc, during=during) from exc
        return result


def deployment_not_ready(obj: Manifest) -> str | None:
    """Why a Deployment is not ready yet, or None when it is."""
    metadata, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    generation = int(metadata.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    if observed < generation:
        return f"generation {generation} not observed yet (observed {observed})"
    updated = int(status.get("updatedReplicas") or 0)
    if updated < wanted:
        return f"{updated} of {wanted} replicas updated"
    old = int(status.get("replicas") or 0) - updated
    if old > 0:
        return f"{old} old replicas pending termination"
    available = int(status.get("availableReplicas") or 0)
    if available < wanted:
        return f"{available} of {wanted} replicas available"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Available":
            if condition.get("status") == "True":
                return None
            detail = condition.get("message") or condition.get("reason") or ""
            return f"Available is {condition.get('status')}: {detail}".rstrip(": ")
    return "no Available condition yet"


def _describe_presence(ref: ObjectRef, obj: Manifest | None) -> str:
    if obj is None:
        return f"{ref} (not readable)"
    metadata = obj["metadata"]
    notes = []
    if metadata.get("deletionTimestamp"):
        notes.append("terminating")
    if metadata.get("finalizers"):
        notes.append("finalizers: " + ", ".join(metadata["finalizers"]))
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("message"):
            notes.append(condition["message"])
    return f"{ref} ({'; '.join(notes)})" if notes else str(ref)


def _ref_of(kind: Kind, obj: Manifest) -> ObjectRef:
    metadata = obj["metadata"]
    return ObjectRef(kind, metadata.get("namespace") if kind.namespaced else None, metadata["name"])


def _has_owner_in(obj: Manifest, uids: set[str | None]) -> bool:
    """Whether the object was made for owners that are all among `uids`."""
    owners = obj["metadata"].get("ownerReferences") or []
    return bool(owners) and all(owner.get("uid") in uids for owner in owners)


def _is_system_object(kind: str, obj: Manifest) -> bool:
    """Objects Kubernetes creates in every namespace (the root CA bundle, the `default`
    ServiceAccount and, on older clusters, its token Secret): they go with the namespace."""
    metadata = obj["metadata"]
    if kind == "ConfigMap":
        return bool(metadata["name"] == "kube-root-ca.crt")
    if kind == "ServiceAccount":
        return bool(metadata["name"] == "default")
    if kind == "Secret":
        annotations = metadata.get("annotations") or {}
        return "kubernetes.io/service-account.name" in annotations and metadata["name"].startswith(
            "default-token-"
        )
    return False
