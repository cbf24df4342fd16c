"""One emulated cluster: its objects, resourceVersions, watches, timed behaviour, file.

Each region is a `Cluster` with one lock (a `Condition`, which also wakes watchers).
Every write bumps the cluster's resourceVersion counter, emits exactly one watch event
and is appended to the cluster's journal (`<home>/kube/<region>.log`, folded now and then
into `<region>.json`: see `journal`) before the call returns, so a restarted process finds
what an etcd-backed cluster would keep. Reads and writes cost the same whatever the size
of the cluster: objects are indexed by namespace, and the ticker looks only at objects
with a deletion or a roll-out in flight.

Time-driven behaviour runs in `tick()`, called by the server's background thread:
objects being deleted disappear `delete_delay` seconds after the delete once they have
no finalizers (a Namespace also waits until it is empty), and a Deployment becomes
ready `ready_delay` seconds after its latest spec change (negative: never).
"""

import base64
import copy
import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gatewayflow_dev.kube_emulator import errors
from gatewayflow_dev.kube_emulator.admission import Admit, Write
from gatewayflow_dev.kube_emulator.journal import Journal, Saved
from gatewayflow_dev.kube_emulator.kinds import NAMESPACE, Kind, kind_of
from gatewayflow_dev.kube_emulator.oplog import OpLog
from gatewayflow_dev.kube_emulator.patch import apply_patch
from gatewayflow_dev.kube_emulator.selectors import ObjectTest
from gatewayflow_dev.kube_emulator.validation import validate

Key = tuple[Kind, str, str]  # kind, namespace ("" for cluster-scoped), name
EVENT_HISTORY = 1000  # watch events kept for watches that resume from a resourceVersion
WATCH_POLL_SECONDS = 1.0  # how often a quiet watch checks its deadline and its client
PROPAGATION_POLICIES = ("Orphan", "Background", "Foreground")
# Admission of an update, given the new and the old object.
Check = Callable[[dict[str, Any], dict[str, Any]], None]


@dataclass
class Timing:
    """The delays of timed behaviour, shared by all regions and changeable at runtime."""

    delete_delay: float = 0.3
    ready_delay: float = 1.0  # negative: Deployments never become ready


@dataclass
class Record:
    obj: dict[str, Any]
    delete_requested: float | None = None  # wall-clock time of the delete call
    rollout_started: float | None = None  # wall-clock time of a Deployment's spec change

    @property
    def timed(self) -> bool:
        """Whether the ticker has something to finish on it."""
        return self.delete_requested is not None or self.rollout_started is not None

    def saved(self) -> Saved:
        return {
            "object": self.obj,
            "deleteRequested": self.delete_requested,
            "rolloutStarted": self.rollout_started,
        }


@dataclass(frozen=True)
class Event:
    resource_version: int
    type: str  # ADDED, MODIFIED or DELETED
    obj: dict[str, Any]
    previous: dict[str, Any] | None  # the object before a MODIFIED, for selector changes


