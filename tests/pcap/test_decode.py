"""Link layers, tunnels, IP and transport headers, each crafted byte by byte and read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pcap import craft as c
from tests.pcap.helpers import read_rows
from tracer.pcap.columns import (
    DIR_IN,
    DIR_OUT,
    DIR_UNKNOWN,
    OPT_FRAGMENT,
    OPT_MSS,
    OPT_SUPER,
    OPT_TRUNCATED,
    OPT_TS,
    TH_ACK,
    TH_PSH,
    TH_SYN,
    payload_hash,
)

# Every test here runs against the compiled kernels and the numpy path (see conftest.py).
pytestmark = pytest.mark.usefixtures("kernel")

PAYLOAD = b"GET / HTTP/1.1\r\nHost: web\r\n\r\n"


def one(tmp_path: Path, frame: bytes, linktype: int = 1) -> dict:
    (row,) = read_rows(tmp_path, c.pcap([frame], linktype))
    return row


def test_ethernet_ipv4_tcp_with_linux_timestamps(tmp_path: Path) -> None:
    seg = c.tcp(
        PAYLOAD,
        40000,
        8080,
        seq=0xFFFFFFF0,
        ack=77,
        flags=TH_PSH | TH_ACK,
        options=c.opt_ts(123456, 654321),
    )
    row = one(tmp_path, c.eth(c.ipv4(seg, 6, "10.1.2.3", "10.9.8.7", ip_id=4242, ttl=63)))
    assert row["encap"] == ("eth", "ipv4", "tcp")
    assert (row["family"], row["proto"], row["src"], row["dst"]) == (4, 6, "10.1.2.3", "10.9.8.7")
    assert (row["sport"], row["dport"], row["ip_id"], row["ttl"]) == (40000, 8080, 4242, 63)
    assert (row["seq"], row["ack"], row["tcp_flags"]) == (0xFFFFFFF0, 77, TH_PSH | TH_ACK)
    assert (row["tsval"], row["tsecr"], row["opts"]) == (123456, 654321, OPT_TS)
    assert row["payload_len"] == row["pcap_len"] == len(PAYLOAD)
    assert row["phash"] == payload_hash(PAYLOAD)
    assert row["t_ns"] == 1_700_000_000_123_456_000


def test_linux_syn_layout_gives_mss_and_timestamps(tmp_path: Path) -> None:
    seg = c.tcp(b"", flags=TH_SYN, options=c.opt_syn(1460, 99, 0))
    row = one(tmp_path, c.eth(c.ipv4(seg, 6)))
    assert (row["mss"], row["tsval"], row["tsecr"]) == (1460, 99, 0)
    assert row["opts"] == OPT_TS | OPT_MSS
    assert (row["payload_len"], row["phash"], row["pcap_len"]) == (0, 0, 0)


def test_unusual_option_order_still_finds_timestamps(tmp_path: Path) -> None:
    # SACK block first, then TS without the NOP padding, then NOPs and EOL: not a fast layout.
    sack = b"\x05\x0a" + b"\0\0\0\x01\0\0\0\x02"
    options = (
        sack + b"\x08\x0a" + (5).to_bytes(4, "big") + (6).to_bytes(4, "big") + b"\x01\x01\x01\x00"
    )
    row = one(tmp_path, c.eth(c.ipv4(c.tcp(b"x", options=options), 6)))
    assert (row["tsval"], row["tsecr"], row["opts"]) == (5, 6, OPT_TS)
    assert row["payload_len"] == 1


def test_udp_and_icmp_echo_and_icmpv6_echo(tmp_path: Path) -> None:
    frames = [
        c.eth(c.ipv4(c.udp(b"dns?", 33333, 53), 17)),
        c.eth(c.ipv4(c.icmp_echo(0x77, 9, b"ping" * 4), 1)),
        c.eth(c.ipv6(c.icmp_echo(5, 6, b"p6", kind=128), 58), 0x86DD),
        c.eth(c.ipv4(b"\x03\x03\0\0\0\0\0\0" + b"orig", 1)),  # port unreachable: no id/seq
    ]
    udp, echo, echo6, unreach = read_rows(tmp_path, c.pcap(frames))
    assert (udp["sport"], udp["dport"], udp["payload_len"], udp["phash"]) == (
        33333,
        53,
        4,
        payload_hash(b"dns?"),
    )
    assert (echo["icmp_type"], echo["icmp_code"], echo["icmp_id"], echo["icmp_seq"]) == (
        8,
        0,
        0x77,
        9,
    )
    assert echo["sport"] == -1 and echo["payload_len"] == 16
    assert (
        echo6["family"],
        echo6["proto"],
        echo6["icmp_type"],
        echo6["icmp_id"],
        echo6["icmp_seq"],
    ) == (6, 58, 128, 5, 6)
    assert (echo6["src"], echo6["ip_id"]) == ("fd00::1", -1)
    assert (unreach["icmp_type"], unreach["icmp_code"], unreach["icmp_id"]) == (3, 3, -1)


@pytest.mark.parametrize(
    "vlans",
    [[(0x8100, 10)], [(0x88A8, 100), (0x8100, 10)], [(0x9100, 7), (0x8100, 8)]],
    ids=["802.1Q", "QinQ-88a8", "QinQ-9100"],
)
def test_vlan_tags(tmp_path: Path, vlans: list[tuple[int, int]]) -> None:
    row = one(tmp_path, c.eth(c.ipv4(c.tcp(PAYLOAD, seq=5), 6), vlans=vlans))
    assert row["encap"] == ("eth",) + ("vlan",) * len(vlans) + ("ipv4", "tcp")
    assert (row["seq"], row["payload_len"]) == (5, len(PAYLOAD))


@pytest.mark.parametrize("port", [4789, 8472])
def test_vxlan_decapsulates_to_inner_tcp(tmp_path: Path, port: int) -> None:
    inner = c.eth(
        c.ipv4(c.tcp(PAYLOAD, 5555, 80, seq=31337), 6, "10.244.1.5", "10.244.2.9", ip_id=11, ttl=63)
    )
    outer = c.eth(
        c.ipv4(c.udp(c.vxlan(inner, 1), 45000, port), 17, "192.168.0.1", "192.168.0.2", ip_id=99)
    )
    row = one(tmp_path, outer)
    assert row["encap"] == ("eth", "ipv4", "udp", "vxlan", "eth", "ipv4", "tcp")
    assert (row["src"], row["dst"], row["sport"], row["dport"]) == (
        "10.244.1.5",
        "10.244.2.9",
        5555,
        80,
    )
    assert (row["ip_id"], row["ttl"], row["seq"]) == (11, 63, 31337)
    assert row["phash"] == payload_hash(PAYLOAD)


def test_geneve_with_options_and_without(tmp_path: Path) -> None:
    inner = c.eth(c.ipv4(c.icmp_echo(1, 2, b"abc"), 1, "10.0.1.1", "10.0.2.2"))
    with_opts = c.eth(
        c.ipv4(c.udp(c.geneve(inner, 10, b"\x01\x02\x80\x01" + b"\xee" * 4), 1, 6081), 17)
    )
    without = c.eth(c.ipv4(c.udp(c.geneve(inner, 11), 1, 6081), 17))
    ip_inside = c.eth(
        c.ipv4(
            c.udp(c.geneve(c.ipv4(c.udp(b"q"), 17, "1.1.1.1", "2.2.2.2"), ptype=0x0800), 1, 6081),
            17,
        )
    )
    a, b, ip_row = read_rows(tmp_path, c.pcap([with_opts, without, ip_inside]))
    for row in (a, b):
        assert row["encap"] == ("eth", "ipv4", "udp", "geneve", "eth", "ipv4", "icmp")
        assert (row["src"], row["icmp_id"], row["icmp_seq"]) == ("10.0.1.1", 1, 2)
    assert ip_row["encap"] == ("eth", "ipv4", "udp", "geneve", "ipv4", "udp")
    assert ip_row["src"] == "1.1.1.1"


def test_gre_variants(tmp_path: Path) -> None:
    inner = c.ipv4(c.tcp(b"hi", seq=7), 6, "172.16.0.1", "172.16.0.2")
    frames = [
        c.eth(c.ipv4(c.gre(inner, 0x0800), 47)),
        c.eth(c.ipv4(c.gre(inner, 0x0800, csum=True, key=5, seq=6), 47)),
        c.eth(c.ipv4(c.gre(c.eth(inner), 0x6558, key=1), 47)),
        c.eth(c.ipv4(c.gre(c.mpls(inner, [100, 200]), 0x8847), 47)),
    ]
    rows = read_rows(tmp_path, c.pcap(frames))
    assert [r["encap"] for r in rows] == [
        ("eth", "ipv4", "gre", "ipv4", "tcp"),
        ("eth", "ipv4", "gre", "ipv4", "tcp"),
        ("eth", "ipv4", "gre", "eth", "ipv4", "tcp"),
        ("eth", "ipv4", "gre", "mpls", "ipv4", "tcp"),
    ]
    assert all((r["src"], r["seq"], r["payload_len"]) == ("172.16.0.1", 7, 2) for r in rows)


def test_ip_in_ip_and_ipv6_in_ipv4(tmp_path: Path) -> None:
    v4 = c.eth(
        c.ipv4(
            c.ipv4(c.udp(b"x"), 17, "10.244.0.5", "10.244.1.6", ttl=62),
            4,
            "192.168.1.1",
            "192.168.1.2",
        )
    )
    v6 = c.eth(c.ipv4(c.ipv6(c.udp(b"y"), 17, "fd00::a", "fd00::b"), 41))
    a, b = read_rows(tmp_path, c.pcap([v4, v6]))
    assert a["encap"] == ("eth", "ipv4", "ipv4", "udp") and (a["src"], a["ttl"]) == (
        "10.244.0.5",
        62,
    )
    assert b["encap"] == ("eth", "ipv4", "ipv6", "udp") and (b["family"], b["dst"]) == (
        6,
        "fd00::b",
    )


def test_ipv6_extension_headers(tmp_path: Path) -> None:
    # hop-by-hop(0) -> routing(43) -> dest opts(60, 16 bytes) -> AH(51, 24 bytes) -> TCP
    headers = c.ext(43) + c.ext(60) + c.ext(51, 1) + c.ah(6)
    seg = c.tcp(PAYLOAD, seq=4)
    row = one(tmp_path, c.eth(c.ipv6(headers + seg, 0), 0x86DD))
    assert (row["proto"], row["seq"], row["payload_len"]) == (6, 4, len(PAYLOAD))
    assert row["phash"] == payload_hash(PAYLOAD)


def test_ipv6_fragments(tmp_path: Path) -> None:
    first = c.eth(c.ipv6(c.frag6(6, 0, True) + c.tcp(b"a" * 16, seq=3), 44), 0x86DD)
    later = c.eth(c.ipv6(c.frag6(6, 4, False) + b"b" * 24, 44), 0x86DD)
    a, b = read_rows(tmp_path, c.pcap([first, later]))
    assert a["opts"] & OPT_FRAGMENT and (a["proto"], a["seq"], a["payload_len"]) == (6, 3, 16)
    assert b["opts"] & OPT_FRAGMENT and (b["proto"], b["sport"], b["payload_len"]) == (6, -1, 24)
    assert b["encap"] == ("eth", "ipv6", "frag")


def test_ipv4_fragments_options_and_super_segments(tmp_path: Path) -> None:
    seg = c.tcp(b"z" * 100, seq=1)
    frames = [
        c.eth(c.ipv4(seg, 6, flags_frag=0x2000)),  # first fragment: MF set
        c.eth(c.ipv4(b"w" * 40, 6, flags_frag=0x0005)),  # offset 40: no TCP header here
        c.eth(c.ipv4(seg, 6, options=b"\x94\x04\x00\x00")),  # IHL 6 (router alert)
        c.eth(c.ipv4(seg, 6, total=0)),  # captured before TSO
        c.eth(c.ipv4(seg, 6, total=20 + 20 + 9000)),  # longer than any MTU
    ]
    first, later, ihl6, tso, big = read_rows(tmp_path, c.pcap(frames))
    assert first["opts"] & OPT_FRAGMENT and first["seq"] == 1
    assert later["opts"] & OPT_FRAGMENT and later["sport"] == -1 and later["payload_len"] == 40
    assert (ihl6["seq"], ihl6["payload_len"]) == (1, 100)
    assert tso["opts"] & OPT_SUPER and (tso["payload_len"], tso["pcap_len"]) == (100, 100)
    assert big["opts"] & OPT_SUPER and (big["payload_len"], big["pcap_len"]) == (9000, 100)


def test_frame_cut_by_snaplen_keeps_what_it_has(tmp_path: Path) -> None:
    full = c.eth(
        c.ipv4(c.tcp(PAYLOAD, 1234, 80, seq=99, options=c.opt_ts(1, 2)), 6, "10.0.0.7", "10.0.0.8")
    )
    cut_payload = full[: 14 + 20 + 32 + 5]
    cut_options = full[: 14 + 20 + 24]
    cut_ports = full[: 14 + 20 + 6]
    cut_ip = full[: 14 + 12]
    rows = read_rows(
        tmp_path,
        c.pcap(
            [c.Rec(f, origlen=len(full)) for f in (cut_payload, cut_options, cut_ports, cut_ip)]
        ),
    )
    payload, options, ports, ip = rows
    assert payload["opts"] == OPT_TS and (payload["payload_len"], payload["pcap_len"]) == (
        len(PAYLOAD),
        5,
    )
    assert payload["origlen"] == len(full)
    assert options["opts"] & OPT_TRUNCATED and (options["seq"], options["src"]) == (99, "10.0.0.7")
    assert ports["opts"] & OPT_TRUNCATED and (ports["sport"], ports["dport"], ports["seq"]) == (
        1234,
        80,
        0,
    )
    assert ip["opts"] & OPT_TRUNCATED and ip["family"] == 0 and ip["encap"] == ("eth", "ipv4")


def test_non_ip_frames_are_rows_too(tmp_path: Path) -> None:
    arp = c.eth(b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\0" * 20, 0x0806)
    lldp = c.eth(b"\x02\x07", 0x88CC)
    a, b = read_rows(tmp_path, c.pcap([arp, lldp]))
    assert a["encap"] == ("eth", "arp") and a["family"] == 0 and a["src"] is None
    assert b["encap"] == ("eth", "0x88cc")


def test_null_and_loop_link_types(tmp_path: Path) -> None:
    v4 = c.ipv4(c.udp(b"1"), 17, "10.1.1.1", "10.1.1.2")
    v6 = c.ipv6(c.udp(b"2"), 17)
    le = read_rows(
        tmp_path, c.pcap([(2).to_bytes(4, "little") + v4, (30).to_bytes(4, "little") + v6], 0)
    )
    be = read_rows(
        tmp_path, c.pcap([(2).to_bytes(4, "big") + v4, (24).to_bytes(4, "big") + v6], 0, order=">")
    )
    loop = read_rows(
        tmp_path, c.pcap([(2).to_bytes(4, "big") + v4, (28).to_bytes(4, "big") + v6], 108)
    )
    for rows, name in ((le, "null"), (be, "null"), (loop, "loop")):
        assert [r["encap"] for r in rows] == [(name, "ipv4", "udp"), (name, "ipv6", "udp")]
        assert (rows[0]["src"], rows[1]["family"]) == ("10.1.1.1", 6)


@pytest.mark.parametrize("linktype", [101, 12, 14, 228])
def test_raw_ipv4_link_types(tmp_path: Path, linktype: int) -> None:
    row = one(tmp_path, c.ipv4(c.tcp(b"r", seq=8), 6, "10.2.2.2", "10.3.3.3"), linktype)
    assert row["encap"] == ("ipv4", "tcp") and (row["src"], row["seq"]) == ("10.2.2.2", 8)


def test_raw_ipv6_link_types(tmp_path: Path) -> None:
    for linktype in (101, 229):
        row = one(tmp_path, c.ipv6(c.tcp(b"r", seq=8), 6), linktype)
        assert row["encap"] == ("ipv6", "tcp") and (row["family"], row["seq"]) == (6, 8)


def test_sll_pkttype_gives_direction(tmp_path: Path) -> None:
    ip = c.ipv4(c.tcp(seq=1), 6)
    rows = read_rows(tmp_path, c.pcap([c.sll(ip, 4), c.sll(ip, 0), c.sll(ip, 3)], 113))
    assert [r["direction"] for r in rows] == [DIR_OUT, DIR_IN, DIR_IN]
    assert all(r["encap"] == ("sll", "ipv4", "tcp") and r["iface"] == -1 for r in rows)


def test_sll2_ifindex_and_direction(tmp_path: Path) -> None:
    ip = c.ipv4(c.tcp(seq=1), 6)
    ip6 = c.ipv6(c.udp(b"u"), 17)
    frames = [c.sll2(ip, 7, 4), c.sll2(ip, 3, 0), c.sll2(ip6, 12, 1, 0x86DD), c.sll2(ip, 9, 7)]
    rows = read_rows(tmp_path, c.pcap(frames, 276))
    assert [(r["iface"], r["direction"]) for r in rows] == [
        (7, DIR_OUT),
        (3, DIR_IN),
        (12, DIR_IN),
        (9, DIR_UNKNOWN),
    ]
    assert rows[2]["encap"] == ("sll2", "ipv6", "udp")


def test_payload_offset_points_at_the_payload_in_the_file(tmp_path: Path) -> None:
    frames = [
        c.eth(c.ipv4(c.tcp(b"first payload", options=c.opt_ts(1, 1)), 6)),
        c.eth(c.ipv4(c.udp(c.vxlan(c.eth(c.ipv4(c.tcp(b"inner payload"), 6))), 1, 4789), 17)),
        c.eth(c.ipv4(c.icmp_echo(1, 1, b"echo payload"), 1)),
    ]
    blob = c.pcap(frames)
    rows = read_rows(tmp_path, blob)
    got = [blob[r["payload_off"] : r["payload_off"] + r["pcap_len"]] for r in rows]
    assert got == [b"first payload", b"inner payload", b"echo payload"]
    sll2_blob = c.pcap([c.sll2(c.ipv4(c.udp(b"sll2 payload"), 17), 2, 0)], 276)
    (row,) = read_rows(tmp_path, sll2_blob)
    assert sll2_blob[row["payload_off"] : row["payload_off"] + row["pcap_len"]] == b"sll2 payload"
