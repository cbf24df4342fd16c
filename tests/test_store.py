"""The store against a real MongoDB-wire server: SecantusDB started as a subprocess."""

import logging
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient, monitoring
from pymongo.errors import OperationFailure, PyMongoError

from gatewayflow.domain.documents import (
    COLLECTIONS,
    ApiGateway,
    ClientApp,
    CloudFunction,
    CronTrigger,
    Database,
    Document,
    Environment,
    RuntimeDomain,
    Stage,
)
from gatewayflow.domain.naming import runtime_database, runtime_user
from gatewayflow.domain.states import (
    DatabasePhase,
    DatabaseState,
    DomainPhase,
    DomainState,
    GatewayPhase,
    GatewayState,
)
from gatewayflow.domain.transitions import Request
from gatewayflow.store.children import ChildRepository
from gatewayflow.store.client import Client, Db, RawDoc, make_client, ping
from gatewayflow.store.databases import (
    REGISTRY,
    REGISTRY_DATABASE,
    DatabaseRepository,
    RuntimeDatabases,
)
from gatewayflow.store.deletion_guard import DeletionGuardRepository, GuardLimits
from gatewayflow.store.dispatcher import STATE_COLLECTION, ChangeFeed, GatewayEvent
from gatewayflow.store.domains import RuntimeDomainRepository
from gatewayflow.store.errors import (
    ChangeStreamsUnavailable,
    GatewayExists,
    MalformedDocument,
    StateChangeRefused,
    UnknownGateway,
)
from gatewayflow.store.gateways import GatewayRepository
from gatewayflow.store.indexes import ensure_indexes
from tests.conftest import free_ports

SECANTUSD = Path(sys.executable).parent / "secantusd-py"
S, P = GatewayState, GatewayPhase


def _free_port() -> int:
    return free_ports(1)[0]


@contextmanager
def secantus(storage: Path, *extra: str, port: int | None = None) -> Iterator[str]:
    """A SecantusDB server on a free port; yields its URI and kills it afterwards."""
    port = port or _free_port()
    storage.mkdir(parents=True, exist_ok=True)
    log_path = storage.parent / f"{storage.name}-{port}.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [
                *(SECANTUSD, "--host", "127.0.0.1", "--port", str(port)),
                *("--storage-path", str(storage), "--sync-on-commit", *extra),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"secantusd exited early: {log_path.read_text()}")
            try:
                probe: Client
                with MongoClient(uri, serverSelectionTimeoutMS=200) as probe:
                    probe.admin.command("ping")
                break
            except PyMongoError:
                if time.monotonic() > deadline:
                    raise
        yield uri
    finally:
        # A crash, not a shutdown: quicker than SIGTERM, and --sync-on-commit keeps every
        # acknowledged write.
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with secantus(tmp_path_factory.mktemp("store") / "data") as uri:
        yield uri


@contextmanager
def fresh_db(client: Client) -> Iterator[Db]:
    db = client[f"gf_test_{uuid.uuid4().hex[:8]}"]
    ensure_indexes(db)
    try:
        yield db
    finally:
        client.drop_database(db.name)


@pytest.fixture
def db(mongo_uri: str) -> Iterator[Db]:
    client = make_client(mongo_uri)
    with fresh_db(client) as database:
        yield database
    client.close()


def _gateway(
    gateway_id: str, state: GatewayState = S.RUNNING, phase: GatewayPhase = P.CREATING
) -> ApiGateway:
    return ApiGateway(gateway_id=gateway_id, state=state, phase=phase)


# --- ApiGateway -----------------------------------------------------------------------


def test_insert_get_require(db: Db) -> None:
    gateways = GatewayRepository(db)
    ping(db)
    gw = ApiGateway(gateway_id="alpha", region="eu-1", custom_domain="api.example.com")
    gateways.insert(gw)

    raw = db.ApiGateway.find_one({"gatewayId": "alpha"})
    assert raw is not None
    assert raw["customDomain"] == "api.example.com"  # camelCase on the wire
    assert raw["progress"]["stepNumber"] == 0 and raw["state"] == "Running"

    got = gateways.require("alpha")
    assert (got.gateway_id, got.state, got.phase, got.region, got.custom_domain) == (
        "alpha",
        S.RUNNING,
        P.CREATING,
        "eu-1",
        "api.example.com",
    )
    assert got.instance == gw.instance
    # BSON keeps milliseconds; the stored time is the one we wrote.
    assert abs(got.created_at - gw.created_at) < timedelta(milliseconds=1)

    assert gateways.get("missing") is None
    with pytest.raises(UnknownGateway, match="no gateway 'missing'"):
        gateways.require("missing")


