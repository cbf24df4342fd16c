"""Tracing: a raw write's deletion is one trace, from the dispatcher to the Kubernetes call.

The spans are those a real worker in this process makes on the embedded stack, collected
by the OpenTelemetry SDK's in-memory exporter; a second process shows the OTLP/HTTP export
the OTEL_* variables turn on, and that without them nothing of it is there.
"""

import base64
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pymongo import MongoClient

from gatewayflow import tracing
from gatewayflow.domain import naming
from gatewayflow.domain.states import GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.settings import Settings
from tests.conftest import stack_env
from tests.gateway_harness import harness, unique_id
from tests.test_intent import idle
from workflows.operations import DELETE, STOP

NO_SWEEP = 3600.0  # the sweep runs once as the dispatcher starts: the change stream delivers
MONGO_PASSWORD = "trace-me-not-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """This process traced into memory while this module's tests run (a process starts
    tracing once: pymongo keeps the listener of the first start)."""
    exporter = InMemorySpanExporter()
    provider = tracing.start(exporter)
    try:
        yield provider, exporter
    finally:
        tracing.stop()


@pytest.fixture
def mongodb_user(stack: Settings, mongo_client: MongoClient[dict[str, Any]]) -> Iterator[str]:
    """A MongoDB URI of the session stack with a user and password in it."""
    user = f"tracer_{uuid.uuid4().hex[:8]}"
    mongo_client.admin.command("createUser", user, pwd=MONGO_PASSWORD, roles=["root"])
    address = (stack.mongodb_uri or "").split("//", 1)[1].split("/", 1)[0]
    try:
        yield f"mongodb://{user}:{MONGO_PASSWORD}@{address}/?directConnection=true&authSource=admin"
    finally:
        mongo_client.admin.command("dropUser", user)


def runtime_password(settings: Settings, gid: str) -> str:
    """The runtime database password, from the gateway's Secret."""
    api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(settings.kubeconfig), context="local"
    )
    with api:
        secret = k8s.CoreV1Api(api).read_namespaced_secret(
            naming.db_secret(gid), naming.namespace(gid)
        )
    return base64.b64decode((secret.data or {})["password"]).decode()


