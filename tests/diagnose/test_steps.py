"""The pure steps on hand-made facts: health, DNS folding, ordering, the ICMP quote decoder."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st

from tracer.diagnose.gather import quoted_tuple
from tracer.diagnose.model import Finding, RunFacts
from tracer.diagnose.steps import order, step_dns, step_health
from tracer.kube.health import ContainerHealth, HealthFacts, NodeCondition, NodeHealth, PodHealth
from tracer.model import CapturePoint, Endpoint, Tuple5
from tracer.rundir import Manifest


def _facts(health: HealthFacts | None = None, request: dict[str, object] | None = None) -> RunFacts:
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
    return RunFacts(run="RUN", manifest=manifest, connections=(), health=health)


def _pod(name: str, **kw: object) -> PodHealth:
    base: dict[str, object] = dict(
        namespace="default", name=name, node="n1", ip="10.244.1.9", phase="Running", ready=True
    )
    base.update(kw)
    return PodHealth(**base)  # type: ignore[arg-type]


def test_health_flags_path_pods_and_nodes_but_only_counts_others() -> None:
    oom = ContainerHealth(
        "app", ready=True, restarts=2, state="running", last_reason="OOMKilled", last_exit_code=137
    )
    h = HealthFacts(
        collected="now",
        nodes=(
            NodeHealth("n1", (NodeCondition("Ready", "True"),)),
            NodeHealth("n2", (NodeCondition("Ready", "False", "KubeletNotReady"),)),
        ),
        pods=(
            _pod("client", containers=(oom,)),
            _pod("coredns-1", namespace="kube-system", ready=False, component="dns"),
            _pod("unrelated", ready=False),
            _pod("kube-proxy-x", namespace="kube-system", component="kube-proxy"),
        ),
    )
    found = {(f.severity, f.title) for f in step_health(_facts(h))}
    titles = " | ".join(t for _, t in found)
    assert ("error", "Node n2 is not Ready (KubeletNotReady: None)") in found
    assert any(s == "error" and "cluster DNS pod kube-system/coredns-1" in t for s, t in found)
    assert any(s == "warning" and "default/client was OOMKilled" in t for s, t in found)
    assert "unrelated" not in " ".join(t for s, t in found if s != "info"), titles
    assert any(s == "info" and "1 pod off the path is not healthy" in t for s, t in found)


def test_health_absent_is_only_information() -> None:
    assert [f.severity for f in step_health(_facts())] == ["info"]


def test_order_puts_root_causes_before_symptoms() -> None:
    symptom = Finding("error", 2, "symptom", weight=50)
    cause = Finding("error", 4, "cause", weight=100)
    note = Finding("info", 1, "note")
    slow = Finding("warning", 6, "slow", weight=80)
    assert [f.title for f in order([note, symptom, slow, cause])] == [
        "cause",
        "symptom",
        "slow",
        "note",
    ]


def test_dns_without_queries_mentions_the_wanted_name() -> None:
    f = _facts(request={"command": ["curl", "http://web.example.com/x"]})
    (finding,) = step_dns(f)
    assert finding.severity == "info" and "'web.example.com'" in finding.evidence[0]


def _ipv4_tcp_header(src: str, dst: str, sport: int, dport: int) -> bytes:
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        40,
        1,
        0,
        64,
        6,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return ip + struct.pack("!HHI", sport, dport, 1)


ipv4 = st.ip_addresses(v=4).map(str)
ports = st.integers(min_value=0, max_value=65535)


@given(ipv4, ipv4, ports, ports)
def test_quoted_header_round_trips(src: str, dst: str, sport: int, dport: int) -> None:
    t = quoted_tuple(_ipv4_tcp_header(src, dst, sport, dport))
    assert t == Tuple5("tcp", Endpoint(src, sport), Endpoint(dst, dport))


@given(st.binary(max_size=80))
def test_quoted_header_never_raises(data: bytes) -> None:
    t = quoted_tuple(data)
    assert t is None or isinstance(t, Tuple5)
