"""Node and pod health facts from the Kubernetes API, as plain data saved in the run directory.

Collects what the first troubleshooting step looks at: each node's conditions, each pod's phase,
readiness, restarts and last termination (OOMKilled), which pods are kube-proxy and cluster DNS,
and CPU/memory usage when the API serves metrics.k8s.io. `collect_health(api)` is the only
function that talks to the cluster; the converters take API JSON (camelCase dicts, as the API
sends them) and return frozen dataclasses, so that they can be tested without a cluster.
`save_health`/`load_health` write and read RUN/cluster/health.json (schema pathtrace-health/v1).
Must not let a client object escape, nor fail a capture: collection problems become warnings.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tracer.errors import ClusterError, InputError
from tracer.rundir import read_json, write_json_private

SCHEMA = "pathtrace-health/v1"
HEALTH_FILE = Path("cluster") / "health.json"

# Node conditions that mean trouble when True (Ready means trouble when not True).
PRESSURE_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")


@dataclass(frozen=True)
class ContainerHealth:
    """One container's status: `state` is "running", "waiting: <reason>" or "terminated: <reason>"."""

    name: str
    ready: bool
    restarts: int
    state: str
    last_reason: str | None = None  # lastState.terminated.reason, e.g. "OOMKilled"
    last_exit_code: int | None = None


@dataclass(frozen=True)
class PodHealth:
    """One pod: `component` is "kube-proxy", "dns" or None for any other pod."""

    namespace: str
    name: str
    node: str | None
    ip: str | None
    phase: str
    ready: bool
    containers: tuple[ContainerHealth, ...] = ()
    reason: str | None = None
    component: str | None = None

    @property
    def restarts(self) -> int:
        return sum(c.restarts for c in self.containers)

    @property
    def oom_killed(self) -> tuple[str, ...]:
        """Containers whose last or current termination was OOMKilled."""
        return tuple(
            c.name
            for c in self.containers
            if c.last_reason == "OOMKilled" or c.state == "terminated: OOMKilled"
        )


@dataclass(frozen=True)
class NodeCondition:
    type: str
    status: str
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class NodeHealth:
    name: str
    conditions: tuple[NodeCondition, ...] = ()
    unschedulable: bool = False
    addresses: tuple[str, ...] = ()

    @property
    def ready(self) -> bool | None:
        for c in self.conditions:
            if c.type == "Ready":
                return c.status == "True"
        return None


@dataclass(frozen=True)
class Usage:
    """CPU and memory in use, from metrics.k8s.io (`kind` is "node" or "pod")."""

    kind: str
    name: str
    namespace: str | None
    cpu_millicores: int
    memory_bytes: int


@dataclass(frozen=True)
class HealthFacts:
    """Everything collected; `metrics` is None when the API does not serve metrics.k8s.io."""

    collected: str
    nodes: tuple[NodeHealth, ...] = ()
    pods: tuple[PodHealth, ...] = ()
    metrics: tuple[Usage, ...] | None = None
    node_capacity: Mapping[str, tuple[int, int]] | None = None  # node -> (millicores, bytes)
    warnings: tuple[str, ...] = ()


# --- quantities (k8s.io/apimachinery resource.Quantity, the forms metrics-server sends) ----------

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def parse_quantity(text: str) -> float:
    """A Quantity as a number ("250m" -> 0.25, "128Mi" -> 134217728); ValueError when malformed."""
    s = str(text).strip()
    for suffix, mult in _BINARY.items():
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * mult
    for suffix in ("n", "u", "m", "k", "M", "G", "T"):
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * _DECIMAL[suffix]
    return float(s)


def _cpu_millicores(text: str) -> int:
    return round(parse_quantity(text) * 1000)


def _memory_bytes(text: str) -> int:
    return round(parse_quantity(text))


# --- converters: API JSON -> dataclasses ---------------------------------------------------------


def _component(labels: Mapping[str, str], name: str) -> str | None:
    app = labels.get("k8s-app") or labels.get("app.kubernetes.io/name") or ""
    if app == "kube-proxy" or name.startswith("kube-proxy"):
        return "kube-proxy"
    if app in ("kube-dns", "coredns") or name.startswith(("coredns", "kube-dns")):
        return "dns"
    return None