def lineage(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    """The span's ancestors and the span, root first."""
    chain = [span]
    while chain[-1].parent is not None:
        chain.append(by_id[chain[-1].parent.span_id])
    return chain[::-1]


def tree(trace: list[ReadableSpan], by_id: dict[int, ReadableSpan]) -> str:
    """The trace as a backend shows it: each span under its parent, with its duration."""
    first = min(span.start_time or 0 for span in trace)
    last = max(span.end_time or 0 for span in trace)
    lines = [f"{len(trace)} spans over {(last - first) / 1e9:.2f} s"]
    for span in sorted(trace, key=lambda s: s.start_time or 0):
        took = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        lines.append(f"{'  ' * (len(lineage(span, by_id)) - 1)}{span.name}  {took:.1f} ms")
    return "\n".join(lines)


def texts(span: ReadableSpan) -> list[str]:
    """Everything a span says: its name, attributes, events and links."""
    said = [span.name, *map(str, (span.attributes or {}).values())]
    for event in span.events:
        said += [event.name, *map(str, (event.attributes or {}).values())]
    for link in span.links:
        said += list(map(str, (link.attributes or {}).values()))
    return said


@pytest.mark.asyncio(loop_scope="session")
async def test_a_raw_deletion_is_one_trace_from_the_dispatcher_to_the_namespace_delete(
    stack: Settings,
    traced: tuple[TracerProvider, InMemorySpanExporter],
    mongodb_user: str,
) -> None:
    """A raw `updateOne` to Deleted: the dispatcher's span is the root of the deletion's
    whole trace, down to the DELETE of the namespace; every span names the gateway and none
    holds a secret."""
    provider, exporter = traced
    async with harness(
        stack,
        sweep_interval_seconds=NO_SWEEP,
        mongodb_uri=mongodb_user,
        runtime_mongodb_uri=mongodb_user,
    ) as h:
        gid = unique_id("traced")
        await h.create(gid)
        await h.wait_for(gid, GatewayState.RUNNING)
        password = runtime_password(h.settings, gid)
        await idle(h, gid)  # a change that finds it busy is only linked (gatewayflow/tracing.py)

        h.deps.db["ApiGateway"].update_one({"gatewayId": gid}, {"$set": {"state": "Deleted"}})
        await h.wait_for(gid, GatewayState.DELETED)
        assert provider.force_flush()
    spans = exporter.get_finished_spans()
    by_id = {span.context.span_id: span for span in spans}

    [dispatched] = [
        span
        for span in spans
        if span.name == "dispatch delete" and (span.attributes or {}).get(tracing.GATEWAY_ID) == gid
    ]
    trace = [span for span in spans if span.context.trace_id == dispatched.context.trace_id]
    print(tree(trace, by_id))  # shown when the test fails, or with -s
    assert dispatched.parent is None
    assert (dispatched.attributes or {}).get("gatewayflow.source") == "change-stream"
    # The namespace's DELETE, down from the raw write's delivery.
    [deleted] = [
        span for span in trace if span.name == f"DELETE /api/v1/namespaces/{naming.namespace(gid)}"
    ]
    assert [span.name for span in lineage(deleted, by_id)] == [
        "dispatch delete",
        "SignalWithStartWorkflow:GatewayWorkflow",
        "StartChildWorkflow:GatewayDeletion",
        "StartActivity:delete_namespace",
        "RunActivity:delete_namespace",
        deleted.name,
    ]
    # Every step of the deletion is in this trace, in the declared order.
    deletion = naming.deletion_workflow_id(h.settings.installation, gid)
    ran = [
        span.name.removeprefix("RunActivity:")
        for span in sorted(trace, key=lambda s: s.start_time or 0)
        if span.name.startswith("RunActivity:")
        and (span.attributes or {}).get("temporalWorkflowID") == deletion
    ]
    steps = [step.activity.__name__ for step in DELETE.steps]
    assert [name for name in ran if name in steps] == steps
    # Each span of the trace names the gateway.
    assert {(span.attributes or {}).get(tracing.GATEWAY_ID) for span in trace} == {gid}
    # No secret anywhere, in this trace or any other of the test (the create's included):
    # neither the runtime database password (nor the Secret's data) nor the MongoDB URI's.
    secrets = [password, base64.b64encode(password.encode()).decode(), MONGO_PASSWORD]
    for span in spans:
        for text in texts(span):
            assert not [secret for secret in secrets if secret in text], span.name


@pytest.mark.asyncio(loop_scope="session")
async def test_a_cli_request_is_one_trace_down_to_the_steps_it_causes(
    stack: Settings, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """The CLI asks with an update to the running `gateway/<id>`: what the workflow does
    next is in the request's trace, not in the trace of the create that started it."""
    provider, exporter = traced
    async with harness(stack, sweep_interval_seconds=NO_SWEEP) as h:
        gid = unique_id("asked")
        await h.create(gid)
        await h.wait_for(gid, GatewayState.RUNNING)
        await idle(h, gid)
        await h.request(gid, Request.STOP)
        await h.wait_for(gid, GatewayState.STOPPED)
        assert provider.force_flush()
    spans = exporter.get_finished_spans()
    by_id = {span.context.span_id: span for span in spans}

    [asked] = [
        span
        for span in spans
        if span.name == "request stop" and (span.attributes or {}).get(tracing.GATEWAY_ID) == gid
    ]
    trace = [span for span in spans if span.context.trace_id == asked.context.trace_id]
    print(tree(trace, by_id))
    steps = [step.activity.__name__ for step in STOP.steps if step.domain is None]
    for name in steps:
        [ran] = [span for span in trace if span.name == f"RunActivity:{name}"]
        assert [span.name for span in lineage(ran, by_id)] == [
            "request stop",
            "StartUpdateWithStartWorkflow:GatewayWorkflow",
            f"StartActivity:{name}",
            f"RunActivity:{name}",
        ]
    assert {(span.attributes or {}).get(tracing.GATEWAY_ID) for span in trace} == {gid}


class _Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that keeps what it is sent."""

    received: list[ExportTraceServiceRequest] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            self.received.append(ExportTraceServiceRequest.FromString(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


PROCESS = """
import asyncio, json, sys
from gatewayflow import tracing
from gatewayflow.client import connect
from gatewayflow.settings import load_settings

async def main():
    client = await connect(load_settings())
    with tracing.gateway_span("dispatch delete", "shop", source="sweep"):
        pass
    interceptors = [type(i).__name__ for i in client.config()["interceptors"]]
    print(json.dumps({"interceptors": interceptors, "sdk": "opentelemetry.sdk" in sys.modules}))

asyncio.run(main())
"""


def run_process(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", PROCESS], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def test_the_otel_variables_turn_on_otlp_export_and_nothing_is_there_without_them(
    stack: Settings,
) -> None:
    env = {k: v for k, v in stack_env(stack).items() if not k.startswith("OTEL_")}
    assert run_process(env) == {"interceptors": [], "sdk": False}

    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        on = run_process({**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    finally:
        server.shutdown()
    assert on == {"interceptors": ["TracingInterceptor", "_RequestTraces"], "sdk": True}
    # The span was sent as the process exited, with the service's name.
    [request] = _Receiver.received
    [resource_spans] = request.resource_spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "gatewayflow"
    [span] = [span for scope in resource_spans.scope_spans for span in scope.spans]
    attributes = {a.key: a.value.string_value for a in span.attributes}
    assert span.name == "dispatch delete"
    assert attributes == {tracing.GATEWAY_ID: "shop", "gatewayflow.source": "sweep"}
