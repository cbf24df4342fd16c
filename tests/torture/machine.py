"""The torture: a Hypothesis rule-based state machine over the real embedded stack.

Each example (an episode) gets a database and task queue of its own and one worker
process; its rules write intents as users do (the `gatewayflow` CLI in a subprocess, raw
pymongo writes), drop junk into MongoDB, make the cluster misbehave (the emulator's fault
rules and timing, foreign objects, finalizers) and SIGKILL processes. `quiesce` (a rule,
and the end of every episode) clears the faults, brings every process back, and checks
the invariants of checks.py against the model, each within a bound on time. A failing
episode is shrunk by Hypothesis to the shortest sequence of rules that still fails.

Every failure (an invariant, or a rule's own assertion such as a CLI's exit code) is
written to the world's counts when it happens, before Hypothesis sees it: a failure found
as the run's time runs out stays a failure however its shrinking ends. What may be drawn
next depends on the model alone (the rules drawn before, and whether each create worked),
never on timing: a seed draws the same episodes again.
"""

import asyncio
import contextlib
import functools
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    multiple,
    precondition,
    rule,
)
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from pymongo.errors import DuplicateKeyError
from urllib3.exceptions import HTTPError

from control import service
from gatewayflow.domain import naming
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.settings import Settings
from tests.conftest import SESSION_TIMING
from tests.torture import checks
from tests.torture.model import INVALID_ID_KINDS, ForeignObject, Junk, KubeRef, Model
from tests.torture.watch import TAG, Watch
from tests.torture.world import PROCESS_KINDS, World
from tests.worker_process import WorkerProcess

CONVERGE_SECONDS = 150.0
"""Bound on convergence once faults are cleared and every process is up."""
IDLE_CPU_LIMIT = 0.25
"""Share of one core an idle worker may use (its sweep every 2 s, the feed's polls)."""
SWEEP_SLACK_SECONDS = 4.0
"""A raw intent is acted on within the sweep interval plus this (a workflow task)."""
TEMPORAL_ID_LIMIT = 1000
MAX_LIVE = 16
"""Gateways alive at once in an episode: what 2 shared cores converge within the bound."""
SLOW_DELETE_SECONDS = 1.0
FINAL_FAULTS_SECONDS = 15.0
"""Bound on the wait for the episode's last faults to fire (the deletions call the cluster)."""

STATES = [s.value for s in GatewayState]
FAULTS: dict[str, dict[str, Any]] = {
    "5xx": {"status": 503, "rate": 0.2, "count": 40},
    "429": {"status": 429, "retryAfter": 1, "rate": 0.2, "count": 40},
    "latency": {"latency": 0.3, "rate": 0.3, "count": 60},
    "drop": {"drop": True, "rate": 0.1, "count": 20},
}


class RunOver(BaseException):
    """The run's time (or number of episodes) is over, or the shrinking of a failure has
    had its time: raised before an episode begins, never inside one."""


def recorded(step: Callable[..., Any]) -> Callable[..., Any]:
    """A rule whose failure is written down (`World.fail`) before Hypothesis sees it."""

    @functools.wraps(step)
    def run(self: "TortureMachine", *args: Any, **kwargs: Any) -> Any:
        try:
            return step(self, *args, **kwargs)
        except Exception as exc:
            self.failed = True
            self.world.fail(self.episode, self.ran, f"{step.__name__}: {exc}")
            raise

    return run


