"""The stand-in's HTTP handler: authentication, negotiation, discovery, reads, watch, log, exec.

One request handler per connection (http.server), bound to the running server (`Served`). Answers
as the real API server does, Status objects included, so that the real kubectl and client behave
as with a cluster. Paths are parsed in .routes, objects come from the Store, pod writes are
.pods' (admission, then processes), exec streams .execstream's.
"""

from __future__ import annotations

import json
import re
import select
import time
from collections import deque
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from tracer.apiserver import admission, discovery, objects, pods, protobuf, tables
from tracer.apiserver.admission import Access, Denials
from tracer.apiserver.execstream import SPDY_PROTOCOL, V4, run_exec, run_spdy_exec
from tracer.apiserver.processes import Processes
from tracer.apiserver.routes import JSON, ApiError, Query, Route, flag, not_found, param, route
from tracer.apiserver.selectors import (
    SelectorError,
    fields_match,
    labels_match,
    parse_fields,
    parse_labels,
)
from tracer.apiserver.spdy import SpdyConnection
from tracer.apiserver.store import GoneError, Store
from tracer.apiserver.websocket import WebSocketConnection, accept_key, choose_subprotocol

# A watch without timeoutSeconds ends after this (the real server picks 30-60 minutes).
WATCH_DEFAULT_S = 1800
HEALTH = ("/healthz", "/livez", "/readyz")
PROTOBUF = "application/vnd.kubernetes.protobuf"


class Served(Protocol):
    """What the routes use of the running server (tracer.apiserver.server.Server)."""

    token: str
    address: str
    protocols: tuple[str, ...]
    denials: Denials
    store: Store
    processes: Processes
    requests: deque[tuple[str, str]]

    def take_fault(self, method: str, path: str) -> int | None: ...