def test_duplicate_insert(db: Db) -> None:
    gateways = GatewayRepository(db)
    gateways.insert(_gateway("dup"))
    with pytest.raises(GatewayExists, match="'dup' already exists"):
        gateways.insert(_gateway("dup", state=S.STOPPED))
    assert gateways.require("dup").state is S.RUNNING
    assert db.ApiGateway.count_documents({"gatewayId": "dup"}) == 1


def test_set_state_is_conditional_on_phase(db: Db) -> None:
    gateways = GatewayRepository(db)
    gateways.insert(_gateway("busy", phase=P.DELETING))
    gateways.insert(_gateway("idle", phase=P.STARTED))
    before = gateways.require("idle")
    refuse = (P.DELETING, P.DELETED)

    with pytest.raises(StateChangeRefused, match=r"'busy'.*phase Deleting"):
        gateways.set_state("busy", S.STOPPED, refuse_if_phase_in=refuse)
    assert gateways.require("busy").state is S.RUNNING

    updated = gateways.set_state("idle", S.STOPPED, refuse_if_phase_in=refuse)
    assert updated.state is S.STOPPED and updated.phase is P.STARTED
    assert updated.updated_at >= before.updated_at
    assert gateways.require("idle").state is S.STOPPED

    # Without a condition any phase accepts the change (delete is always allowed).
    assert gateways.set_state("busy", S.DELETED).state is S.DELETED
    with pytest.raises(UnknownGateway):
        gateways.set_state("missing", S.STOPPED, refuse_if_phase_in=refuse)


def test_set_state_if_compares_the_state(db: Db) -> None:
    gateways = GatewayRepository(db)
    gateways.insert(_gateway("gw", state=S.RESTARTING, phase=P.STARTED))
    assert gateways.set_state_if("gw", S.RUNNING, expected=S.RESTARTING)
    assert gateways.require("gw").state is S.RUNNING
    gateways.set_state("gw", S.DELETED)  # a user's delete meanwhile wins
    assert not gateways.set_state_if("gw", S.RUNNING, expected=S.RESTARTING)
    assert gateways.require("gw").state is S.DELETED
    assert gateways.set_state_if("gw", S.STOPPED)  # unconditional
    assert not gateways.set_state_if("missing", S.STOPPED)


def test_progress_recording_and_reset(db: Db) -> None:
    gateways = GatewayRepository(db)
    gateways.insert(_gateway("gw", state=S.DELETED, phase=P.DELETING))

    assert gateways.begin(
        "gw", P.DELETING, state=S.DELETED, from_phases=[], operation="delete", total_steps=8
    )
    assert gateways.record_progress(
        "gw", step="triggers", step_number=1, completed="triggers", waiting_on="CronJob x"
    )
    assert gateways.record_progress(
        "gw", step="functions", step_number=2, completed="functions", error="boom"
    )
    progress = gateways.require("gw").progress
    assert (progress.operation, progress.total_steps) == ("delete", 8)
    assert (progress.step, progress.step_number) == ("functions", 2)
    assert progress.completed == ["triggers", "functions"]
    assert (progress.last_error, progress.waiting_on) == ("boom", "CronJob x")

    # None clears error/waiting_on; omitted fields are left alone.
    assert gateways.record_progress("gw", error=None, waiting_on=None, completed="triggers")
    progress = gateways.require("gw").progress
    assert progress.last_error is None and progress.waiting_on is None
    assert progress.step == "functions" and progress.completed == ["triggers", "functions"]

    assert gateways.begin(
        "gw", P.STOPPING, state=S.DELETED, from_phases=[P.STARTED], operation="stop", total_steps=3
    )
    progress = gateways.require("gw").progress
    assert (progress.operation, progress.total_steps, progress.completed) == ("stop", 3, [])
    assert progress.step is None and progress.step_number == 0

    assert not gateways.record_progress("missing", step="x")


