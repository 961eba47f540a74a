"""The only place that talks to the kubernetes client; everything leaves as plain data.

Wraps kubeconfig loading (kubectl's --kubeconfig/--context/-n conventions), reads of pods,
Services, EndpointSlices, Ingresses, nodes and namespaces, SelfSubjectAccessReview, pod
create/delete, the ephemeral-container patch and exec streams (binary-safe). API failures become
tracer.errors.ClusterError with the API's own message. Must not let a client object escape.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tracer.capture.targets import NodeTarget, PodTarget
from tracer.errors import ClusterError
from tracer.rundir import Service, ServiceEndpoint, ServicePort


@dataclass(frozen=True)
class PodInfo:
    target: PodTarget
    labels: Mapping[str, str]
    phase: str
    ephemeral: tuple[str, ...] = ()


@dataclass(frozen=True)
class IngressInfo:
    namespace: str
    name: str
    backends: tuple[tuple[str, int | str | None], ...]  # (service, port number or name)
    addresses: tuple[str, ...]
    class_name: str | None


def _api_message(e: Exception) -> str:
    body = getattr(e, "body", None)
    if body:
        try:
            data = json.loads(body)
            if isinstance(data, dict) and data.get("message"):
                return str(data["message"])
        except (ValueError, TypeError):
            pass
    status = getattr(e, "status", None)
    reason = getattr(e, "reason", None) or str(e)
    return f"HTTP {status}: {reason}" if status else str(reason)


@contextmanager
def api_errors(what: str) -> Iterator[None]:
    """Turn client and transport errors into ClusterError naming the operation."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as e:
        err = ClusterError(f"{what}: {_api_message(e)}")
        err.status = e.status  # type: ignore[attr-defined]
        raise err from None
    except (HTTPError, OSError) as e:
        raise ClusterError(f"{what}: cannot reach the API server ({e})") from None


def binary_exec_supported() -> bool:
    """True when the installed client keeps exec output as bytes (the `binary` kwarg)."""
    from kubernetes.stream import ws_client

    return "binary" in inspect.signature(ws_client.WSClient.__init__).parameters


