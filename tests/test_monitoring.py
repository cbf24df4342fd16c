"""deploy/monitoring: the alert and recording rules and the Grafana dashboard.

Every expression parses (promql-parser; `promtool check rules` and `promtool test rules`
where the distribution's `prometheus` package is installed); every metric they name is
one a real worker exports under that name, with the labels they use; and the metrics
added for them (the change stream, the deletion permits, failed drift repairs) show on
the real stack what they claim.
"""

import asyncio
import contextlib
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from kubernetes import client as k8s
from prometheus_client.parser import text_string_to_metric_families
from pymongo import MongoClient

from control import service
from control.dispatcher import deliver
from gatewayflow.cluster import manifests
from gatewayflow.domain import naming
from gatewayflow.domain.states import GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.metrics import DeletionPermits, start_metrics
from gatewayflow.settings import Settings
from gatewayflow.store.client import Db
from gatewayflow.store.indexes import ensure_indexes
from tests.conftest import free_ports
from tests.emulator_admin import EmulatorAdmin, cluster_admin
from tests.gateway_harness import Harness, harness, unique_id
from tests.test_metrics import Samples, samples, scrape, value

REPO = Path(__file__).resolve().parent.parent
MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "gatewayflow-rules.yaml"
RULE_TESTS = MONITORING / "gatewayflow-rules.test.yaml"
DASHBOARD = MONITORING / "gatewayflow-dashboard.json"
PROMTOOL_MISSING = (
    "promtool is not installed (Debian/Ubuntu: `apt-get install prometheus`; "
    "or a Prometheus release's `promtool` on PATH)"
)
# Grafana's range variable, as Grafana replaces it before the query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "5m"}


# -- what the files say ----------------------------------------------------------------------
def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recorded() -> dict[str, str]:
    """Recorded series name -> its expression."""
    return {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}


def dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return board


def panel_targets() -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) of every query of the dashboard."""
    return [
        (panel["title"], target)
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every rule and panel query."""
    found = [(rule.get("alert") or rule["record"], rule["expr"]) for rule in rules()]
    found += [(f"panel {title!r}", target["expr"]) for title, target in panel_targets()]
    return found


def parsed(expr: str) -> promql_parser.Expr:
    for variable, replacement in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, replacement)
    return promql_parser.parse(expr)


def selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(parsed(expr), visit)
    return found


def grouping_labels(expr: str) -> list[tuple[list[str], list[promql_parser.VectorSelector]]]:
    """For each `by (...)` aggregation: its labels, and the selectors it aggregates."""
    found = []

    def visit(node: promql_parser.Expr) -> None:
        modifier = getattr(node, "modifier", None)
        if (
            isinstance(node, promql_parser.AggregateExpr)
            and isinstance(modifier, promql_parser.AggModifier)
            and modifier.type == promql_parser.AggModifierType.By
        ):
            found.append((list(modifier.labels), selectors(str(node.expr))))

    promql_parser.walk(parsed(expr), visit)
    return found


def metric_name(selector: promql_parser.VectorSelector) -> str:
    name = selector.name or next(
        (m.value for m in selector.matchers.matchers if m.name == "__name__"), ""
    )
    assert name, f"a selector without a metric name: {selector}"
    return str(name)


# -- the files' structure --------------------------------------------------------------------
ONE_LINE = re.compile(r"^[^\n]+$")


def test_the_rules_are_prometheus_rule_groups_and_every_alert_has_a_runbook() -> None:
    groups = rule_groups()
    assert [g["name"] for g in groups] == ["gatewayflow.recording", "gatewayflow.alerts"]
    names = [rule.get("alert") or rule.get("record") for rule in rules()]
    assert len(names) == len(set(names)), names
    for rule in rules():
        assert ("alert" in rule) != ("record" in rule), rule
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        if "record" in rule:
            assert set(rule) == {"record", "expr"}, rule
            # Prometheus's naming rule for recorded series: level:metric:operations.
            assert re.fullmatch(r"[a-z_]+:gatewayflow_[a-z_]+:[a-z0-9_]+", rule["record"])
            continue
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"Gatewayflow[A-Z][A-Za-z]+", rule["alert"])
        assert rule["labels"]["severity"] in {"critical", "warning"}
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "runbook"}, rule["alert"]
        assert ONE_LINE.match(annotations["summary"]), rule["alert"]
        # One line, saying what to do: a command or a thing to fix.
        assert ONE_LINE.match(annotations["runbook"]) and len(annotations["runbook"]) < 300
    severities = {a["alert"]: a["labels"]["severity"] for a in alerts()}
    assert severities["GatewayflowDeletionStalled"] == "critical"


