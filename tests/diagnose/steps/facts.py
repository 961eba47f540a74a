"""Hand-made run facts for the pure steps: one client point, the request, health and lookups."""

from __future__ import annotations

from tracer.diagnose.model import RunFacts
from tracer.dnslookup import DnsLookup
from tracer.health import HealthFacts
from tracer.model import CapturePoint
from tracer.rundir import Manifest


def run_facts(
    health: HealthFacts | None = None,
    request: dict[str, object] | None = None,
    lookups: tuple[DnsLookup, ...] = (),
) -> RunFacts:
    manifest = Manifest(
        source="lab",
        created="",
        points=(
            CapturePoint(
                "client", "client", "points/client.pcap", pod="client", namespace="default"
            ),
        ),
        request=dict(request or {}),
    )
    return RunFacts(run="RUN", manifest=manifest, connections=(), health=health, lookups=lookups)