class Base64Decoder:
    """Incremental decoder for `cmd | base64` output, for clients without binary streams."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        self._pending += b"".join(data.split())
        n = len(self._pending) // 4 * 4
        chunk, self._pending = self._pending[:n], self._pending[n:]
        try:
            return base64.b64decode(chunk)
        except binascii.Error as e:
            raise ClusterError(f"exec stream: base64 output is corrupt ({e})") from None


class ExecStream:
    """A running command's stdout/stderr, as bytes, and its exit status once it ends."""

    def __init__(self, resp: Any, base64_stdout: bool) -> None:
        self._resp = resp
        self._b64 = Base64Decoder() if base64_stdout else None
        self._status: dict[str, Any] | None = None
        self._error_buf = b""

    def read(self, timeout: float = 0.5) -> tuple[bytes, bytes]:
        """Whatever arrived within `timeout` seconds: (stdout, stderr)."""
        r = self._resp
        try:
            r.update(timeout=timeout)
        except Exception as e:  # the socket died under us: report as a cut stream
            r._connected = False
            raise ClusterError(f"exec stream was cut: {e}") from None
        out = _as_bytes(r.read_channel(1))
        err = _as_bytes(r.read_channel(2))
        self._error_buf += _as_bytes(r.read_channel(3))
        if self._b64 is not None and out:
            out = self._b64.feed(out)
        return out, err

    def is_open(self) -> bool:
        return bool(self._resp.is_open())

    def status(self) -> tuple[int | None, str]:
        """(exit code, message) from the error channel; (None, reason) when none arrived."""
        if not self._error_buf:
            return None, "the stream ended without an exit status"
        try:
            st = json.loads(self._error_buf)
        except ValueError:
            return None, self._error_buf.decode("utf-8", "replace")
        if st.get("status") == "Success":
            return 0, ""
        for cause in (st.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message")), str(st.get("message", ""))
                except (TypeError, ValueError):
                    break
        return None, str(st.get("message", "exec failed"))

    def close(self) -> None:
        try:
            self._resp.close()
        except Exception:  # closing a dead socket must never mask the real outcome
            pass


def _as_bytes(x: Any) -> bytes:
    if not x:
        return b""
    return x if isinstance(x, bytes) else str(x).encode()


def _pod_target(p: Any) -> PodTarget:
    return PodTarget(
        namespace=p.metadata.namespace,
        name=p.metadata.name,
        ip=(p.status.pod_ip if p.status else None) or "",
        node=(p.spec.node_name if p.spec else None) or "",
        containers=tuple(c.name for c in (p.spec.containers or [])) if p.spec else (),
        init_containers=tuple(c.name for c in (p.spec.init_containers or [])) if p.spec else (),
        host_network=bool(p.spec and p.spec.host_network),
    )


def _ephemeral_state(p: Any, name: str) -> str:
    for cs in (p.status.ephemeral_container_statuses or []) if p.status else []:
        if cs.name != name:
            continue
        st = cs.state
        if st is None:
            return "waiting"
        if st.running is not None:
            return "running"
        if st.terminated is not None:
            return f"terminated: {st.terminated.reason or st.terminated.exit_code}"
        if st.waiting is not None:
            w = st.waiting
            return f"waiting: {w.reason or ''} {w.message or ''}".strip()
    return "waiting"


class KubeApi:
    """A connection to one cluster, with kubectl's namespace default."""

    def __init__(
        self,
        kubeconfig: str | None = None,
        context: str | None = None,
        namespace: str | None = None,
    ) -> None:
        from kubernetes import client, config

        try:
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
            self.api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
        except config.ConfigException as e:
            raise ClusterError(
                f"kubeconfig {kubeconfig or '(default)'}: {e}",
                hint="pass --kubeconfig FILE and --context NAME as for kubectl",
            ) from None
        except OSError as e:
            raise ClusterError(f"kubeconfig {kubeconfig}: {e.strerror}") from None
        except Exception as e:  # the loader's YAML and type errors on a file that is no kubeconfig
            raise ClusterError(
                f"kubeconfig {kubeconfig or '(default)'} is not a kubeconfig file: "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                hint="pass --kubeconfig FILE and --context NAME as for kubectl",
            ) from None
        ctx = active
        if context:
            ctx = next((c for c in contexts if c["name"] == context), active)
        default_ns = (ctx or {}).get("context", {}).get("namespace") or "default"
        self.namespace = namespace or default_ns
        self.server = self.api_client.configuration.host
        self.core: Any = client.CoreV1Api(self.api_client)
        self.discovery: Any = client.DiscoveryV1Api(self.api_client)
        self.networking: Any = client.NetworkingV1Api(self.api_client)
        self.authz: Any = client.AuthorizationV1Api(self.api_client)
        self.binary = binary_exec_supported()
        # kubernetes.stream.stream() swaps `call_api` on the ApiClient it is given for the
        # duration of the call: exec gets its own client and a lock, so that no concurrent
        # request ever goes out through the swapped method.
        self._exec_client = config.new_client_from_config(config_file=kubeconfig, context=context)
        self._exec_core: Any = client.CoreV1Api(self._exec_client)
        self._exec_lock = threading.Lock()

    def close(self) -> None:
        self.api_client.close()
        self._exec_client.close()

    # -- reads ----------------------------------------------------------------------------------

    def get_pod(self, namespace: str, name: str) -> PodInfo:
        with api_errors(f"get pod {namespace}/{name}"):
            p = self.core.read_namespaced_pod(name, namespace)
        return PodInfo(
            _pod_target(p),
            dict(p.metadata.labels or {}),
            (p.status.phase if p.status else None) or "Unknown",
            tuple(c.name for c in (p.spec.ephemeral_containers or [])),
        )

    def list_pods(self, namespace: str | None, selector: str = "") -> list[PodInfo]:
        what = f"list pods in {namespace or 'all namespaces'}"
        with api_errors(what):
            if namespace:
                items = self.core.list_namespaced_pod(namespace, label_selector=selector).items
            else:
                items = self.core.list_pod_for_all_namespaces(label_selector=selector).items
        return [
            PodInfo(
                _pod_target(p),
                dict(p.metadata.labels or {}),
                (p.status.phase if p.status else None) or "Unknown",
                tuple(c.name for c in (p.spec.ephemeral_containers or [])),
            )
            for p in items
        ]

    def get_service(self, namespace: str, name: str) -> Service:
        with api_errors(f"get service {namespace}/{name}"):
            s = self.core.read_namespaced_service(name, namespace)
        with api_errors(f"list endpointslices of service {namespace}/{name}"):
            slices = self.discovery.list_namespaced_endpoint_slice(
                namespace, label_selector=f"kubernetes.io/service-name={name}"
            ).items
        ports = []
        for p in s.spec.ports or []:
            target = p.target_port if isinstance(p.target_port, int) else None
            if target is None:
                # A named targetPort resolves per endpoint; the slices carry the number.
                for sl in slices:
                    for sp in sl.ports or []:
                        if (sp.name or "") == (p.name or "") and sp.port:
                            target = sp.port
            ports.append(
                ServicePort(
                    port=p.port,
                    protocol=p.protocol or "TCP",
                    name=p.name or "",
                    target_port=target,
                    node_port=p.node_port,
                )
            )
        endpoints = []
        for sl in slices:
            for ep in sl.endpoints or []:
                ready = (
                    ep.conditions.ready
                    if ep.conditions and ep.conditions.ready is not None
                    else True
                )
                pod = ep.target_ref.name if ep.target_ref and ep.target_ref.kind == "Pod" else None
                for addr in ep.addresses or []:
                    endpoints.append(ServiceEndpoint(addr, pod, ep.node_name, bool(ready)))
        cluster_ips = tuple(
            ip for ip in (s.spec.cluster_ips or [s.spec.cluster_ip] or []) if ip and ip != "None"
        )
        return Service(
            namespace=namespace,
            name=name,
            cluster_ips=cluster_ips,
            ports=tuple(ports),
            endpoints=tuple(endpoints),
            external_traffic_policy=s.spec.external_traffic_policy or "Cluster",
            session_affinity=s.spec.session_affinity or "None",
        )

    def get_ingress(self, namespace: str, name: str) -> IngressInfo:
        with api_errors(f"get ingress {namespace}/{name}"):
            i = self.networking.read_namespaced_ingress(name, namespace)
        backends: list[tuple[str, int | str | None]] = []
        spec = i.spec
        if spec.default_backend and spec.default_backend.service:
            b = spec.default_backend.service
            backends.append((b.name, b.port.number or b.port.name if b.port else None))
        for rule in spec.rules or []:
            for path in (rule.http.paths if rule.http else None) or []:
                b = path.backend.service
                if b is not None:
                    backends.append((b.name, (b.port.number or b.port.name) if b.port else None))
        addrs = []
        lb = i.status.load_balancer if i.status else None
        for entry in (lb.ingress if lb else None) or []:
            if entry.ip:
                addrs.append(entry.ip)
        return IngressInfo(namespace, name, tuple(backends), tuple(addrs), spec.ingress_class_name)

    def list_nodes(self) -> list[NodeTarget]:
        with api_errors("list nodes"):
            items = self.core.list_node().items
        out = []
        for n in items:
            ip = ""
            for a in (n.status.addresses if n.status else None) or []:
                if a.type == "InternalIP":
                    ip = a.address
                    break
            out.append(NodeTarget(n.metadata.name, ip))
        return out

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        with api_errors(f"get namespace {namespace}"):
            ns = self.core.read_namespace(namespace)
        return dict(ns.metadata.labels or {})

    def can_i(
        self, verb: str, resource: str, namespace: str = "", subresource: str = "", group: str = ""
    ) -> bool:
        from kubernetes import client

        body = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    verb=verb,
                    resource=resource,
                    subresource=subresource or None,
                    group=group,
                    namespace=namespace or None,
                )
            )
        )
        with api_errors("create selfsubjectaccessreview"):
            r = self.authz.create_self_subject_access_review(body)
        return bool(r.status and r.status.allowed)

    # -- writes ---------------------------------------------------------------------------------

    def create_pod(self, manifest: Mapping[str, Any]) -> None:
        md = manifest["metadata"]
        with api_errors(f"create pod {md['namespace']}/{md['name']}"):
            self.core.create_namespaced_pod(md["namespace"], dict(manifest))

    def delete_pod(self, namespace: str, name: str) -> bool:
        """Delete now; False when it was already gone."""
        from kubernetes.client.exceptions import ApiException

        try:
            with api_errors(f"delete pod {namespace}/{name}"):
                try:
                    self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
                except ApiException as e:
                    if e.status == 404:
                        return False
                    raise
        except ClusterError:
            raise
        return True

    def pod_phase(self, namespace: str, name: str) -> tuple[str, str]:
        """(phase, detail): detail names a waiting container's reason, e.g. ImagePullBackOff."""
        with api_errors(f"get pod {namespace}/{name}"):
            p = self.core.read_namespaced_pod(name, namespace)
        detail = ""
        for cs in (p.status.container_statuses if p.status else None) or []:
            if cs.state and cs.state.waiting:
                detail = f"{cs.state.waiting.reason or ''} {cs.state.waiting.message or ''}".strip()
        phase = (p.status.phase if p.status else None) or "Pending"
        if p.status and p.status.reason:
            detail = detail or p.status.reason
        return phase, detail

    def add_ephemeral_container(self, namespace: str, pod: str, spec: Mapping[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        body = {"spec": {"ephemeralContainers": [dict(spec)]}}
        try:
            with api_errors(f"add ephemeral container to pod {namespace}/{pod}"):
                try:
                    self.core.patch_namespaced_pod_ephemeralcontainers(pod, namespace, body)
                except ApiException as e:
                    if e.status == 404 and not (e.body and b"not found" in _as_bytes(e.body)):
                        raise ClusterError(
                            f"pod {namespace}/{pod}: ephemeral containers are disabled on this "
                            "cluster (the pods/ephemeralcontainers subresource is missing)"
                        ) from None
                    raise
        except ClusterError:
            raise

    def ephemeral_state(self, namespace: str, pod: str, container: str) -> str:
        with api_errors(f"get pod {namespace}/{pod}"):
            p = self.core.read_namespaced_pod(pod, namespace)
        return _ephemeral_state(p, container)

    def exec_stream(
        self, namespace: str, pod: str, container: str, argv: Sequence[str]
    ) -> ExecStream:
        from kubernetes.stream import stream

        command = list(argv)
        b64 = not self.binary
        if b64:
            # No binary stream in this client: carry stdout as base64 text. The script is a
            # constant; argv travels as positional parameters, never spliced into it.
            command = ["sh", "-c", '"$@" | base64', "sh", *command]
        kwargs: dict[str, Any] = dict(
            container=container,
            command=command,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
        if self.binary:
            kwargs["binary"] = True
        with self._exec_lock, api_errors(f"exec in {namespace}/{pod} container {container}"):
            resp = stream(self._exec_core.connect_get_namespaced_pod_exec, pod, namespace, **kwargs)
        return ExecStream(resp, b64)

    def exec_run(
        self,
        namespace: str,
        pod: str,
        container: str,
        argv: Sequence[str],
        timeout: float = 30.0,
    ) -> tuple[int | None, bytes, bytes, str]:
        """Run to completion: (exit code, stdout, stderr, status message)."""
        import time

        s = self.exec_stream(namespace, pod, container, argv)
        out, err = bytearray(), bytearray()
        end = time.monotonic() + timeout
        try:
            while s.is_open() and time.monotonic() < end:
                o, e = s.read(0.2)
                out += o
                err += e
            o, e = s.read(0)
            out += o
            err += e
            if s.is_open():
                return None, bytes(out), bytes(err), f"timed out after {timeout:g}s"
            code, msg = s.status()
            return code, bytes(out), bytes(err), msg
        finally:
            s.close()


@dataclass(frozen=True)
class Leftovers:
    """What `pathtrace cleanup` found: pods it deleted, and ephemeral containers it cannot."""

    deleted: tuple[tuple[str, str], ...]
    failed: tuple[tuple[str, str, str], ...]
    ephemeral: tuple[tuple[str, str, str], ...]
    gone: tuple[tuple[str, str], ...] = ()  # recorded pods that were already deleted


def cleanup_run(api: KubeApi, record: Mapping[str, Any]) -> Leftovers:
    """Remove what one run created, from its own record (the manifest's `node_pods`,
    `ephemeral_containers` and `run_id`), in every namespace it touched."""
    from tracer.capture.pods import MANAGED_BY, RUN_LABEL

    run_id = str(record.get("run_id") or "")
    recorded = [
        (str(p["namespace"]), str(p["name"]))
        for p in record.get("node_pods") or []
        if isinstance(p, Mapping) and p.get("namespace") and p.get("name")
    ]
    added = [
        (str(e["namespace"]), str(e["pod"]), str(e["container"]))
        for e in record.get("ephemeral_containers") or []
        if isinstance(e, Mapping) and e.get("namespace") and e.get("pod") and e.get("container")
    ]
    namespaces = sorted({ns for ns, _ in recorded} | {ns for ns, _, _ in added})
    # Pods of this run found by label too, in the namespaces it touched: a record cut short
    # by a crash may miss the last one created.
    if run_id:
        for ns in namespaces:
            for info in api.list_pods(ns, f"{MANAGED_BY}=pathtrace,{RUN_LABEL}={run_id}"):
                key = (info.target.namespace, info.target.name)
                if key not in recorded:
                    recorded.append(key)
    deleted, failed, gone = [], [], []
    for ns, name in recorded:
        try:
            if api.delete_pod(ns, name):
                deleted.append((ns, name))
            else:
                gone.append((ns, name))
        except ClusterError as e:
            failed.append((ns, name, e.message))
    ephemeral = []
    for ns, pod, container in added:
        try:
            still = container in api.get_pod(ns, pod).ephemeral
        except ClusterError as e:
            # A deleted pod took its ephemeral containers with it; otherwise we cannot tell.
            still = "not found" not in e.message.lower()
        if still:
            ephemeral.append((ns, pod, container))
    return Leftovers(tuple(deleted), tuple(failed), tuple(ephemeral), tuple(gone))


def cleanup_leftovers(api: KubeApi, namespace: str | None, run_id: str | None) -> Leftovers:
    """Delete pathtrace's pods by label (in `namespace`, or everywhere when None)."""
    from tracer.capture.pods import MANAGED_BY, RUN_LABEL

    selector = f"{MANAGED_BY}=pathtrace" + (f",{RUN_LABEL}={run_id}" if run_id else "")
    deleted, failed = [], []
    for info in api.list_pods(namespace, selector):
        t = info.target
        try:
            if api.delete_pod(t.namespace, t.name):
                deleted.append((t.namespace, t.name))
        except ClusterError as e:
            failed.append((t.namespace, t.name, e.message))
    prefix = f"pathtrace-{run_id}-" if run_id else "pathtrace-"
    ephemeral = [
        (info.target.namespace, info.target.name, c)
        for info in api.list_pods(namespace)
        for c in info.ephemeral
        if c.startswith(prefix)
    ]
    return Leftovers(tuple(deleted), tuple(failed), tuple(ephemeral))
