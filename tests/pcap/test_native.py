"""The compiled kernels called directly: on any bytes, any offsets and any (lying) caplen they
never read past the buffer, and what they decode equals the reference decoder."""

from __future__ import annotations

import dataclasses
import random
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.pcap import craft as c
from tracer.errors import CaptureFormatError
from tracer.pcap import container, fast, pcapfile, reader
from tracer.pcap.columns import COLUMNS
from tracer.pcap.decode import decode_frame

native: Any = fast.native
pytestmark = pytest.mark.skipif(
    native is None,
    reason="tracer.pcap._native is not built (python3 setup.py build_ext --inplace)",
)

_DTYPES = {name: dtype for name, dtype, _ in COLUMNS}
# Every stack its own id, so that a wrong id shows: IPv4's 12, then IPv6's 12.
_ENCAP_IDS = bytes(range(24))
_STACKS = [
    (*head, family, l4)
    for family, l4s in (("ipv4", ("tcp", "udp", "icmp")), ("ipv6", ("tcp", "udp", "icmpv6")))
    for head in (("eth",), ("sll2",), ("sll",), ())
    for l4 in l4s
]


def _decode(buf: bytes, offs: list[int], caps: list[int], lts: list[int], dirs: list[int]) -> Any:
    n = len(offs)
    cols = {name: np.full(n, 99, _DTYPES[name]) for name in reader.NATIVE_COLUMNS}
    cols["direction"][:] = dirs
    cols["iface"][:] = -1
    src = np.full(n, -7, np.int64)
    dst = np.full(n, -7, np.int64)
    done = np.zeros(n, np.uint8)
    arrays = tuple(cols[name] for name in reader.NATIVE_COLUMNS) + (src, dst, done)
    handled = native.decode(
        buf,
        np.array(offs, np.int64),
        np.array(caps, np.int64),
        np.array(lts, np.int32),
        _ENCAP_IDS,
        arrays,
        0,
        n,
        False,
    )
    assert handled == int(done.sum())
    return cols, src, dst, done


def _check_against_reference(buf: bytes, offs: list[int], caps: list[int], lts: list[int]) -> int:
    dirs = [i % 3 for i in range(len(offs))]
    cols, src, dst, done = _decode(buf, offs, caps, lts, dirs)
    for i, (off, cap, lt) in enumerate(zip(offs, caps, lts, strict=True)):
        if off < 0 or cap < 0 or off + cap > len(buf):
            # The buffer ends before the record says the frame does: the reference decoder's.
            assert not done[i]
        if not done[i]:
            assert cols["family"][i] == 99 and src[i] == -7  # untouched
            continue
        row = decode_frame(buf, off, cap, lt, -1, dirs[i])
        for name in reader.NATIVE_COLUMNS:
            if name == "encap":
                assert _STACKS[cols[name][i]] == tuple(row.encap), i
            else:
                assert cols[name][i] == getattr(row, name), (i, name)
        for got, want in ((src[i], row.src), (dst[i], row.dst)):
            if len(want) == 16:  # IPv6: the offset of the address bytes, for the caller
                assert got <= -2 and buf[-2 - got : -2 - got + 16] == want
            else:
                assert got == int.from_bytes(want, "big")
    return int(done.sum())


def _frames(rng: random.Random) -> list[tuple[int, bytes]]:
    payload = bytes(rng.getrandbits(8) for _ in range(rng.choice((0, 1, 8, 63, 64, 65, 200))))
    opts = bytes(
        rng.choice((0, 1, 1, 2, 4, 8, 10, 3, 0xFF)) for _ in range(rng.choice((0, 4, 12, 40)))
    )
    ip_tcp = c.ipv4(
        c.tcp(payload, options=opts, seq=rng.getrandbits(32)), 6, ip_id=rng.getrandbits(16)
    )
    ip_udp = c.ipv4(c.udp(payload, rng.getrandbits(16), rng.choice((53, 4789, 8472, 6081))), 17)
    ip_icmp = c.ipv4(c.icmp_echo(1, 2, payload, kind=rng.choice((0, 8, 3, 11, 13))), 1)
    ip6_tcp = c.ipv6(c.tcp(payload, options=opts, seq=rng.getrandbits(32)), 6, hlim=63)
    ip6_udp = c.ipv6(c.udp(payload, rng.getrandbits(16), rng.choice((53, 4789, 6081))), 17)
    ip6_icmp = c.ipv6(
        c.icmp_echo(1, 2, payload, kind=rng.choice((128, 129, 135, 136, 143, 1, 3))), 58
    )
    ip6_ext = c.ipv6(c.ext(6) + c.tcp(payload), 0)  # a hop-by-hop header: the reference's
    ip = rng.choice((ip_tcp, ip_tcp, ip_udp, ip_icmp, ip6_tcp, ip6_tcp, ip6_udp, ip6_icmp, ip6_ext))
    et = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    return [
        (1, c.eth(ip, et)),
        (276, c.sll2(ip, rng.getrandbits(32), rng.randrange(8), et)),
        (113, c.sll(ip, rng.randrange(8), et)),
        (rng.choice((101, 228, 12, 14)), ip),
        (rng.choice((0, 105, 229)), ip),  # link types the kernel leaves alone
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 2**32),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 7)), max_size=8),
    st.integers(-80, 80),
    st.integers(0, 4),
)
def test_decode_equals_reference_on_mutated_frames_and_lying_caplens(
    seed: int, flips: list[tuple[int, int]], lie: int, which: int
) -> None:
    rng = random.Random(seed)
    lt, frame = _frames(rng)[which]
    mutated = bytearray(frame)
    for pos, bit in flips:
        mutated[pos % len(mutated)] ^= 1 << bit
    # The frame sits at the very end of the buffer: any read past its caplen that is not checked
    # would run off the buffer.
    pad = rng.randrange(0, 5)
    buf = bytes(rng.getrandbits(8) for _ in range(pad)) + bytes(mutated)
    cap = max(0, len(mutated) + lie)
    _check_against_reference(buf, [pad], [cap], [lt])
    # And the same frame cut short (a snaplen), not at the end of the buffer.
    _check_against_reference(buf + b"\xee" * 100, [pad], [min(cap, len(mutated))], [lt])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.lists(st.tuples(st.integers(-5, 320), st.integers(-5, 320))))
