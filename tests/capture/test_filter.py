"""The capture filter keeps every overlay's copies of the request, checked by the real libpcap:
packets of each encapsulation are crafted, written to a file and filtered by `tcpdump -r`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.capture.test_plan import CASES, NODES
from tracer.capture.filter import filter_plan, overlay_filter
from tracer.capture.plan import make_plan
from tracer.capture.targets import Targets

pytestmark = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")

REQUEST_V4 = ("10.244.1.2", "10.96.0.20")  # the client pod and web's ClusterIP (CASES)
REQUEST_V6 = ("fd00:10:244:1::2", "fd00:10:96::20")
OTHER_V4 = ("10.244.7.7", "10.244.8.8")  # pods the request never touches
OTHER_V6 = ("fd00:10:244:7::7", "fd00:10:244:8::8")
UNDERLAY_V4 = ("10.0.0.1", "10.0.0.2")
UNDERLAY_V6 = ("fd00:50::1", "fd00:50::2")
MAC = "0a:58:0a:00:00:01"


def _inner(src: str, dst: str) -> object:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    return ip / TCP(sport=41000, dport=80, flags="S")


def _encapsulations(inner: object, underlay: tuple[str, str]) -> dict[str, object]:
    """The same inner packet in every overlay the filter must keep, over `underlay`."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import GRE, Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.packet import Raw

    v6_outer = ":" in underlay[0]
    outer = IPv6 if v6_outer else IP
    inner_v6 = inner.__class__.__name__ == "IPv6"  # type: ignore[attr-defined]
    eth = Ether(
        src="0a:58:0a:f4:01:02", dst="0a:58:0a:f4:01:01", type=0x86DD if inner_v6 else 0x0800
    )
    o = outer(src=underlay[0], dst=underlay[1])

    def with_proto(p: int) -> object:
        return outer(src=underlay[0], dst=underlay[1], **({"nh": p} if v6_outer else {"proto": p}))

    ptype = 0x86DD if inner_v6 else 0x0800
    geneve_hdr = bytes([0, 0]) + ptype.to_bytes(2, "big") + bytes(4)
    geneve_teb = bytes([0, 0, 0x65, 0x58]) + bytes(4)
    geneve_opts = bytes([2, 0, 0x65, 0x58]) + bytes(4) + bytes(8)  # 8 bytes of options
    return {
        "vxlan-8472": o / UDP(sport=40000, dport=8472) / VXLAN(vni=1) / eth / inner,
        "vxlan-4789": o / UDP(sport=40000, dport=4789) / VXLAN(vni=4096) / eth / inner,
        "geneve-ip": o / UDP(sport=40000, dport=6081) / Raw(geneve_hdr) / inner,
        "geneve-ethernet": o / UDP(sport=40000, dport=6081) / Raw(geneve_teb) / eth / inner,
        "geneve-options": o / UDP(sport=40000, dport=6081) / Raw(geneve_opts) / eth / inner,
        "gre": o / GRE(proto=ptype) / inner,
        "gre-key": o / GRE(proto=ptype, key_present=1, key=7) / inner,
        "gre-teb": o / GRE(proto=0x6558) / eth / inner,
        "gre-checksum": o / GRE(proto=ptype, chksum_present=1) / inner,
        ("6in4" if inner_v6 else "ipip"): with_proto(41 if inner_v6 else 4) / inner,
    }


