"""`ipvsadm -Ln` parsing (reference output) and the IPVS walk."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.errors import PathtraceError
from tracer.model import Endpoint
from tracer.rules.iptables import parse_iptables_save
from tracer.rules.ipvs import parse_ipvsadm, walk_ipvs
from tracer.rules.model import Node, Packet

# As printed by ipvsadm -Ln (kubernetes pkg/proxy/ipvs/README.md), with the header lines.
IPVSADM = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.1:443 rr persistent 10800
  -> 192.168.0.1:6443             Masq    1      1          0
UDP  10.0.0.10:53 rr
  -> 172.17.0.2:53                Masq    1      0          0
TCP  10.96.0.100:80 rr
  -> 10.244.1.10:8080             Masq    1      0          0
  -> 10.244.2.11:8080             Masq    1      0          0
  -> 10.244.3.12:8080             Masq    1      0          0
TCP  10.96.0.101:80 wrr
  -> 10.244.1.20:80               Masq    3      0          0
  -> 10.244.2.21:80               Masq    1      0          0
  -> 10.244.2.22:80               Masq    0      0          0
TCP  10.96.0.102:80 rr
"""

# kube-proxy IPVS-mode masquerade rules (the form seen on clusters).
IPT = """*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SERVICES ! -s 10.244.0.0/16 -d 10.96.0.0/16 -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -j KUBE-MARK-MASQ
COMMIT
"""


def test_parse_reference_output() -> None:
    t = parse_ipvsadm(IPVSADM)
    assert t.warnings == ()
    first = t.services[0]
    assert (first.proto, first.address, first.scheduler, first.persistent) == (
        "tcp",
        Endpoint("10.0.0.1", 443),
        "rr",
        10800,
    )
    rs = first.real_servers[0]
    assert (rs.address, rs.forward, rs.weight, rs.active) == (
        Endpoint("192.168.0.1", 6443),
        "masq",
        1,
        1,
    )
    assert t.services[1].proto == "udp" and t.services[1].persistent is None
    assert t.services[-1].real_servers == ()


def test_rr_gives_equal_chances_and_persistent_is_affinity() -> None:
    t = parse_ipvsadm(IPVSADM)
    r = walk_ipvs(t, Packet("tcp", Endpoint("10.244.1.7"), Endpoint("10.96.0.100", 80)), Node())
    assert r.verdict == "DNAT"
    assert [e.probability for e in r.endpoints] == pytest.approx([1 / 3] * 3)
    r = walk_ipvs(t, Packet("tcp", Endpoint("10.244.1.7"), Endpoint("10.0.0.1", 443)), Node())
    assert any("persistent 10800" in n for n in r.notes)


def test_wrr_uses_weights_and_skips_weight_zero() -> None:
    t = parse_ipvsadm(IPVSADM)
    r = walk_ipvs(t, Packet("tcp", Endpoint("10.244.1.7"), Endpoint("10.96.0.101", 80)), Node())
    assert {e.address: e.probability for e in r.endpoints} == pytest.approx(
        {"10.244.1.20:80": 0.75, "10.244.2.21:80": 0.25}
    )


def test_no_real_server_and_no_service() -> None:
    t = parse_ipvsadm(IPVSADM)
    assert (
        walk_ipvs(
            t, Packet("tcp", Endpoint("10.244.1.7"), Endpoint("10.96.0.102", 80)), Node()
        ).verdict
        == "REJECT"
    )
    assert (
        walk_ipvs(
            t, Packet("tcp", Endpoint("10.244.1.7"), Endpoint("10.96.9.9", 80)), Node()
        ).verdict
        == "NO-MATCH"
    )


def test_masquerade_comes_from_the_iptables_rules() -> None:
    t = parse_ipvsadm(IPVSADM)
    ipt = parse_iptables_save(IPT)
    node = Node(("192.168.49.2",))
    pod = walk_ipvs(
        t, Packet("tcp", Endpoint("10.244.1.7"), Endpoint("10.96.0.100", 80)), node, ipt
    )
    assert pod.verdict == "DNAT" and pod.masquerade is False
    host = walk_ipvs(
        t, Packet("tcp", Endpoint("192.168.49.2"), Endpoint("10.96.0.100", 80), "local"), node, ipt
    )
    assert host.verdict == "DNAT" and host.masquerade is True
    assert len(host.endpoints) == 3


def test_without_iptables_rules_the_masquerade_is_flagged_unknown() -> None:
    r = walk_ipvs(
        parse_ipvsadm(IPVSADM),
        Packet("tcp", Endpoint("192.168.49.2"), Endpoint("10.96.0.100", 80)),
        Node(),
    )
    assert any("no iptables rules" in w for w in r.warnings)


def test_unknown_lines_warn() -> None:
    t = parse_ipvsadm(IPVSADM + "garbage here\n  -> nonsense\n", source="ipvs.txt")
    assert len(t.warnings) == 2 and all(w.startswith("ipvs.txt:") for w in t.warnings)


@settings(max_examples=200)
@given(st.text(max_size=300))
def test_random_text_raises_only_pathtrace_errors(text: str) -> None:
    try:
        parse_ipvsadm(text)
    except PathtraceError:
        pass


@settings(max_examples=100)
@given(st.data())
def test_mutated_output_raises_only_pathtrace_errors(data: st.DataObject) -> None:
    lines = IPVSADM.splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    j = data.draw(st.integers(0, len(lines[i])))
    lines[i] = (
        lines[i][:j] + data.draw(st.text(alphabet=" ->:.0123TCPUDrw", max_size=8)) + lines[i][j:]
    )
    try:
        t = parse_ipvsadm("\n".join(lines))
    except PathtraceError:
        return
    walk_ipvs(t, Packet("tcp", Endpoint("10.244.1.7"), Endpoint("10.96.0.100", 80)), Node())
