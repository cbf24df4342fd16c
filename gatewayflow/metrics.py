"""Prometheus metrics of the worker, on one port: the Temporal SDK's and gatewayflow's own.

`GATEWAYFLOW_METRICS_PORT` turns them on (unset: nothing is served). That port serves
`/metrics` and `/healthz` (for probes: answers without touching MongoDB or Temporal).

- The SDK's metrics (`temporal_*`) come from its own Prometheus exporter, which listens on
  a loopback-only port of its own; every scrape of `/metrics` reads it and re-exposes its
  families unchanged, so one scrape target carries everything with the SDK's own names and
  buckets. (Copying them through the SDK's `MetricBuffer` would mean choosing histogram
  buckets here and draining the buffer from a thread; two public ports, two scrape jobs.)
- Ours (`gatewayflow_*`) are recorded by an activity interceptor (step durations, retries,
  deletions, drift repairs and their failures, reaped objects, held reaper runs), except
  refused requests, which `apply_request` counts where it refuses them, the change stream's
  state and lag, which the dispatcher records, and the gateways per phase, the deletion
  permits and the deletions the deletion guard holds per region, read from MongoDB on each
  scrape (so every worker reports the same).
"""

import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from pymongo import timeout as mongo_timeout
from pymongo.errors import PyMongoError
from temporalio import activity
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from gatewayflow.domain.documents import utcnow
from gatewayflow.domain.errors import is_permanent_failure
from gatewayflow.domain.messages import DomainInput, DomainStep, HoldKind, ProgressUpdate
from gatewayflow.domain.states import DomainState, GatewayPhase, GatewayState
from gatewayflow.domain.transitions import DomainAction
from gatewayflow.settings import Settings
from gatewayflow.store.client import Db
from gatewayflow.store.deletion_guard import COLLECTION as DELETION_GUARD
from gatewayflow.store.gateways import COLLECTION as GATEWAYS
from gatewayflow.store.permits import PermitRepository

log = logging.getLogger("gatewayflow.metrics")

# Seconds each MongoDB read of a scrape may take: while MongoDB does not answer, the
# scrape must still answer within Prometheus's scrape timeout (10 s by default), with
# what does not need MongoDB (the change stream's state among it).
SCRAPE_READ_TIMEOUT = 2.0

STEP_DURATION = Histogram(
    "gatewayflow_step_duration_seconds",
    "Duration of one attempt of an activity (a step), successful or not.",
    ["activity"],
    # From a document write to a wait for a namespace to be gone.
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    registry=None,
)
STEP_RETRIES = Counter(
    "gatewayflow_step_retries",
    "Attempts of an activity after its first (attempt > 1).",
    ["activity"],
    registry=None,
)
DELETIONS_STARTED = Counter(
    "gatewayflow_deletions_started",
    "Gateway deletions begun (first attempt of begin_operation with phase Deleting).",
    registry=None,
)
DELETIONS_COMPLETED = Counter(
    "gatewayflow_deletions_completed",
    "Gateway deletions finished (finalize_deletion succeeded).",
    registry=None,
)
DELETIONS_FAILED = Counter(
    "gatewayflow_deletions_failed",
    "Steps of a deletion that failed for good (non-retryable or out of attempts).",
    registry=None,
)
DRIFT_REPAIRS = Counter(
    "gatewayflow_drift_repairs",
    "Objects found drifted (missing, unexpected, changed) and repaired, by kind.",
    ["kind"],
    registry=None,
)
DRIFT_REPAIRS_FAILED = Counter(
    "gatewayflow_drift_repairs_failed",
    "Drift repairs whose operation failed (the reason is the gateway's last error; the next "
    "drift check finds what is still wrong).",
    registry=None,
)
REAPED = Counter(
    "gatewayflow_reaped_objects",
    "Orphaned resources removed by the reaper, by kind.",
    ["kind"],
    registry=None,
)
REAPER_HELD = Counter(
    "gatewayflow_reaper_held",
    "Reaper runs that adopted nothing: the gateways collection unreadable or empty, more "
    "orphans than the limits allow, or a confirmation of another number.",
    ["reason"],
    registry=None,
)
# Each reason is exported at 0 from the start: a held run is rare, and a series that
# begins at 1 shows no increase to `increase()`, so an alert would miss the first.
for _reason in HoldKind:
    REAPER_HELD.labels(_reason.value)
