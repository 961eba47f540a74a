"""`pathtrace capture` against the lab through its local Kubernetes API, as a user runs it.

Needs root and network namespaces (the real lab, real tcpdump); skipped with the reason
otherwise. What must be true comes from the lab's configuration (topology, Services) and from
the kernel (`conntrack -L` in the node's namespace, /proc), not from the analyzer.
"""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apiserver.test_lab_e2e import lab_processes, lab_up_with_api, run_cli

pytestmark = [pytest.mark.netns, pytest.mark.slow]

MANAGED = "app.kubernetes.io/managed-by=pathtrace"


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, Any]]:
    from tracer.lab.topology import topology_from_json

    with lab_up_with_api() as up:
        up["topo"] = topology_from_json(up["state"]["topology"])
        up["kubeconfig"] = up["state"]["api"]["kubeconfig"]
        yield up


# -- ground truth helpers ---------------------------------------------------------------------


def pcap_records(path: Path) -> list[tuple[int, int]]:
    """(timestamp ns, captured length) of every record; fails on a truncated or bad file."""
    data = path.read_bytes()
    assert len(data) >= 24, f"{path}: no pcap header"
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise AssertionError(f"{path}: not a pcap file (magic {magic.hex()})")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    out, off = [], 24
    while off < len(data):
        assert off + 16 <= len(data), f"{path}: record header cut at offset {off}"
        sec, frac, incl, _ = struct.unpack(endian + "IIII", data[off : off + 16])
        assert off + 16 + incl <= len(data), f"{path}: record cut at offset {off}"
        out.append((sec * 10**9 + (frac if nano else frac * 1000), incl))
        off += 16 + incl
    return out


_CT = re.compile(
    r"^(?P<proto>tcp|udp)\s.*?src=(?P<osrc>\S+) dst=(?P<odst>\S+) sport=(?P<osport>\d+) "
    r"dport=(?P<odport>\d+) .*?src=(?P<rsrc>\S+) dst=(?P<rdst>\S+) sport=(?P<rsport>\d+) "
    r"dport=(?P<rdport>\d+)"
)


def conntrack_entries(netns: str) -> list[dict[str, str]]:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "conntrack", "-L"], capture_output=True, text=True
    ).stdout
    return [m.groupdict() for line in out.splitlines() if (m := _CT.match(line))]


def conntrack_flush(topo: Any) -> None:
    for n in topo.nodes:
        subprocess.run(["ip", "netns", "exec", n.netns, "conntrack", "-F"], capture_output=True)


def managed_pods(kubeconfig: str) -> list[str]:
    from kubernetes import client, config

    core: Any = client.CoreV1Api(config.new_client_from_config(kubeconfig))
    return [p.metadata.name for p in core.list_pod_for_all_namespaces(label_selector=MANAGED).items]


