"""A local stand-in for the Kubernetes API, faithful enough for the real kubernetes client.

Serves, on 127.0.0.1 only and behind a random bearer token: nodes, namespaces, pods (list, get,
create, delete), pods/ephemeralcontainers (get, strategic-merge patch), pods/exec over WebSocket
(v5.channel.k8s.io and v4.channel.k8s.io), services, endpointslices, ingresses and
SelfSubjectAccessReview. RBAC denials and failures can be injected for tests; Pod Security levels
come from namespace labels. Commands run through an `ExecBackend` (the lab: `ip netns exec`).

Must not: listen on anything but loopback, or leave a process running after `close()`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tracer.apiserver import objects
from tracer.apiserver.objects import JSON
from tracer.apiserver.state import ClusterState, ExecBackend, ExecTarget
from tracer.apiserver.websocket import (
    OP_BINARY,
    OP_TEXT,
    WebSocketConnection,
    accept_key,
    choose_subprotocol,
)
from tracer.rundir import write_json_private

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
CLOSE_CHANNEL = 255


@dataclass(frozen=True)
class Access:
    """One authorization question, as a SelfSubjectAccessReview's resourceAttributes."""

    verb: str
    resource: str
    subresource: str = ""
    group: str = ""
    namespace: str = ""

    def describe(self) -> str:
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = (
            f' in the namespace "{self.namespace}"' if self.namespace else " at the cluster scope"
        )
        return f'cannot {self.verb} resource "{res}" in API group "{self.group}"{where}'


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    code: int
    times: int


@dataclass
class _Proc:
    popen: subprocess.Popen[bytes]
    namespace: str
    pod: str
    container: str
    argv: tuple[str, ...]
    main: bool = False


@dataclass
class Denials:
    """RBAC rules the stand-in refuses: (verb, resource[/subresource], namespace or "*")."""

    rules: set[tuple[str, str, str]] = field(default_factory=set)

    def deny(self, verb: str, resource: str, namespace: str = "*") -> None:
        self.rules.add((verb, resource, namespace))

    def allowed(self, a: Access) -> bool:
        res = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        for verb, r, ns in self.rules:
            if verb in (a.verb, "*") and r in (res, "*") and ns in ("*", a.namespace):
                return False
        return True


class _Store:
    def __init__(self, state: ClusterState) -> None:
        self.lock = threading.RLock()
        self.kinds = objects.initial_objects(state)
        self.netns: dict[tuple[str, str], str | None] = {
            (p.namespace, p.name): p.netns for p in state.pods
        }
        self.node_netns = {n.name: n.netns for n in state.nodes}
        self.node_ip = {n.name: n.internal_ip for n in state.nodes}


