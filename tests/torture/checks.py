"""The invariants, each a function from what the servers say (and the model) to a list of
violations. They read through the independent oracles (tests/oracles.py), the emulator's
op log and the server's change stream (watch.py), never through the code under test.
"""

import asyncio
import os
import time
from collections.abc import Collection, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes.config import list_kube_config_contexts
from pymongo import MongoClient
from temporalio.service import RPCError, RPCStatusCode

from gatewayflow.client import connect
from gatewayflow.domain import naming
from gatewayflow.domain.states import GatewayState
from gatewayflow.settings import Settings
from tests.emulator_admin import OpItem, deletion_order_violations, of_gateway
from tests.oracles import SYSTEM_DATABASES, kube_objects, owned
from tests.torture.model import (
    INVALID_ID_KINDS,
    TIMED_OUT,
    TIMED_OUT_MARK,
    Gateway,
    Junk,
    Model,
)

INVARIANTS = (
    "converges",
    "phase_objects",
    "deletion_limit",
    "deleted_once",
    "watch_live",
    "deleted_kept",
    "foreign_untouched",
    "junk_refused",
    "deletion_order",
    "nothing_after_deletion",
    "idle_cpu",
    "sweep_liveness",
    "reaper_spared_live",
)
MUTATING = ("update", "patch", "delete", "removed")
CLOCK_TOLERANCE = timedelta(milliseconds=2)
ENVIRONMENTS = ("dev", "staging", "prod")
DEFAULT_TRIGGERS = 1
"""CronTriggers of a document that does not say (`triggers` absent): the document's default."""
AT_REST: dict[tuple[Any, Any], bool] = {("Running", "Started"): True, ("Stopped", "Stopped"): False}
"""(state, phase) of a gateway at rest -> whether it is started."""


def gateway_docs(client: MongoClient[dict[str, Any]], db_name: str) -> dict[str, dict[str, Any]]:
    return {
        str(doc["gatewayId"]): doc
        for doc in client[db_name]["ApiGateway"].find({})
        if isinstance(doc.get("gatewayId"), str)
    }


def unconverged(
    model: Model, docs: dict[str, dict[str, Any]], timed_out: Collection[str] = ()
) -> list[str]:
    """Each live gateway that is not (yet) where its last accepted intent says.

    Stopped instead of a start is right only after a start timeout, whose reason was
    written with the state (`timed_out`, from the change stream) or is still the last
    error; a later error (a refused region change, say) may have replaced it since."""
    problems = []
    for gw in model.live():
        doc = docs.get(gw.gateway_id)
        got = None if doc is None else (doc.get("state"), doc.get("phase"))
        want = gw.expected()
        if not want:
            if doc is not None:
                problems.append(f"{gw.gateway_id}: Deleted accepted, the document is at {got}")
        elif doc is None:
            problems.append(f"{gw.gateway_id}: intent {gw.intent.value}, the document is gone")
        elif got not in [(s.value, p.value) for s, p in want]:
            problems.append(
                f"{gw.gateway_id}: intent {gw.intent.value}, at {got}, "
                f"lastError {(doc.get('progress') or {}).get('lastError')!r}"
            )
        elif got == (TIMED_OUT[0].value, TIMED_OUT[1].value) and gw.intent.value != "Stopped":
            error = str((doc.get("progress") or {}).get("lastError"))
            if TIMED_OUT_MARK not in error and gw.gateway_id not in timed_out:
                problems.append(f"{gw.gateway_id}: Stopped instead of {gw.intent.value}: {error}")
    return problems


def at_rest_objects(
    gateway_id: str, started: bool, trigger_ids: Iterable[str], custom_domain: bool
) -> dict[tuple[str, str, str], bool | None]:
    """What a gateway at rest holds in its region, written out from docs/inventory.md:
    (kind, namespace, name) -> a CronJob's `spec.suspend` (None for other kinds). Started:
    everything. Stopped: no Deployment, Service or domain routes, its CronJobs suspended,
    the rest kept (base, database Secret, plugin config, stage routes, TLS, certificate)."""
    gid, ns = gateway_id, f"gw-{gateway_id}"
    want: dict[tuple[str, str, str], bool | None] = {
        ("Namespace", "", ns): None,
        ("RoleBinding", ns, "gatewayflow-gateway"): None,
        ("ConfigMap", ns, f"{gid}-config"): None,
        ("Secret", ns, f"{gid}-db"): None,
        ("ApisixPluginConfig", ns, f"{gid}-plugins"): None,
    }
    for env in ENVIRONMENTS:
        want[("ApisixRoute", ns, f"{gid}-stage-{env}")] = None
        want[("ApisixTls", ns, f"{gid}-{env}-tls")] = None
        if started:
            want[("ApisixRoute", ns, f"{gid}-{env}")] = None
    if custom_domain:
        want[("ApisixTls", ns, f"{gid}-custom-tls")] = None
        want[("Certificate", ns, f"{gid}-runtime-custom-domain")] = None
    if started:
        want[("Deployment", ns, gid)] = None
        want[("Service", ns, gid)] = None
    for trigger_id in trigger_ids:
        want[("CronJob", ns, f"{gid}-trigger-{trigger_id}")] = not started
    return want


