"""Node and pod health facts from the Kubernetes API (the data types: `tracer.health`).

`collect_health(api)` is the only function that talks to the cluster; the converters take API
JSON (camelCase dicts, as the API sends them) and return `tracer.health`'s frozen dataclasses, so
that they can be tested without a cluster. Must not let a client object escape, nor fail a
capture: collection problems become warnings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from tracer.errors import ClusterError
from tracer.health import ContainerHealth, HealthFacts, NodeCondition, NodeHealth, PodHealth, Usage

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