class Server:
    """A running stand-in; `close()` stops it, ends every process it started and removes its files."""

    def __init__(
        self,
        state: ClusterState,
        exec_backend: ExecBackend,
        *,
        port: int = 0,
        protocols: tuple[str, ...] = (V5, V4),
        workdir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.token = secrets.token_urlsafe(24)
        self.protocols = protocols
        self.denials = Denials()
        self.exec_backend = exec_backend
        self._store = _Store(state)
        self._faults: list[_Fault] = []
        self._procs: list[_Proc] = []
        self._timers: list[threading.Timer] = []
        self.requests: list[tuple[str, str]] = []
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="pathtrace-api-"))
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        host, bound = self._httpd.server_address[:2]
        self.url = f"http://{host!s}:{bound}"
        self.kubeconfig_path = self._write_kubeconfig()
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    # -- test hooks ---------------------------------------------------------------------------

    def inject_fault(self, method: str, path_regex: str, code: int = 500, times: int = 1) -> None:
        """Answer the next `times` requests matching method and path with `code`."""
        self._faults.append(_Fault(method.upper(), re.compile(path_regex), code, times))

    def set_namespace_labels(self, namespace: str, labels: dict[str, str]) -> None:
        with self._store.lock:
            ns = self._store.kinds["namespaces"].get(("", namespace))
            if ns is None:
                ns = objects.namespace(namespace, {})
                self._store.kinds["namespaces"][("", namespace)] = ns
            ns["metadata"].setdefault("labels", {}).update(labels)

    def running_processes(self) -> list[tuple[str, str, str, tuple[str, ...]]]:
        """(namespace, pod, container, argv) of every process still running."""
        with self._store.lock:
            return [
                (p.namespace, p.pod, p.container, p.argv)
                for p in self._procs
                if p.popen.poll() is None
            ]

    # -- lifecycle ----------------------------------------------------------------------------

    def _write_kubeconfig(self) -> Path:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "pathtrace-lab", "cluster": {"server": self.url}}],
            "users": [{"name": "pathtrace-lab", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "pathtrace-lab",
                    "context": {
                        "cluster": "pathtrace-lab",
                        "user": "pathtrace-lab",
                        "namespace": "default",
                    },
                }
            ],
            "current-context": "pathtrace-lab",
        }
        return write_json_private(self.dir / "kubeconfig", cfg)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        for t in self._timers:
            t.cancel()
        with self._store.lock:
            procs = list(self._procs)
        for p in procs:
            _terminate(p.popen)
        try:
            self.kubeconfig_path.unlink()
            if self._own_dir:
                self.dir.rmdir()
        except OSError:
            pass

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers used by the handler ----------------------------------------------------------

    def take_fault(self, method: str, path: str) -> int | None:
        for f in self._faults:
            if f.times > 0 and f.method in (method, "*") and f.path.search(path):
                f.times -= 1
                return f.code
        return None

    def start_process(
        self, namespace: str, pod: str, container: str, argv: list[str], *, main: bool = False
    ) -> subprocess.Popen[bytes]:
        store = self._store
        with store.lock:
            p = store.kinds["pods"].get((namespace, pod))
            if p is None:
                raise FileNotFoundError(f"pod {namespace}/{pod} is gone")
            node = p["spec"].get("nodeName")
            if p["spec"].get("hostNetwork"):
                netns = store.node_netns.get(node)
            else:
                netns = store.netns.get((namespace, pod))
        target = ExecTarget(
            netns=netns, namespace=namespace, pod=pod, container=container, node=node
        )
        popen = self.exec_backend.start(target, argv)
        proc = _Proc(popen, namespace, pod, container, tuple(argv), main)
        with store.lock:
            self._procs.append(proc)
        if main:
            threading.Thread(target=self._watch_main, args=(proc,), daemon=True).start()
        return popen

    def _watch_main(self, proc: _Proc) -> None:
        # A container's processes die with its main process, as the runtime tears the container down.
        proc.popen.wait()
        self.kill_container(proc.namespace, proc.pod, proc.container)
        with self._store.lock:
            p = self._store.kinds["pods"].get((proc.namespace, proc.pod))
            if p is None:
                return
            for key in ("containerStatuses", "ephemeralContainerStatuses"):
                for cs in p["status"].get(key) or []:
                    if cs["name"] == proc.container:
                        code = proc.popen.returncode
                        cs["state"] = {
                            "terminated": {
                                "exitCode": code if code >= 0 else 128 - code,
                                "reason": "Completed" if code == 0 else "Error",
                            }
                        }
                        cs["ready"] = False

    def kill_container(self, namespace: str, pod: str, container: str | None) -> None:
        with self._store.lock:
            procs = [
                p
                for p in self._procs
                if p.namespace == namespace
                and p.pod == pod
                and (container is None or p.container == container)
            ]
        for p in procs:
            _terminate(p.popen)

    def pkill(self, namespace: str, pod: str, container: str, argv: list[str]) -> int:
        """`pkill [-SIG] [-x] NAME` as it behaves inside a container's PID namespace."""
        sig = signal.SIGTERM
        names = []
        for a in argv[1:]:
            if a in ("-x", "-f", "-e"):
                continue
            if a.startswith("-"):
                s = a[1:]
                sig = (
                    signal.Signals(int(s))
                    if s.isdigit()
                    else signal.Signals[s if s.startswith("SIG") else "SIG" + s]
                )
            else:
                names.append(a)
        hit = 0
        with self._store.lock:
            procs = [
                p
                for p in self._procs
                if p.namespace == namespace and p.pod == pod and p.container == container
            ]
        for p in procs:
            if p.popen.poll() is None and os.path.basename(p.argv[0]) in names:
                try:
                    os.killpg(p.popen.pid, sig)
                    hit += 1
                except ProcessLookupError:
                    pass
        return 0 if hit else 1

    def schedule_deadline(self, namespace: str, pod: str, seconds: float) -> None:
        def expire() -> None:
            self.kill_container(namespace, pod, None)
            with self._store.lock:
                p = self._store.kinds["pods"].get((namespace, pod))
                if p is not None:
                    p["status"]["phase"] = "Failed"
                    p["status"]["reason"] = "DeadlineExceeded"

        t = threading.Timer(seconds, expire)
        t.daemon = True
        self._timers.append(t)
        t.start()