def phase_objects(
    settings: Settings,
    client: MongoClient[dict[str, Any]],
    gateways: list[Gateway],
    docs: dict[str, dict[str, Any]],
    ignore: Collection[tuple[str, str, str]] = (),
) -> list[str]:
    """Each live gateway at rest (Running/Started, Stopped/Stopped) holds in the cluster
    exactly what its phase says (`at_rest_objects`), read by the oracle: every object of
    every discovered kind, one listing per region. `ignore`: the torture's own objects,
    removed at quiescence and perhaps still terminating."""
    problems: list[str] = []
    by_region: dict[str, list[tuple[str, dict[str, Any], bool]]] = {}
    for gw in gateways:
        doc = docs.get(gw.gateway_id)
        started = None if doc is None else AT_REST.get((doc.get("state"), doc.get("phase")))
        if doc is None or started is None or not gw.expected():
            continue  # gone, or not at rest: `converges` says so
        region = str(doc.get("resourceRegion") or gw.region)
        by_region.setdefault(region, []).append((gw.gateway_id, doc, started))
    db = client[settings.db_name]
    for region, members in sorted(by_region.items()):
        objects = kube_objects(settings, settings.context_for(region))
        for gid, doc, started in members:
            triggers = [str(t.get("triggerId")) for t in db["CronTrigger"].find({"gatewayId": gid})]
            count = doc.get("triggers", DEFAULT_TRIGGERS)
            if len(triggers) != count:
                problems.append(f"{gid}: {len(triggers)} CronTrigger documents, triggers={count}")
            want = at_rest_objects(gid, started, triggers, bool(doc.get("customDomain")))
            have = {
                (kind, ns, name): obj
                for kind, ns, name, obj in owned(objects, gid)
                if (kind, ns, name) not in ignore
            }
            at = f"{gid} ({doc.get('state')}/{doc.get('phase')}) in {region}"
            missing = sorted(set(want) - set(have))
            extra = sorted(set(have) - set(want))
            if missing:
                problems.append(f"{at}: missing {_refs(missing)}")
            if extra:
                problems.append(f"{at}: should not have {_refs(extra)}")
            for key, suspend in want.items():
                spec = (have.get(key) or {}).get("spec") or {}
                if suspend is not None and key in have and bool(spec.get("suspend")) != suspend:
                    problems.append(f"{at}: {_refs([key])} suspend={spec.get('suspend')}")
    return problems


def _refs(keys: Iterable[tuple[str, str, str]]) -> str:
    return ", ".join(f"{kind} {ns + '/' if ns else ''}{name}" for kind, ns, name in keys)


def over_the_limit(
    oplog: list[OpItem],
    began: dict[str, datetime],
    removed: dict[str, datetime],
    limit: int,
    ours: Collection[tuple[str, str, str]] = (),
) -> list[str]:
    """The moments more deletions of one region ran at once than the limit, read from
    the cluster: a deletion runs from its first delete call after its phase became
    Deleting (`began`; a stop's deletes before do not count, nor the torture's own of its
    foreign objects, `ours`) until its Namespace is removed, or its ApiGateway document
    (`removed`), whichever the records show first."""
    spans: dict[str, list[tuple[datetime, datetime, str]]] = {}
    for gid, since in began.items():
        start = since - CLOCK_TOLERANCE
        items = [
            i
            for i in of_gateway(gid, oplog)
            if _when(i) >= start and (i["kind"], i["namespace"], i["name"]) not in ours
        ]
        first = next((i for i in items if i["verb"] == "delete"), None)
        if first is None:
            continue
        gone = [_when(i) for i in items if i["verb"] == "removed" and i["kind"] == "Namespace"]
        if gid in removed and removed[gid] >= start:
            gone.append(removed[gid])
        end = min(gone, default=datetime.max.replace(tzinfo=UTC))
        spans.setdefault(first["region"], []).append((_when(first), end, gid))
    problems = []
    for region, found in sorted(spans.items()):
        # Ends sort before starts at the same instant: a permit given back, then taken.
        edges = sorted(
            [(s, 1, gid) for s, _e, gid in found] + [(e, 0, gid) for _s, e, gid in found]
        )
        running: set[str] = set()
        worst: tuple[int, datetime, list[str]] = (limit, datetime.min, [])
        for when, starts, gid in edges:
            (running.add if starts else running.discard)(gid)
            if len(running) > worst[0]:
                worst = (len(running), when, sorted(running))
        if worst[2]:
            count, when, ids = worst
            problems.append(
                f"region {region}: {count} deletions at once at {when:%H:%M:%S.%f} "
                f"(limit {limit}): {', '.join(ids)}"
            )
    return problems


