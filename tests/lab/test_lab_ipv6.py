"""The dual-stack lab on the real kernel: IPv6 Services through kube-proxy's IPv6 rules
(ip6tables and nft ip6), IPv6 over the VXLAN overlay, AAAA answers; the capture plan's overlay
filter on a node's uplink. Needs root; run inside the isolation wrapper.

The truth is the kernel's (conntrack entries, curl's result) and the lab's configuration.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tracer.capture.filter import filter_plan
from tracer.capture.targets import Targets
from tracer.correlate import build_path, correlate, select
from tracer.inputs import load_run
from tracer.lab import lab
from tracer.lab.scenarios import IPV6_SCENARIOS
from tracer.lab.services import WEB6_IPS
from tracer.pcap import read_frames

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def lab6(netns_ok: None) -> Iterator[dict[str, Any]]:
    if lab.status()["status"] != "down":
        pytest.skip("a lab is already present; `pathtrace lab down` first")
    try:
        yield lab.up(mode="iptables", ipv6=True)
    finally:
        lab.down()
    assert not [n for n in _netns() if n.startswith("pt-")], "the lab left namespaces behind"


def _netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _trace(run: Path) -> tuple[Any, Any]:
    loaded = load_run(str(run))
    corr = correlate(loaded.points)
    conn = select(corr)
    return corr, build_path(corr, conn)


@pytest.mark.parametrize("name", IPV6_SCENARIOS)
def test_ipv6_scenario_against_the_kernel(lab6: dict[str, Any], tmp_path: Path, name: str) -> None:
    run = lab.run_scenario(name, out_dir=tmp_path / name)
    truth = json.loads((run / "manifest.json").read_text())["extra"]["lab"]
    assert truth["outcome"] == truth["expected_outcome"], truth
    corr, path = _trace(run)
    assert ":" in path.forward[0].tuple5.dst.ip
    for c in corr.clocks:  # one machine: the true offset is 0
        assert abs(c.offset_ns) <= c.error_bound_ns + 1, c
    assert not any(s.negative for s in path.latency.segments)
    ct = truth.get("conntrack")
    if truth["backend"]:
        # conntrack (the kernel) DNATed the frontend to the configured backend...
        assert ct is not None and ct["dnat_to"] == truth["backend"]
        # ...and the analysis shows that same rewrite.
        (t,) = [
            h.translation for h in path.forward if h.translation and "DNAT" in h.translation.kind
        ]
        assert str(t.after.dst) == ct["dnat_to"]
        if truth["snat_node"]:
            assert str(t.after.src) == ct["snat_to"]
    else:  # no endpoints: ip6tables REJECT answers with ICMPv6 port unreachable
        assert any("port-unreachable" in w for w in path.warnings)
        assert path.reverse and path.reverse[0].tuple5.proto == "icmpv6"
    assert (run / "nodes" / "node1" / "ip6tables-save.txt").read_text().count("KUBE-SVC-") > 0


def test_ipv4_still_works_in_the_dual_stack_lab(lab6: dict[str, Any], tmp_path: Path) -> None:
    run = lab.run_scenario("clusterip-remote", out_dir=tmp_path / "v4")
    truth = json.loads((run / "manifest.json").read_text())["extra"]["lab"]
    assert truth["outcome"] == "http-200"
    _, path = _trace(run)
    assert str(path.forward[0].tuple5.dst) == truth["frontend"]


def test_capture_filter_keeps_the_ipv6_request_inside_vxlan(
    lab6: dict[str, Any], tmp_path: Path
) -> None:
    """The plan's filter on node1's uplink: the request's VXLAN-encapsulated IPv6 packets are
    kept, another request's (IPv4, to the same backend pod) are not."""
    from tracer.lab.topology import topology_from_json

    topo = topology_from_json(lab6["topology"])
    client, web_b = topo.pod("client"), topo.pod("web-b")
    bpf, _ = filter_plan(
        Targets("web6-remote", None, extra_ips=(client.ip6, WEB6_IPS["web6-remote"], web_b.ip6))
    )
    out = tmp_path / "eth0.pcap"
    err = tmp_path / "tcpdump.log"
    with open(err, "wb") as ef:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", topo.nodes[0].netns, "tcpdump", "-i", "eth0", "-U",
             "--immediate-mode", "-n", "-w", str(out), bpf],
            stdout=subprocess.DEVNULL, stderr=ef,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while "listening on" not in err.read_text(errors="replace"):
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for argv in (
            ["curl", "-s", "--max-time", "4", "http://web6-remote/"],
            ["curl", "-s", "--max-time", "4", f"http://{web_b.ip}:8080/"],
        ):
            r = subprocess.run(
                ["ip", "netns", "exec", client.netns, *argv], capture_output=True, timeout=10
            )
            assert r.returncode == 0 and b"hello from web-b" in r.stdout
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    frames = read_frames(out)
    cols = frames.columns
    inner = [frames.addresses[int(i)] for i in cols["src"]] + [
        frames.addresses[int(i)] for i in cols["dst"]
    ]
    encaps = {frames.encaps[int(e)] for e in cols["encap"]}
    assert any("vxlan" in e for e in encaps), encaps
    assert client.ip6 in inner and web_b.ip6 in inner
    assert client.ip not in inner and web_b.ip not in inner, "the IPv4 request was kept"
