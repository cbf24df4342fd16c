"""One region's Kubernetes API, as the idempotent operations the activities need.

Synchronous on purpose: activities run in a thread pool, and one `Cluster` (one pooled
`ApiClient`) is shared by all of them. Only objects carrying the gateway's ownership label
are ever patched or deleted.
"""

import json
import logging
import time
from collections.abc import Callable, Sequence
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
from gatewayflow.cluster.kinds import NAMESPACED_KINDS, Kind, ObjectRef
from gatewayflow.domain.naming import OWNER_LABEL, owner_selector

log = logging.getLogger(__name__)

T = TypeVar("T")
Manifest = dict[str, Any]
OnWait = Callable[[str], None]

MERGE_PATCH = "application/merge-patch+json"


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
        self._attempts = attempts
        self._backoff = backoff
        self._max_inline_wait = max_inline_wait
        self._request_timeout = request_timeout
        try:
            self._api: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig),
                context=context,
                persist_config=False,
                client_configuration=Configuration(
                    connection_pool_maxsize=pool_size,
                    # urllib3 would otherwise sleep through any Retry-After of a 429/503
                    # by itself, unseen and unbounded; the adapter decides how long to wait.
                    retries=urllib3.Retry(total=2, respect_retry_after_header=False),
                ),
            )
        except Exception as exc:
            raise classify(exc, during=f"context {context!r} of {kubeconfig}") from exc

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

    def list_labelled(self, kind: Kind) -> list[Manifest]:
        """Every object of `kind` carrying the ownership label, whoever owns it: one
        label-selected list across all namespaces (the drift check's one call per kind)."""
        return self._retrying(lambda: self._list(kind, None, OWNER_LABEL))

    def list_all(self, kind: Kind, namespace: str | None = None) -> list[Manifest]:
        return self._retrying(lambda: self._list(kind, namespace, None))

    def foreign_objects(self, gateway_id: str, namespace: str) -> list[ObjectRef]:
        """Objects in the namespace without the gateway's label, which deleting the
        namespace would destroy. Objects Kubernetes itself puts in every namespace are
        not counted.
        """
        return [
            ObjectRef.of(obj)
            for kind in NAMESPACED_KINDS
            for obj in self.list_all(kind, namespace)
            if not is_owned(gateway_id, obj) and not _is_system_object(kind, obj)
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
            try:
                obj = self._get(ref)
                why = "it does not exist" if obj is None else deployment_not_ready(obj)
            except TransientClusterError as err:
                why = f"cannot read it: {err}"
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
    ) -> Manifest:
        """One HTTP request through the official client (auth, TLS and pooling from the
        kubeconfig); every failure comes out classified."""
        during = f"[{self.context}] {method} {path}"
        try:
            request = self._api.param_serialize(
                method,
                quote(path),
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(*request, _request_timeout=self._request_timeout)
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


def _is_system_object(kind: Kind, obj: Manifest) -> bool:
    """Objects Kubernetes creates in every namespace: the root CA bundle and, on older
    clusters, service-account token Secrets. They go with the namespace."""
    if kind is Kind.CONFIG_MAP:
        return bool(obj["metadata"]["name"] == "kube-root-ca.crt")
    if kind is Kind.SECRET:
        return bool(obj.get("type") == "kubernetes.io/service-account-token")
    return False