def nothing_left(lab: dict[str, Any]) -> None:
    """No pod of ours in the cluster, no capture left running in the lab's namespaces once the
    streams are closed."""
    assert managed_pods(lab["kubeconfig"]) == []
    deadline = time.monotonic() + 5
    while lab_processes()["tcpdump"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lab_processes()["tcpdump"] == []


def when_armed(run_dir: Path, points: int, action: Any, timeout: float = 60.0) -> threading.Thread:
    """Run `action` once every point's capture has its pcap header (tcpdump opened its socket)."""

    def wait() -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            files = list((run_dir / "points").glob("*.pcap"))
            if len(files) >= points and all(f.stat().st_size >= 24 for f in files):
                time.sleep(0.3)
                action()
                return
            time.sleep(0.05)

    t = threading.Thread(target=wait, daemon=True)
    t.start()
    return t


def dnat_hops(run_dir: Path, match: str) -> list[Any] | None:
    """The DNAT translations on the matched connection's forward path, or None (no analyzer)."""
    try:
        from tracer.correlate import build_path, correlate, parse_match, select
        from tracer.inputs import load_run
    except ImportError:
        return None
    loaded = load_run(run_dir)
    corr = correlate(loaded.points)
    path = build_path(corr, select(corr, match=parse_match(match)))
    return [
        (h.point, h.translation)
        for h in path.forward
        if h.translation is not None and "DNAT" in h.translation.kind
    ]


def _manifest(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    return data


# -- the cases --------------------------------------------------------------------------------


def test_pod_to_clusterip(lab: dict[str, Any], tmp_path: Path) -> None:
    from tracer.lab.services import WEB_PORT, cluster_services

    topo = lab["topo"]
    web = next(s for s in cluster_services(topo) if s.name == "web")
    backend = topo.pod("web-a")
    assert [e.ip for e in web.endpoints] == [backend.ip]
    conntrack_flush(topo)
    run = tmp_path / "run"
    code, out, err = run_cli(
        [
            "capture", "--kubeconfig", lab["kubeconfig"], "--from", "pod/client",
            "--to", "svc/web", "--request", "curl -s http://web/", "-o", str(run),
        ]
    )  # fmt: skip
    assert code == 0, err
    m = _manifest(run)
    assert m["request"]["exit_code"] == 0
    assert f"hello from web-a, you are {topo.pod('client').ip}" in m["request"]["stdout"]
    # Points from the configuration, named as lab runs name them: the client, the backend
    # and the one node they all live on. The DNS pod is not touched (the lookup is captured at
    # the client and the node), and its Service names the lookup.
    assert {p["name"]: p["node"] for p in m["points"]} == {
        "client": topo.pod("client").node,
        backend.name: backend.node,
        backend.node: backend.node,
    }
    assert {(e["namespace"], e["pod"]) for e in m["extra"]["ephemeral_containers"]} == {
        ("default", "client"),
        ("default", backend.name),
    }
    assert "kube-dns" in {s["name"] for s in m["services"]}
    # The report's DNS line names the Service and the pod behind the addresses, as for lab runs.
    dns_line = next(line for line in out.splitlines() if line.strip().startswith("asked by"))
    assert "(kube-system/kube-dns)" in dns_line and "coredns" in dns_line, dns_line
    for p in m["points"]:
        records = pcap_records(run / p["file"])
        assert len(records) > 0, p["name"]
        assert p["packets"] == len(records)
    # The kernel's word: node1's conntrack DNATed the ClusterIP to web-a.
    node = topo.node(backend.node)
    entries = [
        e
        for e in conntrack_entries(node.netns)
        if e["proto"] == "tcp" and e["odst"] == web.cluster_ip and e["odport"] == "80"
    ]
    assert entries, "no conntrack entry for the request"
    assert (entries[0]["rsrc"], entries[0]["rsport"]) == (backend.ip, str(WEB_PORT))
    # The analysis of the run directory shows that same DNAT, at the node.
    hops = dnat_hops(run, f"dst={web.cluster_ip}:80,proto=tcp")
    if hops is None:
        pytest.skip("the analyzer (tracer.inputs/tracer.correlate) is not importable here")
    assert [(pt, str(t.after.dst)) for pt, t in hops] == [
        (backend.node, f"{entries[0]['rsrc']}:{entries[0]['rsport']}")
    ]
    assert "DNAT" in out  # capture printed the analysis too
    assert managed_pods(lab["kubeconfig"]) == []


def test_nodeport_from_outside(lab: dict[str, Any], tmp_path: Path) -> None:
    from tracer.lab.services import NODEPORT_CLUSTER, WEB_PORT, cluster_services
    from tracer.lab.topology import EXTERNAL_NS

    topo = lab["topo"]
    svc = next(s for s in cluster_services(topo) if s.name == "web-np")
    assert svc.ports[0].node_port == NODEPORT_CLUSTER
    backend = topo.pod(svc.endpoints[0].pod.split("/")[1])  # type: ignore[union-attr]
    entry = topo.nodes[0]  # the node the outside client dials
    url = f"http://{entry.underlay_ip}:{NODEPORT_CLUSTER}/"
    conntrack_flush(topo)
    run = tmp_path / "run"
    result: dict[str, Any] = {}

    def request() -> None:
        result["curl"] = subprocess.run(
            ["ip", "netns", "exec", EXTERNAL_NS, "curl", "-s", "--max-time", "4", url],
            capture_output=True,
            text=True,
        )

    # Every node is captured for --from external, plus the backend pod.
    trigger = when_armed(run, len(topo.nodes) + 1, request)
    code, _, err = run_cli(
        [
            "capture", "--kubeconfig", lab["kubeconfig"], "--from", "external",
            "--to", "svc/web-np", "--duration", "4", "-o", str(run), "--no-analyze",
        ]
    )  # fmt: skip
    trigger.join(timeout=10)
    assert code == 0, err
    assert result["curl"].returncode == 0, result["curl"].stderr
    assert f"hello from {backend.name}" in result["curl"].stdout
    m = _manifest(run)
    assert {p["name"] for p in m["points"]} == {
        backend.name,
        *(n.name for n in topo.nodes),
    }
    counts = {p["name"]: len(pcap_records(run / p["file"])) for p in m["points"]}
    assert counts[entry.name] > 0 and counts[backend.name] > 0, counts
    entries = [
        e
        for e in conntrack_entries(entry.netns)
        if e["odst"] == entry.underlay_ip and e["odport"] == str(NODEPORT_CLUSTER)
    ]
    assert entries, "no conntrack entry for the NodePort request"
    assert (entries[0]["rsrc"], entries[0]["rsport"]) == (backend.ip, str(WEB_PORT))
    hops = dnat_hops(run, f"dst={entry.underlay_ip}:{NODEPORT_CLUSTER},proto=tcp")
    if hops is None:
        pytest.skip("the analyzer (tracer.inputs/tracer.correlate) is not importable here")
    assert [(pt, str(t.after.dst)) for pt, t in hops] == [
        (entry.name, f"{entries[0]['rsrc']}:{entries[0]['rsport']}")
    ]
    assert managed_pods(lab["kubeconfig"]) == []


def test_external_request_runs_here(lab: dict[str, Any], tmp_path: Path) -> None:
    from tracer.lab.services import NODEPORT_CLUSTER, cluster_services
    from tracer.lab.topology import EXTERNAL_NS

    topo = lab["topo"]
    svc = next(s for s in cluster_services(topo) if s.name == "web-np")
    backend = topo.pod(svc.endpoints[0].pod.split("/")[1])  # type: ignore[union-attr]
    entry = topo.nodes[0]
    argv = ["ip", "netns", "exec", EXTERNAL_NS, "curl", "-s", "--max-time", "4"]
    argv.append(f"http://{entry.underlay_ip}:{NODEPORT_CLUSTER}/")
    conntrack_flush(topo)
    run = tmp_path / "run"
    code, _, err = run_cli(
        [
            "capture", "--kubeconfig", lab["kubeconfig"], "--from", "external",
            "--to", "svc/web-np", "--request", " ".join(argv), "-o", str(run), "--no-analyze",
        ]
    )  # fmt: skip
    assert code == 0, err
    req = _manifest(run)["request"]
    assert req["argv"] == argv and req["exit_code"] == 0, req
    assert f"hello from {backend.name}" in req["stdout"]
    # The kernel of the entry node saw the request arrive from outside and DNATed it.
    entries = [
        e
        for e in conntrack_entries(entry.netns)
        if e["odst"] == entry.underlay_ip and e["odport"] == str(NODEPORT_CLUSTER)
    ]
    assert entries and entries[0]["rsrc"] == backend.ip
    records = pcap_records(run / "points" / f"{entry.name}.pcap")
    assert records, "the entry node's capture is empty"
    assert managed_pods(lab["kubeconfig"]) == []


def test_ctrl_c_during_capture(
    lab: dict[str, Any], tmp_path: Path, sigint_interrupts: None
) -> None:
    topo = lab["topo"]
    run = tmp_path / "run"
    client = topo.pod("client")

    def traffic_then_interrupt() -> None:
        subprocess.run(
            ["ip", "netns", "exec", client.netns, "curl", "-s", "--max-time", "4",
             "http://10.96.0.100/"],
            capture_output=True,
        )  # fmt: skip
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    # --duration without --request: client, the backend and their node (3 points).
    trigger = when_armed(run, 3, traffic_then_interrupt)
    t0 = time.monotonic()
    code, _, err = run_cli(
        [
            "capture", "--kubeconfig", lab["kubeconfig"], "--from", "pod/client",
            "--to", "svc/web", "--duration", "60", "-o", str(run), "--no-analyze",
        ]
    )  # fmt: skip
    trigger.join(timeout=10)
    assert code == 130, err
    assert time.monotonic() - t0 < 45, "the interrupt did not end the capture"
    m = _manifest(run)
    assert m["extra"]["outcome"] == "interrupted"
    assert len(m["points"]) == 3
    for p in m["points"]:
        records = pcap_records(run / p["file"])  # valid, nothing cut mid-record
        assert p["packets"] == len(records)
    assert len(pcap_records(run / "points" / "client.pcap")) > 0
    nothing_left(lab)


def test_points_record_when_they_started_listening(lab: dict[str, Any], tmp_path: Path) -> None:
    # What the arming benchmark reads: each point's start and stop, within the command's run.
    run = tmp_path / "run"
    t0 = time.time_ns()
    code, _, err = run_cli(
        [
            "capture", "--kubeconfig", lab["kubeconfig"], "--from", "pod/client",
            "--to", "svc/web", "--request", "curl -s http://web/", "-o", str(run), "--no-analyze",
        ]
    )  # fmt: skip
    t1 = time.time_ns()
    assert code == 0, err
    points = _manifest(run)["points"]
    assert len(points) == 3  # client, web-a and node1: the DNS pod is left alone
    for p in points:
        assert t0 < p["started_ns"] < p["stopped_ns"] < t1, p["name"]
        assert len(pcap_records(run / p["file"])) > 0, p["name"]


def test_lab_down_leaves_nothing(lab: dict[str, Any]) -> None:
    code, _, err = run_cli(["lab", "down"])
    assert code == 0, err
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert [n for n in left.split() if n.startswith("pt-")] == []
    procs = lab_processes()
    assert procs["api"] == [] and procs["tcpdump"] == []
    assert not Path(lab["kubeconfig"]).exists()
