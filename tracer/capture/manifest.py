"""A capture run's manifest: every point with its counts, what the request did, every note, and
every object the run created or changed in the cluster (for `pathtrace cleanup RUN`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tracer.capture.plan import CapturePlan
from tracer.capture.session import PointState
from tracer.model import CapturePoint
from tracer.rundir import Manifest, Service

_DROPPED = re.compile(rb"(\d+) packets? dropped by kernel")


def build_manifest(
    plan: CapturePlan,
    states: Mapping[str, PointState],
    services: Sequence[Service],
    request: Mapping[str, Any],
    notes: list[str],
    source: str,
    outcome: str,
    extra: dict[str, Any],
) -> Manifest:
    points = []
    for st in states.values():
        p = st.point
        m = _DROPPED.search(bytes(st.stderr))
        if st.error:
            notes.append(f"point {p.name}: {st.error}")
        if st.sink.full:
            notes.append(
                f"point {p.name}: reached --max-bytes {st.sink.max_bytes}; later packets "
                f"were dropped, the capture keeps {st.sink.packets} complete packets"
            )
        if st.sink.truncated:
            notes.append(
                f"point {p.name}: the stream was cut mid-packet; the capture keeps "
                f"{st.sink.packets} complete packets"
            )
        if st.sink.error:
            notes.append(f"point {p.name}: {st.sink.error}")
        points.append(
            CapturePoint(
                name=p.name,
                role=p.role,
                file=f"points/{p.name}.pcap",
                node=p.node,
                pod=p.target_pod or p.pod,
                namespace=p.namespace,
                container=p.container,
                interface=p.interface,
                started_ns=st.started_ns,
                stopped_ns=st.stopped_ns,
                packets=st.sink.packets,
                dropped=int(m.group(1)) if m else None,
            )
        )
    extra = {
        **extra,
        "run_id": plan.run_id,
        "outcome": outcome,
        "filter": plan.filter,
        "labels": dict(plan.labels),
        "node_pods": [
            {"namespace": n.namespace, "name": n.name, "node": n.node} for n in plan.node_pods
        ],
        # Ephemeral containers can never be removed from a pod: say which ones this run added.
        "ephemeral_containers": [
            {"namespace": e.namespace, "pod": e.pod, "container": e.name} for e in plan.ephemeral
        ],
    }
    return Manifest(
        source=source,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        points=tuple(points),
        services=tuple(services),
        request=dict(request),
        warnings=tuple(dict.fromkeys(notes)),
        extra=extra,
    )
