"""Repeated packets: DNS retries paired in order, MSS clamping never breaks a SYN's match."""

from __future__ import annotations

from tracer.correlate import PointFrames, build_path, correlate, select
from tracer.model import CapturePoint
from tracer.pcap.columns import DIR_IN, DIR_OUT, TH_ACK, TH_SYN
from tracer.testing.synth import START_NS, Pkt, Sighting, dns_query, frames_from_specs

POINTS = (
    CapturePoint("client", "client", "client.pcap", node="node-a"),
    CapturePoint("node-a", "node", "node-a.pcap", node="node-a"),
    CapturePoint("server", "server", "server.pcap", node="node-b"),
)
CLIENT, SVC, BACKEND = "10.244.1.7", "10.96.0.10", "10.244.2.5"


def _frames(per_point: dict[str, list[Sighting]]) -> list[PointFrames]:
    return [PointFrames(p, frames_from_specs(per_point[p.name], p.name)) for p in POINTS]


def test_dns_retry_pairs_kth_with_kth() -> None:
    query = dns_query(0x4242, "web.default.svc.cluster.local")
    # The resolver resends the very same query after its 5 s timeout (same port, same bytes,
    # IP ID 0 as Linux sends on a DF UDP socket): only the time tells the two apart.
    q = Pkt("udp", CLIENT, SVC, 41000, 53, payload=query, ip_id=0)
    after = Pkt("udp", CLIENT, BACKEND, 41000, 53, payload=query, ip_id=0)
    frames: dict[str, list[Sighting]] = {"client": [], "node-a": [], "server": []}
    for k, t in enumerate((START_NS, START_NS + 5_000_000_000)):
        frames["client"].append(Sighting(t, q, "eth0", DIR_OUT, packet=k))
        frames["node-a"].append(Sighting(t + 10_000, q, "veth", DIR_IN, packet=k))
        frames["node-a"].append(Sighting(t + 30_000, after, "eth0", DIR_OUT, packet=k))
        # node-b's clock is 2 s ahead: more than the retry interval would allow to guess.
        frames["server"].append(Sighting(t + 2_000_000_000 + 150_000, after, "eth0", DIR_IN))
    corr = correlate(_frames(frames))
    (conn,) = corr.connections
    assert len(conn.journeys) == 2
    first, second = conn.journeys
    assert [o.t_ns for o in first.observations if o.point == "client"] == [START_NS]
    assert [o.t_ns for o in first.observations if o.point == "server"] == [START_NS + 2_000_150_000]
    assert [o.t_ns for o in second.observations if o.point == "server"] == [
        START_NS + 7_000_150_000
    ]
    (clock,) = corr.clocks
    assert abs(clock.offset_ns - 2_000_000_000) < 200_000


def test_mss_clamping_does_not_break_the_syn_match() -> None:
    # A middlebox (or an iptables TCPMSS rule) lowers the SYN's MSS option on the way.
    syn = Pkt("tcp", CLIENT, SVC, 40000, 80, seq=1000, flags=TH_SYN, ip_id=5, mss=1460)
    clamped = Pkt("tcp", CLIENT, BACKEND, 40000, 8080, seq=1000, flags=TH_SYN, ip_id=5, mss=1410)
    synack = Pkt("tcp", BACKEND, CLIENT, 8080, 40000, seq=9, ack=1001, flags=TH_SYN | TH_ACK)
    synack_c = Pkt("tcp", SVC, CLIENT, 80, 40000, seq=9, ack=1001, flags=TH_SYN | TH_ACK)
    t = START_NS
    frames = {
        "client": [Sighting(t, syn, "eth0", DIR_OUT), Sighting(t + 400_000, synack_c, "eth0")],
        "node-a": [
            Sighting(t + 10_000, syn, "veth", DIR_IN),
            Sighting(t + 30_000, clamped, "eth0", DIR_OUT),
            Sighting(t + 350_000, synack, "eth0", DIR_IN),
            Sighting(t + 380_000, synack_c, "veth", DIR_OUT),
        ],
        "server": [
            Sighting(t + 150_000, clamped, "eth0", DIR_IN),
            Sighting(t + 200_000, synack, "eth0", DIR_OUT),
        ],
    }
    corr = correlate(_frames(frames))
    (conn,) = corr.connections
    path = build_path(corr, select(corr))
    assert [h.point for h in path.forward] == ["client", "node-a", "node-a", "server"]
    assert [h.point for h in path.reverse] == ["server", "node-a", "node-a", "client"]
    assert str(conn.backend) == f"{BACKEND}:8080"
