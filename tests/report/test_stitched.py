"""A stitched path's proxy hand-overs placed on its hops, on a hand-built two-leg request."""

from __future__ import annotations

from dataclasses import replace

from tests.correlate.test_legs import BACKEND, INNER, stitched_path
from tracer.report.stitched import handoffs


def test_handoff_places_the_stitch_on_both_proxy_hops() -> None:
    (h,) = handoffs(stitched_path())
    assert (h.forward_hop, h.reverse_hop) == (2, 2)
    assert (h.request_ns, h.response_ns) == (800, 300)
    assert h.client_tuple == INNER and h.server_tuple == BACKEND


def test_a_response_that_stopped_at_the_proxy_has_no_reverse_handoff() -> None:
    (h,) = handoffs(stitched_path(reverse_legs=1))
    assert h.forward_hop == 2 and h.reverse_hop is None and h.response_ns is None


def test_an_unstitched_path_has_no_handoffs() -> None:
    assert handoffs(replace(stitched_path(), stitches=())) == ()