def _state_text(state: Mapping[str, Any] | None) -> str:
    if not state:
        return "waiting"
    if state.get("running") is not None:
        return "running"
    if state.get("terminated") is not None:
        t = state["terminated"] or {}
        return f"terminated: {t.get('reason') or t.get('exitCode', '?')}"
    w = state.get("waiting") or {}
    return f"waiting: {w.get('reason') or ''}".rstrip(": ") if w else "waiting"


def container_from_json(cs: Mapping[str, Any]) -> ContainerHealth:
    last = (cs.get("lastState") or {}).get("terminated") or {}
    code = last.get("exitCode")
    return ContainerHealth(
        name=str(cs.get("name", "")),
        ready=bool(cs.get("ready")),
        restarts=int(cs.get("restartCount") or 0),
        state=_state_text(cs.get("state")),
        last_reason=last.get("reason"),
        last_exit_code=int(code) if isinstance(code, int) else None,
    )


def pod_from_json(p: Mapping[str, Any]) -> PodHealth:
    """A Pod object (API JSON) -> PodHealth; readiness from the Ready condition."""
    md = p.get("metadata") or {}
    spec = p.get("spec") or {}
    st = p.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []
    )
    statuses = st.get("containerStatuses") or []
    if not st.get("conditions") and statuses:
        # Some API servers (and older kubelets) omit conditions: fall back to the containers.
        ready = all(bool(cs.get("ready")) for cs in statuses)
    name = str(md.get("name", ""))
    return PodHealth(
        namespace=str(md.get("namespace", "")),
        name=name,
        node=spec.get("nodeName"),
        ip=st.get("podIP"),
        phase=str(st.get("phase") or "Unknown"),
        ready=ready,
        containers=tuple(container_from_json(cs) for cs in statuses),
        reason=st.get("reason"),
        component=_component(md.get("labels") or {}, name),
    )


def node_from_json(n: Mapping[str, Any]) -> NodeHealth:
    md = n.get("metadata") or {}
    st = n.get("status") or {}
    return NodeHealth(
        name=str(md.get("name", "")),
        conditions=tuple(
            NodeCondition(
                type=str(c.get("type", "")),
                status=str(c.get("status", "Unknown")),
                reason=c.get("reason"),
                message=c.get("message"),
            )
            for c in st.get("conditions") or []
        ),
        unschedulable=bool((n.get("spec") or {}).get("unschedulable")),
        addresses=tuple(str(a.get("address")) for a in st.get("addresses") or []),
    )


def node_capacity_from_json(n: Mapping[str, Any]) -> tuple[int, int] | None:
    alloc = (n.get("status") or {}).get("allocatable") or {}
    try:
        return _cpu_millicores(alloc["cpu"]), _memory_bytes(alloc["memory"])
    except (KeyError, ValueError):
        return None


def usage_from_json(kind: str, item: Mapping[str, Any]) -> Usage:
    """A NodeMetrics or PodMetrics item (pods: the sum over containers)."""
    md = item.get("metadata") or {}
    if kind == "node":
        u = item.get("usage") or {}
        cpu, mem = _cpu_millicores(u.get("cpu", "0")), _memory_bytes(u.get("memory", "0"))
    else:
        cpu = mem = 0
        for c in item.get("containers") or []:
            u = c.get("usage") or {}
            cpu += _cpu_millicores(u.get("cpu", "0"))
            mem += _memory_bytes(u.get("memory", "0"))
    return Usage(kind, str(md.get("name", "")), md.get("namespace"), cpu, mem)


# --- the edge: collect through the client ----------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat()


