"""Traces over OpenTelemetry: one trace from a change of intent to the calls it causes.

On when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set,
exported over OTLP/HTTP; the SDK itself reads the other standard `OTEL_*` variables
(headers, sampler, service name, batching, `OTEL_SDK_DISABLED`). Off otherwise at no cost:
no provider, no instrumentation, no Temporal interceptor, the SDK not even imported.

How a trace travels:
- the dispatcher opens a span for each change of intent it delivers (`gateway_span`), with
  the gateway id as an attribute and as baggage;
- Temporal's `TracingInterceptor` (on the client, so on the worker too) carries the context
  in headers into the workflows, their children and their activities. It makes workflow
  spans only while the code runs live, never on replay: a worker that replays a history
  (after a restart, a cache eviction, a deploy) would otherwise report every step again;
- `_RequestTraces` puts what a gateway's workflow does after a request in that request's
  trace (below: its workflow outlives any one request);
- the MongoDB (pymongo) and Kubernetes (urllib3) calls of an activity are its children;
- every span under a gateway's span carries the gateway id, read from the baggage.
"""

import asyncio
import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from contextvars import Token
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import temporalio.client
import temporalio.worker
import temporalio.workflow
from opentelemetry import baggage
from opentelemetry import context as otel_context
from temporalio.api.common.v1 import Payload

from gatewayflow.domain import naming

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from temporalio.contrib.opentelemetry import TracingInterceptor

GATEWAY_ID = "gatewayflow.gateway_id"
"""The attribute (and baggage entry) naming the gateway a span works on."""

_provider: "TracerProvider | None" = None


def configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def start(exporter: "SpanExporter | None" = None) -> "TracerProvider":
    """Trace this process into `exporter` (default: OTLP/HTTP as the `OTEL_*` variables
    say); the provider flushes when the process exits. Once per process, before its
    MongoDB clients are made: pymongo gives its listeners to the clients made after them."""
    global _provider
    if _provider is not None:
        return _provider
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "gatewayflow"}))
    provider = TracerProvider(resource=resource)  # sampled as OTEL_TRACES_SAMPLER says
    provider.add_span_processor(_gateway_spans(BatchSpanProcessor(exporter or OTLPSpanExporter())))
    # No statements in MongoDB spans: a command's documents are user data.
    PymongoInstrumentor().instrument(tracer_provider=provider, capture_statement=False)
    URLLib3Instrumentor().instrument(tracer_provider=provider, request_hook=_name_http_call)
    _provider = provider
    return provider


def stop() -> None:
    """Flush, and trace nothing more in this process."""
    global _provider
    if _provider is None:
        return
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

    PymongoInstrumentor().uninstrument()
    URLLib3Instrumentor().uninstrument()
    _provider.shutdown()
    _provider = None


def temporal_interceptors(
    env: Mapping[str, str] | None = None,
) -> list[temporalio.client.Interceptor]:
    """The Temporal client's (and so its workers') interceptors that trace; none when
    tracing is off. Starts tracing from the environment the first time it is asked for."""
    if _provider is None and configured(env):
        start()
    if _provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    tracing = TracingInterceptor(_provider.get_tracer("temporalio"))
    # In this order: the request's context is made current (_RequestTraces' outbound)
    # before TracingInterceptor's outbound makes a span of the workflow's command.
    return [tracing, _RequestTraces(tracing)]


@contextlib.contextmanager
def gateway_span(name: str, gateway_id: str, **attributes: str) -> Iterator[None]:
    """A span for work on one gateway, current for the block, with `attributes` (each
    named `gatewayflow.<name>`); the gateway id goes with everything the block causes.
    Nothing at all when tracing is off."""
    if _provider is None:
        yield
        return
    tracer = _provider.get_tracer("gatewayflow")
    named = {f"gatewayflow.{key}": value for key, value in attributes.items()}
    with (
        _attached(baggage.set_baggage(GATEWAY_ID, gateway_id)),
        tracer.start_as_current_span(name, attributes={GATEWAY_ID: gateway_id, **named}),
    ):
        yield


def _name_http_call(span: "Span", _pool: Any, request: Any) -> None:
    """Name a Kubernetes API call by its verb and path (`DELETE /api/v1/namespaces/gw-x`,
    `WATCH /apis/apps/v1/namespaces/gw-x/deployments`), not by its method alone; the path
    from `/api` or `/apis` on, whatever path the server's URL has before it."""
    url = urlsplit(str(request.url))
    verb = "WATCH" if parse_qs(url.query).get("watch") == ["true"] else request.method
    resource = re.search(r"/apis?(/.*)?$", url.path)
    span.update_name(f"{verb} {resource.group(0) if resource else url.path}")


