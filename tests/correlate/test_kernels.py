"""The compiled correlator kernels give exactly what their numpy references give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.correlate import Correlation, correlate, kernels
from tracer.correlate.kernels import KEY_COLUMNS, packed_order
from tracer.inputs import load_run
from tracer.testing.accuracy import Case, generate

PCAPS = Path(__file__).resolve().parents[2] / "pcaps"

native = kernels.native
needs_native = pytest.mark.skipif(native is None, reason="the compiled kernels are not built")

_BOUNDS = {"u1": (0, 255), "u4": (0, 2**32 - 1), "i4": (-1, 70000), "i2": (-1, 300)}


@st.composite
def key_columns(draw: st.DrawFn) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    n = draw(st.integers(0, 40))
    proto = np.array(draw(st.lists(st.sampled_from([1, 6, 17, 58, 0]), min_size=n, max_size=n)))
    cols = {}
    for name, dt in KEY_COLUMNS:
        lo, hi = _BOUNDS[dt]
        values = draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))
        cols[name] = np.array(values, dtype=dt)
    return proto.astype(np.uint8), cols


@needs_native
@given(key_columns(), st.booleans())
@settings(max_examples=200, deadline=None)
def test_packet_key_matches_reference(data: tuple, tcp_phash: bool) -> None:
    proto, cols = data
    fast = kernels.packet_key(proto, cols, tcp_phash=tcp_phash)
    ref = kernels.packet_key(proto, cols, tcp_phash=tcp_phash, use=None)
    assert fast.tolist() == ref.tolist()


def test_packet_key_ignores_addresses_and_ports() -> None:
    # The key is what NAT leaves alone: it is computed from no address or port column at all.
    assert not {"src", "dst", "sport", "dport", "ttl"} & {name for name, _ in KEY_COLUMNS}


@needs_native
@given(
    st.lists(st.tuples(st.integers(0, 9), st.integers(-(2**62), 2**62)), max_size=60),
)
@settings(max_examples=200, deadline=None)
def test_group_reductions_match_numpy(rows: list[tuple[int, int]]) -> None:
    g = np.array([r[0] for r in rows], dtype=np.int64)
    v = np.array([r[1] for r in rows], dtype=np.int64)
    for f in (kernels.group_min, kernels.group_max, kernels.group_or):
        assert f(g, v, 10).tolist() == f(g, v, 10, use=None).tolist()


@needs_native
def test_group_reduce_rejects_a_group_out_of_range() -> None:
    with pytest.raises(IndexError):
        kernels.group_min(np.array([0, 5]), np.array([1, 2]), 3)


@needs_native
@given(st.lists(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=3, max_size=3), max_size=30))
@settings(max_examples=100, deadline=None)
def test_mix_rows_matches_keys_mix(rows: list[list[int]]) -> None:
    if not rows:
        return
    cols = [np.array([r[c] for r in rows], dtype=np.int64) for c in range(3)]
    assert kernels.mix_rows(7, cols).tolist() == kernels.mix_rows(7, cols, use=None).tolist()


@given(st.lists(st.integers(0, 5), max_size=50))
def test_dense_numbers_in_key_order_or_first_seen(values: list[int]) -> None:
    for use in {kernels.native, None}:
        ids, k = kernels.dense(np.array(values, dtype=np.int64), use=use)
        distinct = sorted(set(values))
        assert k == len(distinct)
        assert ids.tolist() == [distinct.index(v) for v in values]
        ids, k = kernels.dense(np.array(values, dtype=np.int64), ordered=False, use=use)
        seen = list(dict.fromkeys(values))
        assert ids.tolist() == [seen.index(v) for v in values]


@st.composite
def sightings(draw: st.DrawFn) -> tuple:
    """Rows of a few points, each point's rows in time order, with few distinct keys."""
    n_points = draw(st.integers(1, 3))
    keys, pidx, t, iface, direction = [], [], [], [], []
    for p in range(n_points):
        n = draw(st.integers(0, 12))
        times = sorted(draw(st.lists(st.integers(0, 50_000_000), min_size=n, max_size=n)))
        for when in times:
            keys.append(draw(st.integers(0, 4)))
            pidx.append(p)
            t.append(when)
            iface.append(draw(st.integers(-1, 2)))
            direction.append(draw(st.integers(0, 2)))
    return (
        np.array(keys, dtype=np.uint64),
        np.array(pidx, dtype=np.int64),
        np.array(t, dtype=np.int64),
        np.array(iface, dtype=np.int32),
        np.array(direction, dtype=np.int8),
    )