def test_every_alert_has_a_case_where_it_fires_and_every_recorded_series_is_used() -> None:
    """The promtool unit tests hold a firing case per alert; no recorded series is dead."""
    cases = yaml.safe_load(RULE_TESTS.read_text())
    assert cases["rule_files"] == [RULES.name]
    firing = {
        check["alertname"]
        for case in cases["tests"]
        for check in case["alert_rule_test"]
        if check["exp_alerts"]
    }
    assert firing == {alert["alert"] for alert in alerts()}
    used = {metric_name(s) for _, expr in expressions() for s in selectors(expr)}
    assert set(recorded()) <= used, set(recorded()) - used


def test_every_expression_parses() -> None:
    for where, expr in expressions():
        try:
            parsed(expr)
        except ValueError as exc:
            pytest.fail(f"{where}: {expr!r} does not parse: {exc}")
    with pytest.raises(ValueError):
        parsed("rate(gatewayflow_step_retries_total[5m)")  # the parser does refuse


def test_the_dashboard_is_a_grafana_dashboard_with_the_panels_asked_for() -> None:
    board = dashboard()
    assert board["uid"] == "gatewayflow" and board["title"] == "gatewayflow"
    [variable] = board["templating"]["list"]
    assert variable == {**variable, "name": "datasource", "type": "datasource"}
    assert variable["query"] == "prometheus"
    panels = board["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24 and box["h"] > 0
        if panel["type"] == "row":
            continue
        assert panel["type"] == "timeseries" and panel["description"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
    used = {metric_name(s) for _, target in panel_targets() for s in selectors(target["expr"])}

    def shown(*names: str) -> bool:
        return set(names) <= used

    # What the issue asks the dashboard to show, by the series that carry it.
    assert shown("phase:gatewayflow_gateways:max", "region:gatewayflow_deletions_running:max")
    assert shown("activity:gatewayflow_step_duration_seconds:p95_rate5m")
    assert shown("region:gatewayflow_deletions_queued:max")
    assert shown("gatewayflow_drift_repairs_total", "gatewayflow_reaped_objects_total")
    assert shown("gatewayflow_reaper_held_total", "gatewayflow_requests_refused_total")
    assert shown("job:gatewayflow_change_stream_lag_seconds:p99_rate5m")


@pytest.fixture
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(PROMTOOL_MISSING)
    return found


def test_promtool_checks_the_rules(promtool: str) -> None:
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_promtool_unit_tests_fire_each_alert_on_its_case(promtool: str) -> None:
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


# -- every name is one a real worker exports ---------------------------------------------------
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "unknown": ("",),
}


# What Prometheus adds to every series it scrapes, beside the worker's own labels.
TARGET_LABELS = {"instance", "job"}


def exported(text: str) -> dict[str, set[str]]:
    """Each series name the scrape exports -> the label names its samples carry."""
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in SAMPLE_SUFFIXES.get(family.type, ("",)):
            found.setdefault(family.name + suffix, set())
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


def recorded_labels(names: dict[str, set[str]]) -> dict[str, set[str]]:
    """A recorded series' labels: those of what its expression reads (less `le`)."""
    return {
        record: {label for s in selectors(expr) for label in names.get(metric_name(s), set())}
        - {"le"}
        for record, expr in recorded().items()
    }


async def drive_everything(stack: Settings, h: Harness) -> None:
    """What makes every series of the rules and the dashboard appear: a gateway deleted
    with a step retried and a refused request on the way, a drift repaired, an orphan
    reaped, a gateway the dispatcher cannot signal."""
    admin, api = EmulatorAdmin.of(stack), cluster_admin(stack)
    orphan, doomed = unique_id("mon-orphan"), unique_id("mon-doomed")
    await asyncio.gather(h.create(orphan), h.create(doomed, triggers=1))
    await asyncio.gather(
        h.wait_for(orphan, GatewayState.RUNNING), h.wait_for(doomed, GatewayState.RUNNING)
    )
    # `doomed`'s CronJob deleted by hand: the drift check puts it back.
    cron = naming.cron_job(doomed, "t1")
    k8s.BatchV1Api(api).delete_namespaced_cron_job(cron, naming.namespace(doomed))
    async with asyncio.timeout(60):
        while not (await asyncio.to_thread(h.gateways.require, doomed)).progress.drift.repairs:
            await asyncio.sleep(0.2)
    await h.wait_for(doomed, GatewayState.RUNNING)
    # `orphan`'s document deleted by hand: the reaper adopts and deletes what it left.
    h.deps.db["ApiGateway"].delete_one({"gatewayId": orphan})
    result = await service.reap_orphans(h.settings, 0.0, [orphan])
    assert [o.gateway_id for o in result.reaped] == [orphan]
    await h.wait_for(orphan, GatewayState.DELETED)
    # `doomed`'s deletion: its CronJob's DELETE answers 503 more often than the client
    # retries by itself, so the step is retried; a start asked meanwhile is refused.
    with admin.faults_injected([{"verb": "delete", "kind": "CronJob", "status": 503, "count": 4}]):
        await h.request(doomed, Request.DELETE)
        await h.client.get_workflow_handle(
            naming.gateway_workflow_id(h.settings.installation, doomed)
        ).signal("start")
        await h.wait_for(doomed, GatewayState.DELETED)
    assert not await deliver(h.client, h.settings, "x" * 1200, "reconcile", "sweep")
    api.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_every_metric_the_rules_and_the_dashboard_name_is_exported(
    stack: Settings,
) -> None:
    (port,) = free_ports(1)
    async with harness(stack, metrics_port=port, drift_interval_seconds=2.0) as h:
        await drive_everything(stack, h)
        # The stream may be between a lost cursor and its resume on a loaded machine.
        await until(
            "the change stream up", lambda: _gauge(port, "gatewayflow_change_stream_up", 1.0)
        )
        text = await asyncio.to_thread(scrape, port)
    names = exported(text)
    names.update(recorded_labels(names))
    problems = []
    for where, expr in expressions():
        for selector in selectors(expr):
            name = metric_name(selector)
            if name not in names:
                problems.append(f"{where}: {name} is not exported")
                continue
            for matcher in selector.matchers.matchers:
                if matcher.name != "__name__" and matcher.name not in names[name]:
                    problems.append(f"{where}: {name} has no label {matcher.name}")
        for labels, inner in grouping_labels(expr):
            carried = {label for s in inner for label in names.get(metric_name(s), set())}
            problems += [
                f"{where}: by ({label}), a label of none of {[metric_name(s) for s in inner]}"
                for label in labels
                if label not in carried
            ]
    for title, target in panel_targets():
        carried = {label for s in selectors(target["expr"]) for label in names[metric_name(s)]}
        carried |= TARGET_LABELS
        for label in re.findall(r"{{\s*(\w+)\s*}}", target.get("legendFormat", "")):
            if label not in carried:
                problems.append(f"panel {title!r}: legend {{{{{label}}}}} names no label")
    assert problems == [], "\n".join(problems)
    # Each of ours carries samples after this run, not just its HELP line.
    found = samples(text)
    for name in (
        "gatewayflow_step_retries_total",
        "gatewayflow_drift_repairs_total",
        "gatewayflow_reaped_objects_total",
        "gatewayflow_requests_refused_total",
        "gatewayflow_dispatch_failures_total",
        "gatewayflow_change_stream_lag_seconds_count",
        "temporal_activity_schedule_to_start_latency_seconds_bucket",
    ):
        assert any(n == name and v > 0 for (n, _), v in found.items()), name
    assert value(found, "gatewayflow_requests_refused_total", request="start", source="signal")
    assert value(found, "gatewayflow_change_stream_up") == 1
    assert value(found, "gatewayflow_deletions_running", region="local") == 0


# -- the metrics added for the rules ---------------------------------------------------------
class Relay:
    """A TCP relay to MongoDB: a worker behind it can lose its server (`away`: every
    connection dropped, none accepted) and get it back."""

    def __init__(self, port: int, target: str) -> None:
        host, target_port = target.rsplit(":", 1)
        self.port, self.target = port, (host, int(target_port))
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listen()

    @contextlib.contextmanager
    def away(self) -> Iterator[None]:
        self.close()
        try:
            yield
        finally:
            self._listen()

    def close(self) -> None:
        with self._lock:
            for sock in self._sockets:  # the listener too: shutdown wakes its accept()
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _listen(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR
        with self._lock:
            self._sockets.append(listener)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)


async def scraped(port: int) -> Samples:
    return samples(await asyncio.to_thread(scrape, port))


async def _gauge(port: int, name: str, expected: float) -> bool:
    return value(await scraped(port), name) == expected


async def until(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f}s"
        await asyncio.sleep(0.3)


LAG = "gatewayflow_change_stream_lag_seconds"


@pytest.mark.asyncio(loop_scope="session")
async def test_the_change_stream_is_followed_lost_and_late(
    stack: Settings, mongo_client: MongoClient[dict[str, Any]]
) -> None:
    """A worker whose MongoDB goes away: `up` drops to 0 while it is gone (and a scrape
    still answers in time) and is 1 again once it is back; a change written meanwhile is
    delivered from the saved resume token, and the lag recorded for it is the time it
    waited."""
    port, relay_port = free_ports(2)
    target = re.search(r"mongodb://([^/?]+)", stack.mongodb_uri or "")
    assert target is not None
    relay = Relay(relay_port, target.group(1))
    through = f"mongodb://127.0.0.1:{relay_port}/?directConnection=true"
    no_sweep = 3600.0  # only the change stream delivers in this test
    try:
        async with harness(
            stack, metrics_port=port, mongodb_uri=through, sweep_interval_seconds=no_sweep
        ) as h:

            async def up(expected: float) -> bool:
                return value(await scraped(port), "gatewayflow_change_stream_up") == expected

            await until("the change stream followed", lambda: up(1))
            before = await scraped(port)
            gid = unique_id("late")
            with relay.away():
                away_since = time.monotonic()
                raw = mongo_client[h.settings.db_name]["ApiGateway"]
                raw.insert_one({"gatewayId": gid, "state": "Running", "phase": "Creating"})
                await until("the change stream reported lost", lambda: up(0))
                # It answers without MongoDB: each read gives up after 2 s (the bound
                # leaves room for a loaded machine, far below the client's 30 s).
                began = time.monotonic()
                await scraped(port)
                assert time.monotonic() - began < 25.0  # far below the client's own 30 s
                await asyncio.sleep(max(0.0, 6.0 - (time.monotonic() - away_since)))
            await until("the change stream followed again", lambda: up(1))
            await h.wait_for(gid, GatewayState.RUNNING)
            after = await scraped(port)
    finally:
        relay.close()

    def delta(name: str, **labels: str) -> float:
        return value(after, f"{LAG}{name}", **labels) - value(before, f"{LAG}{name}", **labels)

    assert delta("_count") >= 1
    assert delta("_bucket", le="5.0") < delta("_count"), "one change waited more than 5 s"
    assert delta("_sum") >= 5.0


def test_a_worker_without_a_change_stream_exports_no_change_stream_metrics(
    stack: Settings, mongo: Db
) -> None:
    """No "down" from a worker that is not meant to follow one (the alert would fire
    forever where GATEWAYFLOW_CHANGE_STREAMS=false)."""
    on, off, no_dispatcher = free_ports(3)
    start_metrics(stack.model_copy(update={"metrics_port": on}), mongo)
    start_metrics(stack.model_copy(update={"metrics_port": off, "change_streams": False}), mongo)
    start_metrics(
        stack.model_copy(update={"metrics_port": no_dispatcher, "dispatcher": False}), mongo
    )
    assert "gatewayflow_change_stream_up" in exported(scrape(on))
    for port in (off, no_dispatcher):
        names = exported(scrape(port))
        assert not [name for name in names if "change_stream" in name]


@pytest.mark.asyncio(loop_scope="session")
async def test_deletion_permits_running_queued_and_stalled_per_region(stack: Settings) -> None:
    """Three deletions at a limit of one: the first stuck on a CronJob that will not go
    (503), the other two queued behind it; the stuck one's time without progress grows.
    Once the cluster answers, all three finish and the region shows nothing."""
    (port,) = free_ports(1)
    admin = EmulatorAdmin.of(stack)
    async with harness(stack, metrics_port=port, region_deletion_limit=1) as h:
        gids = [unique_id("permit") for _ in range(3)]
        await asyncio.gather(*(h.create(gid, triggers=1) for gid in gids))
        await asyncio.gather(*(h.wait_for(gid, GatewayState.RUNNING) for gid in gids))
        stuck = [{"verb": "delete", "kind": "CronJob", "status": 503, "count": 10_000}]
        with admin.faults_injected(stuck):
            for gid in gids:
                await h.request(gid, Request.DELETE)

            async def queued() -> bool:
                found = await scraped(port)
                return (
                    value(found, "gatewayflow_deletions_running", region="local") == 1
                    and value(found, "gatewayflow_deletions_queued", region="local") == 2
                )

            await until("one running, two queued", queued)
            first = value(
                await scraped(port), "gatewayflow_deletion_stalled_seconds", region="local"
            )
            await asyncio.sleep(3.0)
            later = value(
                await scraped(port), "gatewayflow_deletion_stalled_seconds", region="local"
            )
            assert later >= first + 2.5 and later >= 3.0
        for gid in gids:
            await h.wait_for(gid, GatewayState.DELETED, timeout=120)
        found = await scraped(port)
        assert value(found, "gatewayflow_deletions_running", region="local") == 0
        assert value(found, "gatewayflow_deletions_queued", region="local") == 0
        assert value(found, "gatewayflow_deletion_stalled_seconds", region="local") == 0


def test_the_permit_figures_are_read_by_index(mongo: Db) -> None:
    """What each scrape asks MongoDB for the permits: the region documents by _id and
    the running deletions' progress by gatewayId, never a scan of the gateways."""
    ensure_indexes(mongo)
    mongo["ApiGateway"].insert_many(
        [{"gatewayId": f"g{i}", "state": "Deleted", "phase": "Deleting"} for i in range(3)]
    )
    mongo["DeletionPermits"].insert_one({"_id": "eu", "holders": ["g0", "g1"], "queue": ["g2"]})
    families = {family.name: family for family in DeletionPermits(mongo).collect()}
    assert [s.value for s in families["gatewayflow_deletions_running"].samples] == [2]
    assert [s.value for s in families["gatewayflow_deletions_queued"].samples] == [1]
    [stalled] = families["gatewayflow_deletion_stalled_seconds"].samples
    assert stalled.labels == {"region": "eu"} and stalled.value == 0  # no progress recorded
    plan = str(
        mongo.command(
            "explain",
            {"find": "ApiGateway", "filter": {"gatewayId": {"$in": ["g0", "g1"]}}},
            verbosity="queryPlanner",
        )
    )
    assert "COLLSCAN" not in plan and "IXSCAN" in plan, plan


@pytest.mark.asyncio(loop_scope="session")
async def test_a_drift_repair_that_fails_is_counted(stack: Settings) -> None:
    """A stopped gateway beside an unlabelled Service of its own name and a hand-made
    Deployment: the drift check asks for a repair (the stop again), which refuses to touch
    the Service (NotOwnedError). That failed repair is counted once; the stop the gateway
    then retries with a backoff is an ordinary failed operation, not a repair."""
    (port,) = free_ports(1)
    api = cluster_admin(stack)
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    failed = "gatewayflow_drift_repairs_failed_total"
    async with harness(stack, metrics_port=port, drift_interval_seconds=2.0) as h:
        gid = unique_id("mon-drift")
        await h.create(gid)
        await h.wait_for(gid, GatewayState.RUNNING)
        await h.request(gid, Request.STOP)
        await h.wait_for(gid, GatewayState.STOPPED)
        ns, gw = naming.namespace(gid), await asyncio.to_thread(h.gateways.require, gid)
        before = value(await scraped(port), failed)
        unlabelled: Any = {
            "metadata": {"name": gid, "namespace": ns},
            "spec": {"ports": [{"port": 80}]},
        }
        core.create_namespaced_service(ns, unlabelled)
        hand_made: Any = manifests.deployment(h.settings.installation, gid, gw.instance)
        apps.create_namespaced_deployment(ns, hand_made)

        async def retried_later() -> bool:
            progress = (await asyncio.to_thread(h.gateways.require, gid)).progress
            return progress.next_attempt_at is not None

        await until("the repair failed, then the stop itself", retried_later)
        progress = (await asyncio.to_thread(h.gateways.require, gid)).progress
        assert "NotOwnedError" in (progress.last_error or "")
        assert value(await scraped(port), failed) == before + 1
        core.delete_namespaced_service(gid, ns, _preload_content=False)
    api.close()
