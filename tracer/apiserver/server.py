"""A local stand-in for the Kubernetes API server, faithful enough for the real kubectl and client.

Serves HTTPS on 127.0.0.1 only, with a CA made at start (its certificate in the kubeconfig) and
a random bearer token: discovery (legacy and aggregated), /version and the health endpoints,
nodes, namespaces, pods (list, get, create, delete, watch), pods/ephemeralcontainers,
pods/exec over WebSocket (v5/v4.channel.k8s.io), pods/log, services, endpointslices, ingresses,
events and SelfSubjectAccessReview; label and field selectors; Tables for `kubectl get`; watch
streams. RBAC denials and failures can be injected for tests; Pod Security levels come from
namespace labels. Commands run through an `ExecBackend` (the lab: `ip netns exec`).

The HTTP handler lives in tracer.apiserver.handler (its paths parsed in .routes, pod writes in
.pods, exec streams in .execstream), the objects in .store, the processes in .processes.
Must not: listen on anything but loopback, or leave a process running after `close()`.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tracer.apiserver import objects
from tracer.apiserver.admission import Access, Denials
from tracer.apiserver.execstream import V4, V5
from tracer.apiserver.handler import make_handler
from tracer.apiserver.processes import Processes
from tracer.apiserver.state import ClusterState, ExecBackend
from tracer.apiserver.store import Store
from tracer.apiserver.tls import make_serving_cert
from tracer.rundir import write_json_private

REQUEST_LOG = 10_000

__all__ = ["V4", "V5", "Access", "Denials", "Server", "serve"]


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    code: int
    times: int


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        # The handshake happens in the request's own thread, on its first read: a slow or
        # broken client cannot hold up the accept loop.
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


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
        self.store = Store(state)
        self.processes = Processes(self.store, exec_backend)
        self._faults: list[_Fault] = []
        # The last requests served (method, path), for tests and for a look at what a client did.
        self.requests: deque[tuple[str, str]] = deque(maxlen=REQUEST_LOG)
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="pathtrace-api-"))
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)  # the TLS key lives here
        self.cert = make_serving_cert(self.dir)
        self._httpd = _TLSServer(("127.0.0.1", port), make_handler(self), self.cert.context())
        host, bound = self._httpd.server_address[:2]
        self.address = f"{host!s}:{bound}"
        self.url = f"https://{self.address}"
        self.kubeconfig_path = self._write_kubeconfig()
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        self._lab_events()

    def _lab_events(self) -> None:
        # What the kubelet reported when the lab's workloads started.
        for (_, _), pod in sorted(self.store.kinds["pods"].items()):
            node = pod["spec"].get("nodeName") or ""
            for c in pod["spec"].get("containers") or []:
                self.store.record_event(
                    pod,
                    "Started",
                    f"Started container {c['name']}",
                    host=node,
                    field_path=f"spec.containers{{{c['name']}}}",
                )

    # -- test hooks ---------------------------------------------------------------------------

    def inject_fault(self, method: str, path_regex: str, code: int = 500, times: int = 1) -> None:
        """Answer the next `times` requests matching method and path with `code`."""
        self._faults.append(_Fault(method.upper(), re.compile(path_regex), code, times))

    def set_namespace_labels(self, namespace: str, labels: dict[str, str]) -> None:
        store = self.store
        with store.lock:
            ns = store.kinds["namespaces"].get(("", namespace))
            if ns is None:
                ns = objects.namespace(namespace, {})
            ns["metadata"].setdefault("labels", {}).update(labels)
            store.put("namespaces", ("", namespace), ns)

    def running_processes(self) -> list[tuple[str, str, str, tuple[str, ...]]]:
        """(namespace, pod, container, argv) of every process still running."""
        return self.processes.running()

    # -- lifecycle ----------------------------------------------------------------------------

    def _write_kubeconfig(self) -> Path:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "pathtrace-lab",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.cert.ca_pem).decode(),
                    },
                }
            ],
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
        self.store.close()
        self._httpd.shutdown()
        self._httpd.server_close()
        self.processes.close()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            for name in ("kubeconfig", "apiserver.crt", "apiserver.key", "ca.crt"):
                (self.dir / name).unlink(missing_ok=True)
            try:
                self.dir.rmdir()
            except OSError:
                pass  # not empty: not only ours

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
        return self.processes.start(namespace, pod, container, argv, main=main)


def serve(
    state: ClusterState,
    exec_backend: ExecBackend,
    *,
    port: int = 0,
    protocols: Iterable[str] = (V5, V4),
) -> Server:
    """Start the stand-in on 127.0.0.1:`port` (0 picks a free one); returns the running server."""
    return Server(state, exec_backend, port=port, protocols=tuple(protocols))
