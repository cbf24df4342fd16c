"""The HTTP server: the Kubernetes REST API per region, the admin API, and the ticker.

URL layout (see the package docstring for the admin API):

    /healthz                                    "ok"
    /_admin/...                                 admin API, all regions (or ?region=)
    /clusters/<region>/version, /api, /apis, /api/v1, /apis/<group>[/<version>]
    /clusters/<region>/api/v1/<plural>[/<name>]                  (Namespaces)
    /clusters/<region>/api/v1/namespaces/<ns>/<plural>[/<name>]
    /clusters/<region>/apis/<group>/<version>/namespaces/<ns>/<plural>[/<name>]
    /clusters/<region>/api[s/<group>]/<version>/<plural>        (list across namespaces)
"""

import contextlib
import json
import select
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gatewayflow_dev.kube_emulator import errors, kinds, openapi, protobuf
from gatewayflow_dev.kube_emulator.admission import Admission, Admit, User, Write
from gatewayflow_dev.kube_emulator.auth import Tokens
from gatewayflow_dev.kube_emulator.errors import ApiError
from gatewayflow_dev.kube_emulator.faults import FaultInjector
from gatewayflow_dev.kube_emulator.kinds import Kind
from gatewayflow_dev.kube_emulator.oplog import OpLog, RequestCounts
from gatewayflow_dev.kube_emulator.selectors import field_selector, label_selector
from gatewayflow_dev.kube_emulator.store import Cluster, Timing
from gatewayflow_dev.kube_emulator.tables import table

TICK_SECONDS = 0.05
DEFAULT_WATCH_SECONDS = 1800  # the API server picks 30 to 60 minutes when not asked


