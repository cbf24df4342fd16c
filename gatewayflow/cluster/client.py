"""One region's Kubernetes API, as the idempotent operations the activities need.

Synchronous on purpose: activities run in a thread pool, and one `Cluster` (one pooled
`ApiClient`) is shared by all of them. Only objects carrying both ownership labels, the
gateway's and this installation's, are ever patched or deleted, listed as owned or
counted as not foreign.

Waits (deletion, readiness) follow a watch, as controllers do: list to learn the current
state and its resourceVersion, then watch from there (with bookmarks) and re-list when the
server answers 410 Gone. A wait learns of a change as soon as the server makes it, instead
of a poll interval later. Polling remains as the fallback where a watch cannot be opened.
"""

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import urllib3
from kubernetes import config, watch
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import RESTResponse

from gatewayflow.cluster.errors import (
    ClusterError,
    NotOwnedError,
    PermanentClusterError,
    StillPresentError,
    TransientClusterError,
    classify,
)
from gatewayflow.cluster.kinds import ForeignObject, Kind, ObjectRef, Resource
from gatewayflow.domain.naming import (
    INSTALLATION_LABEL,
    OWNER_LABEL,
    installation_selector,
    owner_selector,
    unadopted_selector,
)
from gatewayflow.domain.naming import namespace as gateway_namespace

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


def is_owned(installation: str, gateway_id: str, obj: Manifest) -> bool:
    labels = labels_of(obj)
    return labels.get(OWNER_LABEL) == gateway_id and labels.get(INSTALLATION_LABEL) == installation


def is_terminating(obj: Manifest) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


_FIRST_POLL = 0.02
HEARTBEAT_SECONDS = 2
"""While waiting, `on_wait` is called at least this often (each watch lasts as long), so an
activity that heartbeats there stays cancellable."""
GONE = 410

