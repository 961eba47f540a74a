"""Third-party captures (shared/realpcaps): frame counts from their README, spot values, tshark."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.pcap.helpers import as_rows, read_both
from tracer.pcap.columns import DIR_IN, DIR_OUT, OPT_SUPER, OPT_TS

# Every test here runs against the compiled kernels and the numpy path (see conftest.py).
pytestmark = pytest.mark.usefixtures("kernel")

# Frame counts as the README states them (capinfos -c).
COUNTS = {
    "tcpdump_vxlan.pcap": 10,
    "tcpdump_geneve.pcap": 39,
    "tcpdump_gso-ipv4-vxlan-ipv4.pcap": 1,
    "tcpdump_ipv4_tcp_http_xml_tso.pcap": 1,
    "tcpdump_tcp-handshake-nano.pcap": 3,
    "tcpdump_dns_udp.pcap": 2,
    "tcpdump_LINKTYPE_RAW_ipv4.pcap": 1,
    "zeek_linux_dlt_sll2.pcap": 6,
    "zeek_vxlan-encapsulated-http.pcap": 12,
    "zeek_http_get.pcap": 14,
    "zeek_ldap_gap-data-missing.pcapng": 18,
    "ptcpdump_tfo.pcap": 4,
    "ptcpdump_curl-thread.pcapng": 10,
    "ptcpdump_tcp.pcapng": 24,
    "skydive_ping-with-without-ethernet.pcap": 2,
    "skydive_simple-tcpv6.pcap": 5,
    "pcapngtestgen_test202.pcapng": 8,
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_frame_count_matches_the_readme(realpcaps: Path, name: str) -> None:
    frames = read_both(realpcaps / name)
    assert len(frames) == COUNTS[name]
    assert frames.warnings == ()


def test_vxlan_files_decode_to_the_inner_packets(realpcaps: Path) -> None:
    rows = as_rows(read_both(realpcaps / "tcpdump_vxlan.pcap"))
    icmp = [r for r in rows if r["proto"] == 1]
    assert icmp and all(r["encap"][:4] == ("eth", "ipv4", "udp", "vxlan") for r in rows)
    assert {r["src"] for r in icmp} == {"192.168.203.3", "192.168.203.5"}
    http = as_rows(read_both(realpcaps / "zeek_vxlan-encapsulated-http.pcap"))
    assert http[0]["encap"][-3:] == ("eth", "ipv4", "tcp")
    assert (http[0]["src"], http[0]["dst"], http[0]["dport"], http[0]["tcp_flags"]) == (
        "172.16.11.201",
        "54.86.237.188",
        80,
        0x02,
    )


def test_geneve_inner_traffic(realpcaps: Path) -> None:
    rows = as_rows(read_both(realpcaps / "tcpdump_geneve.pcap"))
    assert all("geneve" in r["encap"] for r in rows)
    assert {r["proto"] for r in rows} == {1, 6}
    syns = [r for r in rows if r["proto"] == 6 and r["tcp_flags"] & 0x02]
    assert syns and all(
        r["opts"] & OPT_TS and r["dport"] in (22, -1) or r["sport"] == 22 for r in syns
    )


def test_sll2_files_give_ifindex_and_direction(realpcaps: Path) -> None:
    rows = as_rows(read_both(realpcaps / "zeek_linux_dlt_sll2.pcap"))
    assert [(r["iface"], r["direction"]) for r in rows] == [(1, DIR_IN)] * 4 + [(26, DIR_OUT)] * 2
    tfo = as_rows(read_both(realpcaps / "ptcpdump_tfo.pcap"))
    assert {r["iface"] for r in tfo} == {3}
    assert {r["direction"] for r in tfo} == {DIR_IN, DIR_OUT}
    assert tfo[1]["ip_id"] == 0 and tfo[1]["tcp_flags"] == 0x12  # the SYN-ACK


def test_offload_super_segments(realpcaps: Path) -> None:
    (tso,) = as_rows(read_both(realpcaps / "tcpdump_ipv4_tcp_http_xml_tso.pcap"))
    # The README's 2016 bytes are the IP packet (Wireshark: "ip.len 2016, presumed because of
    # TSO"); after 20 bytes of IPv4 and 20 of TCP header, tshark's tcp.len is 1976.
    assert tso["opts"] & OPT_SUPER
    assert tso["payload_len"] + 20 + 20 == 2016 and tso["pcap_len"] == tso["payload_len"]
    (gso,) = as_rows(read_both(realpcaps / "tcpdump_gso-ipv4-vxlan-ipv4.pcap"))
    assert gso["encap"][3] == "vxlan" and gso["payload_len"] == 6990


def test_sll_v1_nanosecond_handshake(realpcaps: Path) -> None:
    rows = as_rows(read_both(realpcaps / "tcpdump_tcp-handshake-nano.pcap"))
    assert [r["tcp_flags"] for r in rows] == [0x02, 0x12, 0x10]
    assert rows[0]["direction"] == DIR_OUT and rows[1]["direction"] == DIR_IN
    assert any(r["t_ns"] % 1000 for r in rows)  # nanosecond digits survive


def test_multi_interface_pcapng_with_comments(realpcaps: Path) -> None:
    frames = read_both(realpcaps / "ptcpdump_curl-thread.pcapng")
    assert frames.interfaces[2] == "ens33"
    assert {r["iface"] for r in as_rows(frames)} == {2}
    assert len(frames.comments) == 10 and all("PID" in t for t in frames.comments.values())
    lo = as_rows(read_both(realpcaps / "ptcpdump_tcp.pcapng"))
    assert [r["direction"] for r in lo[:2]] == [DIR_OUT, DIR_IN]
    assert lo[0]["seq"] == lo[1]["seq"] and lo[0]["ip_id"] == lo[1]["ip_id"]


def test_mixed_endian_sections_and_126_interfaces(realpcaps: Path) -> None:
    frames = read_both(realpcaps / "pcapngtestgen_test202.pcapng")
    rows = as_rows(frames)
    assert [r["encap"][0] for r in rows] == [
        "eth",
        "eth",
        "null",
        "eth",
        "eth",
        "eth",
        "eth",
        "null",
    ]
    assert sum(r["t_ns"] == 0 for r in rows) == 2  # the two simple packet blocks
    ldap = read_both(realpcaps / "zeek_ldap_gap-data-missing.pcapng")
    assert {r["iface"] for r in as_rows(ldap)} == {48}
    assert all(r["family"] == 6 and r["proto"] == 6 for r in as_rows(ldap))


def test_same_packet_native_and_inside_gre_mpls(realpcaps: Path) -> None:
    native, tunnelled = as_rows(read_both(realpcaps / "skydive_ping-with-without-ethernet.pcap"))
    assert native["ip_id"] == tunnelled["ip_id"] == 0xF619
    assert native["icmp_seq"] == tunnelled["icmp_seq"] == 16917
    assert (native["ttl"], tunnelled["ttl"]) == (64, 63)
    assert native["phash"] == tunnelled["phash"] != 0


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize(
    "name",
    [
        "zeek_http_get.pcap",
        "tcpdump_geneve.pcap",
        "zeek_vxlan-encapsulated-http.pcap",
        "ptcpdump_tcp.pcapng",
        "pcapngtestgen_test202.pcapng",
        "skydive_ping-with-without-ethernet.pcap",
        "ptcpdump_tfo.pcap",
    ],
)
def test_ip_id_and_seq_agree_with_tshark(realpcaps: Path, name: str) -> None:
    path = realpcaps / name
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", 'not frame.protocols == "data"']
        + ["-T", "fields", "-e", "ip.id", "-e", "tcp.seq_raw"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.splitlines()
    rows = as_rows(read_both(path))
    assert len(out) == len(rows)
    for line, row in zip(out, rows, strict=True):
        ip_id, seq = (field.split(",")[-1] for field in line.split("\t"))  # innermost value last
        assert row["ip_id"] == (int(ip_id, 16) if ip_id else -1)
        assert (row["seq"] if row["proto"] == 6 else None) == (int(seq) if seq else None)
