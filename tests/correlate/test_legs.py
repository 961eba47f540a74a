"""A stitched path cut at its proxy hops into legs, on a hand-built two-leg request."""

from __future__ import annotations

from dataclasses import replace

from tracer.correlate.legs import leg_paths
from tracer.model import Endpoint, Hop, Latency, Path, Request, Stitch, Tuple5

CLIENT = Tuple5("tcp", Endpoint("192.168.50.100", 40000), Endpoint("192.168.50.11", 30090))
INNER = Tuple5("tcp", Endpoint("10.244.1.1", 6000), Endpoint("10.244.1.5", 80))
BACKEND = Tuple5("tcp", Endpoint("10.244.1.5", 50000), Endpoint("10.244.2.3", 8080))


def _hop(point: str, t: int, tup: Tuple5, kind: str = "packet") -> Hop:
    return Hop(point, "node", None, None, None, t, tup, kind=kind)


def stitched_path(reverse_legs: int = 2) -> Path:
    fwd = (
        _hop("client", 0, CLIENT),
        _hop("proxy", 100, INNER),
        _hop("proxy", 900, BACKEND, "proxy"),  # the proxy's own 800 ns
        _hop("server", 1000, BACKEND),
    )
    rev_server = (_hop("server", 2000, BACKEND.reversed()), _hop("proxy", 2100, BACKEND.reversed()))
    rev_client = (
        _hop("proxy", 2400, INNER.reversed(), "proxy"),  # 300 ns inside the proxy
        _hop("client", 2500, CLIENT.reversed()),
    )
    rev = rev_server + (rev_client if reverse_legs == 2 else ())
    req = Request(2, "tcp", str(CLIENT.src), str(CLIENT.dst), str(BACKEND.dst), "", 0)
    st = Stitch(1, 2, "proxy", "high", ("same request GET /",), 1100)
    return Path(req, fwd, rev, Latency(2500, None, 1000, (), 1100), stitches=(st,))


def test_legs_are_cut_at_the_proxy_hops_with_their_offsets() -> None:
    client_leg, server_leg = leg_paths(stitched_path())
    assert [h.point for h in client_leg.path.forward] == ["client", "proxy"]
    assert [h.point for h in client_leg.path.reverse] == ["proxy", "client"]
    assert (client_leg.forward_offset, client_leg.reverse_offset) == (0, 2)
    assert [h.t_ns for h in server_leg.path.forward] == [900, 1000]
    assert [h.t_ns for h in server_leg.path.reverse] == [2000, 2100]
    assert (server_leg.forward_offset, server_leg.reverse_offset) == (2, 0)
    # Within its own leg the proxy's first packet is an ordinary first hop.
    for leg in (client_leg, server_leg):
        assert all(h.kind == "packet" for h in (*leg.path.forward, *leg.path.reverse))
        assert leg.path.stitches == ()


def test_a_client_leg_without_response_gets_an_empty_reverse() -> None:
    client_leg, server_leg = leg_paths(stitched_path(reverse_legs=1))
    assert client_leg.path.reverse == ()
    assert len(server_leg.path.reverse) == 2


def test_an_unstitched_path_is_its_own_leg() -> None:
    p = replace(stitched_path(), stitches=())
    (only,) = leg_paths(p)
    assert only.path is p and (only.forward_offset, only.reverse_offset) == (0, 0)