def test_malformed_documents_are_reported_and_skipped(
    db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    gateways = GatewayRepository(db)
    gateways.insert(_gateway("good"))
    bad_id = db.ApiGateway.insert_one(
        {"gatewayId": "bad", "state": "Bogus", "phase": "Created"}
    ).inserted_id

    with pytest.raises(MalformedDocument) as raised:
        gateways.get("bad")
    message = str(raised.value)
    assert message.startswith(f"ApiGateway document 'bad' (_id {bad_id}) is malformed: state:")
    assert "'Running'" in message
    assert (raised.value.collection, raised.value.doc_id) == ("ApiGateway", bad_id)

    problems: list[MalformedDocument] = []
    assert [g.gateway_id for g in gateways.list(on_malformed=problems.append)] == ["good"]
    assert [p.gateway_id for p in problems] == ["bad"]

    with caplog.at_level(logging.WARNING, logger="gatewayflow.store"):
        assert [g.gateway_id for g in gateways.list()] == ["good"]
    assert f"ApiGateway document 'bad' (_id {bad_id}) is malformed" in caplog.text

    # Not a valid state, so never "unconverged": the sweep is not disturbed by it.
    assert gateways.unconverged() == [("good", S.RUNNING, P.CREATING)]

    children = ChildRepository(db)
    children.insert_many([CronTrigger(gateway_id="good", trigger_id="t1", function_name="f")])
    db.CronTrigger.insert_one({"gatewayId": "good", "triggerId": "t2"})  # no functionName
    problems.clear()
    loaded = children.load(CronTrigger, "good", on_malformed=problems.append)
    assert [t.trigger_id for t in loaded] == ["t1"]
    assert len(problems) == 1 and "functionName: Field required" in str(problems[0])
    assert str(problems[0]).startswith("CronTrigger document 'good' (_id ")


def test_unconverged(db: Db) -> None:
    gateways = GatewayRepository(db)
    pairs = {
        "run-creating": (S.RUNNING, P.CREATING),
        "run-started": (S.RUNNING, P.STARTED),
        "stop-started": (S.STOPPED, P.STARTED),
        "stop-stopped": (S.STOPPED, P.STOPPED),
        "restart-started": (S.RESTARTING, P.STARTED),
        "restart-stopped": (S.RESTARTING, P.STOPPED),
        "vn8ofl": (S.DELETED, P.STOPPED),
        "deleted": (S.DELETED, P.DELETED),
    }
    for gateway_id, (state, phase) in pairs.items():
        gateways.insert(_gateway(gateway_id, state, phase))

    found = gateways.unconverged(limit=100)
    assert sorted(found) == sorted(
        [
            ("run-creating", S.RUNNING, P.CREATING),
            ("stop-started", S.STOPPED, P.STARTED),
            ("restart-started", S.RESTARTING, P.STARTED),  # still owes its rolling update
            ("restart-stopped", S.RESTARTING, P.STOPPED),
            ("vn8ofl", S.DELETED, P.STOPPED),
            ("deleted", S.DELETED, P.DELETED),  # its document is still to be removed
        ]
    )
    assert len(gateways.unconverged(limit=5)) == 5
    assert len(gateways.unconverged(limit=1)) == 1


# --- leaf collections, RuntimeDomain, Database ---------------------------------------


def _children(gateway_id: str) -> list[Document]:
    envs = ("dev", "staging", "prod")
    return [
        *(Stage(gateway_id=gateway_id, name=env) for env in envs),
        *(Environment(gateway_id=gateway_id, name=env) for env in envs),
        ClientApp(gateway_id=gateway_id, environment="dev", name="web", client_id="c1"),
        ClientApp(gateway_id=gateway_id, environment="prod", name="web", client_id="c2"),
        CloudFunction(gateway_id=gateway_id, name="hello"),
        CloudFunction(gateway_id=gateway_id, name="world"),
        CronTrigger(gateway_id=gateway_id, trigger_id="t1", function_name="hello"),
    ]


def test_children_insert_is_idempotent_and_counts_cover_every_collection(db: Db) -> None:
    children = ChildRepository(db)
    GatewayRepository(db).insert(_gateway("gw"))
    RuntimeDomainRepository(db).upsert(RuntimeDomain(gateway_id="gw"))
    assert children.insert_many(_children("gw")) == 11
    assert children.insert_many(_children("other")) == 11
    # A retried activity inserts the same documents again: nothing is duplicated.
    assert children.insert_many(_children("gw")) == 0

    assert children.counts("gw") == {
        "ApiGateway": 1,
        "RuntimeDomain": 1,
        "Database": 0,
        "Stage": 3,
        "Environment": 3,
        "ClientApp": 2,
        "CloudFunction": 2,
        "CronTrigger": 1,
    }
    assert sorted(doc["name"] for doc in children.list("Stage", "gw")) == [
        "dev",
        "prod",
        "staging",
    ]
    (trigger,) = children.load(CronTrigger, "gw")
    assert (trigger.trigger_id, trigger.function_name) == ("t1", "hello")

    assert children.delete_all("Stage", "gw") == 3
    assert children.delete_all("Stage", "gw") == 0
    assert children.count("Stage", "gw") == 0 and children.count("Stage", "other") == 3

    with pytest.raises(ValueError, match="'Stages' is not a leaf collection"):
        children.list("Stages", "gw")
    with pytest.raises(ValueError, match="'Stages' is not a gateway collection"):
        children.count("Stages", "gw")


def test_runtime_domain_repository(db: Db) -> None:
    domains = RuntimeDomainRepository(db)
    stored = domains.upsert(RuntimeDomain(gateway_id="gw", hosts={"dev": "gw-dev.local"}))
    assert (stored.state, stored.phase, stored.hosts) == (
        DomainState.ACTIVE,
        DomainPhase.CREATING,
        {"dev": "gw-dev.local"},
    )
    assert domains.set_phase("gw", DomainPhase.CREATED, expected=[DomainPhase.CREATING])
    # A retried create keeps what is stored: the phase is not rewound.
    again = domains.upsert(RuntimeDomain(gateway_id="gw", state=DomainState.INACTIVE))
    assert (again.state, again.phase) == (DomainState.ACTIVE, DomainPhase.CREATED)

    assert domains.set_state("gw", DomainState.DELETED)
    assert not domains.set_phase("gw", DomainPhase.DELETED, expected=[DomainPhase.DELETING])
    assert domains.set_phase("gw", DomainPhase.DELETING)
    got = domains.get("gw")
    assert got is not None and (got.state, got.phase) == (
        DomainState.DELETED,
        DomainPhase.DELETING,
    )
    assert not domains.set_state("missing", DomainState.DELETED)
    assert domains.delete("gw") and not domains.delete("gw")
    assert domains.get("gw") is None


def test_database_repository(db: Db) -> None:
    databases = DatabaseRepository(db)
    doc = Database(
        gateway_id="gw", name=runtime_database("gw"), user=runtime_user("gw"), secret_name="gw-db"
    )
    assert databases.upsert(doc).phase is DatabasePhase.CREATING
    assert databases.set_phase("gw", DatabasePhase.CREATED, expected=[DatabasePhase.CREATING])
    got = databases.get("gw")
    assert got is not None and (got.name, got.phase) == ("gw_gw", DatabasePhase.CREATED)
    db.Database.update_one({"gatewayId": "gw"}, {"$unset": {"user": ""}})
    with pytest.raises(MalformedDocument, match=r"Database document 'gw' .* user: Field required"):
        databases.get("gw")
    assert databases.delete("gw") and databases.get("gw") is None


def test_runtime_database_create_and_drop_are_idempotent(mongo_uri: str) -> None:
    client = make_client(mongo_uri)
    runtime = RuntimeDatabases(client, "test-store")
    gateway_id = f"rt-{uuid.uuid4().hex[:6]}"
    name, user = runtime_database(gateway_id), runtime_user(gateway_id)
    assert not runtime.exists(gateway_id) and not runtime.user_exists(gateway_id)

    runtime.create(gateway_id, "first-password")
    runtime.create(gateway_id, "second-password")  # a retry with a new Secret
    assert runtime.exists(gateway_id) and runtime.user_exists(gateway_id)
    assert name in client.list_database_names()

    host = mongo_uri.split("//")[1].split("/")[0]

    def login(password: str) -> None:
        uri = f"mongodb://{user}:{password}@{host}/{name}?directConnection=true"
        with make_client(uri) as app:
            app[name]["items"].insert_one({"ok": True})

    login("second-password")  # the user has readWrite on its database
    with pytest.raises(OperationFailure, match="authentication failed"):
        login("first-password")
    # The registration that makes the database the gateway's is out of the user's reach:
    # its one role is on its own database (enforced by a server that runs with --auth).
    [info] = client[name].command("usersInfo", user)["users"]
    assert info["roles"] == [{"role": "readWrite", "db": name}]
    assert name != REGISTRY_DATABASE and client[REGISTRY_DATABASE][REGISTRY].find_one(
        {"_id": name, "installation": "test-store", "gatewayId": gateway_id}
    )
    assert runtime.owned(gateway_id)

    runtime.drop(gateway_id)
    runtime.drop(gateway_id)
    assert not runtime.exists(gateway_id) and not runtime.user_exists(gateway_id)
    assert name not in client.list_database_names()
    client.close()


# --- every query is served by an index -----------------------------------------------


class _Recorder(monitoring.CommandListener):
    QUERIES = {"find", "findAndModify", "update", "delete", "aggregate", "count"}

    def __init__(self) -> None:
        self.commands: list[tuple[str, str, RawDoc]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in self.QUERIES:
            self.commands.append((event.database_name, event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _as_finds(command_name: str, command: RawDoc) -> list[RawDoc]:
    """The `find` that selects what a recorded command selects.

    SecantusDB does not plan explained update/delete commands, so they are explained
    as the find of their filter, which is the same query plan on mongod.
    """
    coll = command[command_name]
    if command_name == "find":
        keep: RawDoc = {
            k: command[k] for k in ("filter", "sort", "limit", "projection") if k in command
        }
        return [{"find": coll, **keep}]
    if command_name == "findAndModify":
        return [{"find": coll, "filter": command.get("query", {})}]
    if command_name == "update":
        return [{"find": coll, "filter": u["q"]} for u in command["updates"]]
    if command_name == "delete":
        return [{"find": coll, "filter": d["q"]} for d in command["deletes"]]
    if command_name == "count":
        return [{"find": coll, "filter": command.get("query", {})}]
    first = command["pipeline"][0]
    if "$changeStream" in first:
        return []  # reads the oplog, not a collection
    return [{"find": coll, "filter": first["$match"]}]


def _stages(plan: Any) -> Iterator[str]:
    if isinstance(plan, dict):
        if "stage" in plan:
            yield plan["stage"]
        for value in plan.values():
            yield from _stages(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from _stages(item)


def test_every_query_is_served_by_an_index(mongo_uri: str) -> None:
    recorder = _Recorder()
    client: Client = MongoClient(mongo_uri, event_listeners=[recorder], tz_aware=True)
    with fresh_db(client) as db:
        # Every repository method, as the workflows, the dispatcher and the CLI call them.
        gateways = GatewayRepository(db)
        gateways.insert(_gateway("tour", phase=P.STARTED))
        gateways.get("tour")
        gateways.require("tour")
        gateways.list(limit=10)
        gateways.unconverged(limit=10)
        gateways.set_state("tour", S.DELETED, refuse_if_phase_in=[P.DELETED])
        with pytest.raises(StateChangeRefused):
            gateways.set_state("tour", S.RUNNING, refuse_if_phase_in=[P.STARTED])
        gateways.set_state_if("tour", S.DELETED, expected=S.DELETED)
        gateways.set_state("tour", S.DELETED, expected=S.DELETED)
        gateways.begin(
            "tour",
            P.DELETING,
            state=S.DELETED,
            from_phases=[P.CREATING],
            operation="d",
            total_steps=8,
        )
        gateways.record_progress("tour", step="triggers", completed="triggers", error=None)
        gateways.complete_step("tour", "triggers", P.DELETING, expected=[P.STARTED])
        gateways.give_back("tour", P.STARTED, S.RUNNING, "a mistake")
        gateways.request("tour", Request.DELETE, signal=True)

        guard = DeletionGuardRepository(db)
        for gid in ("tour", "held"):  # the second past the count: the region is counted
            guard.decide("local", gid, GuardLimits(1, 0.0, 600.0), began=False)
        guard.cancel("local", "a mistake")
        guard.forget_cancelled("local", "held")
        guard.release("local", 600.0)
        guard.regions()

        children = ChildRepository(db)
        children.insert_many(_children("tour"))
        children.list("Stage", "tour")
        children.load(CronTrigger, "tour")
        children.counts("tour")
        for name in ("Stage", "Environment", "ClientApp", "CloudFunction", "CronTrigger"):
            children.delete_all(name, "tour")

        domains = RuntimeDomainRepository(db)
        domains.upsert(RuntimeDomain(gateway_id="tour"))
        domains.get("tour")
        domains.set_state("tour", DomainState.DELETED)
        domains.set_phase("tour", DomainPhase.DELETED, expected=[DomainPhase.CREATING])
        domains.delete("tour")

        databases = DatabaseRepository(db)
        databases.upsert(Database(gateway_id="tour", name="gw_tour", user="u", secret_name="s"))
        databases.get("tour")
        databases.set_state("tour", DatabaseState.DELETED)
        databases.set_phase("tour", DatabasePhase.DELETING)
        databases.delete("tour")

        runtime = RuntimeDatabases(client, "test-store")
        runtime.ensure_indexes()
        runtime.create(f"{db.name.replace('_', '-')}-rt", "pw")
        runtime.registered()
        runtime.owned(f"{db.name.replace('_', '-')}-rt")

        feed = ChangeFeed(db)
        feed.save_token({"_data": "00"})
        feed.load_token()

        gateways.complete_step("tour", "finalize", P.DELETED, expected=[P.DELETING])
        gateways.remove_deleted("tour")

        explained: set[str] = set()
        assert recorder.commands
        for database, command_name, command in recorder.commands:
            for find in _as_finds(command_name, command):
                plan = client[database].command("explain", find, verbosity="queryPlanner")
                stages = set(_stages(plan["queryPlanner"]["winningPlan"]))
                assert "COLLSCAN" not in stages, f"{command_name} {command} scans: {plan}"
                assert "IXSCAN" in stages or "IDHACK" in stages, plan
                explained.add(find["find"])
        runtime.drop(f"{db.name.replace('_', '-')}-rt")
    client.close()
    assert explained >= {*COLLECTIONS, STATE_COLLECTION, "_meta"}


# --- the change feed --------------------------------------------------------------------


class _Consumer:
    """Runs `feed.events` in a thread, as the worker does, collecting events in a queue."""

    def __init__(self, feed: ChangeFeed) -> None:
        self.stop = threading.Event()
        self.events: queue.Queue[GatewayEvent] = queue.Queue()
        self.error: BaseException | None = None
        self._feed = feed
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._feed.events(self.stop):
                self.events.put(event)
        except BaseException as exc:
            self.error = exc

    def cpu_seconds(self) -> float:
        """CPU time the feed's thread has used so far."""
        assert self._thread.ident is not None
        return time.clock_gettime(time.pthread_getcpuclockid(self._thread.ident))

    def next(self, timeout: float = 15) -> GatewayEvent:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        self.stop.set()
        self._thread.join(15)
        assert not self._thread.is_alive()


def _wait_for_token(feed: ChangeFeed, other_than: object = None) -> None:
    """Until the feed saves a token: its starting point, or the one after a handled event."""
    deadline = time.monotonic() + 10
    while feed.load_token() in (None, other_than):
        assert time.monotonic() < deadline, "the change feed saved no token"
        time.sleep(0.05)


def _wait_for_log(caplog: pytest.LogCaptureFixture, text: str, times: int = 1) -> None:
    """Until the feed has logged `text` `times` times: what it did, not a guess of when."""
    deadline = time.monotonic() + 30
    while caplog.text.count(text) < times:
        assert time.monotonic() < deadline, f"{text!r} logged {times} time(s) within 30s"
        time.sleep(0.05)


def test_change_feed_events_and_resume_after_restart(db: Db) -> None:
    gateways = GatewayRepository(db)
    gateways.insert(_gateway("before"))  # before any feed ran: not an event
    feed = ChangeFeed(db, max_await_ms=100)
    consumer = _Consumer(feed)
    _wait_for_token(feed)

    gateways.insert(_gateway("gw"))
    # A phase change is not an intent change.
    db.ApiGateway.update_one({"gatewayId": "gw"}, {"$set": {"phase": "Created"}})
    db.ApiGateway.update_one({"gatewayId": "gw"}, {"$set": {"state": "Deleted"}})  # raw write
    assert consumer.next() == GatewayEvent("gw", S.RUNNING, P.CREATING)
    assert consumer.next() == GatewayEvent("gw", S.DELETED, P.CREATED)
    consumer.close()
    assert consumer.events.empty() and consumer.error is None

    # While no feed runs.
    db.ApiGateway.update_one({"gatewayId": "before"}, {"$set": {"state": "Stopped"}})
    db.ApiGateway.delete_one({"gatewayId": "gw"})  # a deletion is no event

    restarted = _Consumer(ChangeFeed(db, max_await_ms=100))
    assert restarted.next() == GatewayEvent("before", S.STOPPED, P.CREATING)
    gateways.set_state("before", S.DELETED)
    assert restarted.next() == GatewayEvent("before", S.DELETED, P.CREATING)
    restarted.close()
    assert restarted.events.empty() and restarted.error is None


def test_change_feed_skips_malformed_documents(db: Db, caplog: pytest.LogCaptureFixture) -> None:
    feed = ChangeFeed(db, max_await_ms=100)
    consumer = _Consumer(feed)
    _wait_for_token(feed)
    with caplog.at_level(logging.WARNING, logger="gatewayflow.store"):
        db.ApiGateway.insert_one({"gatewayId": "bad", "state": "Bogus", "phase": "Created"})
        GatewayRepository(db).insert(_gateway("good"))
        assert consumer.next() == GatewayEvent("good", S.RUNNING, P.CREATING)
    consumer.close()
    assert consumer.error is None
    assert "ApiGateway document 'bad'" in caplog.text


def test_change_feed_survives_a_server_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = _free_port()
    with secantus(tmp_path / "data", port=port) as uri:
        # Fail fast while the server is down, so the feed's own retry loop runs.
        client: Client = MongoClient(uri, serverSelectionTimeoutMS=300, tz_aware=True)
        db = client["gf_crash"]
        ensure_indexes(db)
        feed = ChangeFeed(db, max_await_ms=100, retry_seconds=0.2)
        consumer = _Consumer(feed)
        _wait_for_token(feed)
        start = feed.load_token()
        GatewayRepository(db).insert(_gateway("gw"))
        assert consumer.next().gateway_id == "gw"
        _wait_for_token(feed, other_than=start)  # handled, so not delivered again
    with caplog.at_level(logging.INFO, logger="gatewayflow.store.dispatcher"):
        # Killed: the feed notices, and keeps trying again (each attempt says so).
        _wait_for_log(caplog, "change feed on ApiGateway interrupted", times=2)
        with secantus(tmp_path / "data", port=port):  # same port, same data
            GatewayRepository(db).set_state("gw", S.DELETED)
            assert consumer.next(timeout=30) == GatewayEvent("gw", S.DELETED, P.CREATING)
            consumer.close()
    assert consumer.error is None
    assert "change feed on ApiGateway interrupted" in caplog.text
    assert "resumes from its saved token" in caplog.text
    client.close()


def test_change_feed_starts_fresh_when_its_token_is_gone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A tiny oplog: pruning soon drops the entry the saved token points at.
    with secantus(tmp_path / "data", "--oplog-max-entries", "3") as uri:
        client = make_client(uri)
        db = client["gf_history"]
        ensure_indexes(db)
        gateways = GatewayRepository(db)
        feed = ChangeFeed(db, max_await_ms=100)
        consumer = _Consumer(feed)
        _wait_for_token(feed)
        gateways.insert(_gateway("gw"))
        assert consumer.next().gateway_id == "gw"
        consumer.close()
        stale = feed.load_token()

        gateways.set_state("gw", S.STOPPED)  # missed: left to the sweep
        gateways.insert(_gateway("other"))
        assert client.admin.command("secantusAdmin.pruneOplog")["pruned"] > 0

        with caplog.at_level(logging.INFO, logger="gatewayflow.store.dispatcher"):
            restarted = _Consumer(ChangeFeed(db, max_await_ms=100))
            _wait_for_token(feed, other_than=stale)
            gateways.set_state("gw", S.DELETED)
            assert restarted.next() == GatewayEvent("gw", S.DELETED, P.CREATING)
            restarted.close()
        assert restarted.error is None
        assert "no longer valid" in caplog.text and "starting from now" in caplog.text
        client.close()


def test_change_streams_unavailable_on_a_standalone_server(tmp_path: Path) -> None:
    with secantus(tmp_path / "data", "--standalone") as uri:
        client = make_client(uri)
        feed = ChangeFeed(client["gf_standalone"])
        with pytest.raises(ChangeStreamsUnavailable, match="only supported on replica sets"):
            feed.check()
        with pytest.raises(ChangeStreamsUnavailable):
            next(feed.events(threading.Event()))
        client.close()


# --- intent integrity (issue 12) -----------------------------------------------------------


def test_a_request_is_a_compare_and_set_on_the_state_it_was_checked_against(db: Db) -> None:
    """Deleted is sticky: a request checked against Running never lands on a Deleted that
    was written after the check."""
    gateways = GatewayRepository(db)
    gateways.insert(_gateway("gw", S.RUNNING, P.STARTED))
    db.ApiGateway.update_one({"gatewayId": "gw"}, {"$set": {"state": "Deleted"}})
    with pytest.raises(StateChangeRefused, match="Deleted"):
        gateways.set_state("gw", S.STOPPED, expected=S.RUNNING)
    assert gateways.require("gw").state is S.DELETED
    assert gateways.set_state("gw", S.DELETED, expected=S.DELETED).state is S.DELETED


def test_finalize_removes_only_a_document_that_finished_its_deletion(db: Db) -> None:
    gateways = GatewayRepository(db)
    gateways.insert(_gateway("new", S.RUNNING, P.CREATING))  # re-created meanwhile
    gateways.insert(_gateway("half", S.DELETED, P.DELETING))
    gateways.insert(_gateway("done", S.DELETED, P.DELETED))
    assert not gateways.remove_deleted("new")
    assert not gateways.remove_deleted("half")
    assert gateways.remove_deleted("done")
    assert gateways.get("new") is not None and gateways.get("half") is not None
    assert gateways.get("done") is None


def test_unconverged_lists_deleted_gateways_first(db: Db) -> None:
    """However many other gateways are unconverged, a delete is never starved."""
    gateways = GatewayRepository(db)
    for n in range(5):
        gateways.insert(_gateway(f"run-{n}", S.RUNNING, P.CREATING))
    gateways.insert(_gateway("doomed", S.DELETED, P.STARTED))
    assert gateways.unconverged(limit=2)[0] == ("doomed", S.DELETED, P.STARTED)


def test_change_feed_reopens_after_the_collection_is_dropped(
    db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    """A drop (restore, migration) invalidates the stream: the feed opens a new one, and
    does not spin on the dead one meanwhile."""
    caplog.set_level(logging.INFO, logger="gatewayflow.store.dispatcher")
    feed = ChangeFeed(db, max_await_ms=100, retry_seconds=0.2)
    consumer = _Consumer(feed)
    _wait_for_token(feed)
    GatewayRepository(db).insert(_gateway("before"))
    assert consumer.next().gateway_id == "before"
    opened = caplog.text.count("starts from now")
    db.ApiGateway.drop()
    _wait_for_log(caplog, "was invalidated")  # the invalidation reached the feed
    _wait_for_log(caplog, "starts from now", times=opened + 1)  # and it opened a new one
    cpu_before = consumer.cpu_seconds()
    time.sleep(2)
    spent = consumer.cpu_seconds() - cpu_before
    GatewayRepository(db).insert(_gateway("after"))
    assert consumer.next().gateway_id == "after"
    consumer.close()
    assert consumer.error is None
    assert spent < 1.0, f"the feed thread used {spent:.2f} s of CPU in 2 s while idle"


def test_an_operation_begins_only_from_the_intent_it_was_decided_on(db: Db) -> None:
    gateways = GatewayRepository(db)
    gateways.insert(_gateway("gw", S.RUNNING, P.STOPPED))
    gateways.record_progress("gw", error="the last start timed out")
    # The user flipped the intent to Deleted after the workflow read Running.
    db.ApiGateway.update_one({"gatewayId": "gw"}, {"$set": {"state": "Deleted"}})

    def begin(phase: GatewayPhase, state: GatewayState, since: GatewayPhase) -> bool:
        name = "start" if phase is P.STARTING else "delete"
        return gateways.begin(
            "gw", phase, state=state, from_phases=[since], operation=name, total_steps=8
        )

    assert not begin(P.STARTING, S.RUNNING, P.STOPPED)
    assert gateways.require("gw").progress.operation is None  # nothing written
    # The state matches, the phase is not one to begin from: progress only.
    assert begin(P.DELETING, S.DELETED, P.CREATED)
    assert gateways.require("gw").phase is P.STOPPED
    assert begin(P.DELETING, S.DELETED, P.STOPPED)
    gw = gateways.require("gw")
    assert (gw.phase, gw.progress.operation, gw.progress.total_steps) == (P.DELETING, "delete", 8)
    assert gw.progress.last_error == "the last start timed out"