DISPATCH_FAILURES = Counter(
    "gatewayflow_dispatch_failures",
    "Gateways the dispatcher could not signal (skipped; the next sweep tries again).",
    ["source"],
    registry=None,
)
REQUESTS_REFUSED = Counter(
    "gatewayflow_requests_refused",
    "Requests sent to a gateway's workflow (signal or update) that the rules refused.",
    ["request", "source"],
    registry=None,
)
CHANGE_STREAM_UP = Gauge(
    "gatewayflow_change_stream_up",
    "1 while the dispatcher follows the ApiGateway change stream; 0 while it is lost or the "
    "server has none, and the sweep alone finds changes of intent.",
    registry=None,
)
CHANGE_STREAM_LAG = Histogram(
    "gatewayflow_change_stream_lag_seconds",
    "From a change of intent written in MongoDB (the server's clock) to its signal delivered "
    "by the dispatcher's change stream.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=None,
)
OWN_METRICS: tuple[Collector, ...] = (
    DRIFT_REPAIRS,
    DRIFT_REPAIRS_FAILED,
    REAPED,
    REAPER_HELD,
    STEP_DURATION,
    STEP_RETRIES,
    DELETIONS_STARTED,
    DELETIONS_COMPLETED,
    DELETIONS_FAILED,
    DISPATCH_FAILURES,
    REQUESTS_REFUSED,
)

_DELETION_PHASES = (GatewayPhase.DELETING, GatewayPhase.DELETED)
_DOMAIN_DELETION_ACTIONS = (DomainAction.DELETE_ALL, DomainAction.REMOVE_DOCUMENT)


def part_of_deletion(arg: Any) -> bool:
    """Whether an activity input belongs to a gateway deletion: a gateway step towards
    phase Deleting/Deleted, or a RuntimeDomain step towards state Deleted."""
    if getattr(arg, "phase", None) in _DELETION_PHASES:
        return True
    if isinstance(arg, DomainInput):
        return arg.target is DomainState.DELETED
    if isinstance(arg, DomainStep):
        return arg.action in _DOMAIN_DELETION_ACTIONS
    return False


def fails_for_good(error: Exception, info: activity.Info) -> bool:
    """Whether Temporal will not retry this attempt's error."""
    policy = info.retry_policy
    non_retryable = (policy.non_retryable_error_types or []) if policy else []
    if is_permanent_failure(error, non_retryable):
        return True
    return policy is not None and 0 < policy.maximum_attempts <= info.attempt


def drift_repair_failed(update: ProgressUpdate) -> bool:
    """Whether a progress record is a drift repair's failure: the gateway's workflow
    records every failed operation with when it is tried again, except a drift repair's
    (its next attempt is the next drift check)."""
    return update.error is not None and update.next_attempt_at is None


class _StepMetricsInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        name = info.activity_type
        deletion = bool(input.args) and part_of_deletion(input.args[0])
        if info.attempt > 1:
            STEP_RETRIES.labels(name).inc()
        elif deletion and name == "begin_operation":
            DELETIONS_STARTED.inc()
        started = time.monotonic()
        try:
            result = await self.next.execute_activity(input)
        except Exception as error:
            if deletion and fails_for_good(error, info):
                DELETIONS_FAILED.inc()
            raise
        finally:
            STEP_DURATION.labels(name).observe(time.monotonic() - started)
        if name == "finalize_deletion":
            DELETIONS_COMPLETED.inc()
        elif name == "record_drift_repair":
            for problem in input.args[0].problems:
                DRIFT_REPAIRS.labels(problem.split(" ", 1)[0]).inc()
        elif name == "record_progress" and drift_repair_failed(input.args[0]):
            DRIFT_REPAIRS_FAILED.inc()
        elif name == "find_orphans" and result.hold is not None:
            REAPER_HELD.labels(result.hold.kind.value).inc()
        elif name == "record_reaped":
            for kind, count in input.args[0].kinds.items():
                REAPED.labels(kind).inc(count)
        return result