def make_handler(server: Served) -> type[BaseHTTPRequestHandler]:
    class Bound(Handler):
        pass

    Bound.server_ref = server
    return Bound


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pathtrace-apiserver/1"
    server_ref: Served

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # Quiet: tests and the lab read the request log from `server.requests`.
        return

    # -- plumbing -----------------------------------------------------------------------------

    def _send(self, code: int, data: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, code: int, body: JSON, ctype: str = "application/json") -> None:
        self._send(code, json.dumps(body).encode(), ctype)

    def _read_body(self) -> None:
        # Read before anything can fail: an unread body would be parsed as the next request
        # on this keep-alive connection.
        n = int(self.headers.get("Content-Length") or 0)
        self._raw = self.rfile.read(n) if n > 0 else b""

    def _body(self) -> Any:
        raw = self._raw
        if not raw:
            return None
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype == PROTOBUF:
            try:
                return protobuf.decode(raw)
            except protobuf.ProtobufError as e:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media "
                    f"types include: application/json, application/yaml ({e})",
                ) from None
        if ctype == "application/cbor":
            # Clients fall back to JSON on this answer, as against a server without protobuf.
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f'include: application/json, application/yaml (got "{ctype}")',
            )
        try:
            return json.loads(raw)
        except json.JSONDecodeError as e:
            raise ApiError(400, "BadRequest", f"the request body is not JSON: {e}") from e

    def _chunk(self, data: bytes) -> bool:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            return True
        except OSError:
            return False

    def _start_stream(self, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True

    def _end_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass

    def _client_gone(self) -> bool:
        # A client that closed its end makes the socket readable (EOF); a live watcher sends
        # nothing while it watches.
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _dispatch(self, method: str) -> None:
        s = self.server_ref
        parts = urlsplit(self.path)
        query = {k: v for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        s.requests.append((method, parts.path))
        self._read_body()
        try:
            path = parts.path.rstrip("/") or "/"
            # Health and version are public, as the system:public-info-viewer role makes them.
            if path in HEALTH or any(path.startswith(h + "/") for h in HEALTH):
                self._send(200, b"ok", "text/plain; charset=utf-8")
                return
            if path == "/version":
                self._send_json(200, objects.VERSION)
                return
            if self.headers.get("Authorization") != f"Bearer {s.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            code = s.take_fault(method, parts.path)
            if code is not None:
                raise ApiError(code, "InternalError", f"injected failure of {method} {parts.path}")
            self._negotiate()
            if method == "GET" and self._discovery(path):
                return
            r = route(path)
            if r is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            self._authorize(method, r)
            self._handle(method, r, query)
        except ApiError as e:
            if self.headers.get("Upgrade", "").lower() == "websocket":
                self.close_connection = True
            self._send_json(e.code, objects.status(e.code, e.reason, e.message, e.details))

    def _negotiate(self) -> None:
        accept = self.headers.get("Accept") or "*/*"
        kinds = [t for t, _ in discovery.media_types(accept)]
        ok = ("application/json", "application/*", "*/*", "text/plain", "application/yaml")
        if kinds and not any(k in ok for k in kinds):
            raise ApiError(
                406,
                "NotAcceptable",
                "only the following media types are accepted: application/json, application/yaml",
            )

    def _discovery(self, path: str) -> bool:
        accept = self.headers.get("Accept") or ""
        if path in ("/api", "/apis"):
            media = discovery.aggregated_accepted(accept)
            if media is not None:
                version = "v2" if media == discovery.AGGREGATED_V2 else "v2beta1"
                self._send_json(200, discovery.aggregated(path == "/api", version), media)
            elif path == "/api":
                self._send_json(200, discovery.api_versions(self.server_ref.address))
            else:
                self._send_json(200, discovery.api_group_list())
            return True
        if path == "/api/v1":
            body = discovery.resource_list("", "v1")
        elif m := re.match(r"^/apis/([a-z0-9.-]+)$", path):
            body = discovery.api_group(m[1])
        elif m := re.match(r"^/apis/([a-z0-9.-]+)/(v[0-9a-z]+)$", path):
            body = discovery.resource_list(m[1], m[2])
        else:
            return False
        if body is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        self._send_json(200, body)
        return True

    def _authorize(self, method: str, r: Route) -> None:
        if r.plural == "selfsubjectaccessreviews":
            return
        if method == "GET":
            verb = "get" if r.name else "list"
        else:
            verb = {"POST": "create", "PATCH": "patch", "DELETE": "delete", "PUT": "update"}[method]
        if r.sub == "exec":
            verb = "create"
        access = Access(verb, r.plural, r.sub, r.group, r.namespace)
        if not self.server_ref.denials.allowed(access):
            res = f"{r.plural}/{r.sub}" if r.sub else r.plural
            name = f' "{r.name}"' if r.name and not r.sub else ""
            raise ApiError(
                403,
                "Forbidden",
                f'{res}{name} is forbidden: User "pathtrace-lab" {access.describe()}',
            )

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    # -- resources ----------------------------------------------------------------------------

    def _handle(self, method: str, r: Route, query: Query) -> None:
        verb = {"GET": "get", "POST": "create", "PATCH": "patch", "DELETE": "delete"}.get(
            method, "update"
        )
        s = self.server_ref
        if r.plural == "selfsubjectaccessreviews":
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", "only create is supported")
            self._send_json(201, admission.review(s.denials, self._body()))
            return
        if r.sub == "exec":
            self._exec(r, query)
            return
        if r.sub == "log":
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")
            self._log(r, query)
            return
        if r.sub == "ephemeralcontainers":
            if method == "GET":
                self._send_json(200, self._get(r))
            elif method == "PATCH":
                ctype = self.headers.get("Content-Type", "")
                patched = pods.patch_ephemeral(
                    s.store, s.processes, r.namespace, r.name, ctype, self._body()
                )
                self._send_json(200, patched)
            else:
                raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")
            return
        if method == "GET" and not r.name:
            if flag(query, "watch"):
                self._watch(r, query)
            else:
                self._list(r, query)
            return
        if method == "GET":
            obj = self._get(r)
            if tables.wants_table(self.headers.get("Accept") or ""):
                self._send_json(
                    200,
                    tables.table(
                        r.plural,
                        [obj],
                        obj["metadata"].get("resourceVersion", ""),
                        include_object=param(query, "includeObject") or "Metadata",
                    ),
                )
            else:
                self._send_json(200, obj)
            return
        if verb not in r.resource.verbs:
            raise ApiError(
                405,
                "MethodNotAllowed",
                f"{method} is not supported on {r.plural} by this API server",
            )
        if method == "POST" and r.plural == "pods" and not r.name:
            self._send_json(201, pods.create_pod(s.store, s.processes, r.namespace, self._body()))
        elif method == "DELETE" and r.plural == "pods" and r.name:
            self._send_json(200, pods.delete_pod(s.store, s.processes, r.namespace, r.name))
        else:
            raise ApiError(405, "MethodNotAllowed", f"{method} {r.plural} is not supported")

    def _selected(self, r: Route, query: Query) -> Any:
        """A predicate for the list's or watch's label and field selectors (400 when invalid)."""
        ls, fs = param(query, "labelSelector"), param(query, "fieldSelector")
        try:
            parse_labels(ls)
            terms = parse_fields(r.plural, fs)
        except SelectorError as e:
            # kubectl puts the resource and the selectors before the server's reason.
            raise ApiError(400, "BadRequest", str(e)) from None

        def keep(o: JSON) -> bool:
            md = o["metadata"]
            if r.namespace and md.get("namespace") != r.namespace:
                return False
            return labels_match(ls, md.get("labels") or {}) and fields_match(r.plural, terms, o)

        return keep

    def _list(self, r: Route, query: Query) -> None:
        keep = self._selected(r, query)
        items, rv = self.server_ref.store.items(r.plural, r.namespace)
        items = [o for o in items if keep(o)]
        if tables.wants_table(self.headers.get("Accept") or ""):
            include = param(query, "includeObject") or "Metadata"
            self._send_json(200, tables.table(r.plural, items, rv, include_object=include))
            return
        self._send_json(
            200,
            {
                "apiVersion": r.resource.group_version,
                "kind": r.resource.list_kind,
                "metadata": {"resourceVersion": rv},
                "items": items,
            },
        )

    def _watch(self, r: Route, query: Query) -> None:
        store = self.server_ref.store
        keep = self._selected(r, query)
        as_table = tables.wants_table(self.headers.get("Accept") or "")
        include = param(query, "includeObject") or "Metadata"
        rv_text = param(query, "resourceVersion")
        try:
            since = int(rv_text) if rv_text else 0
        except ValueError:
            raise ApiError(400, "BadRequest", f"invalid resource version: {rv_text}") from None
        timeout = param(query, "timeoutSeconds")
        seconds = float(timeout) if timeout.isdigit() else WATCH_DEFAULT_S
        deadline = time.monotonic() + seconds
        initial: list[JSON] = []
        if since == 0:
            # No version (or "0"): the current state first, as ADDED events.
            items, rv = store.items(r.plural, r.namespace)
            initial, since = [o for o in items if keep(o)], int(rv)
        try:
            store.check_version(since)
        except GoneError as e:
            raise ApiError(410, "Expired", str(e)) from None
        ctype = "application/json"
        self._start_stream(ctype)

        def send(kind: str, obj: JSON) -> bool:
            if as_table:
                obj = tables.table(
                    r.plural,
                    [obj],
                    obj["metadata"].get("resourceVersion", ""),
                    include_object=include,
                )
            return self._chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

        for o in initial:
            if not send("ADDED", o):
                return
        for ev in store.watch(r.plural, since, deadline, self._client_gone):
            if keep(ev.object) and not send(ev.type, ev.object):
                return
        self._end_stream()

    def _get(self, r: Route) -> JSON:
        o = self.server_ref.store.get(r.plural, (r.namespace, r.name))
        if o is None:
            raise not_found(r.plural, r.name, r.group)
        return o

    # -- log ----------------------------------------------------------------------------------

    def _log(self, r: Route, query: Query) -> None:
        s = self.server_ref
        pod = self._get(r)
        spec = pod["spec"]
        names = [c["name"] for c in spec.get("containers") or []]
        eph = [c["name"] for c in spec.get("ephemeralContainers") or []]
        container = param(query, "container")
        if not container:
            if len(names) != 1:
                raise ApiError(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {r.name}, choose one of: "
                    f"[{' '.join(names)}] or one of the ephemeral containers: [{' '.join(eph)}]",
                )
            container = names[0]
        if container not in names and container not in eph:
            raise ApiError(
                400, "BadRequest", f"container {container} is not valid for pod {r.name}"
            )
        key = (r.namespace, r.name, container)
        files = s.store.log_files.get((r.namespace, r.name), ())

        def read() -> tuple[bytes, bool]:
            with s.store.lock:
                log = s.processes.logs.get(key)
                if log is not None:
                    return bytes(log.data), log.done
            data = b""
            for f in files:
                try:
                    with open(f, "rb") as fh:
                        data += fh.read()
                except OSError:
                    pass
            return data, not files

        data, done = read()
        tail = param(query, "tailLines")
        if tail.isdigit():
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[len(lines) - int(tail) :] if int(tail) else [])
        limit = param(query, "limitBytes")
        if limit.isdigit():
            data = data[: int(limit)]
        if not flag(query, "follow"):
            self._send(200, data, "text/plain")
            return
        self._start_stream("text/plain")
        sent = len(read()[0])
        if data and not self._chunk(data):
            return
        while not done and not s.store.closed and not self._client_gone():
            time.sleep(0.2)
            now, done = read()
            if len(now) > sent:
                if not self._chunk(now[sent:]):
                    return
                sent = len(now)
        self._end_stream()

    # -- exec ---------------------------------------------------------------------------------

    def _exec(self, r: Route, query: Query) -> None:
        s = self.server_ref
        argv = query.get("command") or []
        container = param(query, "container")
        if not argv:
            raise ApiError(400, "BadRequest", "you must specify at least 1 command")
        if flag(query, "tty"):
            raise ApiError(400, "BadRequest", "tty is not supported by this API server")
        pod = self._get(r)
        spec = pod["spec"]
        names = [c["name"] for c in spec.get("containers") or []]
        eph = [c["name"] for c in spec.get("ephemeralContainers") or []]
        if not container:
            container = names[0]
        if container not in names and container not in eph:
            raise ApiError(
                400, "BadRequest", f"container {container} is not valid for pod {r.name}"
            )
        upgrade = self.headers.get("Upgrade", "").lower()
        if upgrade == SPDY_PROTOCOL.lower():
            self._exec_spdy(r, query, container, argv)
            return
        if upgrade != "websocket":
            raise ApiError(400, "BadRequest", "exec needs an upgrade to WebSocket or SPDY/3.1")
        proto = choose_subprotocol(self.headers.get("Sec-WebSocket-Protocol"), s.protocols)
        if proto is None:
            raise ApiError(
                400,
                "BadRequest",
                f"no supported subprotocol; offer one of {', '.join(s.protocols)}",
            )
        key = self.headers.get("Sec-WebSocket-Key", "")
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept_key(key))
        self.send_header("Sec-WebSocket-Protocol", proto)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        ws = WebSocketConnection(self.connection, self.rfile)  # type: ignore[arg-type]
        run_exec(
            s.processes,
            ws,
            proto,
            r.namespace,
            r.name,
            container,
            argv,
            stdin=flag(query, "stdin"),
        )

    def _exec_spdy(self, r: Route, query: Query, container: str, argv: list[str]) -> None:
        if V4 not in _spdy_versions(self):
            raise ApiError(
                403,
                "Forbidden",
                f"no common stream protocol: this server speaks {V4} over SPDY",
            )
        self.send_response(101, "Switching Protocols")
        self.send_header("Connection", "Upgrade")
        self.send_header("Upgrade", SPDY_PROTOCOL)
        self.send_header("X-Stream-Protocol-Version", V4)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        wanted = {"error"} | {k for k in ("stdin", "stdout", "stderr") if flag(query, k)}
        conn = SpdyConnection(self.connection, self.rfile)  # type: ignore[arg-type]
        run_spdy_exec(self.server_ref.processes, conn, r.namespace, r.name, container, argv, wanted)


def _spdy_versions(handler: BaseHTTPRequestHandler) -> list[str]:
    out = []
    for value in handler.headers.get_all("X-Stream-Protocol-Version") or []:
        out += [v.strip() for v in value.split(",") if v.strip()]
    return out