@needs_native
@given(sightings())
@settings(max_examples=300, deadline=None)
def test_sends_match_numpy(rows: tuple) -> None:
    key, pidx, t, iface, direction = rows
    order, s_key = packed_order(key, with_sorted=True)
    fast = kernels.sends(order, s_key, pidx, t, iface, direction, 10_000_000)
    ref = kernels.sends(order, s_key, pidx, t, iface, direction, 10_000_000, use=None)
    for a, b in zip(fast, ref, strict=True):
        assert np.asarray(a).tolist() == np.asarray(b).tolist()


def test_sends_pairs_the_kth_send_at_each_point() -> None:
    # One key sent twice (a retransmission 200 ms later), seen at two points: the first sends
    # pair up, the second sends pair up, and the key is marked as sent more than once.
    key = np.array([9, 9, 9, 9], dtype=np.uint64)
    pidx = np.array([0, 0, 1, 1], dtype=np.int64)
    t = np.array([0, 200_000_000, 1_000, 200_001_000], dtype=np.int64)
    iface = np.zeros(4, dtype=np.int32)
    direction = np.zeros(4, dtype=np.int8)
    for use in {kernels.native, None}:
        order, s_key = packed_order(key, with_sorted=True)
        jid, n_j, amb, lone, rep = kernels.sends(
            order, s_key, pidx, t, iface, direction, 10_000_000, use=use
        )
        assert n_j == 2
        assert jid.tolist() == [0, 1, 0, 1]
        assert amb.tolist() == [True, True]
        assert not lone.any()
        assert rep.all()


@needs_native
@given(st.lists(st.integers(0, 2**64 - 1), max_size=80), st.integers(1, 100))
@settings(max_examples=200, deadline=None)
def test_dense_table_matches_the_sort(values: list[int], limit: int) -> None:
    keys = np.array(values, dtype=np.uint64)
    out = np.empty(keys.shape[0], dtype=np.int64)
    for ordered in (True, False):
        k = native.dense_few(keys, limit, ordered, out)
        ref, k_ref = kernels.dense(keys, ordered=ordered, use=None)
        if len(set(values)) > limit:
            assert k == -1  # too many distinct keys for the table: the caller sorts instead
        else:
            assert k == k_ref
            assert out.tolist() == ref.tolist()


@given(st.lists(st.integers(0, 6), max_size=60))
def test_group_order_is_a_stable_sort_by_group(groups: list[int]) -> None:
    g = np.array(groups, dtype=np.int64)
    expected = sorted(range(len(groups)), key=lambda i: (groups[i], i))
    for use in {kernels.native, None}:
        assert kernels.group_order(g, 7, use=use).tolist() == expected


def _same_correlation(a: Correlation, b: Correlation) -> None:
    ta, tb = a.table, b.table
    for name in ("pidx", "row", "tc", "jstart", "jforward", "jretrans", "cstart", "cstart_ns"):
        assert np.array_equal(getattr(ta, name), getattr(tb, name)), name
    assert np.array_equal(ta.cpoints, tb.cpoints)
    assert a.warnings == b.warnings
    assert a.clocks == b.clocks