def timestamp(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    """What `metadata.generation` counts changes of: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _deployment_status(obj: dict[str, Any], ready: bool) -> dict[str, Any]:
    """The status the Deployment controller would report; zero counts are omitted, as the
    API server's JSON omits them."""
    name = obj["metadata"]["name"]
    replicas = obj.get("spec", {}).get("replicas", 1)
    now = timestamp()
    if ready:
        counts = {
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        }
        available = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        progressing = (
            "True",
            "NewReplicaSetAvailable",
            f'ReplicaSet "{name}" has successfully progressed.',
        )
    else:
        counts = {"replicas": replicas, "unavailableReplicas": replicas}
        available = (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
        progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.')
    conditions = [
        {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastUpdateTime": now,
            "lastTransitionTime": now,
        }
        for kind, (status, reason, message) in (
            ("Available", available),
            ("Progressing", progressing),
        )
    ]
    return {
        "observedGeneration": obj["metadata"]["generation"],
        **{k: v for k, v in counts.items() if v},
        "conditions": conditions,
    }


def _scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    """The autoscaling/v1 Scale of a Deployment."""
    metadata = obj["metadata"]
    selector = obj.get("spec", {}).get("selector", {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: metadata[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
        },
        "spec": {"replicas": obj["spec"].get("replicas", 1)},
        "status": {
            "replicas": obj.get("status", {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in selector.items()),
        },
    }


def _label_namespace(obj: dict[str, Any]) -> None:
    """The API server labels every Namespace with its own name."""
    metadata = obj["metadata"]
    metadata["labels"] = {
        **(metadata.get("labels") or {}),
        "kubernetes.io/metadata.name": metadata["name"],
    }


def _encode_string_data(obj: dict[str, Any]) -> None:
    """A Secret's `stringData` is write-only: the API server merges it into `data`."""
    string_data = obj.pop("stringData", None) or {}
    if string_data:
        data = obj.get("data") or {}
        data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in string_data.items()})
        obj["data"] = data
    obj.setdefault("type", "Opaque")


class Cluster:
    """The objects of one region, behind one lock."""

    def __init__(self, region: str, path: Path, timing: Timing, oplog: OpLog) -> None:
        self.region = region
        self._journal = Journal(path)
        self._timing = timing
        self._oplog = oplog
        self._cond = threading.Condition()
        self._records: dict[Key, Record] = {}
        # namespace ("" for cluster-scoped objects) -> its keys, in creation order
        self._members: dict[str, dict[Key, None]] = {}
        self._timed: set[Key] = set()  # keys of records with a deletion or roll-out in flight
        self._resource_version = 0
        self._events: deque[Event] = deque(maxlen=EVENT_HISTORY)
        self._closed = False
        self._load()

    # -- reads ---------------------------------------------------------------------------

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        with self._cond:
            return copy.deepcopy(self._existing(kind, namespace, name).obj)

    def list_objects(
        self, kind: Kind, namespace: str | None, matches: ObjectTest
    ) -> tuple[list[dict[str, Any]], str]:
        """Matching objects (of one namespace, or all with None) and the list's version."""
        with self._cond:
            items = [copy.deepcopy(r.obj) for r in self._collection(kind, namespace, matches)]
            return items, str(self._resource_version)

    def watch(
        self,
        kind: Kind,
        namespace: str | None,
        matches: ObjectTest,
        resource_version: str | None,
        deadline: float,
        client_gone: Callable[[], bool],
        bookmarks: bool = False,
        *,
        send_initial_events: bool = False,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Watch events as (type, object) until the deadline, the client leaves or the
        cluster closes. Without a resourceVersion (or "0") it starts with an ADDED event per
        existing object; with one it replays what happened after it, or reports 410 Gone
        (as an ERROR event, like the API server) when that history is no longer kept.
        With `bookmarks` (allowWatchBookmarks) a quiet watch sends a BOOKMARK carrying the
        current resourceVersion every WATCH_POLL_SECONDS and just before it ends, so a
        client resumes from there rather than from an event that may have left the history.
        A malformed resourceVersion raises here, before any event is sent.

        `send_initial_events` is a watch-list (`sendInitialEvents=true`, how kubectl since
        1.35 lists): an ADDED event per existing object, then a BOOKMARK annotated
        `k8s.io/initial-events-end` that tells the client the list is complete."""

        def selected(obj: dict[str, Any] | None) -> bool:
            return (
                obj is not None
                and kind_of(obj) == kind
                and (namespace in (None, obj["metadata"].get("namespace")) and matches(obj))
            )

        with self._cond:
            if send_initial_events or resource_version in (None, "", "0"):
                last = self._resource_version
                initial = [
                    ("ADDED", copy.deepcopy(r.obj))
                    for r in self._records.values()
                    if selected(r.obj)
                ]
                if send_initial_events:
                    initial.append(("BOOKMARK", _initial_events_end(kind, last)))
            else:
                last = _parse_version(str(resource_version))
                initial = []
        bookmark = (
            {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": {}}
            if bookmarks
            else None
        )
        return self._stream(initial, last, selected, deadline, client_gone, bookmark)

    def _stream(
        self,
        initial: list[tuple[str, dict[str, Any]]],
        last: int,
        selected: Callable[[dict[str, Any] | None], bool],
        deadline: float,
        client_gone: Callable[[], bool],
        bookmark: dict[str, Any] | None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from initial
        last_sent = time.time()
        while True:
            with self._cond:
                oldest = self._first_kept_version()
                if oldest <= last + 1 and not self._closed:
                    if self._resource_version <= last:
                        timeout = min(WATCH_POLL_SECONDS, max(0.0, deadline - time.time()))
                        self._cond.wait(timeout)
                    oldest = self._first_kept_version()
                # Every resourceVersion has exactly one event: what follows `last` is a slice.
                start = max(0, last + 1 - oldest)
                pending = list(itertools.islice(self._events, start, None))
                closed = self._closed
            if oldest > last + 1:
                gone = errors.gone(f"too old resource version: {last} ({oldest - 1})")
                yield "ERROR", gone.status()
                return
            for event in pending:
                last = event.resource_version
                now, before = selected(event.obj), selected(event.previous)
                if event.type == "MODIFIED" and now != before:
                    yield ("ADDED" if now else "DELETED"), event.obj
                    last_sent = time.time()
                elif now:
                    yield event.type, event.obj
                    last_sent = time.time()
            ending = closed or time.time() >= deadline or client_gone()
            quiet = time.time() - last_sent >= WATCH_POLL_SECONDS
            if bookmark is not None and (ending or quiet) and last > 0:
                yield "BOOKMARK", {**bookmark, "metadata": {"resourceVersion": str(last)}}
                last_sent = time.time()
            if ending:
                return

    # -- writes --------------------------------------------------------------------------

    def create(
        self, kind: Kind, namespace: str, body: dict[str, Any], admit: Admit | None = None
    ) -> dict[str, Any]:
        obj = _incoming(kind, namespace, body)
        metadata = obj["metadata"]
        requested = str(metadata.get("name") or "")
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
        validate(kind, obj)
        name = metadata["name"]
        with self._cond:
            if kind.namespaced:
                owner = self._records.get((NAMESPACE, "", namespace))
                if owner is None:
                    raise errors.not_found(NAMESPACE, namespace)
                if owner.delete_requested is not None:
                    raise errors.forbidden(
                        kind,
                        name,
                        f"unable to create new content in namespace {namespace} "
                        "because it is being terminated",
                    )
            for server_field in (
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "resourceVersion",
            ):
                metadata.pop(server_field, None)
            metadata.update(uid=str(uuid.uuid4()), creationTimestamp=timestamp(), generation=1)
            record = Record(obj)
            if kind.kind == "Namespace":
                _label_namespace(obj)
                obj["status"] = {"phase": "Active"}
            elif kind.kind == "Deployment":
                obj.setdefault("spec", {}).setdefault("replicas", 1)
                obj["status"] = _deployment_status(obj, ready=False)
                record.rollout_started = time.time()
            elif kind.kind == "Secret":
                _encode_string_data(obj)
            # Admission sees the object as it would be stored, and comes before the
            # AlreadyExists check (the registry's createValidation, then storage).
            self._admit(admit, "CREATE", kind, namespace, requested, obj, None)
            key = (kind, namespace if kind.namespaced else "", name)
            if key in self._records:
                raise errors.already_exists(kind, name)
            self._write(key, record, "ADDED", None, "create")
            return copy.deepcopy(obj)

    def replace(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        body: dict[str, Any],
        admit: Admit | None = None,
    ) -> dict[str, Any]:
        incoming = _incoming(kind, namespace, body)
        if incoming["metadata"].get("name") != name:
            raise errors.bad_request(
                f"the name of the object ({incoming['metadata'].get('name')}) does not match "
                f"the name on the URL ({name})"
            )
        validate(kind, incoming)
        with self._cond:
            record = self._existing(kind, namespace, name)
            self._check_version(kind, record, incoming["metadata"].get("resourceVersion"))
            check = self._update_check(admit, kind, namespace, name)
            return self._update(record, incoming, "update", check)

    def patch(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        content_type: str,
        body: bytes,
        admit: Admit | None = None,
    ) -> dict[str, Any]:
        with self._cond:
            record = self._existing(kind, namespace, name)
            patched = apply_patch(content_type, record.obj, body)
            metadata = patched.get("metadata")
            if not isinstance(metadata, dict):
                raise errors.bad_request("metadata must be an object")
            if metadata.get("name") != name or (
                metadata.get("namespace") != record.obj["metadata"].get("namespace")
            ):
                raise errors.bad_request("a patch cannot change metadata.name or namespace")
            patched.update(apiVersion=kind.api_version, kind=kind.kind)
            validate(kind, patched)
            self._check_version(kind, record, metadata.get("resourceVersion"))
            check = self._update_check(admit, kind, namespace, name)
            return self._update(record, patched, "patch", check)

    def delete(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        options: dict[str, Any],
        admit: Admit | None = None,
    ) -> dict[str, Any]:
        _check_delete_options(options)
        with self._cond:
            record = self._existing(kind, namespace, name)
            preconditions = options.get("preconditions") or {}
            meta = record.obj["metadata"]
            for field in ("uid", "resourceVersion"):
                if preconditions.get(field) not in (None, meta[field]):
                    raise errors.conflict(
                        kind,
                        name,
                        f"Precondition failed: {field} in precondition: "
                        f"{preconditions[field]}, {field} in object meta: {meta[field]}",
                    )
            self._admit(admit, "DELETE", kind, namespace, name, None, record.obj)
            if record.delete_requested is None:
                self._mark_deleted(record, options.get("gracePeriodSeconds"), "delete")
            return _delete_answer(kind, record.obj, options)

    def delete_collection(
        self,
        kind: Kind,
        namespace: str | None,
        matches: ObjectTest,
        options: dict[str, Any],
        admit: Admit | None = None,
    ) -> list[dict[str, Any]]:
        """Delete the matching objects; all or none: each is admitted before any goes."""
        _check_delete_options(options)
        with self._cond:
            records = list(self._collection(kind, namespace, matches))
            for record in records:
                ns = record.obj["metadata"].get("namespace", "")
                self._admit(admit, "DELETE", kind, ns, "", None, record.obj)
            for record in records:
                if record.delete_requested is None:
                    self._mark_deleted(record, options.get("gracePeriodSeconds"), "delete")
            return [copy.deepcopy(r.obj) for r in records]

    def scale(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        with self._cond:
            return _scale_of(self._existing(kind, namespace, name).obj)

    def replace_scale(
        self, kind: Kind, namespace: str, name: str, body: Any, admit: Admit | None = None
    ) -> dict[str, Any]:
        with self._cond:
            record = self._existing(kind, namespace, name)
            return self._set_scale(kind, record, body, "update", admit)

    def patch_scale(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        content_type: str,
        body: bytes,
        admit: Admit | None = None,
    ) -> dict[str, Any]:
        with self._cond:
            record = self._existing(kind, namespace, name)
            patched = apply_patch(content_type, _scale_of(record.obj), body)
            return self._set_scale(kind, record, patched, "patch", admit)

    # -- timed behaviour -----------------------------------------------------------------

    def tick(self) -> None:
        """Finish due deletions and roll-outs (called by the server every few ms)."""
        now = time.time()
        with self._cond:
            for key in sorted(self._timed, key=_contents_first):
                record = self._records[key]
                if self._removal_due(key, record, now):
                    self._remove(key, record)
                elif record.rollout_started is not None and 0 <= self._timing.ready_delay <= (
                    now - record.rollout_started
                ):
                    previous = copy.deepcopy(record.obj)
                    record.obj["status"] = _deployment_status(record.obj, ready=True)
                    record.rollout_started = None
                    self._write(key, record, "MODIFIED", previous, None)
            if self._journal.due(len(self._records)):
                self._compact()

    def close(self) -> None:
        """Save and end every watch."""
        with self._cond:
            self._closed = True
            self._compact()
            self._journal.close()
            self._cond.notify_all()

    # -- internals (called with the lock held) -------------------------------------------

    def _existing(self, kind: Kind, namespace: str, name: str) -> Record:
        record = self._records.get((kind, namespace if kind.namespaced else "", name))
        if record is None:
            raise errors.not_found(kind, name)
        return record

    def _check_version(self, kind: Kind, record: Record, version: Any) -> None:
        if version not in (None, "", record.obj["metadata"]["resourceVersion"]):
            raise errors.conflict(
                kind,
                record.obj["metadata"]["name"],
                "the object has been modified; please apply your changes to the latest "
                "version and try again",
            )

    def _admit(
        self,
        admit: Admit | None,
        operation: str,
        kind: Kind,
        namespace: str,
        name: str,
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None,
        subresource: str = "",
    ) -> None:
        """Admission of a write about to be made (its error is the request's answer)."""
        if admit is None:
            return
        owner = self._records.get((NAMESPACE, "", namespace)) if kind.namespaced else None
        admit(
            Write(
                operation=operation,
                kind=kind,
                namespace=namespace if kind.namespaced else "",
                name=name,
                obj=obj,
                old=old,
                namespace_obj=owner.obj if owner is not None else None,
                subresource=subresource,
            )
        )

    def _update_check(self, admit: Admit | None, kind: Kind, namespace: str, name: str) -> Check:
        return lambda new, old: self._admit(admit, "UPDATE", kind, namespace, name, new, old)

    def _update(
        self, record: Record, incoming: dict[str, Any], verb: str, check: Check | None = None
    ) -> dict[str, Any]:
        """Apply a client's new version of an object, keeping what the server owns;
        `check` (admission) sees it just before it is written."""
        kind = kind_of(record.obj)
        assert kind is not None
        old = record.obj
        metadata = incoming["metadata"]
        for server_field in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ):
            if server_field in old["metadata"]:
                metadata[server_field] = old["metadata"][server_field]
            else:
                metadata.pop(server_field, None)
        if record.delete_requested is not None:
            added = set(metadata.get("finalizers") or []) - set(
                old["metadata"].get("finalizers") or []
            )
            if added:
                raise errors.invalid(
                    kind,
                    metadata["name"],
                    "metadata.finalizers",
                    "Forbidden: no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers {sorted(added)}",
                )
        if kind.server_status:
            incoming["status"] = copy.deepcopy(old.get("status"))
        if kind.kind == "Secret":
            _encode_string_data(incoming)
        if kind.kind == "Namespace":
            _label_namespace(incoming)
        if kind.kind == "Deployment":
            incoming.setdefault("spec", {}).setdefault("replicas", 1)
        rollout = False
        if _spec_of(incoming) != _spec_of(old):
            metadata["generation"] = old["metadata"]["generation"] + 1
            if kind.kind == "Deployment":
                incoming["status"] = _deployment_status(incoming, ready=False)
                rollout = True
        if check is not None:
            check(incoming, old)
        if rollout:
            record.rollout_started = time.time()
        if incoming == old:
            return copy.deepcopy(old)  # a no-op write changes nothing, as in the API server
        record.obj = incoming
        key = (kind, metadata.get("namespace", ""), metadata["name"])
        self._write(key, record, "MODIFIED", old, verb)
        return copy.deepcopy(incoming)

    def _set_scale(
        self, kind: Kind, record: Record, scale: Any, verb: str, admit: Admit | None = None
    ) -> dict[str, Any]:
        """Write a Scale's spec.replicas into its object (the `scale` subresource)."""
        if not isinstance(scale, dict):
            raise errors.bad_request("a Scale must be a JSON object")
        name = record.obj["metadata"]["name"]
        self._check_version(kind, record, (scale.get("metadata") or {}).get("resourceVersion"))
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid(
                kind,
                name,
                "spec.replicas",
                f"Invalid value: {replicas!r}: must be a non-negative integer",
            )
        incoming = copy.deepcopy(record.obj)
        incoming["spec"]["replicas"] = replicas
        namespace = record.obj["metadata"].get("namespace", "")

        def check(new: dict[str, Any], old: dict[str, Any]) -> None:
            self._admit(
                admit, "UPDATE", kind, namespace, name, _scale_of(new), _scale_of(old), "scale"
            )

        return _scale_of(self._update(record, incoming, verb, check))

    def _mark_deleted(self, record: Record, grace: Any, verb: str | None) -> None:
        """Start an asynchronous deletion; a Namespace starts deleting its contents too."""
        previous = copy.deepcopy(record.obj)
        metadata = record.obj["metadata"]
        metadata["deletionTimestamp"] = timestamp()
        metadata["deletionGracePeriodSeconds"] = int(grace or 0)
        record.delete_requested = time.time()
        kind = kind_of(record.obj)
        assert kind is not None
        if kind == NAMESPACE:
            record.obj["status"] = {"phase": "Terminating"}
            for content_key in list(self._members.get(metadata["name"], ())):
                content = self._records[content_key]
                if content.delete_requested is None:
                    self._mark_deleted(content, grace, None)
        key = (kind, metadata.get("namespace", ""), metadata["name"])
        self._write(key, record, "MODIFIED", previous, verb)

    def _removal_due(self, key: Key, record: Record, now: float) -> bool:
        if record.delete_requested is None or record.obj["metadata"].get("finalizers"):
            return False
        if now - record.delete_requested < self._timing.delete_delay:
            return False
        kind, _, name = key
        return kind != NAMESPACE or not self._members.get(name)

    def _remove(self, key: Key, record: Record) -> None:
        del self._records[key]
        del self._members[key[1]][key]
        self._timed.discard(key)
        self._resource_version += 1
        record.obj["metadata"]["resourceVersion"] = str(self._resource_version)
        self._journal.removed(self._resource_version, record.obj)
        self._publish("DELETED", record.obj, None)
        self._log("removed", record.obj)

    def _write(
        self,
        key: Key,
        record: Record,
        event: str,
        previous: dict[str, Any] | None,
        verb: str | None,
    ) -> None:
        self._resource_version += 1
        record.obj["metadata"]["resourceVersion"] = str(self._resource_version)
        self._index(key, record)
        self._journal.put(self._resource_version, record.saved())
        self._publish(event, record.obj, previous)
        if verb is not None:
            self._log(verb, record.obj)

    def _publish(self, event: str, obj: dict[str, Any], previous: dict[str, Any] | None) -> None:
        self._events.append(Event(self._resource_version, event, copy.deepcopy(obj), previous))
        self._cond.notify_all()

    def _log(self, verb: str, obj: dict[str, Any]) -> None:
        metadata = obj["metadata"]
        self._oplog.record(
            self.region,
            verb,
            obj["kind"],
            metadata.get("namespace"),
            metadata["name"],
            metadata.get("labels") or {},
        )

    def _first_kept_version(self) -> int:
        return self._events[0].resource_version if self._events else self._resource_version + 1

    def _index(self, key: Key, record: Record) -> None:
        self._records[key] = record
        self._members.setdefault(key[1], {})[key] = None
        if record.timed:
            self._timed.add(key)
        else:
            self._timed.discard(key)

    def _collection(self, kind: Kind, namespace: str | None, matches: ObjectTest) -> list[Record]:
        """Matching records of `kind` in `namespace` (None: in all), in creation order."""
        if namespace is None and kind.namespaced:
            keys: Iterable[Key] = self._records
        else:
            keys = self._members.get(namespace or "", {})
        records = [self._records[key] for key in keys if key[0] == kind]
        return [r for r in records if matches(r.obj)]

    def _compact(self) -> None:
        self._journal.compact(self._resource_version, [r.saved() for r in self._records.values()])

    def _load(self) -> None:
        loaded = self._journal.load()
        self._resource_version = loaded.resource_version
        for saved in loaded.saved.values():
            obj = saved["object"]
            kind = kind_of(obj)
            if kind is None:
                raise ValueError(f"{self._journal.snapshot}: unknown kind {obj.get('kind')!r}")
            metadata = obj["metadata"]
            key = (kind, metadata.get("namespace", ""), metadata["name"])
            self._index(key, Record(obj, saved["deleteRequested"], saved["rolloutStarted"]))
        self._compact()


def _contents_first(key: Key) -> bool:
    """Sort key for the ticker: a Namespace after the objects it holds."""
    return key[0] == NAMESPACE


def _parse_version(resource_version: str) -> int:
    if not resource_version.isdigit():
        raise errors.bad_request(f"invalid resourceVersion {resource_version!r}")
    return int(resource_version)


def _delete_answer(kind: Kind, obj: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """What a delete answers, as the API server does: the object while something still
    holds it (finalizers, a Namespace's contents, foreground deletion) and for custom
    resources; otherwise a Success `Status`, which a real cluster sends once the object is
    gone. Here the object still lingers for the delete delay, as deletion is asynchronous."""
    metadata = obj["metadata"]
    if (
        kind == NAMESPACE
        or kind.custom
        or metadata.get("finalizers")
        or options.get("propagationPolicy") == "Foreground"
    ):
        return copy.deepcopy(obj)
    details = {"name": metadata["name"], "kind": kind.plural, "uid": metadata["uid"]}
    if kind.group:
        details["group"] = kind.group
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def _check_delete_options(options: dict[str, Any]) -> None:
    policy = options.get("propagationPolicy")
    if policy is not None and policy not in PROPAGATION_POLICIES:
        raise errors.bad_request(
            f"propagationPolicy: Unsupported value: {policy!r}: supported values: "
            + ", ".join(f'"{p}"' for p in PROPAGATION_POLICIES)
        )
    grace = options.get("gracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or grace < 0):
        raise errors.bad_request("gracePeriodSeconds must be a non-negative integer")
    if options.get("dryRun"):
        raise errors.bad_request("dryRun is not supported by the emulator")


def _incoming(kind: Kind, namespace: str, body: Any) -> dict[str, Any]:
    """A client's object, checked against the URL it was sent to; apiVersion and kind
    default to the URL's, as the API server's decoder does."""
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON object")
    obj = copy.deepcopy(body)
    for field, expected in (("apiVersion", kind.api_version), ("kind", kind.kind)):
        if obj.setdefault(field, expected) != expected:
            raise errors.bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) or kind "
                f"({obj.get('kind')}) does not match the URL ({kind.api_version}, {kind.kind})"
            )
    metadata = obj.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise errors.bad_request("metadata must be an object")
    if kind.namespaced:
        if metadata.setdefault("namespace", namespace) != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
    else:
        metadata.pop("namespace", None)
    return obj


def _initial_events_end(kind: Kind, version: int) -> dict[str, Any]:
    """The bookmark that ends the initial events of a watch-list."""
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {
            "resourceVersion": str(version),
            "annotations": {"k8s.io/initial-events-end": "true"},
        },
    }