def deleted_once(oplog: list[OpItem], model: Model) -> list[str]:
    """A gateway's Namespace is deleted once in its life: never while the gateway lives,
    once by its deletion (when one was ever made), never again."""
    problems = []
    for gw in model.gateways.values():
        items = of_gateway(gw.gateway_id, oplog)
        made = sum(1 for i in items if i["kind"] == "Namespace" and i["verb"] == "create")
        deletes = [i for i in items if i["kind"] == "Namespace" and i["verb"] == "delete"]
        allowed = int(gw.intent is GatewayState.DELETED and made > 0)
        if len(deletes) > allowed or (gw.done and made and not deletes):
            seqs = [i["seq"] for i in deletes]
            problems.append(
                f"{gw.gateway_id} (intent {gw.intent.value}{', done' if gw.done else ''}): "
                f"Namespace created {made} time(s), deleted {len(deletes)} (seq {seqs})"
            )
    return problems


def many_traces(
    settings: Settings, client: MongoClient[dict[str, Any]], ids: Iterable[str]
) -> dict[str, list[str]]:
    """`tests.oracles.traces` for many gateways at once (one listing of each server):
    databases, users and documents on the MongoDB server, objects in every region."""
    ids = list(ids)
    found: dict[str, list[str]] = {gid: [] for gid in ids}
    if not ids:
        return found
    marks = {gid: {gid, gid.replace("-", "_")} for gid in ids}
    for db_name in client.list_database_names():
        db = client[db_name]
        users = [u["user"] for u in db.command("usersInfo").get("users", [])]
        for gid in ids:
            if any(mark in db_name for mark in marks[gid]):
                found[gid].append(f"database {db_name}")
            found[gid] += [
                f"user {u} in {db_name}" for u in users if any(m in u for m in marks[gid])
            ]
        if db_name in SYSTEM_DATABASES:
            continue
        for collection in db.list_collection_names():
            if collection.startswith("system."):
                continue
            for gid in db[collection].distinct("gatewayId", {"gatewayId": {"$in": ids}}):
                found[str(gid)].append(f"{db_name}.{collection}")
    contexts, _ = list_kube_config_contexts(  # type: ignore[no-untyped-call]
        config_file=str(settings.kubeconfig)
    )
    for context in sorted(c["name"] for c in contexts):
        for kind, obj in kube_objects(settings, context):
            meta = obj.get("metadata") or {}
            name, namespace = meta.get("name", ""), meta.get("namespace") or ""
            labels = (meta.get("labels") or {}).values()
            for gid in ids:
                if gid in name or gid in namespace or gid in labels:
                    found[gid].append(f"{context}: {kind} {namespace}/{name}")
    return found


def in_other_regions(
    settings: Settings, gateways: list[Gateway], docs: dict[str, dict[str, Any]]
) -> list[str]:
    """Each gateway lives in one region, one the model allows, and has nothing elsewhere."""
    problems, placed = [], {}
    for gw in gateways:
        doc = docs.get(gw.gateway_id)
        if doc is None:
            continue
        region = doc.get("resourceRegion")
        if region not in gw.regions:
            problems.append(f"{gw.gateway_id}: placed in {region!r}, not in {sorted(gw.regions)}")
        placed[gw.gateway_id] = region
    for region in settings.regions:
        names = [gid for gid, where in placed.items() if where != region]
        if not names:
            continue
        for kind, obj in kube_objects(settings, settings.context_for(region)):
            meta = obj.get("metadata") or {}
            text = f"{meta.get('namespace') or ''}/{meta.get('name', '')}"
            problems += [f"{gid}: {kind} {text} in region {region}" for gid in names if gid in text]
    return problems


