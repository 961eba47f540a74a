"""The synthetic writers produce files an independent decoder (scapy, tcpdump's format) accepts."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tracer.pcap.columns import DIR_IN, DIR_OUT
from tracer.testing import synth
from tracer.testing.wire import ETHERNET, LINUX_SLL2, frame_bytes, write_pcap, write_pcapng


def _scapy_checksums_ok(raw: bytes) -> None:
    """Every IPv4 header and transport checksum equals what scapy computes from scratch."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.l2 import Ether

    pkt = Ether(raw)
    for ip in [layer for layer in pkt.iterpayloads() if isinstance(layer, IP)]:
        fresh = IP(bytes(ip))
        fresh.chksum = None
        for layer in (TCP, UDP, ICMP):
            if fresh.haslayer(layer):
                fresh.getlayer(layer).chksum = None
                break
        rebuilt = IP(bytes(fresh))
        assert rebuilt.chksum == ip.chksum, "IPv4 header checksum"
        for layer in (TCP, UDP, ICMP):
            if ip.haslayer(layer) and ip.getlayer(layer).underlayer is ip:
                assert rebuilt.getlayer(layer).chksum == ip.getlayer(layer).chksum, layer.__name__


@pytest.mark.parametrize(
    "scenario",
    [synth.dnat_scenario, synth.overlay_scenario, synth.dns_scenario, synth.icmp_scenario],
)
def test_checksums_are_valid(scenario: object) -> None:
    sc = scenario()  # type: ignore[operator]
    for rows in sc.frames.values():
        for s in rows[:6]:
            _scapy_checksums_ok(frame_bytes(s, ETHERNET))


def test_ipv6_tcp_checksum() -> None:
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    sc = synth.dnat_scenario(ipv6=True)
    raw = frame_bytes(sc.frames["client"][0], ETHERNET)
    pkt = Ether(raw)
    original = pkt[TCP].chksum
    ip6 = pkt[IPv6]
    ip6[TCP].chksum = None
    assert IPv6(bytes(ip6))[TCP].chksum == original


def test_vxlan_layout() -> None:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    sc = synth.overlay_scenario()
    s = next(x for x in sc.frames["node-a"] if x.vxlan is not None)
    pkt = Ether(frame_bytes(s, ETHERNET))
    assert pkt[UDP].dport == 8472
    assert pkt[VXLAN].vni == 1
    inner = pkt[VXLAN].payload
    assert inner[IP].dst == "10.244.2.9" and inner[TCP].seq == s.pkt.seq


def test_pcap_sll2_and_nanoseconds(tmp_path: Path) -> None:
    from scapy.utils import RawPcapReader

    sc = synth.overlay_scenario()
    rows = sc.frames["node-a"]
    path = tmp_path / "a.pcap"
    index = write_pcap(path, rows, linktype=LINUX_SLL2, nanosecond=True)
    head = path.read_bytes()[:24]
    assert struct.unpack("<I", head[:4])[0] == 0xA1B23C4D
    assert struct.unpack("<I", head[20:24])[0] == LINUX_SLL2
    got = list(RawPcapReader(str(path)))
    assert len(got) == len(rows)
    data, meta = got[0]
    assert meta.sec * 1_000_000_000 + meta.usec == rows[0].t_ns  # scapy names ns "usec"
    proto, _, ifindex, _, pkttype = struct.unpack("!HHIHB", data[:11])
    assert proto == 0x0800 and ifindex == index[rows[0].iface or "any"]
    assert pkttype == (4 if rows[0].direction == DIR_OUT else 0)


def test_pcap_microseconds(tmp_path: Path) -> None:
    from scapy.utils import RawPcapReader

    sc = synth.dns_scenario()
    path = tmp_path / "u.pcap"
    write_pcap(path, sc.frames["client"], nanosecond=False)
    (_, meta), _ = list(RawPcapReader(str(path)))
    assert meta.sec * 1_000_000 + meta.usec == sc.frames["client"][0].t_ns // 1000


