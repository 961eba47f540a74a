"""Every recorded lab run gives the right top finding; the healthy ones give no problem at all.

The expectation for each run comes from its manifest: `extra.lab` (the lab's own truth, taken from
its configuration and the kernel) and the request the lab ran, never from diagnose's output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tracer.diagnose import Diagnosis, diagnose, gather

PCAPS = Path(__file__).resolve().parents[2] / "pcaps"
RUNS = sorted(p.name for p in PCAPS.iterdir() if (p / "manifest.json").is_file())
FAULTS = {"refused", "unreachable", "timeout", "nxdomain"}


def _lab(run: str) -> dict[str, Any]:
    manifest = json.loads((PCAPS / run / "manifest.json").read_text())
    lab: dict[str, Any] = manifest["extra"]["lab"]
    lab["_manifest"] = manifest
    return lab


_cache: dict[str, Diagnosis] = {}


def _diagnosis(run: str) -> Diagnosis:
    if run not in _cache:
        _cache[run] = diagnose(gather(PCAPS / run))
    return _cache[run]


def _service(lab: dict[str, Any]) -> dict[str, Any]:
    ns, name = lab["service"].split("/")
    for s in lab["_manifest"]["services"]:
        if (s["namespace"], s["name"]) == (ns, name):
            return s
    raise AssertionError(f"{lab['service']} is not in the manifest")


def test_every_scenario_is_covered() -> None:
    assert len(RUNS) == 18  # 14 IPv4 runs and 4 from the dual-stack lab
    outcomes = {_lab(r)["expected_outcome"] for r in RUNS}
    assert FAULTS <= outcomes


# A deliberately slow server answers 200 but is a warning: tested on its own below.
HEALTHY = [
    r
    for r in RUNS
    if _lab(r)["expected_outcome"].startswith("http-") and not _lab(r).get("server_delay_ns")
]


@pytest.mark.parametrize("run", HEALTHY)
def test_healthy_runs_have_no_error_or_warning(run: str) -> None:
    d = _diagnosis(run)
    bad = [f"{f.severity} step {f.step}: {f.title}" for f in d.findings if f.severity != "info"]
    assert bad == []
    assert not d.problem


def test_no_endpoints_is_a_reject_in_step_4() -> None:
    run = next(r for r in RUNS if _lab(r)["expected_outcome"] == "refused")
    lab = _lab(run)
    assert _service(lab)["endpoints"] == []  # the scenario's definition
    top = _diagnosis(run).findings[0]
    assert (top.severity, top.step) == ("error", 4)
    assert lab["service"] in top.title and "REJECT" in top.title
    assert any("port-unreachable" in e for e in top.evidence)
    assert any("-j REJECT" in e and "has no endpoints" in e for e in top.evidence)


def test_stale_endpoint_names_the_dead_dnat_target_in_step_4() -> None:
    run = next(r for r in RUNS if _lab(r)["expected_outcome"] == "unreachable")
    lab = _lab(run)
    top = _diagnosis(run).findings[0]
    assert (top.severity, top.step) == ("error", 4)
    assert lab["backend"] in top.title and "stale" in top.title.lower()
    # The conntrack entry the lab read from the kernel is quoted as evidence.
    ct = " ".join(lab["conntrack"]["line"].split())
    assert any(ct in " ".join(e.split()) for e in top.evidence)
    assert any("host-unreachable" in e for e in top.evidence)


def test_local_policy_without_local_endpoint_is_a_drop_in_step_4() -> None:
    run = next(
        r
        for r in RUNS
        if _lab(r)["expected_outcome"] == "timeout"
        and _service(_lab(r))["external_traffic_policy"] == "Local"
    )
    lab = _lab(run)
    node = lab["expected_path"][-1]  # the node the SYN reached and died on
    assert all(e["node"] != node for e in _service(lab)["endpoints"])
    top = _diagnosis(run).findings[0]
    assert (top.severity, top.step) == ("error", 4)
    assert "externalTrafficPolicy=Local" in top.title and node in top.title
    assert lab["service"] in top.title
    assert any("no entry" in e and "conntrack" in e for e in top.evidence)
    assert any("has no local endpoints" in e and "-j DROP" in e for e in top.evidence)


def test_nxdomain_is_a_step_3_error_naming_the_wanted_name() -> None:
    run = next(r for r in RUNS if _lab(r)["expected_outcome"] == "nxdomain")
    lab = _lab(run)
    url = next(w for w in lab["_manifest"]["request"]["command"] if "://" in w)
    name = urlsplit(url).hostname
    top = _diagnosis(run).findings[0]
    assert (top.severity, top.step) == ("error", 3)
    assert repr(name) in top.title and "NXDOMAIN" in top.title
    # Every query the client sent is in the evidence: four names, A and AAAA each.
    assert sum("NXDOMAIN" in e for e in top.evidence) == 8


def test_slow_server_time_is_the_top_finding() -> None:
    run = next(r for r in RUNS if _lab(r).get("server_delay_ns"))
    lab = _lab(run)
    d = _diagnosis(run)
    top = d.findings[0]
    assert top.severity == "warning" and top.step in (2, 6)
    assert "server" in top.title
    shown = float(re.search(r"([\d.]+) ms", top.title).group(1))  # type: ignore[union-attr]
    assert shown == pytest.approx(lab["server_delay_ns"] / 1e6, rel=0.1)
    assert d.problem


def test_drop_is_located_on_the_node_in_step_6() -> None:
    run = next(
        r
        for r in RUNS
        if _lab(r)["expected_outcome"] == "timeout"
        and _service(_lab(r))["external_traffic_policy"] == "Cluster"
    )
    lab = _lab(run)
    node = lab["expected_path"][-1]
    top = _diagnosis(run).findings[0]
    assert (top.severity, top.step) == ("error", 6)
    assert f"Dropped on {node}" in top.title and "cni0" in top.title
    # The rule the scenario inserted on that node: drop client -> backend.
    client_ip = lab["conntrack"]["original"]["src"]
    backend_ip = lab["backend"].split(":")[0]
    assert any(
        f"-s {client_ip}/32 -d {backend_ip}/32" in e and "-j DROP" in e for e in top.evidence
    )


@pytest.mark.parametrize("run", RUNS)
def test_the_request_is_the_one_the_lab_sent(run: str) -> None:
    lab = _lab(run)
    d = _diagnosis(run)
    if lab["expected_outcome"] == "nxdomain":
        assert d.request["destination"] == lab["frontend"]  # the lookup is all there was
    elif lab["scenario"] != "ingress-hostnet":
        assert (
            d.request["destination"] == lab["frontend"] or d.request["backend"] == lab["frontend"]
        )


def test_dns_time_is_the_one_the_client_waited_for_its_answer() -> None:
    # Ground truth from the client's packets: the A query out, the answer holding the
    # Service's ClusterIP in (same transaction ID) -- what `pathtrace analyze` reports too.
    from scapy.layers.dns import DNS
    from scapy.utils import rdpcap

    lab = _lab("clusterip")
    cluster_ip = _service(lab)["cluster_ips"][0]
    sent: dict[int, float] = {}
    waited = None
    for p in rdpcap(str(PCAPS / "clusterip" / "points" / "client.pcap")):
        if DNS not in p:
            continue
        d = p[DNS]
        if not d.qr:
            sent.setdefault(d.id, float(p.time))
        elif any(getattr(d.an[i], "rdata", None) == cluster_ip for i in range(d.ancount)):
            waited = float(p.time) - min(sent.values())
    assert waited is not None
    host = urlsplit(next(w for w in lab["_manifest"]["request"]["command"] if "://" in w)).hostname
    (dns,) = [f for f in _diagnosis("clusterip").findings if f.step == 3]
    assert dns.title.startswith(f"DNS: {host} -> {cluster_ip} in {waited * 1e3:.3f} ms")