class EmulatorServer(ThreadingHTTPServer):
    """One HTTP server for every region's cluster, plus the timed-behaviour thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        home: Path,
        regions: list[str],
        timing: Timing,
        faults: FaultInjector,
        tokens: Tokens,
        admission: Admission | None = None,
    ) -> None:
        self.timing = timing
        self.faults = faults
        self.tokens = tokens
        self.admission = admission  # every write must pass it (None: no admission)
        self.oplog = OpLog()
        self.requests = RequestCounts()
        self.clusters = {
            region: Cluster(region, home / "kube" / f"{region}.json", timing, self.oplog)
            for region in regions
        }
        self._stopping = threading.Event()
        self._ticker = threading.Thread(target=self._tick_forever, name="ticker", daemon=True)
        super().__init__(address, Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start_ticker(self) -> None:
        self._ticker.start()

    def _tick_forever(self) -> None:
        while not self._stopping.wait(TICK_SECONDS):
            for cluster in self.clusters.values():
                cluster.tick()

    def close(self) -> None:
        """Stop the ticker, end the watches and save every cluster."""
        self._stopping.set()
        if self._ticker.is_alive():
            self._ticker.join()
        for cluster in self.clusters.values():
            cluster.close()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    query: dict[str, str]  # the request's query parameters (the last of repeated ones)
    body: bytes
    warnings: list[str]  # admission warnings, sent as Warning headers
    protocol_version = "HTTP/1.1"  # keep-alive, and chunked watch streams
    disable_nagle_algorithm = True  # headers and body go out as separate small writes
    server: EmulatorServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged: the oplog is the record that matters."""

    # -- dispatch ------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.warnings = []
        try:
            parts = [p for p in url.path.split("/") if p]
            if parts in (["healthz"], ["livez"], ["readyz"]):
                self._send(200, b"ok", "text/plain")
            elif parts[:1] == ["_admin"]:
                self._admin(method, parts[1:])
            elif len(parts) >= 2 and parts[0] == "clusters":
                cluster = self.server.clusters.get(parts[1])
                if cluster is None:
                    raise _no_route()
                self._cluster_api(method, cluster, parts[2:])
            else:
                raise _no_route()
        except ApiError as error:
            self._send_json(error.code, error.status(), error.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # an emulator bug: answer it as the API server would
            traceback.print_exc(file=sys.stderr)
            self._send_json(500, ApiError(500, "InternalError", repr(exc)).status())

    def _cluster_api(self, method: str, cluster: Cluster, parts: list[str]) -> None:
        prefix = f"/clusters/{cluster.region}"
        user = self.server.tokens.authenticate(self.headers.get("Authorization", ""))
        admit = self._admission(user)
        if method == "GET" and (document := _discovery(parts, prefix)) is not None:
            self._send_json(200, document)
            return
        kind, namespace, name, subresource = _resource(parts)
        collection = name is None
        verb = _verb(method, collection, self.query)
        if verb not in kind.verbs or (
            subresource is not None and verb not in ("get", "update", "patch")
        ):
            raise _not_allowed(method)
        if collection and namespace is None and kind.namespaced and verb == "create":
            raise _not_allowed(method)
        self.server.requests.count(cluster.region, verb, kind.kind)
        rule = self.server.faults.draw(cluster.region, verb, kind)
        if rule is not None:
            time.sleep(rule.latency)
            if rule.drop:
                self._drop()
                return
            if rule.status is not None:
                raise rule.error()
        if "dryRun" in self.query:
            raise errors.bad_request("dryRun is not supported by the emulator")
        ns = namespace or ""
        if subresource == "scale":
            self._scale(cluster, kind, ns, str(name), verb, admit)
        elif verb == "watch":
            self._watch(cluster, kind, namespace)
        elif verb == "list":
            matches = self._selector()
            items, version = cluster.list_objects(kind, namespace, matches)
            self._send_objects(kind, items, version, collection=True)
        elif verb == "get":
            obj = cluster.get(kind, ns, str(name))
            self._send_objects(kind, [obj], obj["metadata"]["resourceVersion"])
        elif verb == "create":
            self._send_json(201, cluster.create(kind, ns, self._json_body(), admit))
        elif verb == "update":
            self._send_json(200, cluster.replace(kind, ns, str(name), self._json_body(), admit))
        elif verb == "patch":
            content_type = self.headers.get("Content-Type", "")
            patched = cluster.patch(kind, ns, str(name), content_type, self.body, admit)
            self._send_json(200, patched)
        elif verb == "delete":
            answer = cluster.delete(kind, ns, str(name), self._delete_options(), admit)
            self._send_json(200, answer)
        else:  # deletecollection
            options = self._delete_options()
            deleted = cluster.delete_collection(kind, namespace, self._selector(), options, admit)
            self._send_json(200, _list(kind, deleted, ""))

    def _scale(
        self, cluster: Cluster, kind: Kind, namespace: str, name: str, verb: str, admit: Admit
    ) -> None:
        if verb == "get":
            self._send_json(200, cluster.scale(kind, namespace, name))
        elif verb == "update":
            scale = cluster.replace_scale(kind, namespace, name, self._json_body(), admit)
            self._send_json(200, scale)
        else:
            content_type = self.headers.get("Content-Type", "")
            scale = cluster.patch_scale(kind, namespace, name, content_type, self.body, admit)
            self._send_json(200, scale)

    def _admin(self, method: str, parts: list[str]) -> None:
        region = self.query.get("region")
        if region is not None and region not in self.server.clusters:
            raise errors.ApiError(404, "NotFound", f"region {region!r} not found")
        route = (method, "/".join(parts))
        if route == ("GET", "faults"):
            self._send_json(200, self.server.faults.describe())
        elif route == ("PUT", "faults"):
            try:
                self.server.faults.configure(self._json_body())
            except ValueError as exc:
                raise errors.bad_request(str(exc)) from exc
            self._send_json(200, self.server.faults.describe())
        elif route == ("DELETE", "faults"):
            self.server.faults.clear()
            self._send_json(200, self.server.faults.describe())
        elif route == ("GET", "config"):
            self._send_json(200, _config(self.server.timing))
        elif route == ("PUT", "config"):
            _configure(self.server.timing, self._json_body())
            self._send_json(200, _config(self.server.timing))
        elif route == ("GET", "auth"):
            self._send_json(200, {"tokens": len(self.server.tokens.rotated)})
        elif route == ("PUT", "auth"):
            tokens = (self._json_body() or {}).get("tokens")
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise errors.bad_request('auth takes {"tokens": ["<token>", ...]}')
            self.server.tokens.rotate(tokens)
            self._send_json(200, {"tokens": len(self.server.tokens.rotated)})
        elif route == ("DELETE", "auth"):
            self.server.tokens.rotate([])
            self._send_json(200, {"tokens": 0})
        elif route == ("GET", "oplog"):
            self._send_json(200, {"items": self.server.oplog.entries(region)})
        elif route == ("DELETE", "oplog"):
            self.server.oplog.clear(region)
            self._send_json(200, {"items": self.server.oplog.entries(region)})
        elif route == ("GET", "requests"):
            self._send_json(200, {"items": self.server.requests.entries(region)})
        elif route == ("DELETE", "requests"):
            self.server.requests.clear(region)
            self._send_json(200, {"items": self.server.requests.entries(region)})
        else:
            raise _no_route()

    # -- requests ------------------------------------------------------------------------

    def _admission(self, user: User) -> Admit:
        """What the store calls, under its lock, just before it makes a write."""
        admission = self.server.admission

        def admit(write: Write) -> None:
            if admission is not None:
                self.warnings += admission.check(write, user)

        return admit

    def _json_body(self) -> Any:
        """The request body as JSON data; protobuf bodies (kubectl's typed clients) are
        read into the same form."""
        content_type = self.headers.get("Content-Type", "application/json")
        if self.body and content_type.startswith(protobuf.CONTENT_TYPE):
            return protobuf.decode(self.body)
        if self.body and "json" not in content_type:
            raise errors.unsupported_media_type(content_type)
        try:
            return json.loads(self.body or b"{}")
        except ValueError as exc:
            raise errors.bad_request(f"the request body is not JSON: {exc}") from exc

    def _selector(self) -> Callable[[dict[str, Any]], bool]:
        labels = label_selector(self.query.get("labelSelector"))
        fields = field_selector(self.query.get("fieldSelector"))
        return lambda obj: labels(obj) and fields(obj)

    def _delete_options(self) -> dict[str, Any]:
        options = self._json_body() if self.body.strip() else {}
        if not isinstance(options, dict):
            raise errors.bad_request("DeleteOptions must be a JSON object")
        if "propagationPolicy" in self.query:
            options["propagationPolicy"] = self.query["propagationPolicy"]
        if "gracePeriodSeconds" in self.query:
            try:
                options["gracePeriodSeconds"] = int(self.query["gracePeriodSeconds"])
            except ValueError as exc:
                raise errors.bad_request("gracePeriodSeconds must be an integer") from exc
        return options

    def _wants_table(self) -> bool:
        return "as=Table" in self.headers.get("Accept", "")

    # -- responses -----------------------------------------------------------------------

    def _send(
        self, code: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for warning in self.warnings:
            self.send_header("Warning", '299 - "{}"'.format(warning.replace('"', "'")))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(body).encode(), "application/json", headers)

    def _send_objects(
        self, kind: Kind, items: list[dict[str, Any]], version: str, collection: bool = False
    ) -> None:
        if self._wants_table():
            include = self.query.get("includeObject", "Metadata")
            self._send_json(200, table(kind, items, version, include))
        elif "as=PartialObjectMetadata" in self.headers.get("Accept", ""):
            # Metadata only (what `kubectl get --output=name` and metadata informers ask).
            partial = [_metadata_only(obj) for obj in items]
            if collection:
                self._send_json(
                    200,
                    {
                        "kind": "PartialObjectMetadataList",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": {"resourceVersion": version},
                        "items": partial,
                    },
                )
            else:
                self._send_json(200, partial[0])
        elif collection:
            self._send_json(200, _list(kind, items, version))
        else:
            self._send_json(200, items[0])

    def _watch(self, cluster: Cluster, kind: Kind, namespace: str | None) -> None:
        matches = self._selector()
        timeout = int(self.query.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        events = cluster.watch(
            kind,
            namespace,
            matches,
            self.query.get("resourceVersion"),
            time.time() + timeout,
            self._client_gone,
            bookmarks=self.query.get("allowWatchBookmarks") in ("true", "1"),
            send_initial_events=self.query.get("sendInitialEvents") == "true",
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event_type, obj in events:
            if self._wants_table() and event_type not in ("ERROR", "BOOKMARK"):
                obj = table(kind, [obj], obj["metadata"]["resourceVersion"])
            line = json.dumps({"type": event_type, "object": obj}).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _client_gone(self) -> bool:
        """Whether the client of a quiet watch has closed its connection."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return True
        return peeked == b""

    def _drop(self) -> None:
        """Close the connection without an answer (fault injection)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _metadata_only(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }


def _no_route() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def _not_allowed(method: str) -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", f"the server does not allow the method {method} on this resource"
    )


def _discovery(parts: list[str], prefix: str) -> dict[str, Any] | None:
    """Discovery and OpenAPI documents; None when `parts` names no such document."""
    if parts[:2] == ["openapi", "v3"]:
        return (
            openapi.root(prefix) if len(parts) == 2 else openapi.group_version("/".join(parts[2:]))
        )
    if parts == ["version"]:
        return kinds.KUBERNETES_VERSION
    if parts == ["api"]:
        return kinds.api_versions()
    if parts == ["apis"]:
        return kinds.api_group_list()
    if len(parts) == 2 and parts[0] == "api":
        return kinds.api_resource_list("", parts[1])
    if len(parts) == 2 and parts[0] == "apis":
        return kinds.api_group(parts[1])
    if len(parts) == 3 and parts[0] == "apis":
        return kinds.api_resource_list(parts[1], parts[2])
    return None


def _resource(parts: list[str]) -> tuple[Kind, str | None, str | None, str | None]:
    """The kind, namespace, name and subresource a resource path names."""
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise _no_route()
    namespace: str | None = None
    if len(rest) in (3, 4, 5) and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not 1 <= len(rest) <= 3:
        raise _no_route()
    kind = kinds.find_kind(group, version, rest[0])
    if kind is None or (namespace is not None and not kind.namespaced):
        raise _no_route()
    name = rest[1] if len(rest) >= 2 else None
    subresource = rest[2] if len(rest) == 3 else None
    if name is not None and kind.namespaced and namespace is None:
        raise _no_route()
    if subresource is not None and not (subresource == "scale" and kind.scalable):
        raise _no_route()
    return kind, namespace, name, subresource


def _verb(method: str, collection: bool, query: dict[str, str]) -> str:
    if collection:
        if method == "GET":
            return "watch" if query.get("watch") in ("true", "1") else "list"
        verbs = {"POST": "create", "DELETE": "deletecollection"}
    else:
        verbs = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    if method not in verbs:
        raise _not_allowed(method)
    return verbs[method]


def _list(kind: Kind, items: list[dict[str, Any]], version: str) -> dict[str, Any]:
    return {
        "kind": f"{kind.kind}List",
        "apiVersion": kind.api_version,
        "metadata": {"resourceVersion": version},
        "items": items,
    }


def _config(timing: Timing) -> dict[str, float]:
    return {"deleteDelay": timing.delete_delay, "readyDelay": timing.ready_delay}


def _configure(timing: Timing, body: Any) -> None:
    if not isinstance(body, dict) or set(body) - {"deleteDelay", "readyDelay"}:
        raise errors.bad_request('config is {"deleteDelay": seconds, "readyDelay": seconds}')
    for field, value in body.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise errors.bad_request(f"{field} must be a number of seconds")
    if body.get("deleteDelay", 0) < 0:
        raise errors.bad_request("deleteDelay must not be negative")
    timing.delete_delay = float(body.get("deleteDelay", timing.delete_delay))
    timing.ready_delay = float(body.get("readyDelay", timing.ready_delay))