def _kept(packets: list[object], bpf: str, tmp_path: Path, linktype: str) -> list[bool]:
    """Which of `packets` libpcap's compiled `bpf` keeps (one `tcpdump -r` over them all)."""
    from scapy.layers.l2 import CookedLinuxV2, Ether
    from scapy.utils import rdpcap, wrpcap

    frames = [
        CookedLinuxV2(proto=0x86DD if p.version == 6 else 0x0800, ifindex=2) / p  # type: ignore[attr-defined]
        if linktype == "sll2"
        # Both MACs given: scapy would otherwise try to resolve them on the network.
        else Ether(src=MAC, dst=MAC, type=0x86DD if p.version == 6 else 0x0800) / p  # type: ignore[attr-defined]
        for p in packets
    ]
    src, out = tmp_path / f"{linktype}-in.pcap", tmp_path / f"{linktype}-out.pcap"
    wrpcap(str(src), frames)
    r = subprocess.run(
        ["tcpdump", "-r", str(src), "-w", str(out), bpf], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    kept = {bytes(f) for f in rdpcap(str(out))}
    return [bytes(f) in kept for f in frames]


@pytest.mark.parametrize("linktype", ["ethernet", "sll2"])
def test_every_overlay_is_kept_and_filtered_on_inner_addresses(
    tmp_path: Path, linktype: str
) -> None:
    bpf, warnings = overlay_filter([*REQUEST_V4, *REQUEST_V6])
    assert warnings == ()
    cases: list[tuple[str, bool, object]] = []
    for outer_v6 in (False, True):
        underlay = UNDERLAY_V6 if outer_v6 else UNDERLAY_V4
        for request, other in ((REQUEST_V4, OTHER_V4), (REQUEST_V6, OTHER_V6)):
            for src, dst in (request, request[::-1]):
                for name, pkt in _encapsulations(_inner(src, dst), underlay).items():
                    cases.append((f"{name} {src} > {dst} over {underlay[0]}", True, pkt))
            for name, pkt in _encapsulations(_inner(*other), underlay).items():
                # Layouts the filter cannot read at fixed offsets are kept whole.
                whole = name in ("geneve-options", "gre-checksum")
                cases.append((f"{name} {other[0]} (not the request)", whole, pkt))
    kept = _kept([pkt for _, _, pkt in cases], bpf, tmp_path, linktype)
    wrong = [name for (name, want, _), got in zip(cases, kept, strict=True) if want != got]
    assert wrong == []
    assert len(cases) == 2 * 2 * 30


def test_encrypted_tunnels_are_kept_whole(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.packet import Raw

    bpf, _ = overlay_filter(list(REQUEST_V4))
    wireguard = [
        IP(src=UNDERLAY_V4[0], dst=UNDERLAY_V4[1])
        / UDP(sport=51820, dport=51820)
        / Raw(b"\x04" + bytes(47)),
        IPv6(src=UNDERLAY_V6[0], dst=UNDERLAY_V6[1])
        / UDP(sport=51871, dport=51871)
        / Raw(b"\x04" + bytes(47)),
    ]
    esp = [
        IP(src=UNDERLAY_V4[0], dst=UNDERLAY_V4[1], proto=50) / Raw(bytes(40)),
        IPv6(src=UNDERLAY_V6[0], dst=UNDERLAY_V6[1], nh=50) / Raw(bytes(40)),
        IP(src=UNDERLAY_V4[0], dst=UNDERLAY_V4[1]) / UDP(sport=4500, dport=4500) / Raw(bytes(40)),
    ]
    assert _kept(wireguard + esp, bpf, tmp_path, "sll2") == [True] * 5


def test_plan_filter_names_every_overlay() -> None:
    targets, options = CASES["pod-to-svc-by-name"]
    f = make_plan(targets, options).filter
    for needle in (
        "udp port 4789", "udp port 8472", "udp port 6081", "ip proto 4", "ip proto 41",
        "ip proto 47", "ip6 proto 41", "udp port 51820", "udp port 51871", "ip proto 50",
    ):  # fmt: skip
        assert needle in f, needle
    # The inner filter names the request's addresses (10.96.0.20 = 0x0a600014).
    assert "0x0a600014" in f


def test_too_many_addresses_keep_overlays_whole_and_say_so() -> None:
    hosts = [f"fd00::{i:x}" for i in range(1, 40)]
    bpf, warnings = overlay_filter(hosts)
    assert "0xfd00" not in bpf and "udp port 6081" in bpf and "ip6 proto 41" in bpf
    assert len(warnings) == 1 and "39 addresses" in warnings[0]
    plan = make_plan(
        Targets("x", None, extra_ips=tuple(hosts), nodes=NODES), CASES["pod-to-svc-by-name"][1]
    )
    assert warnings[0] in plan.warnings


@pytest.mark.parametrize("v6", [False, True])
def test_filter_stays_within_the_kernels_limit(v6: bool) -> None:
    """The largest inner filter the plan builds loads into a socket (4096 instructions)."""
    words = 8 if v6 else 2
    n = 88 // words  # MAX_INNER_WORDS
    hosts = [f"fd00::{i:x}" if v6 else f"10.1.{i // 250}.{i % 250 + 1}" for i in range(n)]
    bpf, warnings = filter_plan(Targets("x", None, extra_ips=tuple(hosts), extra_ports=(80,)))
    assert warnings == ()
    r = subprocess.run(["tcpdump", "-i", "lo", "-d", bpf], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) < 4096
