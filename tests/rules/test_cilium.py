"""Cilium's dumps as its agent prints them (both layouts), and the walk through its Services."""

from __future__ import annotations

import pytest

from tracer.errors import InputError
from tracer.model import Endpoint
from tracer.rules import Packet
from tracer.rules.cilium import (
    parse_bpf_ct_list,
    parse_bpf_lb_list,
    parse_service_list,
    walk_cilium,
)

SERVICE_LIST = """\
ID   Frontend                Service Type   Backend
3    10.96.0.10:53/UDP       ClusterIP      1 => 10.244.1.4:53/UDP (active)
9    10.96.0.110:80/TCP      ClusterIP      1 => 10.244.2.3:8080/TCP (active)
                                            2 => 10.244.1.3:8080/TCP (terminating)
14   0.0.0.0:30080/TCP       NodePort       1 => 10.244.2.3:8080/TCP (active)
"""
# An older agent: no protocol after the addresses.
SERVICE_LIST_OLD = """\
ID   Frontend            Service Type   Backend
7    10.96.0.110:80      ClusterIP      1 => 10.244.2.3:8080 (active)
"""
BPF_LB_NEW = """\
SERVICE ADDRESS          BACKEND ADDRESS (REVNAT_ID) (SLOT)
10.96.0.110:80/TCP       0.0.0.0:0 (9) (0) [ClusterIP, non-routable]
                         10.244.2.3:8080/TCP (9) (1)
                         10.244.1.3:8080/TCP (9) (2)
10.96.0.10:53/UDP        0.0.0.0:0 (3) (0) [ClusterIP, non-routable]
                         10.244.1.4:53/UDP (3) (1)
"""
BPF_LB_OLD = """\
SERVICE ADDRESS             BACKEND ADDRESS (REVNAT_ID) (SLOT)
10.96.0.110:80 (0)          0.0.0.0:0 (9) (0) [ClusterIP, non-routable]
10.96.0.110:80 (2)          10.244.1.3:8080 (9) (2)
10.96.0.110:80 (1)          10.244.2.3:8080 (9) (1)
"""
CT = """\
TCP OUT 10.96.0.110:80 -> 10.244.1.2:42736 service expires=475561 RxPackets=0 RxBytes=7 TxPackets=0 TxBytes=0 Flags=0x0010 [ SeenNonSyn ] RevNAT=9 SourceSecurityID=0 IfIndex=0
TCP OUT 10.244.1.2:42736 -> 10.244.2.3:8080 expires=475561 RxPackets=6 TxPackets=5 Flags=0x0013 RevNAT=9 SourceSecurityID=14584
TCP IN 10.15.0.1 9090:34382 expires=277365 RxPackets=5 RxBytes=452 Flags=13 RevNAT=0 SourceSecurityID=2
some banner the agent printed
"""


def _pkt(dst: str, proto: str = "tcp") -> Packet:
    ip, _, port = dst.rpartition(":")
    return Packet(proto, Endpoint("10.244.1.2", 42736), Endpoint(ip, int(port)))


def test_service_list_both_layouts() -> None:
    lb = parse_service_list(SERVICE_LIST, source="s")
    svc = lb.find(Endpoint("10.96.0.110", 80), "tcp")
    assert svc is not None and svc.id == 9 and svc.kind == "ClusterIP"
    assert [(str(b.address), b.state) for b in svc.backends] == [
        ("10.244.2.3:8080", "active"),
        ("10.244.1.3:8080", "terminating"),
    ]
    assert [str(b.address) for b in svc.usable()] == ["10.244.2.3:8080"]
    assert lb.find(Endpoint("10.96.0.10", 53), "udp") is not None
    assert lb.find(Endpoint("10.96.0.10", 53), "tcp") is None
    old = parse_service_list(SERVICE_LIST_OLD).find(Endpoint("10.96.0.110", 80), "tcp")
    assert old is not None and old.proto == "" and len(old.backends) == 1


@pytest.mark.parametrize("text", [BPF_LB_NEW, BPF_LB_OLD])
def test_bpf_lb_list_both_layouts(text: str) -> None:
    lb = parse_bpf_lb_list(text)
    svc = lb.find(Endpoint("10.96.0.110", 80), "tcp")
    assert svc is not None
    assert svc.kind == "ClusterIP" and svc.revnat == 9
    # Slot 0 is the frontend's own entry, not a backend; backends in slot order.
    assert [(str(b.address), b.slot) for b in svc.backends] == [
        ("10.244.2.3:8080", 1),
        ("10.244.1.3:8080", 2),
    ]


def test_not_cilium_output_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="not `cilium-dbg service list`"):
        parse_service_list("*nat\n-A PREROUTING -j KUBE-SERVICES\n", source="x.txt")
    with pytest.raises(InputError, match="bpf lb list"):
        parse_bpf_lb_list("ID Frontend\n")


def test_ct_list_entries_both_layouts() -> None:
    entries = parse_bpf_ct_list(CT)
    assert len(entries) == 3
    svc, conn, old = entries
    assert svc.service and svc.revnat == 9 and str(svc.src) == "10.96.0.110:80"
    assert not conn.service and str(conn.dst) == "10.244.2.3:8080" and conn.revnat == 9
    assert old.proto == "tcp" and old.direction == "IN" and old.revnat is None


def test_walk_gives_each_usable_backend_an_equal_chance() -> None:
    lb = parse_bpf_lb_list(BPF_LB_NEW)
    r = walk_cilium(lb, _pkt("10.96.0.110:80"))
    assert r.verdict == "DNAT" and r.mode == "cilium"
    assert {e.address: e.probability for e in r.endpoints} == {
        "10.244.2.3:8080": 0.5,
        "10.244.1.3:8080": 0.5,
    }
    # The agent's view leaves a terminating backend out.
    r = walk_cilium(parse_service_list(SERVICE_LIST), _pkt("10.96.0.110:80"))
    assert [e.address for e in r.endpoints] == ["10.244.2.3:8080"]
    assert walk_cilium(lb, _pkt("10.96.0.99:80")).verdict == "NO-MATCH"