@needs_native
@pytest.mark.parametrize(
    "case",
    [
        Case("offset and drift", 300, 60_000_000_000, 900_000_000, 40.0),
        Case("loss and reordering", 300, 60_000_000_000, 250_000_000, loss=0.05, jitter_ns=300_000),
        Case("retransmissions", 300, 30_000_000_000, -400_000_000, retransmit=True),
        Case("no TCP timestamps", 500, 1_000_000_000, 700_000_000, timestamps=False),
    ],
    ids=lambda c: c.name,
)
def test_correlation_is_the_same_without_the_compiled_kernels(
    monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    gen = generate(case, seed=3)
    fast = correlate(gen.pointframes)
    monkeypatch.setattr(kernels, "native", None)
    _same_correlation(fast, correlate(gen.pointframes))


@needs_native
@pytest.mark.parametrize("run", sorted(p.name for p in PCAPS.iterdir() if p.is_dir()))
def test_recorded_runs_correlate_the_same_without_the_compiled_kernels(
    monkeypatch: pytest.MonkeyPatch, run: str
) -> None:
    loaded = load_run(PCAPS / run)
    points = loaded.points
    fast = correlate(points)
    monkeypatch.setattr(kernels, "native", None)
    _same_correlation(fast, correlate(points))


@st.composite
def flow_columns(draw: st.DrawFn) -> tuple[dict[str, np.ndarray], np.ndarray]:
    n = draw(st.integers(0, 30))
    n_addr = draw(st.integers(1, 6))
    ints = st.integers(-1, 70000)

    def col(values: st.SearchStrategy[int], dtype: str) -> np.ndarray:
        return np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=dtype)

    cols = {
        "proto": col(st.sampled_from([1, 6, 17, 58]), "u1"),
        "src": col(st.integers(-1, n_addr - 1), "i4"),
        "dst": col(st.integers(-1, n_addr - 1), "i4"),
        "sport": col(ints, "i4"),
        "dport": col(ints, "i4"),
        "icmp_id": col(ints, "i4"),
    }
    lut = np.array(
        draw(st.lists(st.integers(0, 10**6), min_size=n_addr, max_size=n_addr)) + [-1], "i4"
    )
    return cols, lut


@needs_native
@given(flow_columns(), st.integers(0, 5))
@settings(max_examples=200, deadline=None)
def test_flow_keys_match_numpy(data: tuple, point: int) -> None:
    cols, lut = data
    ep, key = kernels.flow_keys(point, cols, lut)
    ep_ref, key_ref = kernels.flow_keys(point, cols, lut, use=None)
    assert ep.tolist() == ep_ref.tolist()
    assert key.tolist() == key_ref.tolist()


def test_both_directions_of_a_flow_share_its_key() -> None:
    cols = {
        "proto": np.array([6, 6, 6], "u1"),
        "src": np.array([0, 1, 0], "i4"),
        "dst": np.array([1, 0, 1], "i4"),
        "sport": np.array([40000, 80, 40001], "i4"),
        "dport": np.array([80, 40000, 80], "i4"),
        "icmp_id": np.array([-1, -1, -1], "i4"),
    }
    lut = np.array([7, 9, -1], "i4")
    for use in {kernels.native, None}:
        _, key = kernels.flow_keys(0, cols, lut, use=use)
        assert key[0] == key[1]  # the reply of the same flow
        assert key[2] != key[0]  # another source port: another flow


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(-1, 3)), max_size=40))
def test_group_single_is_the_one_value_or_minus_one(rows: list[tuple[int, int]]) -> None:
    g = np.array([r[0] for r in rows], dtype=np.int64)
    v = np.array([r[1] for r in rows], dtype=np.int64)
    expected = []
    for group in range(6):
        values = {b for a, b in rows if a == group and b >= 0}
        expected.append(values.pop() if len(values) == 1 else -1)
    for use in {kernels.native, None}:
        assert kernels.group_single(g, v, 6, use=use).tolist() == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 2**64 - 1), max_size=300),
    st.integers(0, 3),
)
def test_packed_order_is_a_stable_argsort(values: list[int], shape: int) -> None:
    k = np.array(values, dtype=np.uint64)
    if shape == 1:  # few distinct keys: many ties
        k = k % np.uint64(7)
    elif shape == 2:  # equal high bits, different low bits: the collision path
        k = (k & np.uint64(0xFF)) | np.uint64(0xABCD << 48)
    elif shape == 3:
        k = k >> np.uint64(40)  # small ids
    assert np.array_equal(packed_order(k), np.argsort(k, kind="stable"))