class StepMetrics(Interceptor):
    """Times every activity attempt and counts retries and deletions."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _StepMetricsInbound(next)


def metrics_interceptors(settings: Settings) -> list[Interceptor]:
    """The worker interceptors that record our metrics; none when metrics are off."""
    return [] if settings.metrics_port is None else [StepMetrics()]


def pipeline(state: GatewayState) -> list[dict[str, Any]]:
    """Gateways of one state by phase: a range of the (state, phase) index."""
    return [
        {"$match": {"state": state.value}},
        {"$group": {"_id": "$phase", "count": {"$sum": 1}}},
    ]


class GatewayPhases(Collector):
    """`gatewayflow_gateways{phase}`, counted on each scrape with one aggregation per
    state (not every server we run on plans an index range for `state: {$in: [...]}`)."""

    def __init__(self, db: Db) -> None:
        self._gateways = db[GATEWAYS]

    def collect(self) -> Iterator[Metric]:
        counts = dict.fromkeys(GatewayPhase, 0)
        try:
            with mongo_timeout(SCRAPE_READ_TIMEOUT):
                for state in GatewayState:
                    for row in self._gateways.aggregate(pipeline(state)):
                        if row["_id"] in counts:
                            counts[GatewayPhase(row["_id"])] += int(row["count"])
        except PyMongoError as exc:
            log.warning("gateways per phase left out of this scrape: %s", exc)
            return
        family = GaugeMetricFamily(
            "gatewayflow_gateways", "ApiGateway documents by phase.", labels=["phase"]
        )
        for phase, count in counts.items():
            family.add_metric([phase.value], count)
        yield family


class DeletionsHeld(Collector):
    """`gatewayflow_deletions_held{region}`: what the deletion guard holds now, read from
    its documents on each scrape, so every worker reports the same figure."""

    def __init__(self, db: Db) -> None:
        self._guards = db[DELETION_GUARD]

    def collect(self) -> Iterator[Metric]:
        try:
            guards = list(self._guards.find({}, {"held": 1}))
        except PyMongoError as exc:
            log.warning("held deletions left out of this scrape: %s", exc)
            return
        family = GaugeMetricFamily(
            "gatewayflow_deletions_held",
            "Deletions the deletion guard holds, by region, until an operator releases or "
            "cancels them.",
            labels=["region"],
        )
        for doc in guards:
            family.add_metric([str(doc["_id"])], len(doc.get("held") or []))
        yield family


class DeletionPermits(Collector):
    """Per region, from the deletion permits' documents on each scrape: deletions running
    (holding a permit) and queued, and the longest a running one has gone without
    completing a step.

    A step retried (the cluster unreachable, say) rewrites `progress.updatedAt` on each
    attempt without moving on, so a deletion's last move is when this collector first saw
    its current step (at that document's `updatedAt`), remembered from one scrape to the
    next; a deletion seen for the first time moved at `updatedAt`.
    """

    def __init__(self, db: Db) -> None:
        self._permits = PermitRepository(db)
        self._gateways = db[GATEWAYS]
        self._lock = threading.Lock()
        self._moved: dict[str, tuple[tuple[Any, ...], datetime]] = {}

    def collect(self) -> Iterator[Metric]:
        try:
            with mongo_timeout(SCRAPE_READ_TIMEOUT):
                regions = self._permits.regions()
                holders = [gid for doc in regions for gid in doc.get("holders") or []]
                found = list(
                    self._gateways.find(
                        {"gatewayId": {"$in": holders}},
                        {
                            "gatewayId": 1,
                            "progress.updatedAt": 1,
                            "progress.step": 1,
                            "progress.stepNumber": 1,
                        },
                    )
                )
        except PyMongoError as exc:
            log.warning("deletion permits left out of this scrape: %s", exc)
            return
        now = utcnow()
        moved = self._last_moves(found, now)
        running = GaugeMetricFamily(
            "gatewayflow_deletions_running",
            "Deletions holding a permit of the region (GATEWAYFLOW_REGION_DELETION_LIMIT at most).",
            labels=["region"],
        )
        queued = GaugeMetricFamily(
            "gatewayflow_deletions_queued",
            "Deletions waiting for a permit of the region.",
            labels=["region"],
        )
        stalled = GaugeMetricFamily(
            "gatewayflow_deletion_stalled_seconds",
            "The longest a running deletion of the region has gone without completing a "
            "step (or since it got its permit); 0 when none runs.",
            labels=["region"],
        )
        for doc in regions:
            region, held = [str(doc["_id"])], list(doc.get("holders") or [])
            running.add_metric(region, len(held))
            queued.add_metric(region, len(doc.get("queue") or []))
            ages = [(now - moved[gid]).total_seconds() for gid in held if gid in moved]
            stalled.add_metric(region, max([0.0, *ages]))
        yield from (running, queued, stalled)

    def _last_moves(self, found: list[dict[str, Any]], now: datetime) -> dict[str, datetime]:
        """When each running deletion last moved on; holders no longer running forgotten."""
        with self._lock:
            remembered, self._moved = self._moved, {}
            for doc in found:
                progress = doc.get("progress")
                progress = progress if isinstance(progress, dict) else {}
                where = (progress.get("step"), progress.get("stepNumber"))
                seen = remembered.get(doc["gatewayId"])
                if seen is None or seen[0] != where:
                    seen = (where, _aware(progress.get("updatedAt")) or now)
                self._moved[doc["gatewayId"]] = seen
            return {gid: at for gid, (_, at) in self._moved.items()}


def _aware(at: object) -> datetime | None:
    """A stored time as UTC (None when missing or not a time)."""
    if not isinstance(at, datetime):
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class SdkMetrics(Collector):
    """The Temporal SDK's metrics, read from its loopback exporter on each scrape."""

    def __init__(self, url: str) -> None:
        self.url = url

    def collect(self) -> Iterator[Metric]:
        try:
            with urllib.request.urlopen(self.url, timeout=5) as response:
                text = response.read().decode()
        except OSError as exc:
            log.warning("Temporal SDK metrics left out of this scrape: %s", exc)
            return
        yield from text_string_to_metric_families(text)


def sdk_runtime(port: int) -> Runtime:
    """A Temporal runtime exporting the SDK's metrics on 127.0.0.1:`port`, with the
    Prometheus naming conventions (seconds, `_seconds` and `_total` suffixes)."""
    prometheus = PrometheusConfig(
        bind_address=f"127.0.0.1:{port}",
        counters_total_suffix=True,
        unit_suffix=True,
        durations_as_seconds=True,
    )
    return Runtime(telemetry=TelemetryConfig(metrics=prometheus))


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes are not logged."""


def serve(address: str, port: int, registry: CollectorRegistry) -> None:
    """`/healthz` and, on every other path, the registry; in a daemon thread."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n"]
        response: Iterable[bytes] = metrics_app(environ, start_response)
        return response

    server = make_server(address, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()


def start_metrics(settings: Settings, db: Db) -> Runtime | None:
    """Serve `/metrics` and `/healthz` on `metrics_address:metrics_port` for the rest of
    the process (loopback unless told otherwise); nothing (and None) when the port is unset.

    Returns the Temporal runtime the worker's client must connect with: the SDK metrics in
    `/metrics` are those of this runtime.
    """
    if settings.metrics_port is None:
        return None
    sdk_port = free_loopback_port()
    runtime = sdk_runtime(sdk_port)
    registry = CollectorRegistry()
    # The change stream's metrics only where a dispatcher follows one: a worker without
    # exports no "down".
    following = settings.dispatcher and settings.change_streams
    for collector in (
        *OWN_METRICS,
        *((CHANGE_STREAM_UP, CHANGE_STREAM_LAG) if following else ()),
        GatewayPhases(db),
        DeletionsHeld(db),
        DeletionPermits(db),
        SdkMetrics(f"http://127.0.0.1:{sdk_port}/metrics"),
    ):
        registry.register(collector)
    address, port = settings.metrics_address, settings.metrics_port
    serve(address, port, registry)
    log.info("metrics on %s:%d/metrics (SDK exporter: 127.0.0.1:%d)", address, port, sdk_port)
    return runtime