def test_decode_random_bytes_any_offsets(blob: bytes, spans: list[tuple[int, int]]) -> None:
    lts = [(1, 276, 113, 101)[i % 4] for i in range(len(spans))]
    _check_against_reference(
        blob, [o for o, _ in spans], [n for _, n in spans], lts
    )  # never crashes, never reads past `blob`


def test_common_layouts_are_all_taken() -> None:
    # The layouts a Linux host writes all day: the kernel must decode them, not defer them.
    rng = random.Random(5)
    buf = b""
    offs, caps, lts = [], [], []
    ip = c.ipv4(c.tcp(b"hello", options=c.opt_ts(7, 8)), 6)
    ip6 = c.ipv6(c.tcp(b"hello", options=c.opt_ts(7, 8)), 6)
    for lt, frame in (
        (1, c.eth(ip)),
        (276, c.sll2(ip, 3, 4)),
        (113, c.sll(ip, 0)),
        (101, ip),
        (1, c.eth(ip6, 0x86DD)),
        (276, c.sll2(ip6, 3, 4, 0x86DD)),
        (113, c.sll(ip6, 0, 0x86DD)),
        (101, ip6),
    ):
        offs.append(len(buf))
        caps.append(len(frame))
        lts.append(lt)
        buf += frame + bytes(rng.randrange(256) for _ in range(3))
    assert _check_against_reference(buf, offs, caps, lts) == 8


def _pcap_blob(rng: random.Random, order: str) -> bytes:
    recs = [
        c.Rec(bytes(rng.randrange(80)), rng.randrange(2**32 * 10**9))
        for _ in range(rng.randrange(6))
    ]
    blob = bytearray(c.pcap(recs, order=order))
    # Damage: an absurd caplen, a cut, or a stray byte.
    kind = rng.randrange(4)
    if kind == 0 and len(blob) > 40:
        struct.pack_into(order + "I", blob, rng.randrange(24, len(blob) - 4), 1 << 25)
    elif kind == 1:
        del blob[rng.randrange(24, len(blob) + 1) :]
    elif kind == 2:
        blob[rng.randrange(len(blob))] ^= 0xFF
    return bytes(blob)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from(["<", ">"]), st.booleans())
def test_pcap_walk_equals_the_python_walk(seed: int, order: str, nanos: bool) -> None:
    blob = _pcap_blob(random.Random(seed), order)
    if len(blob) < 24:
        return
    got = pcapfile.walk_native(blob, order, nanos)
    want = pcapfile.walk_numpy(blob, order, nanos)
    for a, b in zip(got[:4], want[:4], strict=True):
        assert a.tolist() == b.tolist()
    assert got[4:] == want[4:]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.just(-1), st.integers(0, 2**32 - 1), st.integers(2**32, 2**32 + 5)),
        max_size=60,
    ),
    st.randoms(use_true_random=False),
)
def test_intern_gives_the_sorted_ids_of_numpy(keys: list[int], rng: random.Random) -> None:
    src = np.array(keys, np.int64)
    dst = np.array(rng.sample(keys, len(keys)), np.int64)
    want = {"src": np.empty(len(keys), np.int32), "dst": np.empty(len(keys), np.int32)}
    unique = reader._intern_numpy(src, dst, want)  # type: ignore[arg-type]
    got_src = np.empty(len(keys), np.int32)
    got_dst = np.empty(len(keys), np.int32)
    texts, others, numbers = native.intern(src, dst, got_src, got_dst)
    assert got_src.tolist() == want["src"].tolist()
    assert got_dst.tolist() == want["dst"].tolist()
    v4 = [k for k in unique if k < 2**32]
    assert texts == [".".join(str(b) for b in k.to_bytes(4, "big")) for k in v4]
    assert np.frombuffer(numbers, dtype=np.uint32).tolist() == v4
    assert others == [k for k in unique if k >= 2**32]


