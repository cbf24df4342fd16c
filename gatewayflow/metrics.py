"""Prometheus metrics of the worker, on one port: the Temporal SDK's and gatewayflow's own.

`GATEWAYFLOW_METRICS_PORT` turns them on (unset: nothing is served). That port serves
`/metrics` and `/healthz` (for probes: answers without touching MongoDB or Temporal).

- The SDK's metrics (`temporal_*`) come from its own Prometheus exporter, which listens on
  a loopback-only port of its own; every scrape of `/metrics` reads it and re-exposes its
  families unchanged, so one scrape target carries everything with the SDK's own names and
  buckets. (Copying them through the SDK's `MetricBuffer` would mean choosing histogram
  buckets here and draining the buffer from a thread; two public ports, two scrape jobs.)
- Ours (`gatewayflow_*`) are recorded by an activity interceptor (step durations, retries,
  deletions, drift repairs, reaped objects, held reaper runs), except refused requests,
  which `apply_request` counts where it refuses them, and the gateways per phase and the
  deletions the deletion guard holds per region, counted in MongoDB on each scrape.
"""

import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from pymongo.errors import PyMongoError
from temporalio import activity
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from gatewayflow.domain.errors import is_permanent_failure
from gatewayflow.domain.messages import DomainInput, DomainStep
from gatewayflow.domain.states import DomainState, GatewayPhase, GatewayState
from gatewayflow.domain.transitions import DomainAction
from gatewayflow.settings import Settings
from gatewayflow.store.client import Db
from gatewayflow.store.deletion_guard import COLLECTION as DELETION_GUARD
from gatewayflow.store.gateways import COLLECTION as GATEWAYS

log = logging.getLogger("gatewayflow.metrics")

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
OWN_METRICS: tuple[Collector, ...] = (
    DRIFT_REPAIRS,
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
    for collector in (
        *OWN_METRICS,
        GatewayPhases(db),
        DeletionsHeld(db),
        SdkMetrics(f"http://127.0.0.1:{sdk_port}/metrics"),
    ):
        registry.register(collector)
    address, port = settings.metrics_address, settings.metrics_port
    serve(address, port, registry)
    log.info("metrics on %s:%d/metrics (SDK exporter: 127.0.0.1:%d)", address, port, sdk_port)
    return runtime