def foreign_touched(
    oplog: list[OpItem], operator_removed: set[tuple[str, str, str]], installation: str
) -> list[str]:
    """Every change to an object of a gateway namespace that lacks that gateway's labels
    in the episode's installation (the torture's own removals of its foreign objects, at
    quiescence, excepted)."""
    problems = []
    for item in oplog:
        if item["verb"] not in MUTATING:
            continue
        owner_ns = item["name"] if item["kind"] == "Namespace" else item["namespace"] or ""
        if not owner_ns.startswith("gw-"):
            continue
        gid = owner_ns.removeprefix("gw-")
        labels = item["labels"] or {}
        if labels == labels | naming.owner_labels(installation, gid):
            continue
        if (item["kind"], owner_ns, item["name"]) in operator_removed:
            continue
        problems.append(
            f"{item['verb']} {item['kind']} {owner_ns}/{item['name']} (seq {item['seq']}) "
            "without the gateway's labels"
        )
    return problems


def deletion_problems(
    gateway_id: str,
    oplog: list[OpItem],
    began: datetime | None,
    ours: Collection[tuple[str, str, str]] = (),
) -> tuple[list[str], list[str]]:
    """(order violations, objects created after the deletion began) for one deletion;
    `ours` are the torture's own foreign objects (made and removed by it, not the system)."""
    if began is None:
        return [f"{gateway_id}: gone, but its phase was never Deleting"], []
    start = began - CLOCK_TOLERANCE
    items = [
        i
        for i in of_gateway(gateway_id, oplog)
        if _when(i) >= start and (i["kind"], i["namespace"], i["name"]) not in ours
    ]
    if not any(i["verb"] == "create" for i in of_gateway(gateway_id, oplog)):
        return [], []  # nothing was ever created in the cluster: nothing to order
    order = [f"{gateway_id}: {p}" for p in deletion_order_violations(gateway_id, items)]
    created = [
        f"{gateway_id}: {i['kind']} {i['name']} created at {i['time']}, after the deletion "
        f"began at {began:%H:%M:%S.%f}"
        for i in items
        if i["verb"] == "create"
    ]
    return order, created


def _when(item: OpItem) -> datetime:
    return datetime.fromisoformat(item["time"])


def junk_problems(
    client: MongoClient[dict[str, Any]], settings: Settings, junk: list[Junk], oplog: list[OpItem]
) -> list[str]:
    """Junk documents are still there, carry the refusal where one is owed, and were
    never acted on: no workflow for them, nothing of theirs in any cluster."""
    db = client[settings.db_name]
    problems = []
    for item in junk:
        doc = db[item.collection].find_one({"_id": item.doc_id})
        if doc is None:
            problems.append(f"{item.what} junk {item.gateway_id!r}: the document was removed")
            continue
        if item.refusal_expected:
            error = str((doc.get("progress") or {}).get("lastError") or "")
            if not error.startswith("refused"):
                problems.append(f"{item.what} junk {item.gateway_id!r}: no refusal ({error!r})")
        if isinstance(item.gateway_id, str):
            ns = f"gw-{item.gateway_id}"
            touched = [i for i in oplog if ns in (i["namespace"], i["name"])]
            if touched:
                problems.append(f"{item.what} junk {item.gateway_id!r}: {touched[0]}")
            runtime = f"gw_{item.gateway_id.replace('-', '_')}"
            # A neighbour's name is its valid twin's database (gw_a_b for a-b): skip it.
            if item.what != "neighbour" and runtime in client.list_database_names():
                problems.append(f"{item.what} junk {item.gateway_id!r}: database {runtime}")
    # A document with a valid id but a malformed body may wake its workflow, which reads
    # it, finds it malformed and waits; an invalid id must not even reach Temporal.
    ids = [str(j.gateway_id) for j in junk if j.what in INVALID_ID_KINDS]
    problems += asyncio.run(_junk_workflows(settings, ids))
    return problems


async def _junk_workflows(settings: Settings, ids: list[str]) -> list[str]:
    if not ids:
        return []
    client = await connect(settings)
    found = []
    for gid in ids:
        try:
            wid = naming.gateway_workflow_id(settings.installation, gid)
            await client.get_workflow_handle(wid).describe()
        except RPCError as err:
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                continue
            raise
        found.append(f"junk {gid!r}: workflow {wid} exists")
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def idle_cpu(pid: int, seconds: float = 3.0) -> float:
    """Share of one core a process uses over `seconds`."""
    before, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - start)


def now() -> datetime:
    return datetime.now(UTC)


def reaped_live(model: Model, reaped: Iterable[str]) -> list[str]:
    """Gateways the reaper adopted although their document was never removed and no
    deletion was asked for: the reaper must only ever take what no gateway owns."""
    problems = []
    for gid in reaped:
        gw = model.gateways.get(gid)
        if gw is not None and not gw.orphaned and gw.intent is not GatewayState.DELETED:
            problems.append(f"{gid}: reaped while its intent is {gw.intent.value}")
    return problems