def _gateway_spans(exporting: "SpanProcessor") -> "SpanProcessor":
    """`exporting`, with the gateway id (from the baggage) on every span, and a MongoDB or
    HTTP call's span kept only inside traced work: outside it (the change stream's getMore
    every second, the metrics' counts, the exporter's own requests) each would be a trace
    of one span."""
    from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

    calls = {"opentelemetry.instrumentation.pymongo", "opentelemetry.instrumentation.urllib3"}

    class GatewaySpans(SpanProcessor):
        def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
            gateway_id = baggage.get_baggage(GATEWAY_ID, parent_context)
            if gateway_id is not None:
                span.set_attribute(GATEWAY_ID, str(gateway_id))
            exporting.on_start(span, parent_context)

        def on_end(self, span: ReadableSpan) -> None:
            scope = span.instrumentation_scope
            if span.parent is None and scope is not None and scope.name in calls:
                return
            exporting.on_end(span)

        def shutdown(self) -> None:
            exporting.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return exporting.force_flush(timeout_millis)

    return GatewaySpans()


# -- a gateway's workflow serves many requests ---------------------------------------------

_REQUEST_CONTEXT = "__gatewayflow_request_context"


class _RequestTraces(temporalio.client.Interceptor, temporalio.worker.Interceptor):
    """A gateway's workflow lives as long as its gateway and serves every request made to
    it. TracingInterceptor keeps what a workflow does in the trace that started its run and
    only links each signal or update to it. With this, a request (a signal or update from
    the dispatcher, the CLI, the UI) that finds `gateway/<id>` idle, with no activity or
    child workflow running, puts what the workflow does next in its own trace: the trace of
    a raw write reaches the deletion it causes.

    A request that comes while something runs is only linked: what runs, and what follows
    it, stays in the trace it started in. So the dispatcher's signal for the intent a CLI
    request has just written does not take the operation from the request's trace, nor does
    the sweep's while a step runs (between two looks at a starting Deployment nothing
    runs); a delete that preempts a running start is in the start's trace, linked."""

    def __init__(self, tracing: "TracingInterceptor") -> None:
        self._tracing = tracing

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[temporalio.worker.WorkflowInboundInterceptor]:
        input.unsafe_extern_functions[_REQUEST_CONTEXT] = self._context_of
        return _RequestInbound

    def _context_of(self, headers: Mapping[str, Payload]) -> otel_context.Context | None:
        """The context a request carries, read as TracingInterceptor wrote it (outside the
        workflow sandbox: an extern function)."""
        payload = headers.get(self._tracing.header_key)
        if payload is None:
            return None
        carrier = self._tracing.payload_converter.from_payloads([payload])[0]
        return self._tracing.text_map_propagator.extract(carrier)


class _RequestInbound(temporalio.worker.WorkflowInboundInterceptor):
    def __init__(self, next: temporalio.worker.WorkflowInboundInterceptor) -> None:
        super().__init__(next)
        self.request: otel_context.Context | None = None
        self.running: set[asyncio.Task[Any]] = set()

    def init(self, outbound: temporalio.worker.WorkflowOutboundInterceptor) -> None:
        super().init(_InRequest(outbound, self))

    async def handle_signal(self, input: temporalio.worker.HandleSignalInput) -> None:
        self._received(input.headers)
        await super().handle_signal(input)

    async def handle_update_handler(self, input: temporalio.worker.HandleUpdateInput) -> Any:
        self._received(input.headers)
        return await super().handle_update_handler(input)

    def _received(self, headers: Mapping[str, Payload]) -> None:
        """An idle workflow takes the request's context (none when it carries none: what
        follows then stays in the run's own trace). Only a gateway's own workflow takes
        requests: a deletion's `permit_granted` comes from another gateway's deletion."""
        if self.running or not temporalio.workflow.info().workflow_id.startswith(
            f"{naming.GATEWAY_WORKFLOW}/"
        ):
            return
        self.request = temporalio.workflow.extern_functions()[_REQUEST_CONTEXT](headers)

    def started(self, handle: asyncio.Task[Any]) -> None:
        """Count `handle` as running until it is done."""
        self.running.add(handle)
        handle.add_done_callback(self.running.discard)


class _InRequest(temporalio.worker.WorkflowOutboundInterceptor):
    """The workflow's activities and children start with the request's context current."""

    def __init__(
        self, next: temporalio.worker.WorkflowOutboundInterceptor, root: _RequestInbound
    ) -> None:
        super().__init__(next)
        self._root = root

    def start_activity(
        self, input: temporalio.worker.StartActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        with _attached(self._root.request):
            handle = super().start_activity(input)
        self._root.started(handle)
        return handle

    def start_local_activity(
        self, input: temporalio.worker.StartLocalActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        with _attached(self._root.request):
            handle = super().start_local_activity(input)
        self._root.started(handle)
        return handle

    async def start_child_workflow(
        self, input: temporalio.worker.StartChildWorkflowInput
    ) -> temporalio.workflow.ChildWorkflowHandle[Any, Any]:
        with _attached(self._root.request):
            handle = await super().start_child_workflow(input)
        self._root.started(handle)
        return handle


@contextlib.contextmanager
def _attached(context: otel_context.Context | None) -> Iterator[None]:
    """`context` current for the block (nothing when None). The reset is skipped when the
    block ends in another contextvars context (a workflow evicted while it awaits is closed
    wherever the garbage collector runs), where there is nothing to reset."""
    if context is None:
        yield
        return
    token: Token[otel_context.Context] = otel_context.attach(context)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            token.var.reset(token)