class TortureMachine(RuleBasedStateMachine):
    world: ClassVar[World]
    gateways = Bundle("gateways")

    def __init__(self) -> None:
        super().__init__()
        world = self.world
        if world.over():
            world.ended = True
            raise RunOver
        world.counts.episodes += 1
        self.episode = world.counts.episodes
        self.ran: list[str] = []
        self.failed = False
        world.counts.rules_by_episode.append(self.ran)
        try:
            self._begin()
        except Exception as exc:
            world.fail(self.episode, self.ran, f"the episode could not begin: {exc}")
            raise

    def _begin(self) -> None:
        world = self.world
        self.token = uuid.uuid4().hex[:4]
        suffix = f"{self.token}{self.episode:04d}"
        self.settings: Settings = world.settings.model_copy(
            update={"db_name": f"torture_{suffix}", "task_queue": f"torture-{suffix}"}
        )
        self.model = Model()
        self.serial = 0
        self.writes = 0
        self.stream_on = True
        self.workers: list[WorkerProcess] = []
        self.fault_rules: list[tuple[str, dict[str, Any]]] = []
        self.operator_removed: set[tuple[str, str, str]] = set()
        self.checked_deletions: set[str] = set()
        self.final_kills: list[str] = []
        self.final_faults: list[str] = []
        self.reaped_live: list[str] = []
        world.ensure_up()
        world.clear_faults()
        world.set_timing(**SESSION_TIMING)
        world.clear_oplog()
        self.watch = Watch(world.mongo, self.settings.db_name)
        self.watch.start()
        self._spawn_worker()

    # -- helpers ---------------------------------------------------------------------------
    def _count(self, name: str) -> None:
        self.ran.append(name)
        self.world.counts.rules[name] += 1
        self.world.say(f"episode {self.episode}: {name}")

    def _new_id(self) -> str:
        self.serial += 1
        return f"t{self.token}{self.episode:04d}-{self.serial:03d}"

    def _worker_settings(self) -> Settings:
        return self.settings.model_copy(update={"change_streams": self.stream_on})

    def _spawn_worker(self) -> None:
        name = f"{self.settings.task_queue}-w{len(self.workers)}-{time.monotonic_ns()}"
        self.workers.append(self.world.spawn_worker(self._worker_settings(), name))

    def _col(self, name: str = "ApiGateway") -> Any:
        return self.world.mongo[self.settings.db_name][name]

    def _tag(self) -> int:
        self.writes += 1
        return self.writes

    def _accept(self, gateway_id: str, state: GatewayState) -> None:
        gw = self.model.gateways.get(gateway_id)
        if gw is not None:
            gw.accept(state, self.model.never_ready)

    def _raw_doc(self, gateway_id: str, region: str, state: str = "Running") -> dict[str, Any]:
        now = datetime.now(UTC)
        return {
            "gatewayId": gateway_id,
            "state": state,
            "phase": "Creating",
            "region": region,
            "createdAt": now,
            "updatedAt": now,
            TAG: self._tag(),
        }

    # -- intents: the command line -----------------------------------------------------------
    @initialize(target=gateways, raw=st.integers(6, 11))
    @recorded
    def first_gateways(self, raw: int) -> Any:
        """Every episode starts with gateways: one from the CLI, the others inserted raw."""
        self._count("first_gateways")
        gid = self._new_id()
        code, out = self.world.cli(self.settings, "create", gid, timeout=90)
        assert code == 0, f"`gatewayflow create {gid}` exit {code}:\n{out}"
        self.model.add(gid)
        others = [self._new_id() for _ in range(raw)]
        self._col().insert_many([self._raw_doc(other, "local") for other in others])
        for other in others:
            self.model.add(other)
        return multiple(gid, *others)

    @initialize(kinds=st.lists(st.sampled_from(PROCESS_KINDS), min_size=1, max_size=2))
    @recorded
    def crash_at_the_end(self, kinds: list[str]) -> None:
        """Processes SIGKILLed (and started again) while the episode's last deletions run."""
        self.final_kills = kinds
        self.ran.append(f"crash_at_the_end({', '.join(kinds)})")

    @initialize(kinds=st.lists(st.sampled_from(sorted(FAULTS)), min_size=1, max_size=2))
    @recorded
    def faults_at_the_end(self, kinds: list[str]) -> None:
        """Cluster faults while the episode's last deletions begin (cleared at quiescence)."""
        self.final_faults = kinds
        self.ran.append(f"faults_at_the_end({', '.join(kinds)})")

    def _room(self) -> bool:
        alive = [gw for gw in self.model.live() if gw.intent is not GatewayState.DELETED]
        return len(alive) < MAX_LIVE

    @precondition(_room)
    @rule(
        target=gateways,
        wait=st.booleans(),
        region=st.sampled_from(["local", "local", "eu"]),
        domain=st.booleans(),
    )
    @recorded
    def create_cli(self, wait: bool, region: str, domain: bool) -> Any:
        self._count("create_cli")
        gid = self._new_id()
        args = ["create", gid, "--region", region]
        if domain:
            args += ["--custom-domain", f"{gid}.example.com"]
        if wait:
            args.append("--wait")
        code, out = self.world.cli(self.settings, *args, timeout=90)
        if self._col().find_one({"gatewayId": gid}) is None:
            assert code != 0, f"`gatewayflow {' '.join(args)}` said it worked:\n{out}"
            return multiple()
        self.model.add(gid, region)
        return gid

    @rule(
        gw=gateways,
        what=st.sampled_from(["stop", "start", "restart", "delete"]),
        wait=st.booleans(),
    )
    @recorded
    def request_cli(self, gw: str, what: str, wait: bool) -> None:
        self._count(f"{what}_cli")
        args = [what, gw, *(["--wait"] if wait else [])]
        code, out = self.world.cli(self.settings, *args, timeout=90)
        accepted = re.search(r"state -> (\w+)", out)
        if accepted:
            self._accept(gw, GatewayState(accepted.group(1)))
        else:
            assert code == 1, f"`gatewayflow {' '.join(args)}` exit {code}:\n{out}"

    # -- intents: raw MongoDB writes, as an operator's shell does them -----------------------
    @precondition(_room)
    @rule(target=gateways, count=st.integers(1, 4), region=st.sampled_from(["local", "eu"]))
    @recorded
    def insert_raw(self, count: int, region: str) -> Any:
        self._count("insert_raw")
        ids = [self._new_id() for _ in range(count)]
        if count == 1:
            self._col().insert_one(self._raw_doc(ids[0], region))
        else:
            self._col().insert_many([self._raw_doc(gid, region) for gid in ids])
        for gid in ids:
            self.model.add(gid, region)
        return multiple(*ids)

    @rule(gw=gateways, state=st.sampled_from(STATES))
    @recorded
    def update_one_raw(self, gw: str, state: str) -> None:
        self._count("update_one_raw")
        result = self._col().update_one(
            {"gatewayId": gw}, {"$set": {"state": state, TAG: self._tag()}}
        )
        if result.matched_count:
            self._accept(gw, GatewayState(state))

    @rule(
        gws=st.lists(gateways, min_size=2, max_size=4, unique=True),
        state=st.sampled_from(STATES),
    )
    @recorded
    def update_many_raw(self, gws: list[str], state: str) -> None:
        self._count("update_many_raw")
        found = [d["gatewayId"] for d in self._col().find({"gatewayId": {"$in": gws}})]
        self._col().update_many(
            {"gatewayId": {"$in": found}}, {"$set": {"state": state, TAG: self._tag()}}
        )
        for gid in found:
            self._accept(gid, GatewayState(state))

    @rule(gw=gateways, state=st.sampled_from(STATES))
    @recorded
    def replace_one_raw(self, gw: str, state: str) -> None:
        self._count("replace_one_raw")
        doc = self._col().find_one({"gatewayId": gw})
        if doc is None:
            return
        doc.pop("_id")
        result = self._col().replace_one(
            {"gatewayId": gw}, {**doc, "state": state, TAG: self._tag()}
        )
        if result.matched_count:
            self._accept(gw, GatewayState(state))

    @rule(gw=gateways)
    @recorded
    def region_change_raw(self, gw: str) -> None:
        """Refused by the system: a gateway's region is fixed at creation."""
        self._count("region_change_raw")
        model = self.model.gateways[gw]
        other = "eu" if model.region == "local" else "local"
        before = self._col().find_one_and_update(
            {"gatewayId": gw}, {"$set": {"region": other, TAG: self._tag()}}
        )
        if before is not None and before.get("resourceRegion") is None:
            # A raw insert is placed when the system first acts on it: either region may win.
            model.regions.add(other)

    @precondition(lambda self: any(not gw.orphaned for gw in self.model.live()))
    @rule(gw=gateways)
    @recorded
    def orphan_raw(self, gw: str) -> None:
        """An operator deletes a gateway's document by hand, whatever runs on it: what it
        owns becomes an orphan, for the reaper."""
        self._count("orphan_raw")
        model = self.model.gateways[gw]
        if model.intent is GatewayState.DELETED:
            return
        if self._col().delete_one({"gatewayId": gw}).deleted_count:
            model.orphan()

    @precondition(lambda self: any(gw.orphaned for gw in self.model.live()))
    @rule()
    @recorded
    def reap(self) -> None:
        """`gatewayflow reap --apply` with no grace: every orphan of every region, at once."""
        self._count("reap")
        self._reap()

    def _reap(self) -> None:
        """As an operator does: a run the reaper's limits hold (the episode's few gateways
        make a share of them, or its database is empty) is confirmed with the number it
        showed."""
        try:
            result = asyncio.run(service.reap_orphans(self.settings, 0.0))
            if result.hold is not None and result.hold.confirmable:
                self.world.say(f"episode {self.episode}: reap held: {result.hold.reason}")
                confirm = result.hold.would_adopt
                result = asyncio.run(service.reap_orphans(self.settings, 0.0, confirm=confirm))
        except Exception as exc:  # a server the torture just killed: the next run reaps
            self.world.say(f"episode {self.episode}: reap failed: {exc}")
            return
        ids = [orphan.gateway_id for orphan in result.reaped]
        self.world.say(f"episode {self.episode}: reaped {ids or 'nothing'}")
        self.world.counts.reaped += len(ids)
        self.reaped_live += checks.reaped_live(self.model, ids)

    def _reap_orphans(self, deadline: float) -> None:
        """Runs the reaper until the episode's orphans are gone (their deletions done)."""
        ids = [gw.gateway_id for gw in self.model.live() if gw.orphaned]
        while ids and time.monotonic() < deadline:
            left = checks.many_traces(self.world.settings, self.world.mongo, ids)
            ids = [gid for gid in ids if left[gid]]
            unadopted = [gid for gid in ids if self._col().find_one({"gatewayId": gid}) is None]
            if unadopted:
                self._reap()
            if ids:
                time.sleep(1.0)

    def _placed(self, gw: str) -> str:
        doc = self._col().find_one({"gatewayId": gw}) or {}
        return str(doc.get("resourceRegion") or self.model.gateways[gw].region)

    # -- junk ------------------------------------------------------------------------------
    @rule(
        what=st.sampled_from(INVALID_ID_KINDS),
        state=st.sampled_from(["Running", "Deleted"]),
        gw=gateways,
    )
    @recorded
    def junk_invalid_id(self, what: str, state: str, gw: str) -> None:
        self._count("junk_invalid_id")
        bad = {
            "bad-chars": f"{gw}/../x$",
            "neighbour": gw.replace("-", "_"),  # collides with the valid gw once normalised
            "too-long": gw + "x" * (TEMPORAL_ID_LIMIT + 1),
            "uppercase": gw.upper(),
        }[what]
        doc = self._raw_doc(bad, "local", state)
        try:
            result = self._col().insert_one(doc)
        except DuplicateKeyError:
            return  # the same junk is there already (gatewayId is unique)
        self.model.junk.append(Junk(result.inserted_id, what, bad))

    @rule(field=st.sampled_from(["state", "phase"]))
    @recorded
    def junk_unknown_enum(self, field: str) -> None:
        self._count("junk_unknown_enum")
        gid = self._new_id()
        doc = self._raw_doc(gid, "local")
        doc[field] = "Exploded" if field == "state" else "Halfway"
        result = self._col().insert_one(doc)
        self.model.junk.append(
            Junk(result.inserted_id, f"unknown {field}", gid, refusal_expected=False)
        )

    @rule(what=st.sampled_from(["id-int", "state-int", "functions-str", "instance-str"]))
    @recorded
    def junk_wrong_type(self, what: str) -> None:
        self._count("junk_wrong_type")
        gid = self._new_id()
        doc = self._raw_doc(gid, "local")
        if what == "id-int":
            doc["gatewayId"] = int(time.monotonic_ns() % 10**9)
        elif what == "state-int":
            doc["state"] = 42
        elif what == "functions-str":
            doc["functions"] = "many"
        else:
            doc["instance"] = "big"
        result = self._col().insert_one(doc)
        self.model.junk.append(
            Junk(result.inserted_id, what, doc["gatewayId"], refusal_expected=False)
        )

    @rule(collection=st.sampled_from(["Stage", "CloudFunction", "CronTrigger", "ClientApp"]))
    @recorded
    def junk_leaf(self, collection: str) -> None:
        """A malformed leaf document of a gateway that does not exist."""
        self._count("junk_leaf")
        gid = self._new_id()
        result = self._col(collection).insert_one({"gatewayId": gid, "name": 42, "junk": True})
        self.model.junk.append(
            Junk(result.inserted_id, f"{collection} leaf", gid, collection, refusal_expected=False)
        )

    # -- cluster behaviour -------------------------------------------------------------------
    @rule(kind=st.sampled_from(sorted(FAULTS)))
    @recorded
    def inject_faults(self, kind: str) -> None:
        self._count(f"fault_{kind}")
        self.fault_rules.append((kind, FAULTS[kind]))
        self.world.set_faults(self.fault_rules)

    @precondition(lambda self: self.world.timing.get("deleteDelay") != SLOW_DELETE_SECONDS)
    @rule()
    @recorded
    def slow_deletion(self) -> None:
        self._count("slow_deletion")
        self.world.set_timing(deleteDelay=SLOW_DELETE_SECONDS)

    @precondition(lambda self: not self.model.never_ready)
    @rule()
    @recorded
    def pods_never_ready(self) -> None:
        self._count("pods_never_ready")
        self.model.never_ready = True
        for gw in self.model.live():
            gw.may_time_out = gw.intent is not GatewayState.STOPPED or gw.may_time_out
        self.world.set_timing(readyDelay=-1)

    @rule(gw=gateways)
    @recorded
    def foreign_object(self, gw: str) -> None:
        """A ConfigMap without the gateway's label in its namespace: never ours to delete."""
        self._count("foreign_object")
        model, region = self.model.gateways[gw], self._placed(gw)
        ns, name = naming.namespace(gw), f"foreign-{self.serial}-{len(model.foreign)}"
        body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name), data={"owner": "someone"})
        created = self._kube_retry(region, lambda core: core.create_namespaced_config_map(ns, body))
        if created is not None:
            ref = KubeRef(region, "ConfigMap", ns, name)
            meta = created.metadata
            model.foreign.append(ForeignObject(ref, meta.uid, meta.resource_version))

    @rule(gw=gateways)
    @recorded
    def finalizer(self, gw: str) -> None:
        """A finalizer on the gateway's ConfigMap: its deletion waits until it is removed."""
        self._count("finalizer")
        model, region = self.model.gateways[gw], self._placed(gw)
        ns, name = naming.namespace(gw), naming.config_map(gw)
        patch = {"metadata": {"finalizers": ["torture.example.com/hold"]}}
        done = self._kube_retry(
            region, lambda core: core.patch_namespaced_config_map(name, ns, patch)
        )
        if done is not None:
            model.finalized.append(KubeRef(region, "ConfigMap", ns, name))

    def _kube_retry(self, region: str, call: Any, attempts: int = 5) -> Any:
        """The call through the official client; None when the object or namespace is not
        there (or terminating). Injected faults are retried."""
        for _ in range(attempts):
            try:
                with self.world.kube(self.settings.context_for(region)) as api:
                    return call(k8s.CoreV1Api(api))
            except ApiException as err:
                if err.status in (404, 403, 409, 422):
                    return None
                time.sleep(0.3)
            except HTTPError:
                time.sleep(0.3)
        return None

    # -- process faults ----------------------------------------------------------------------
    def _kill(self, kind: str, downtime: float) -> None:
        self.world.say(f"episode {self.episode}: SIGKILL {kind}")
        if kind != "worker":
            self.world.kill(kind, downtime)
            if kind == "kube" and self.fault_rules:
                self.world.set_faults(self.fault_rules)
            return
        if self.workers:
            self.workers.pop(0).kill()
            self.world.counts.kills["worker"] += 1
        time.sleep(downtime)
        self._spawn_worker()

    @rule(downtime=st.sampled_from([0.0, 0.5, 2.0]))
    @recorded
    def kill_worker(self, downtime: float) -> None:
        self._count("kill_worker")
        self._kill("worker", downtime)

    @rule(downtime=st.sampled_from([0.0, 1.0, 3.0]))
    @recorded
    def kill_temporal(self, downtime: float) -> None:
        self._count("kill_temporal")
        self._kill("temporal", downtime)

    @rule(downtime=st.sampled_from([0.0, 1.0, 3.0]))
    @recorded
    def kill_mongo(self, downtime: float) -> None:
        self._count("kill_mongo")
        self._kill("mongo", downtime)

    @rule(downtime=st.sampled_from([0.0, 1.0, 3.0]))
    @recorded
    def kill_kube(self, downtime: float) -> None:
        self._count("kill_kube")
        self._kill("kube", downtime)

    @precondition(lambda self: len(self.workers) < 2)
    @rule()
    @recorded
    def second_worker(self) -> None:
        self._count("second_worker")
        self._spawn_worker()

    @rule(on=st.booleans())
    @recorded
    def toggle_change_stream(self, on: bool) -> None:
        """Every worker restarted with the change stream off (the sweep alone), or on."""
        self._count("change_stream_on" if on else "change_stream_off")
        if on == self.stream_on:
            return
        self.stream_on = on
        self.model.stream_was_off = self.model.stream_was_off or not on
        count = len(self.workers)
        for worker in self.workers:
            worker.stop()
        self.workers = []
        for _ in range(max(count, 1)):
            self._spawn_worker()

    # -- quiescence and the invariants ---------------------------------------------------------
    @rule(probe=st.booleans())
    @recorded
    def quiesce(self, probe: bool) -> None:
        """Mid-episode: faults cleared, processes up, the invariants checked; with `probe`,
        the liveness checks too."""
        self._count("quiesce")
        self._quiesce(probe=probe)

    def teardown(self) -> None:
        """Quiescence, then every gateway left is deleted under the episode's last faults
        and kills, and quiescence again. Not after a failed rule (Hypothesis's own
        `finally`): the failure is recorded; the processes are stopped."""
        try:
            if not self.failed:
                self._last_deletions()
        except Exception as exc:
            self.world.fail(self.episode, self.ran, f"teardown: {exc}")
            raise
        finally:
            for worker in self.workers:
                worker.stop()
            self.watch.stop()
            self.world.clear_faults()
            with contextlib.suppress(Exception):
                self.world.mongo.drop_database(self.settings.db_name)

    def _last_deletions(self) -> None:
        self._quiesce(probe=True)
        live = [gw.gateway_id for gw in self.model.live()]
        self._col().update_many(
            {"gatewayId": {"$in": live}}, {"$set": {"state": "Deleted", TAG: self._tag()}}
        )
        for gid in live:
            self._accept(gid, GatewayState.DELETED)
        self.fault_rules = [(kind, FAULTS[kind]) for kind in self.final_faults]
        self.world.set_faults(self.fault_rules)
        # The deletions begin under the faults: they stay until one has fired.
        deadline = time.monotonic() + FINAL_FAULTS_SECONDS
        while not self.world.injected() and time.monotonic() < deadline:
            time.sleep(0.2)
        for kind in self.final_kills:
            time.sleep(1.0)
            self._kill(kind, 0.5)
        self._quiesce(probe=False)

    def _quiesce(self, probe: bool) -> None:
        world = self.world
        fired = world.clear_faults()
        self.fault_rules = []
        world.set_timing(**SESSION_TIMING)
        world.ensure_up()
        for worker in list(self.workers):
            if worker.process.poll() is not None:  # died by itself: replaced, as a kill's is
                self.workers.remove(worker)
                self._spawn_worker()
        self.model.never_ready = False
        violations: dict[str, list[str]] = {}
        # The operator's part: foreign objects are checked, then removed; finalizers too.
        self._operator(violations)
        deadline = time.monotonic() + CONVERGE_SECONDS
        self._reap_orphans(deadline)
        docs = self._converge(deadline)
        if self.reaped_live:
            violations["reaper_spared_live"] = self.reaped_live
        problems = checks.unconverged(self.model, docs, self.watch.timed_out_ids())
        if problems:
            violations["converges"] = problems
        self.watch.settle()
        if self.watch.blind:
            violations["watch_live"] = list(self.watch.blind)
        if self.watch.overwritten:
            violations["deleted_kept"] = list(self.watch.overwritten)
        oplog = world.oplog()
        deleted = [
            gw.gateway_id
            for gw in self.model.live()
            if not gw.expected() and gw.gateway_id not in docs
        ]
        traces = checks.many_traces(world.settings, world.mongo, deleted)
        deleting_since, removed = self.watch.deletions()
        order: list[str] = []
        after: list[str] = []
        for gid in deleted:
            if traces[gid]:
                violations.setdefault("converges", []).append(f"{gid} left: {traces[gid]}")
                continue
            gw = self.model.gateways[gid]
            gw.done = True
            began = deleting_since.get(gid)
            if gw.orphaned and began is None:
                continue  # its document went before anything was built: no deletion ran
            world.counts.deletions += 1
            o, a = checks.deletion_problems(gid, oplog, began, self.operator_removed)
            order += o
            after += a
        limit = self.settings.region_deletion_limit
        crowded = checks.over_the_limit(
            oplog, deleting_since, removed, limit, self.operator_removed
        )
        if crowded:
            violations["deletion_limit"] = crowded
        twice = checks.deleted_once(oplog, self.model)
        if twice:
            violations["deleted_once"] = twice
        if order:
            violations["deletion_order"] = order
        if after:
            violations["nothing_after_deletion"] = after
        touched = checks.foreign_touched(oplog, self.operator_removed, self.settings.installation)
        if touched:
            violations["foreign_untouched"] = touched
        live = self.model.live()
        elsewhere = checks.in_other_regions(world.settings, live, docs)
        if elsewhere:
            violations.setdefault("converges", []).extend(elsewhere)
        wrong = checks.phase_objects(self.settings, world.mongo, live, docs, self.operator_removed)
        if wrong:
            violations["phase_objects"] = wrong
        for junk in self.model.junk:
            if self.model.stream_was_off or not self.stream_on:
                junk.refusal_expected = junk.refusal_expected and junk.what in INVALID_ID_KINDS
        junk_problems = checks.junk_problems(world.mongo, self.settings, self.model.junk, oplog)
        if junk_problems:
            violations["junk_refused"] = junk_problems
        if probe and not violations:
            self._liveness(violations)
        for name, count in fired.items():
            world.counts.faults[name] += count
        if violations:
            for name, found in violations.items():
                if not world.counts.first_failure:
                    world.counts.violations[name] += len(found)
            lines = [f"{name}: {v}" for name, found in violations.items() for v in found]
            for line in lines:
                world.say(f"episode {self.episode}: VIOLATION {line}")
            raise AssertionError("invariants violated:\n  " + "\n  ".join(lines))

    def _operator(self, violations: dict[str, list[str]]) -> None:
        """What an operator does to unblock deletions: checks and removes what the torture
        put into gateway namespaces, then asks again for the deletions it held up."""
        retry: list[str] = []
        for gw in self.model.live():
            for ref in gw.finalized:
                self._kube_retry(
                    ref.region,
                    lambda core, r=ref: core.patch_namespaced_config_map(
                        r.name, r.namespace, {"metadata": {"finalizers": []}}
                    ),
                )
            for obj in gw.foreign:
                ref = obj.ref
                current = self._kube_retry(
                    ref.region,
                    lambda core, r=ref: core.read_namespaced_config_map(r.name, r.namespace),
                )
                if current is None:
                    violations.setdefault("foreign_untouched", []).append(
                        f"{ref.kind} {ref.namespace}/{ref.name} is gone"
                    )
                elif (current.metadata.uid, current.metadata.resource_version) != (
                    obj.uid,
                    obj.resource_version,
                ):
                    violations.setdefault("foreign_untouched", []).append(
                        f"{ref.kind} {ref.namespace}/{ref.name} was modified"
                    )
                self.operator_removed.add((ref.kind, ref.namespace, ref.name))
                self._kube_retry(
                    ref.region,
                    lambda core, r=ref: core.delete_namespaced_config_map(r.name, r.namespace),
                )
            if (gw.foreign or gw.finalized) and gw.intent is GatewayState.DELETED:
                retry.append(gw.gateway_id)
            gw.foreign, gw.finalized = [], []
        for gid in retry:
            self.world.cli(self.settings, "delete", gid, timeout=60)

    def _converge(self, deadline: float) -> dict[str, dict[str, Any]]:
        while True:
            docs = checks.gateway_docs(self.world.mongo, self.settings.db_name)
            timed_out = self.watch.timed_out_ids()
            if not checks.unconverged(self.model, docs, timed_out) or time.monotonic() > deadline:
                return docs
            time.sleep(0.5)

    def _liveness(self, violations: dict[str, list[str]]) -> None:
        """Idle CPU of the worker, then one raw intent acted on within the sweep interval."""
        worker = self.workers[0]
        share = checks.idle_cpu(worker.process.pid)
        if share > IDLE_CPU_LIMIT:
            violations["idle_cpu"] = [f"idle worker used {share:.0%} of a core"]
        candidates = [gw for gw in self.model.live() if gw.intent is not GatewayState.DELETED]
        if not candidates:
            return
        gw = candidates[0]
        docs = checks.gateway_docs(self.world.mongo, self.settings.db_name)
        phase = docs[gw.gateway_id]["phase"]
        flip = "Stopped" if phase == GatewayPhase.STARTED.value else "Running"
        self._col().update_one(
            {"gatewayId": gw.gateway_id}, {"$set": {"state": flip, TAG: self._tag()}}
        )
        self._accept(gw.gateway_id, GatewayState(flip))
        bound = self.settings.sweep_interval_seconds + SWEEP_SLACK_SECONDS
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            doc = self._col().find_one({"gatewayId": gw.gateway_id}) or {}
            if doc.get("phase") != phase:
                return
            time.sleep(0.1)
        violations["sweep_liveness"] = [
            f"{gw.gateway_id}: raw state {flip} not acted on within {bound:.0f}s "
            f"(change stream {'on' if self.stream_on else 'off'}, {len(self.model.junk)} junk)"
        ]