def collect_health(api: Any, namespaces: Iterable[str] | None = None) -> HealthFacts:
    """Read nodes, pods (in `namespaces` plus kube-system; None = all) and metrics when served.

    `api` is a `tracer.kube.client.KubeApi`. Listing nodes or pods failing is a ClusterError;
    metrics.k8s.io being absent or refused is not (most clusters without metrics-server).
    """
    from kubernetes import client as k8s

    from tracer.kube.client import api_errors

    to_json = api.api_client.sanitize_for_serialization
    warnings: list[str] = []
    with api_errors("list nodes"):
        raw_nodes = [to_json(n) for n in api.core.list_node().items]
    raw_pods: list[dict[str, Any]] = []
    if namespaces is None:
        with api_errors("list pods in all namespaces"):
            raw_pods = [to_json(p) for p in api.core.list_pod_for_all_namespaces().items]
    else:
        for ns in sorted({*namespaces, "kube-system"}):
            try:
                with api_errors(f"list pods in {ns}"):
                    raw_pods.extend(to_json(p) for p in api.core.list_namespaced_pod(ns).items)
            except ClusterError as e:
                # One namespace we may not read must not cost the others.
                warnings.append(e.message)
    found: list[Usage] = []
    metrics: list[Usage] | None = found
    custom: Any = k8s.CustomObjectsApi(api.api_client)
    try:
        for kind in ("node", "pod"):
            with api_errors(f"list metrics.k8s.io {kind}s"):
                listed: Any = custom.list_cluster_custom_object(
                    "metrics.k8s.io", "v1beta1", f"{kind}s"
                )
            found.extend(usage_from_json(kind, item) for item in listed["items"])
    except ClusterError as e:
        metrics = None
        if getattr(e, "status", None) not in (404, 503):
            warnings.append(f"{e.message} (usage left out)")
    except (KeyError, TypeError, ValueError) as e:
        metrics = None
        warnings.append(f"metrics.k8s.io answered something unreadable ({e}); usage left out")
    capacity = {}
    for n in raw_nodes:
        cap = node_capacity_from_json(n)
        if cap is not None:
            capacity[str((n.get("metadata") or {}).get("name", ""))] = cap
    return HealthFacts(
        collected=_now(),
        nodes=tuple(node_from_json(n) for n in raw_nodes),
        pods=tuple(pod_from_json(p) for p in raw_pods),
        metrics=tuple(metrics) if metrics is not None else None,
        node_capacity=capacity,
        warnings=tuple(warnings),
    )


# --- RUN/cluster/health.json -------------------------------------------------------------------


def health_to_json(h: HealthFacts) -> dict[str, Any]:
    d = asdict(h)
    d["node_capacity"] = (
        {k: list(v) for k, v in h.node_capacity.items()} if h.node_capacity is not None else None
    )
    return {"schema": SCHEMA, **d}


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise InputError(f"{where}: {what}")


def health_from_json(data: Any, where: str = "cluster/health.json") -> HealthFacts:
    """Parse what `health_to_json` wrote; InputError naming the field otherwise."""
    _need(isinstance(data, dict), where, "expected a JSON object")
    _need(
        data.get("schema") == SCHEMA,
        where,
        f"field 'schema' is {data.get('schema')!r}, expected {SCHEMA!r}",
    )
    try:
        nodes = tuple(
            NodeHealth(
                name=n["name"],
                conditions=tuple(NodeCondition(**c) for c in n.get("conditions") or ()),
                unschedulable=bool(n.get("unschedulable")),
                addresses=tuple(n.get("addresses") or ()),
            )
            for n in data.get("nodes") or ()
        )
    except (KeyError, TypeError) as e:
        raise InputError(f"{where}: field 'nodes' is malformed ({e})") from None
    try:
        pods = tuple(
            PodHealth(
                **{
                    **{k: v for k, v in p.items() if k != "containers"},
                    "containers": tuple(ContainerHealth(**c) for c in p.get("containers") or ()),
                }
            )
            for p in data.get("pods") or ()
        )
    except (KeyError, TypeError) as e:
        raise InputError(f"{where}: field 'pods' is malformed ({e})") from None
    raw_metrics = data.get("metrics")
    try:
        metrics = tuple(Usage(**u) for u in raw_metrics) if isinstance(raw_metrics, list) else None
        raw_cap = data.get("node_capacity")
        capacity = (
            {str(k): (int(v[0]), int(v[1])) for k, v in raw_cap.items()}
            if isinstance(raw_cap, dict)
            else None
        )
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise InputError(
            f"{where}: field 'metrics' or 'node_capacity' is malformed ({e})"
        ) from None
    return HealthFacts(
        collected=str(data.get("collected", "")),
        nodes=nodes,
        pods=pods,
        metrics=metrics,
        node_capacity=capacity,
        warnings=tuple(str(w) for w in data.get("warnings") or ()),
    )


def save_health(run: str | os.PathLike[str], health: HealthFacts) -> Path:
    """Write RUN/cluster/health.json (owner-readable only, like the rest of the run)."""
    return write_json_private(Path(run) / HEALTH_FILE, health_to_json(health))


def load_health(run: str | os.PathLike[str]) -> HealthFacts | None:
    """RUN/cluster/health.json, or None when the run has none."""
    path = Path(run) / HEALTH_FILE
    data = read_json(path)
    if data is None:
        return None
    return health_from_json(data, str(path))