def _terminate(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is not None:
        return
    try:
        os.killpg(popen.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        popen.wait(timeout=2)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        popen.wait(timeout=2)


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details


def _not_found(resource: str, name: str, group: str = "") -> ApiError:
    """The 404 Status a real API server returns for a missing object."""
    qualified = f"{resource}.{group}" if group else resource
    return ApiError(
        404, "NotFound", f'{qualified} "{name}" not found', {"name": name, "kind": resource}
    )


# Collections the handler serves: resource -> (API group path prefix, group, namespaced).
_GROUPS = {
    "nodes": ("/api/v1", "", False),
    "namespaces": ("/api/v1", "", False),
    "pods": ("/api/v1", "", True),
    "services": ("/api/v1", "", True),
    "endpointslices": ("/apis/discovery.k8s.io/v1", "discovery.k8s.io", True),
    "ingresses": ("/apis/networking.k8s.io/v1", "networking.k8s.io", True),
}
_LIST_KIND = {
    "nodes": ("v1", "NodeList"),
    "namespaces": ("v1", "NamespaceList"),
    "pods": ("v1", "PodList"),
    "services": ("v1", "ServiceList"),
    "endpointslices": ("discovery.k8s.io/v1", "EndpointSliceList"),
    "ingresses": ("networking.k8s.io/v1", "IngressList"),
}
_PATH = re.compile(
    r"^(?P<prefix>/api/v1|/apis/[a-z0-9.]+/v1)"
    r"(?:/namespaces/(?P<ns>[^/]+)(?=/))?"
    r"/(?P<resource>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[a-z]+))?/?$"
)


@dataclass(frozen=True)
class _Route:
    resource: str
    namespace: str
    name: str
    sub: str
    group: str


def _route(path: str) -> _Route | None:
    m = _PATH.match(path)
    if not m:
        return None
    resource = m["resource"]
    ns = m["ns"] or ""
    name = m["name"] or ""
    # /api/v1/namespaces/NAME is the namespace object itself, not a namespaced collection.
    if resource == "namespaces" and not ns and name and m["sub"] is None:
        return _Route("namespaces", "", name, "", "")
    if resource not in _GROUPS and resource != "selfsubjectaccessreviews":
        return None
    group = _GROUPS.get(resource, ("", "authorization.k8s.io", False))[1]
    expected_prefix = _GROUPS.get(resource, ("/apis/authorization.k8s.io/v1", "", False))[0]
    if m["prefix"] != expected_prefix:
        return None
    return _Route(resource, ns, name, m["sub"] or "", group)


def _make_handler(server: Server) -> type[BaseHTTPRequestHandler]:
    store = server._store

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "pathtrace-apiserver/1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            # Quiet: tests and the lab read the request log from `server.requests`.
            return

        # -- plumbing -------------------------------------------------------------------------

        def _send_json(self, code: int, body: JSON) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _read_body(self) -> None:
            # Read before anything can fail: an unread body would be parsed as the next request
            # on this keep-alive connection.
            n = int(self.headers.get("Content-Length") or 0)
            self._raw = self.rfile.read(n) if n > 0 else b""

        def _body(self) -> Any:
            raw = self._raw
            if not raw:
                return None
            try:
                return json.loads(raw)
            except json.JSONDecodeError as e:
                raise ApiError(400, "BadRequest", f"the request body is not JSON: {e}") from e

        def _dispatch(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = {k: v for k, v in parse_qs(parts.query).items()}
            server.requests.append((method, parts.path))
            self._read_body()
            try:
                if self.headers.get("Authorization") != f"Bearer {server.token}":
                    raise ApiError(401, "Unauthorized", "Unauthorized")
                code = server.take_fault(method, parts.path)
                if code is not None:
                    raise ApiError(
                        code, "InternalError", f"injected failure of {method} {parts.path}"
                    )
                if parts.path == "/version":
                    self._send_json(
                        200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-pathtrace"}
                    )
                    return
                route = _route(parts.path)
                if route is None:
                    raise ApiError(
                        404, "NotFound", "the server could not find the requested resource"
                    )
                self._authorize(method, route)
                self._handle(method, route, query)
            except ApiError as e:
                if self.headers.get("Upgrade", "").lower() == "websocket":
                    self.close_connection = True
                self._send_json(e.code, objects.status(e.code, e.reason, e.message, e.details))

        def _authorize(self, method: str, r: _Route) -> None:
            if r.resource == "selfsubjectaccessreviews":
                return
            if method == "GET":
                verb = "get" if r.name else "list"
            else:
                verb = {"POST": "create", "PATCH": "patch", "DELETE": "delete", "PUT": "update"}[
                    method
                ]
            if r.sub == "exec":
                verb = "create"
            access = Access(verb, r.resource, r.sub, r.group, r.namespace)
            if not server.denials.allowed(access):
                res = f"{r.resource}/{r.sub}" if r.sub else r.resource
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

        # -- resources ------------------------------------------------------------------------

        def _handle(self, method: str, r: _Route, query: dict[str, list[str]]) -> None:
            if r.resource == "selfsubjectaccessreviews":
                if method != "POST":
                    raise ApiError(405, "MethodNotAllowed", "only create is supported")
                self._send_json(201, self._review(self._body()))
                return
            if r.sub == "exec":
                self._exec(r, query)
                return
            if r.sub == "ephemeralcontainers":
                if method == "GET":
                    self._send_json(200, self._get(r))
                elif method == "PATCH":
                    self._send_json(200, self._patch_ephemeral(r, self._body()))
                else:
                    raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")
                return
            if r.sub:
                raise ApiError(404, "NotFound", f"the subresource {r.sub!r} is not served")
            if method == "GET" and not r.name:
                self._send_json(200, self._list(r, query))
            elif method == "GET":
                self._send_json(200, self._get(r))
            elif method == "POST" and r.resource == "pods" and not r.name:
                self._send_json(201, self._create_pod(r, self._body()))
            elif method == "DELETE" and r.resource == "pods" and r.name:
                self._send_json(200, self._delete_pod(r))
            else:
                raise ApiError(405, "MethodNotAllowed", f"{method} {r.resource} is not supported")

        def _list(self, r: _Route, query: dict[str, list[str]]) -> JSON:
            selector = (query.get("labelSelector") or [""])[0]
            with store.lock:
                items = [
                    copy.deepcopy(o)
                    for (ns, _), o in sorted(store.kinds[r.resource].items())
                    if (not r.namespace or ns == r.namespace)
                    and objects.selector_matches(selector, o["metadata"].get("labels") or {})
                ]
            api_version, kind = _LIST_KIND[r.resource]
            return {
                "apiVersion": api_version,
                "kind": kind,
                "metadata": {"resourceVersion": "1"},
                "items": items,
            }

        def _get(self, r: _Route) -> JSON:
            with store.lock:
                o = store.kinds[r.resource].get((r.namespace, r.name))
                if o is None:
                    raise _not_found(r.resource, r.name, r.group)
                return copy.deepcopy(o)

        def _review(self, body: Any) -> JSON:
            attrs = ((body or {}).get("spec") or {}).get("resourceAttributes") or {}
            access = Access(
                verb=str(attrs.get("verb", "")),
                resource=str(attrs.get("resource", "")),
                subresource=str(attrs.get("subresource") or ""),
                group=str(attrs.get("group") or ""),
                namespace=str(attrs.get("namespace") or ""),
            )
            allowed = server.denials.allowed(access)
            out: JSON = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "metadata": {"creationTimestamp": None},
                "spec": (body or {}).get("spec") or {},
                "status": {"allowed": allowed},
            }
            if not allowed:
                out["status"]["reason"] = "denied by the stand-in's RBAC rules"
            return out

        def _psa(self, namespace: str, spec: JSON, pod_name: str) -> None:
            with store.lock:
                ns = store.kinds["namespaces"].get(("", namespace))
                labels = (ns or {}).get("metadata", {}).get("labels") or {}
            level = labels.get(objects.PSA_ENFORCE, "privileged")
            bad = objects.pod_security_violations(level, spec)
            if bad:
                raise ApiError(
                    403,
                    "Forbidden",
                    f'pods "{pod_name}" is forbidden: violates PodSecurity "{level}:latest": '
                    + ", ".join(bad),
                )

        def _create_pod(self, r: _Route, body: Any) -> JSON:
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the body must be a Pod object")
            md = body.get("metadata") or {}
            name = md.get("name") or ""
            if not name and md.get("generateName"):
                name = md["generateName"] + secrets.token_hex(3)[:5]
            spec = body.get("spec") or {}
            errs = []
            if not objects.is_dns_label(name):
                errs.append(f"metadata.name: Invalid value: {name!r}: must be a DNS label")
            containers = spec.get("containers") or []
            if not containers:
                errs.append("spec.containers: Required value")
            for i, c in enumerate(containers):
                if not c.get("name") or not c.get("image"):
                    errs.append(f"spec.containers[{i}]: name and image are required")
            node = spec.get("nodeName")
            with store.lock:
                if node and ("", node) not in store.kinds["nodes"]:
                    errs.append(f"spec.nodeName: Not found: {node!r}")
                if (r.namespace, name) in store.kinds["pods"]:
                    raise ApiError(409, "AlreadyExists", f'pods "{name}" already exists')
            if not spec.get("hostNetwork"):
                errs.append("spec.hostNetwork: the stand-in runs only host-network pods")
            if errs:
                raise ApiError(422, "Invalid", f'Pod "{name}" is invalid: ' + "; ".join(errs))
            self._psa(r.namespace, spec, name)
            pod = copy.deepcopy(body)
            pod["apiVersion"] = "v1"
            pod["kind"] = "Pod"
            pod["metadata"] = {
                **objects.meta(name, r.namespace, md.get("labels")),
                **{k: v for k, v in md.items() if k in ("annotations",)},
            }
            host_ip = store.node_ip.get(node or "", "")
            pod["status"] = {
                "phase": "Running",
                "hostIP": host_ip,
                "podIP": host_ip,
                "podIPs": [{"ip": host_ip}],
                "containerStatuses": [
                    objects.container_status(c["name"], c["image"]) for c in containers
                ],
            }
            with store.lock:
                store.kinds["pods"][(r.namespace, name)] = pod
            for c in containers:
                argv = [*(c.get("command") or []), *(c.get("args") or [])]
                if argv:
                    try:
                        server.start_process(r.namespace, name, c["name"], argv, main=True)
                    except OSError as e:
                        with store.lock:
                            pod["status"]["phase"] = "Failed"
                            pod["status"]["message"] = str(e)
            deadline = spec.get("activeDeadlineSeconds")
            if isinstance(deadline, int) and deadline > 0:
                server.schedule_deadline(r.namespace, name, deadline)
            return copy.deepcopy(pod)

        def _delete_pod(self, r: _Route) -> JSON:
            with store.lock:
                pod = store.kinds["pods"].pop((r.namespace, r.name), None)
            if pod is None:
                raise _not_found("pods", r.name)
            server.kill_container(r.namespace, r.name, None)
            pod["metadata"]["deletionTimestamp"] = objects.CREATED
            return pod

        def _patch_ephemeral(self, r: _Route, body: Any) -> JSON:
            ctype = self.headers.get("Content-Type", "")
            if "strategic-merge-patch" not in ctype and "merge-patch" not in ctype:
                raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {ctype!r}")
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the patch must be a JSON object")
            wanted = (body.get("spec") or {}).get("ephemeralContainers")
            if not isinstance(wanted, list):
                raise ApiError(422, "Invalid", "spec.ephemeralContainers: Required value")
            with store.lock:
                pod = store.kinds["pods"].get((r.namespace, r.name))
                if pod is None:
                    raise _not_found("pods", r.name)
                pod = copy.deepcopy(pod)
            spec = pod["spec"]
            existing = {c["name"]: c for c in spec.get("ephemeralContainers") or []}
            names = {c["name"] for c in spec.get("containers") or []}
            added = []
            errs = []
            for i, c in enumerate(wanted):
                where = f"spec.ephemeralContainers[{i}]"
                if not isinstance(c, dict) or "$patch" in c:
                    errs.append(
                        f"{where}: Forbidden: existing ephemeral containers may not be removed"
                    )
                    continue
                name = str(c.get("name", ""))
                if name in existing:
                    if {k: v for k, v in c.items() if v is not None} != {
                        k: v for k, v in existing[name].items() if v is not None
                    }:
                        errs.append(
                            f"{where}: Forbidden: existing ephemeral containers {name!r} may not be changed"
                        )
                    continue
                errs += _validate_ephemeral(c, where, names)
                names.add(name)
                added.append(c)
            if errs:
                raise ApiError(422, "Invalid", f'Pod "{r.name}" is invalid: ' + "; ".join(errs))
            spec["ephemeralContainers"] = [*existing.values(), *added]
            self._psa(r.namespace, spec, r.name)
            statuses = pod["status"].setdefault("ephemeralContainerStatuses", [])
            for c in added:
                statuses.append(objects.container_status(c["name"], c["image"]))
            with store.lock:
                store.kinds["pods"][(r.namespace, r.name)] = pod
            for c in added:
                argv = [*(c.get("command") or []), *(c.get("args") or [])]
                if argv:
                    server.start_process(r.namespace, r.name, c["name"], argv, main=True)
            return copy.deepcopy(pod)

        # -- exec -----------------------------------------------------------------------------

        def _exec(self, r: _Route, query: dict[str, list[str]]) -> None:
            argv = query.get("command") or []
            container = (query.get("container") or [""])[0]
            if not argv:
                raise ApiError(400, "BadRequest", "you must specify at least 1 command")
            if (query.get("tty") or ["false"])[0] == "true":
                raise ApiError(400, "BadRequest", "tty is not supported by this API server")
            with store.lock:
                pod = store.kinds["pods"].get((r.namespace, r.name))
                if pod is None:
                    raise _not_found("pods", r.name)
                spec = pod["spec"]
                names = [c["name"] for c in spec.get("containers") or []]
                eph = [c["name"] for c in spec.get("ephemeralContainers") or []]
                if not container:
                    container = names[0]
                if container not in names and container not in eph:
                    raise ApiError(
                        400,
                        "BadRequest",
                        f"container {container} is not valid for pod {r.name}",
                    )
            if self.headers.get("Upgrade", "").lower() != "websocket":
                raise ApiError(
                    400, "BadRequest", "exec needs a WebSocket upgrade (SPDY is not served)"
                )
            proto = choose_subprotocol(self.headers.get("Sec-WebSocket-Protocol"), server.protocols)
            if proto is None:
                raise ApiError(
                    400,
                    "BadRequest",
                    f"no supported subprotocol; offer one of {', '.join(server.protocols)}",
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
            _run_exec(server, ws, proto, r.namespace, r.name, container, argv)

    return Handler


def _validate_ephemeral(c: JSON, where: str, names: set[str]) -> list[str]:
    from kubernetes.client.models import V1EphemeralContainer

    errs = []
    name = str(c.get("name", ""))
    if not objects.is_dns_label(name):
        errs.append(f"{where}.name: Invalid value: {name!r}: must be a DNS label")
    if name in names:
        errs.append(f"{where}.name: Duplicate value: {name!r}")
    if not c.get("image"):
        errs.append(f"{where}.image: Required value")
    for f in objects.FORBIDDEN_EPHEMERAL_FIELDS:
        if c.get(f):
            errs.append(f"{where}.{f}: Forbidden: cannot be set for an Ephemeral Container")
    target = c.get("targetContainerName")
    if target and target not in names:
        errs.append(f"{where}.targetContainerName: Not found: {target!r}")
    try:
        # The client's own model is the schema: unknown types or shapes fail here as they would
        # in the API server's decoder.
        V1EphemeralContainer.from_dict(c)
    except Exception as e:  # pydantic raises its own ValidationError type
        errs.append(f"{where}: Invalid value: {str(e).splitlines()[0]}")
    return errs


def _exit_status(code: int | None, error: str | None) -> JSON:
    if error is not None:
        return {
            "metadata": {},
            "status": "Failure",
            "message": error,
            "reason": "InternalError",
            "details": {"causes": [{"message": error}]},
        }
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def _pump(ws: WebSocketConnection, channel: int, stream: Any) -> None:
    prefix = bytes([channel])
    while True:
        chunk = stream.read1(32768) if hasattr(stream, "read1") else stream.read(32768)
        if not chunk:
            return
        if not ws.send(OP_BINARY, prefix + chunk):
            return


def _run_exec(
    server: Server,
    ws: WebSocketConnection,
    proto: str,
    namespace: str,
    pod: str,
    container: str,
    argv: list[str],
) -> None:
    error_ch = bytes([3])
    if os.path.basename(argv[0]) == "pkill":
        code = server.pkill(namespace, pod, container, argv)
        ws.send(OP_BINARY, error_ch + json.dumps(_exit_status(code, None)).encode())
        ws.close()
        return
    try:
        popen = server.start_process(namespace, pod, container, argv)
    except OSError as e:
        msg = f'exec: "{argv[0]}": {e.strerror or e}'
        ws.send(OP_BINARY, error_ch + json.dumps(_exit_status(None, msg)).encode())
        ws.close()
        return
    pumps = [
        threading.Thread(target=_pump, args=(ws, ch, s), daemon=True)
        for ch, s in ((1, popen.stdout), (2, popen.stderr))
    ]
    for t in pumps:
        t.start()

    def reader() -> None:
        # Client → server: stdin (channel 0), v5 CLOSE of stdin, or the end of the connection.
        while True:
            msg = ws.receive()
            if msg is None:
                # The client went away: end the command, as kubelet ends a stream's process.
                _terminate(popen)
                return
            if msg.opcode not in (OP_BINARY, OP_TEXT) or not msg.data:
                continue
            ch, data = msg.data[0], msg.data[1:]
            if ch == 0 and popen.stdin is not None:
                try:
                    popen.stdin.write(data)
                    popen.stdin.flush()
                except (BrokenPipeError, ValueError):
                    pass
            elif ch == CLOSE_CHANNEL and proto == V5 and data[:1] == b"\x00" and popen.stdin:
                try:
                    popen.stdin.close()
                except (BrokenPipeError, ValueError):
                    pass

    threading.Thread(target=reader, daemon=True).start()
    code = popen.wait()
    for t in pumps:
        t.join(timeout=5)
    if code < 0:
        code = 128 - code
    ws.send(OP_BINARY, error_ch + json.dumps(_exit_status(code, None)).encode())
    ws.close()
    time.sleep(0.05)


def serve(
    state: ClusterState,
    exec_backend: ExecBackend,
    *,
    port: int = 0,
    protocols: Iterable[str] = (V5, V4),
) -> Server:
    """Start the stand-in on 127.0.0.1:`port` (0 picks a free one); returns the running server."""
    return Server(state, exec_backend, port=port, protocols=tuple(protocols))
