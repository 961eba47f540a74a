"""Node and pod health facts as plain data, and RUN/cluster/health.json that holds them.

What the first troubleshooting step looks at: each node's conditions, each pod's phase, readiness,
restarts and last termination (OOMKilled), which pods are kube-proxy and cluster DNS, and CPU/memory
usage when the cluster serves metrics.k8s.io. `save_health`/`load_health` write and read
RUN/cluster/health.json (schema pathtrace-health/v1). Collecting them from a cluster is
`tracer.kube.health`'s work: this module knows neither the cluster nor its client.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tracer.errors import InputError
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
