"""istio-iptables' rules as the lab writes them, walked by the rule walker, and the socket
load-balancer's BPF program and map encodings."""

from __future__ import annotations

import struct

from tracer.lab import mesh, sockbpf
from tracer.model import Endpoint
from tracer.rules import Node, Packet, load_rules, walk
from tracer.rules.model import OTHER_OWNER

POD = Node(("127.0.0.1", "10.244.1.2"))


def _rules() -> object:
    return load_rules(mesh.istio_iptables_restore(), source="pod")


def test_rules_have_istio_chains_and_the_proxy_exclusion() -> None:
    text = mesh.istio_iptables_restore()
    for chain in mesh.ISTIO_CHAINS:
        assert f"-N {chain}" in text
    assert "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN" in text
    assert "-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN" in text
    assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in text
    assert "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006" in text
    # The cleanup removes every chain it created.
    removed = {a[3] for a in mesh.istio_cleanup() if a[2] == "-X"}
    assert removed == set(mesh.ISTIO_CHAINS)


def _walk(src: str, dst: str, entry: str, oif: str | None, uid: int | None) -> object:
    ip, _, port = dst.rpartition(":")
    sip, _, sport = src.rpartition(":")
    pkt = Packet("tcp", Endpoint(sip, int(sport)), Endpoint(ip, int(port)), entry, oif, uid, uid)  # type: ignore[arg-type]
    return walk(_rules(), pkt, POD)  # type: ignore[arg-type]


def test_the_apps_outbound_connection_goes_to_the_sidecar() -> None:
    r = _walk("10.244.1.2:40000", "10.96.0.101:80", "local", "eth0", OTHER_OWNER)
    assert r.verdict == "DNAT"  # type: ignore[attr-defined]
    assert [e.address for e in r.endpoints] == ["127.0.0.1:15001"]  # type: ignore[attr-defined]
    assert r.rules[-1].rule.endswith("REDIRECT --to-ports 15001")  # type: ignore[attr-defined]


def test_the_proxys_own_connection_is_left_alone() -> None:
    r = _walk("10.244.1.2:40002", "10.96.0.101:80", "local", "eth0", mesh.PROXY_UID)
    assert r.verdict != "DNAT"  # type: ignore[attr-defined]
    assert any("--uid-owner 1337 -j RETURN" in h.rule for h in r.rules)  # type: ignore[attr-defined]


def test_inbound_goes_to_15006_and_the_proxys_loopback_leg_passes() -> None:
    node = Node(("127.0.0.1", "10.244.2.3"))
    pkt = Packet("tcp", Endpoint("10.244.1.2", 40002), Endpoint("10.244.2.3", 8080), "from_pod")
    r = walk(_rules(), pkt, node)  # type: ignore[arg-type]
    assert [e.address for e in r.endpoints] == ["10.244.2.3:15006"]
    pkt = Packet(
        "tcp", Endpoint("127.0.0.6", 41000), Endpoint("10.244.2.3", 8080), "local", "lo", 1337, 1337
    )
    r = walk(_rules(), pkt, node)  # type: ignore[arg-type]
    assert r.verdict != "DNAT"
    assert "-s 127.0.0.6/32" in r.rules[-1].rule


def test_owner_match_unknown_is_not_guessed() -> None:
    # Without the sending socket's owner the walk says it cannot tell, and does not match.
    r = _walk("10.244.1.2:40000", "10.96.0.101:80", "local", "eth0", None)
    assert any("cannot evaluate -m owner" in w for w in r.warnings)  # type: ignore[attr-defined]


def test_bpf_program_and_map_encoding() -> None:
    code = sockbpf.instructions(7)
    assert len(code) % 8 == 0 and len(code) // 8 == 20
    op, regs, off, imm = struct.unpack("<BBhi", code[8 * 8 : 9 * 8])
    assert (op, regs >> 4, imm) == (0x18, 1, 7)  # ld_imm64 with the map fd (BPF_PSEUDO_MAP_FD)
    assert code[-8] == 0x95  # exit
    key = sockbpf.map_key("10.96.0.110", 80, "TCP")
    assert len(key) == sockbpf.KEY_SIZE
    assert sockbpf.decode_key(key) == ("10.96.0.110", 80, "TCP")
    value = sockbpf.map_value("10.244.2.3", 8080)
    assert len(value) == sockbpf.VALUE_SIZE
    assert sockbpf.decode_value(value) == ("10.244.2.3", 8080)


def test_cgroup2_root_from_mountinfo() -> None:
    info = (
        "35 25 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "36 25 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    )
    assert str(sockbpf.cgroup2_root(info)) == "/sys/fs/cgroup/unified"
