"""The outcome rules, on hand-made packet sequences and as properties of the columnar functions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.correlate import outcome as oc

S, SA, A, PA, FA, R, RA = 0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14
MS = 1_000_000

# (direction, flags, time ms); direction ">" forward (client to server), "<" reverse.
Packets = list[tuple[str, int, int]]


def _one(
    proto: int,
    packets: Packets,
    *,
    icmp_at: int | None = None,
    now: int = 10_000,
    patience: int = oc.DEFAULT_PATIENCE_NS,
) -> tuple[str, int]:
    conn = np.zeros(len(packets), dtype=np.int64)
    fwd = np.array([d == ">" for d, _, _ in packets], dtype=bool)
    flags = np.array([f for _, f, _ in packets], dtype=np.int64)
    t = np.array([ms * MS for _, _, ms in packets], dtype=np.int64)
    err_c = np.zeros(1 if icmp_at is not None else 0, dtype=np.int64)
    err_t = np.array([icmp_at * MS] if icmp_at is not None else [], dtype=np.int64)
    facts = oc.packet_facts(
        1, conn, fwd, np.full(len(packets), proto), flags, t, error_conn=err_c, error_ns=err_t
    )
    codes = oc.classify(facts, now * MS, patience_ns=patience)
    return str(oc.outcome_names(codes)[0]), int(oc.answer_kind(codes, facts)[0])


HANDSHAKE: Packets = [(">", S, 0), ("<", SA, 1), (">", A, 2)]
HTTP: Packets = [(">", PA, 3), ("<", PA, 50), (">", A, 51)]


@pytest.mark.parametrize(
    ("packets", "expected"),
    [
        # A whole HTTP exchange closed by FINs both ways, either side first.
        (HANDSHAKE + HTTP + [(">", FA, 60), ("<", FA, 61), (">", A, 62)], "ok"),
        (HANDSHAKE + HTTP + [("<", FA, 60), (">", FA, 61), ("<", A, 62)], "ok"),
        # The client aborts with a RST: it ended the connection, nobody refused it.
        (HANDSHAKE + HTTP + [(">", RA, 60)], "ok"),
        # The server's stack refuses the SYN (nothing listens on the port).
        ([(">", S, 0), ("<", RA, 1)], "reset"),
        # The server resets an established connection mid-request.
        (HANDSHAKE + [(">", PA, 3), ("<", RA, 4)], "reset"),
        # A RST after both FINs (a late segment to a closed socket) is no reset.
        (HANDSHAKE + HTTP + [(">", FA, 60), ("<", FA, 61), ("<", R, 70)], "ok"),
        # SYN and its retransmissions, never answered.
        ([(">", S, 0), (">", S, 1000), (">", S, 3000)], "unanswered"),
        # Answered but never closed: the capture ended inside it.
        (HANDSHAKE + HTTP, "incomplete"),
        # The capture began inside it: no SYN.
        (HTTP + [(">", FA, 60), ("<", FA, 61)], "incomplete"),
    ],
)
def test_tcp_outcomes(packets: Packets, expected: str) -> None:
    assert _one(6, packets)[0] == expected


def test_reject_is_rejected_and_answered_by_the_icmp_error() -> None:
    assert _one(6, [(">", S, 0)], icmp_at=1) == ("rejected", oc.ANSWER_ICMP)


def test_icmp_error_then_a_real_answer_is_not_a_rejection() -> None:
    # A host-unreachable for the first SYN, then the retransmission gets through.
    packets = [(">", S, 0), (">", S, 1000), ("<", SA, 1001), (">", FA, 1002), ("<", FA, 1003)]
    assert _one(6, packets, icmp_at=500) == ("ok", oc.ANSWER_REPLY)


def test_reset_names_the_rst_and_unanswered_names_nobody() -> None:
    assert _one(6, [(">", S, 0), ("<", RA, 1)])[1] == oc.ANSWER_RST
    assert _one(6, [(">", S, 0)])[1] == oc.ANSWER_NONE


def test_a_young_request_is_still_waiting() -> None:
    # 300 ms before the end of the capture: may still be answered.
    assert _one(6, [(">", S, 0)], now=300)[0] == "incomplete"
    assert _one(6, [(">", S, 0)], now=300, patience=100 * MS)[0] == "unanswered"


def test_udp_and_icmp_outcomes() -> None:
    assert _one(17, [(">", 0, 0), ("<", 0, 2)])[0] == "ok"
    assert _one(17, [(">", 0, 0), (">", 0, 5000)])[0] == "unanswered"
    assert _one(17, [(">", 0, 0)], icmp_at=1)[0] == "rejected"
    # Only the reply was captured: the exchange began before the capture.
    assert _one(17, [("<", 0, 0)])[0] == "incomplete"
    assert _one(1, [(">", 0, 0), ("<", 0, 1)])[0] == "ok"


def test_names_codes_and_predicates() -> None:
    assert oc.OUTCOMES[oc.RESET] == "reset"
    assert oc.outcome_code("unanswered") == oc.UNANSWERED
    with pytest.raises(ValueError, match="known: ok, reset"):
        oc.outcome_code("broken")
    codes = np.array([oc.OK, oc.RESET, oc.INCOMPLETE], dtype=np.int8)
    assert oc.failed(codes).tolist() == [False, True, True]
    assert oc.http_error(np.array([200, 500, 503, 404, -1])).tolist() == [
        False,
        True,
        True,
        False,
        False,
    ]
    assert oc.dns_error(np.array([0, 3, -1])).tolist() == [False, True, False]
    assert oc.slower(np.array([5, 500, -1]), 100).tolist() == [False, True, False]


# --------------------------------------------------------------------------- properties

_FLAGS = st.sampled_from([S, SA, A, PA, FA, R, RA])


@st.composite
def packet_sets(draw: st.DrawFn) -> tuple[int, list[tuple[int, bool, int, int, int]]]:
    n = draw(st.integers(1, 6))
    rows = draw(
        st.lists(
            st.tuples(
                st.integers(0, n - 1),
                st.booleans(),
                st.sampled_from([6, 17]),
                _FLAGS,
                st.integers(0, 5000),
            ),
            max_size=30,
        )
    )
    # One protocol per connection.
    proto = {c: p for c, _, p, _, _ in rows}
    return n, [(c, f, proto[c], fl if proto[c] == 6 else 0, t * MS) for c, f, _, fl, t in rows]


def _facts(n: int, rows: list[tuple[int, bool, int, int, int]]) -> oc.Facts:
    a = np.array(rows, dtype=np.int64).reshape(-1, 5)
    return oc.packet_facts(n, a[:, 0], a[:, 1].astype(bool), a[:, 2], a[:, 3], a[:, 4])


@given(packet_sets(), st.randoms())
@settings(max_examples=200, deadline=None)
def test_outcomes_do_not_depend_on_packet_order_or_on_other_connections(
    data: tuple[int, list[tuple[int, bool, int, int, int]]], rnd: object
) -> None:
    n, rows = data
    now = 6000 * MS
    together = oc.classify(_facts(n, rows), now)
    shuffled = list(rows)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert oc.classify(_facts(n, shuffled), now).tolist() == together.tolist()
    for c in range(n):
        alone = [(0, f, p, fl, t) for k, f, p, fl, t in rows if k == c]
        assert oc.classify(_facts(1, alone), now)[0] == together[c]


@given(packet_sets(), st.integers(0, 6000))
@settings(max_examples=200, deadline=None)
def test_ok_and_reset_seen_on_the_packets_so_far_are_final(
    data: tuple[int, list[tuple[int, bool, int, int, int]]], cut_ms: int
) -> None:
    # A live trigger asks on the packets seen so far: what it decides then must still hold on
    # the whole capture.
    n, rows = data
    cut = cut_ms * MS
    early = oc.classify(_facts(n, [r for r in rows if r[4] <= cut]), cut)
    final = oc.classify(_facts(n, rows), 6000 * MS)
    for c in range(n):
        if early[c] in (oc.OK, oc.RESET):
            assert final[c] == early[c]