def test_pcapng_interfaces_and_direction(tmp_path: Path) -> None:
    from scapy.utils import RawPcapNgReader

    sc = synth.overlay_scenario()
    rows = sc.frames["node-a"]
    path = tmp_path / "a.pcapng"
    ids = write_pcapng(path, rows, comments={0: "first"})
    assert list(ids) == ["veth1a2b3c", "cni0", "flannel.1", "eth0"]
    reader = RawPcapNgReader(str(path))
    got = list(reader)
    assert [i[2]["name"].decode() for i in reader.interfaces] == list(ids)
    assert all(i[2]["tsresol"] == 1_000_000_000 for i in reader.interfaces)
    assert len(got) == len(rows)
    for (data, meta), s in zip(got, rows, strict=True):
        assert meta.tshigh << 32 | meta.tslow == s.t_ns
        assert meta.ifname.decode() == s.iface
        assert meta.direction == {DIR_IN: 1, DIR_OUT: 2}[s.direction]
        assert data == frame_bytes(s, ETHERNET)
    assert got[0][1].comments == [b"first"]


def test_bulk_pcap_matches_its_columns(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import RawPcapReader

    points, paths = synth.bulk_dnat_pcaps(tmp_path, 30, seed=5)
    _, frames = synth.bulk_dnat(30, seed=5)
    for p in points:
        got = list(RawPcapReader(str(paths[p.name])))
        fr = frames[p.name]
        c = fr.columns
        assert len(got) == len(fr)
        for i in range(0, len(got), 7):
            data, meta = got[i]
            _scapy_checksums_ok(data)
            pkt = Ether(data)
            assert meta.sec * 1_000_000_000 + meta.usec == c["t_ns"][i]
            assert (pkt[IP].src, pkt[IP].dst) == (
                fr.addresses[c["src"][i]],
                fr.addresses[c["dst"][i]],
            )
            assert (pkt[IP].id, pkt[TCP].seq, pkt[TCP].ack) == (
                c["ip_id"][i],
                c["seq"][i],
                c["ack"][i],
            )
            assert (pkt[TCP].sport, pkt[TCP].dport) == (c["sport"][i], c["dport"][i])
            ts = dict(pkt[TCP].options)["Timestamp"]
            assert ts == (c["tsval"][i], c["tsecr"][i])


def test_bulk_pcap_any_capture_is_sll2_with_the_nodes_links(tmp_path: Path) -> None:
    import json

    from tracer.pcap import read_frames

    points, paths = synth.bulk_dnat_pcaps(tmp_path, 20, seed=3, any_capture=True)
    _, frames = synth.bulk_dnat(20, seed=3)
    for p in points:
        got = read_frames(paths[p.name])
        want = frames[p.name].columns
        for name in ("t_ns", "seq", "ack", "ip_id", "sport", "dport", "tsval", "tsecr"):
            assert got.columns[name].tolist() == want[name].tolist(), (p.name, name)
        if p.interface != "any":
            assert got.linktypes == (ETHERNET,)
            continue
        assert got.linktypes == (LINUX_SLL2,)
        from scapy.utils import RawPcapReader

        for data, _ in list(RawPcapReader(str(paths[p.name])))[::5]:
            _scapy_checksums_ok(b"\0" * 12 + b"\x08\x00" + data[20:])  # the IP packet after SLL2
        links = {
            i["ifindex"]: i["ifname"]
            for i in json.loads((tmp_path / f"{p.name}.links.json").read_text())
        }
        template = synth.dnat_scenario().frames[p.name]
        names = {s.iface for s in template}
        assert set(links.values()) == names
        # Every frame carries the ifindex of its template's interface and its direction.
        ifnames = [links[i] for i in got.columns["iface"].tolist()]
        by_name = frames[p.name].interfaces
        assert ifnames == [by_name[i] for i in want["iface"].tolist()]
        assert ((got.columns["direction"] == DIR_OUT) == (want["direction"] == DIR_OUT)).all()