WhyWaiting = Callable[[dict[str, Manifest]], str | None]
"""What a wait still waits for, given the watched objects present by name; None: done."""


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
        installation: str,
        attempts: int = 3,
        backoff: float = 0.2,
        max_inline_wait: float = 5.0,
        request_timeout: float = 30.0,
        pool_size: int = 32,
    ):
        self.context = context
        self.installation = installation
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
        return f"Cluster(context={self.context!r}, host={self.host!r})"

    @property
    def host(self) -> str:
        """The API server's URL, from the kubeconfig."""
        return str(self._api.configuration.host)

    def ping(self) -> None:
        """Raise a ClusterError unless the API server answers (its discovery document)."""
        self._retrying(lambda: self._request("GET", "/api"))

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

    def delete_owned_all(self, gateway_id: str, kind: Kind, namespace: str) -> list[ObjectRef]:
        """Delete every object of `kind` in `namespace` that carries the gateway's label
        (one list, then one delete per object: the listed uid is the precondition)."""
        listed = {ObjectRef.of(obj): obj for obj in self.list_owned(gateway_id, kind, namespace)}
        return self._delete_live_objects(gateway_id, listed)

    def list_owned(
        self, gateway_id: str, kind: Kind, namespace: str | None = None
    ) -> list[Manifest]:
        """Objects of `kind` with the gateway's label, in one namespace or in all of them."""
        selector = owner_selector(self.installation, gateway_id)
        items = self._retrying(lambda: self._list(kind, namespace, selector))
        # Checked again here: deletion must not depend on the server's label selector alone.
        return [obj for obj in items if self.owns(gateway_id, obj)]

    def list_labelled(
        self, kind: Kind, namespace: str | None = None, *, metadata_only: bool = False
    ) -> list[Manifest]:
        """Every object of `kind` of any gateway of this installation: one label-selected
        list (the drift check's). Namespaced kinds are listed inside a gateway namespace:
        the worker may list them only there (deploy/worker.yaml). `metadata_only`: names
        and labels without bodies, where presence is all that counts (a Secret's data is
        never read)."""
        selector = installation_selector(self.installation)
        if metadata_only:
            path = kind.collection_path(namespace)
            items = self._retrying(partial(self._list_metadata, path, selector))
        else:
            items = self._retrying(lambda: self._list(kind, namespace, selector))
        return [obj for obj in items if self._of_installation(obj)]

    def owned_refs(
        self, gateway_id: str, kind: Kind, namespace: str | None = None
    ) -> list[ObjectRef]:
        """What `list_owned` finds, read as metadata only (no Secret data): for audits."""
        path = kind.collection_path(namespace)
        selector = owner_selector(self.installation, gateway_id)
        items = self._retrying(partial(self._list_metadata, path, selector))
        return [_ref_of(kind, obj) for obj in items if self.owns(gateway_id, obj)]

    def gateway_namespaces(self) -> dict[str, str]:
        """Namespace name -> owning gateway id of every Namespace of this installation,
        found by label selector (no list of every namespace)."""
        path = Kind.NAMESPACE.collection_path()
        selector = installation_selector(self.installation)
        items = self._retrying(partial(self._list_metadata, path, selector))
        return {
            obj["metadata"]["name"]: labels_of(obj)[OWNER_LABEL]
            for obj in items
            if self._of_installation(obj)
        }

    def unadopted_gateways(self) -> set[str]:
        """Ids of gateways whose namespace carries the gateway label and no installation
        label: made before installations, by this installation or by another."""
        path = Kind.NAMESPACE.collection_path()
        selector = f"{OWNER_LABEL},!{INSTALLATION_LABEL}"
        items = self._retrying(partial(self._list_metadata, path, selector))
        return {
            labels_of(obj)[OWNER_LABEL] for obj in items if INSTALLATION_LABEL not in labels_of(obj)
        }

    def adopt(self, gateway_id: str, kinds: Sequence[Kind]) -> list[ObjectRef]:
        """Give this installation's label to the gateway's objects made before
        installations (they carry the gateway's label alone): those of `kinds` in its
        namespace, then the namespace, last, so that an adoption cut short is taken up
        again. Only for a gateway whose document is this installation's
        (gatewayflow/adoption.py)."""
        path = Kind.NAMESPACE.collection_path()
        listed = self._retrying(partial(self._list_metadata, path, unadopted_selector(gateway_id)))
        adopted = []
        for namespace in listed:
            name = namespace["metadata"]["name"]
            if name != gateway_namespace(gateway_id):
                continue
            for kind in kinds:
                if kind.namespaced:
                    inside = kind.collection_path(name)
                    for obj in self._retrying(
                        partial(self._list_metadata, inside, unadopted_selector(gateway_id))
                    ):
                        adopted.append(self._label_installation(_ref_of(kind, obj), obj))
            adopted.append(self._label_installation(_ref_of(Kind.NAMESPACE, namespace), namespace))
        return adopted

    def _label_installation(self, ref: ObjectRef, obj: Manifest) -> ObjectRef:
        """Add the installation label to the object just listed (its uid the precondition)."""
        patch = {
            "metadata": {
                "uid": obj["metadata"]["uid"],
                "labels": {INSTALLATION_LABEL: self.installation},
            }
        }
        self._retrying(
            lambda: self._request("PATCH", ref.path, body=patch, content_type=MERGE_PATCH)
        )
        return ref

    def owns(self, gateway_id: str, obj: Manifest) -> bool:
        """Whether the object carries both ownership labels: the gateway's and ours."""
        return is_owned(self.installation, gateway_id, obj)

    def _of_installation(self, obj: Manifest) -> bool:
        return labels_of(obj).get(INSTALLATION_LABEL) == self.installation

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
            if not self.owns(gateway_id, obj)
            and not _is_system_object(kind, obj)
            and not _has_owner_in(obj, here)
        ]

    def delete_owned_and_wait(
        self,
        gateway_id: str,
        refs: Sequence[ObjectRef],
        *,
        every_owned: Sequence[tuple[Kind, str | None]] = (),
        timeout: float,
        on_wait: OnWait | None = None,
    ) -> list[ObjectRef]:
        """Request the deletion of independent objects of this gateway, then wait once
        until all of them are gone: the deletions run on the server side by side, so the
        step waits for the slowest one instead of for each in turn.

        Each collection is read once (one list, not a get per object); what it shows is
        deleted with its listed uid as precondition, and the wait follows the collection's
        watch from that list's resourceVersion, with no second read. `every_owned` names
        collections (kind, namespace) whose every object carrying the gateway's label goes
        too, found by the label and not only by name.

        Returns the refs that were present and deleted. A `NotOwnedError` for any of them
        is raised before anything is deleted.
        """
        deadline = time.monotonic() + timeout
        named: dict[tuple[Kind, str | None], set[str]] = {key: set() for key in every_owned}
        for ref in refs:
            named.setdefault((ref.kind, ref.namespace), set()).add(ref.name)
        every = set(every_owned)
        reads: dict[tuple[Kind, str | None], tuple[dict[str, Manifest], str]] = {}
        for (kind, namespace), names in named.items():
            listed, version = self._list_named(
                kind, namespace, None if (kind, namespace) in every else names
            )
            chosen = {
                name: obj
                for name, obj in sorted(listed.items())
                if name in names or self.owns(gateway_id, obj)
            }
            for name, obj in chosen.items():
                self._check_owned(gateway_id, ObjectRef(kind, namespace, name), obj)
            reads[(kind, namespace)] = (chosen, version)
        live = {
            ref: reads[(ref.kind, ref.namespace)][0][ref.name]
            for ref in refs
            if ref.name in reads[(ref.kind, ref.namespace)][0]
        }
        for (kind, namespace), (chosen, _) in reads.items():
            for name, obj in chosen.items():
                live.setdefault(ObjectRef(kind, namespace, name), obj)
        deleted = self._delete_live_objects(gateway_id, live)
        for (kind, namespace), (chosen, version) in reads.items():
            waited = sorted(named[(kind, namespace)] | chosen.keys())
            members = [ObjectRef(kind, namespace, name) for name in waited]
            self._wait_collection_gone(
                kind, namespace, members, deadline, timeout, 1.0, on_wait, (chosen, version)
            )
        return deleted

    def wait_until_gone(
        self,
        refs: ObjectRef | Sequence[ObjectRef],
        *,
        timeout: float,
        poll: float = 1.0,
        on_wait: OnWait | None = None,
    ) -> None:
        """Wait until every object is gone, following a watch of each collection;
        `on_wait(description)` is called when the wait starts and at least every
        HEARTBEAT_SECONDS (activities heartbeat there, so the wait is cancellable).

        Where a collection cannot be watched (an error other than 410), its objects are
        polled instead, from 20 ms doubling up to `poll`.

        Raises `StillPresentError` naming what remains (for a namespace, also the objects
        that still block it) when `timeout` seconds pass.
        """
        pending = [refs] if isinstance(refs, ObjectRef) else list(refs)
        deadline = time.monotonic() + timeout
        collections: dict[tuple[Kind, str | None], list[ObjectRef]] = {}
        for ref in pending:
            collections.setdefault((ref.kind, ref.namespace), []).append(ref)
        for (kind, namespace), members in collections.items():
            self._wait_collection_gone(kind, namespace, members, deadline, timeout, poll, on_wait)

    # -- waiting by watch, and by polling -------------------------------------------------

    def _wait_collection_gone(
        self,
        kind: Kind,
        namespace: str | None,
        members: Sequence[ObjectRef],
        deadline: float,
        timeout: float,
        poll: float,
        on_wait: OnWait | None,
        start: tuple[dict[str, Manifest], str] | None = None,
    ) -> None:
        """`wait_until_gone` for the objects of one collection; `start` is what a list
        just showed (present objects by name, its resourceVersion), to follow from."""
        try:
            present = self._follow(
                kind, namespace, members, _waiting_for_deletion(kind), deadline, on_wait, start
            )
        except ClusterError as err:
            log.info("%s: cannot watch %s, polling instead: %s", self.context, kind, err)
            self._poll_until_gone(members, deadline, poll, on_wait)
            return
        if present:
            remaining = {ObjectRef(kind, namespace, name): obj for name, obj in present.items()}
            description = "; ".join(_describe_presence(ref, obj) for ref, obj in remaining.items())
            raise StillPresentError(
                list(remaining), self._with_blockers(remaining, description), timeout
            )

    def _follow(
        self,
        kind: Kind,
        namespace: str | None,
        refs: Sequence[ObjectRef],
        why_waiting: WhyWaiting,
        deadline: float,
        on_wait: OnWait | None,
        start: tuple[dict[str, Manifest], str] | None = None,
    ) -> dict[str, Manifest] | None:
        """Follow the named objects of one collection until `why_waiting` has nothing left
        (returns None) or the deadline passes (returns the objects present then). A watch
        lasts whole seconds, so a quiet one may end up to a second after the deadline.
        Starts from `start` (objects by name, resourceVersion) when given, else a list.

        Raises a `ClusterError` when the collection cannot be listed or watched.
        """
        names = {ref.name for ref in refs}
        if start is None:
            present, version = self._list_named(kind, namespace, names)
        else:
            present = {name: obj for name, obj in start[0].items() if name in names}
            version = start[1]
        while (why := why_waiting(present)) is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return present
            if on_wait is not None:
                on_wait(why)
            seconds = max(1, math.ceil(min(HEARTBEAT_SECONDS, remaining)))
            try:
                for event_type, obj in self._watch(kind, namespace, names, version, seconds):
                    if time.monotonic() > deadline:
                        break  # too late: what happens now is past the timeout
                    version = obj["metadata"].get("resourceVersion") or version
                    name = obj["metadata"].get("name")
                    if event_type == "DELETED":
                        present.pop(name, None)
                    elif event_type in ("ADDED", "MODIFIED") and name in names:
                        present[name] = obj
                    if why_waiting(present) is None:
                        break
            except ClusterError as err:
                if err.status != GONE:
                    raise
                log.info("%s: watch of %s expired (%s); listing again", self.context, kind, err)
                present, version = self._list_named(kind, namespace, names)
        return None

    def _list_named(
        self, kind: Kind, namespace: str | None, names: set[str] | None
    ) -> tuple[dict[str, Manifest], str]:
        """The named objects present (every object when `names` is None), by name, and the
        collection's resourceVersion."""
        query = [] if names is None else _name_query(names)
        answer = self._retrying(
            lambda: self._request("GET", kind.collection_path(namespace), query=query)
        )
        present = {
            obj["metadata"]["name"]: obj
            for obj in answer.get("items") or []
            if names is None or obj["metadata"]["name"] in names
        }
        for obj in present.values():
            obj.setdefault("apiVersion", kind.api_version)
            obj.setdefault("kind", kind.name)
        return present, str((answer.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(
        self, kind: Kind, namespace: str | None, names: set[str], version: str, seconds: int
    ) -> Iterator[tuple[str, Manifest]]:
        """Events (type, object) of one watch of `seconds` from `version`, with bookmarks;
        a 410 Gone (the version left the server's history) is raised as a ClusterError."""
        query = [
            *_name_query(names),
            ("resourceVersion", version),
            ("timeoutSeconds", str(seconds)),
            ("allowWatchBookmarks", "true"),
        ]
        path = kind.collection_path(namespace)
        try:
            # timeout_seconds also tells `Watch` not to retry by itself, so a 410 is raised.
            events = watch.Watch().stream(  # type: ignore[no-untyped-call]
                self._open_watch, path, query, timeout_seconds=seconds
            )
            for event in events:
                yield event["type"], event["raw_object"]
        except Exception as exc:
            raise classify(exc, during=f"[{self.context}] watch {path}") from exc

    def _poll_until_gone(
        self, refs: Sequence[ObjectRef], deadline: float, poll: float, on_wait: OnWait | None
    ) -> None:
        pending = list(refs)
        timeout = max(0.0, deadline - time.monotonic())
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
        """One look at a Deployment: None when its current generation is rolled out and
        available, as `kubectl rollout status` judges it (observedGeneration >=
        generation, every replica updated and no old one left, available replicas >=
        spec.replicas, the Available condition True); else what is missing."""
        try:
            obj = self._get(ObjectRef(Kind.DEPLOYMENT, namespace, name))
        except TransientClusterError as err:
            return f"cannot read it: {err}"
        return "it does not exist" if obj is None else deployment_not_ready(obj)

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
        return self._delete_live(gateway_id, ref, live)

    def _delete_live_objects(
        self, gateway_id: str, live: Mapping[ObjectRef, Manifest]
    ) -> list[ObjectRef]:
        """Delete objects just read (by a list or a get) without reading each again; one
        whose delete fails (e.g. replaced since: its uid no longer matches) is read again
        and deleted the usual way, with retries."""
        deleted = []
        for ref, obj in live.items():
            try:
                gone = self._delete_live(gateway_id, ref, obj)
            except TransientClusterError:
                gone = self.delete_owned(gateway_id, ref)
            if gone:
                deleted.append(ref)
        return deleted

    def _delete_live(self, gateway_id: str, ref: ObjectRef, live: Manifest) -> bool:
        """Delete the object `live` shows, if it is this gateway's; False when gone."""
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
            obj.setdefault("kind", kind.name)
        return items

    # -- helpers ------------------------------------------------------------------------

    def _owned_manifest_ref(self, gateway_id: str, manifest: Manifest) -> ObjectRef:
        ref = ObjectRef.of(manifest)
        if not self.owns(gateway_id, manifest):
            raise PermanentClusterError(
                f"manifest of {ref} lacks {owner_selector(self.installation, gateway_id)}; "
                "refusing to write it"
            )
        return ref

    def _check_owned(self, gateway_id: str, ref: ObjectRef, live: Manifest) -> None:
        if not self.owns(gateway_id, live):
            raise NotOwnedError.for_object(ref, self.installation, gateway_id, labels_of(live))

    def _with_blockers(self, present: Mapping[ObjectRef, Manifest | None], description: str) -> str:
        """Add what still sits in each remaining namespace, the usual reason it stays: of
        every kind the server serves, but for what Kubernetes puts in every namespace."""
        for ref in present:
            if ref.kind != Kind.NAMESPACE:
                continue
            try:
                inside = [
                    f"{resource.kind} {ref.name}/{obj['metadata']['name']}"
                    for resource in self._namespaced_resources()
                    for obj in self._list_metadata(resource.collection_path(ref.name))
                    if not _is_system_object(resource.kind, obj)
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

    def _open_watch(
        self, path: str, query: list[tuple[str, str]], *, timeout_seconds: int, **_: Any
    ) -> Any:
        """One watch request, its urllib3 response left unread for `watch.Watch` to stream
        (which adds `watch` and `_preload_content` arguments: `query` has them already).
        Returns Any, so that `Watch` hands out the objects as plain dicts."""
        request = self._api.param_serialize(
            "GET",
            quote(path),
            query_params=[("watch", "true"), *query],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        timeout = (self._request_timeout, timeout_seconds + self._request_timeout)
        response: RESTResponse = self._api.call_api(*request, _request_timeout=timeout)
        if not 200 <= response.status <= 299:
            response.read()  # type: ignore[no-untyped-call]
            raise ApiException(http_resp=response)
        raw: urllib3.BaseHTTPResponse = response.response
        return raw

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


def _waiting_for_deletion(kind: Kind) -> WhyWaiting:
    def why(present: dict[str, Manifest]) -> str | None:
        if not present:
            return None
        described = (_describe_presence(ObjectRef.of(obj), obj) for obj in present.values())
        return f"waiting for deletion of {'; '.join(described)}"

    return why


def _name_query(names: set[str]) -> list[tuple[str, str]]:
    """Select one object by name on the server; several are picked out of the list."""
    if len(names) == 1:
        return [("fieldSelector", f"metadata.name={next(iter(names))}")]
    return []


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