def test_intern_many_distinct_keys_grows_its_table() -> None:
    rng = np.random.default_rng(3)
    src = rng.integers(0, 2**32, 50_000).astype(np.int64)
    dst = src[::-1].copy()
    ids_src = np.empty(len(src), np.int32)
    ids_dst = np.empty(len(src), np.int32)
    texts, others, _ = native.intern(src, dst, ids_src, ids_dst)
    unique = np.unique(src)
    assert len(texts) == len(unique) and others == []
    assert np.array_equal(ids_src, np.searchsorted(unique, src))
    assert np.array_equal(ids_dst, np.searchsorted(unique, dst))


def test_arrays_of_the_wrong_size_and_keys_out_of_range_are_refused() -> None:
    ids = np.zeros(1, np.int32)
    with pytest.raises(ValueError):
        native.intern(np.array([2**62], np.int64), np.array([1], np.int64), ids, ids.copy())
    with pytest.raises(ValueError):
        native.intern(
            np.zeros(3, np.int64),
            np.zeros(2, np.int64),
            np.zeros(3, np.int32),
            np.zeros(3, np.int32),
        )
    with pytest.raises(ValueError):
        native.pcap_walk(c.pcap([b"x"]), 24, True, False, False, *[np.zeros(2, np.int32)] * 4)


def _pcapng_blob(rng: random.Random) -> bytes:
    parts: list[bytes] = []
    for _ in range(rng.randrange(1, 3)):
        order = rng.choice("<>")
        parts += [c.shb(order), c.idb(1, order, 96, tsresol=rng.choice((6, 9)))]
        for i in range(rng.randrange(12)):
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(70)))
            kind = rng.randrange(5)
            if kind == 0:
                parts.append(c.spb(data, order))
            elif kind == 1:
                parts.append(c.pb(data, 0, i, order))
            elif kind == 2:
                parts.append(c.idb(276, order))  # a block the walk leaves to Python
            else:
                parts.append(c.epb(data, rng.randrange(3), i, order, comment="c" * (i % 3)))
    blob = bytearray(b"".join(parts))
    for _ in range(rng.randrange(3)):  # damage anywhere: a length, a type, a trailer
        blob[rng.randrange(len(blob))] = rng.randrange(256)
    if rng.random() < 0.3:
        del blob[rng.randrange(len(blob)) :]
    return bytes(blob)


def _index(blob: bytes, kernel: Any) -> Any:
    saved = fast.native
    fast.native = kernel
    try:
        return container.index_capture(blob, "f")
    except CaptureFormatError as e:
        return str(e)
    finally:
        fast.native = saved


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from(["pcap", "pcapng"]))
def test_index_equals_the_numpy_index_on_damaged_files(seed: int, kind: str) -> None:
    rng = random.Random(seed)
    blob = _pcapng_blob(rng) if kind == "pcapng" else _pcap_blob(rng, rng.choice("<>"))
    got, want = _index(blob, native), _index(blob, None)
    if isinstance(want, str):
        assert got == want
        return
    for f in dataclasses.fields(want):
        a, b = getattr(got, f.name), getattr(want, f.name)
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and a.tolist() == b.tolist(), f.name
        else:
            assert a == b, f.name


@pytest.mark.parametrize("total", [28, 29, 8999, 9000, 9001, 0xFFFF])
def test_ipv4_total_length_bounds_match_the_reference(total: int) -> None:
    # SUPER_LEN in C mirrors decode.SUPER_LEN: the frame on each side of it goes the same way.
    ip = bytearray(c.ipv4(c.udp(b"x" * 40), 17))
    struct.pack_into(">H", ip, 2, total)
    frame = c.eth(bytes(ip))
    handled = _check_against_reference(frame, [0], [len(frame)], [1])
    assert handled == (28 <= total <= 9000)


@pytest.mark.parametrize("caplen", [(1 << 24) - 1, 1 << 24, (1 << 24) + 1])
def test_pcap_walk_caplen_limit_matches_the_python_walk(caplen: int) -> None:
    # MAX_CAPLEN in C mirrors records.MAX_CAPLEN.
    blob = bytearray(c.pcap([b"a" * 20, b"b" * 20]))
    struct.pack_into("<I", blob, 24 + 16 + 20 + 8, caplen)
    got, want = _index(bytes(blob), native), _index(bytes(blob), None)
    assert got.data_off.tolist() == want.data_off.tolist()
    assert got.warnings == want.warnings and len(want.warnings) == 1
