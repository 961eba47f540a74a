"""Whole files: many frames across batches and record chains, and fuzzing of every decoder."""

from __future__ import annotations

import random
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pcap import craft as c
from tests.pcap.helpers import as_rows, read_both, write
from tracer.errors import CaptureFormatError
from tracer.pcap import chains, reader
from tracer.pcap.columns import OPT_TS, payload_hash
from tracer.pcap.container import index_capture

# Every test here runs against the compiled kernels and the numpy path (see conftest.py).
pytestmark = pytest.mark.usefixtures("kernel")


def mixed_frames(n: int, seed: int) -> list[tuple[bytes, dict[str, int]]]:
    """Frames of many layouts with the values each was built with."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        payload = bytes([i & 0xFF]) * rng.choice((0, 1, 63, 64, 65, 700, 1448))
        seq = rng.getrandbits(32)
        kind = i % 6
        if kind == 0:
            l4 = c.tcp(payload, seq=seq, options=c.opt_ts(i, i + 1))
        elif kind == 1:
            l4 = c.tcp(payload, seq=seq, flags=0x02, options=c.opt_syn(1400, i, 0))
        elif kind == 2:
            l4 = c.tcp(payload, seq=seq)
        elif kind == 3:
            l4 = c.udp(payload, 1000 + i % 50, 53)
        elif kind == 4:
            l4 = c.icmp_echo(i & 0xFFFF, seq & 0xFFFF, payload)
        else:
            l4 = c.tcp(payload, seq=seq, options=b"\x01\x01\x05\x0a" + b"\0" * 8)  # SACK: slow path
        proto = (6, 6, 6, 17, 1, 6)[kind]
        ip = c.ipv4(l4, proto, f"10.0.{i % 7}.1", "10.1.0.2", ip_id=i & 0xFFFF)
        if i % 11 == 0:
            ip = c.ipv4(c.udp(c.vxlan(c.eth(ip)), 1, 8472), 17, "192.168.0.1", "192.168.0.2")
        vlans = [(0x8100, 5)] if i % 13 == 0 else []
        out.append(
            (c.eth(ip, vlans=vlans), {"payload": len(payload), "ip_id": i & 0xFFFF, "proto": proto})
        )
    return out


def test_many_frames_across_batches_and_chains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "BATCH", 257)  # many batch boundaries, in the middle of layouts
    monkeypatch.setattr(chains, "_CHAIN_SPACING", 4096)  # many record chains
    made = mixed_frames(2500, 1)
    recs = [c.Rec(f, 1_700_000_000_000_000_000 + i * 1000) for i, (f, _) in enumerate(made)]
    blob = c.pcap(recs)
    frames = read_both(write(tmp_path, blob))
    rows = as_rows(frames)
    assert len(rows) == len(made)
    assert [r["ip_id"] for r in rows] == [m["ip_id"] for _, m in made]
    assert [r["payload_len"] for r in rows] == [m["payload"] for _, m in made]
    assert [r["proto"] for r in rows] == [m["proto"] for _, m in made]
    assert [r["t_ns"] for r in rows] == [r.t_ns for r in recs]
    ts = [r for i, r in enumerate(rows) if i % 6 == 0]
    assert all(r["opts"] & OPT_TS and r["tsval"] == i * 6 for i, r in enumerate(ts))
    for r in rows[:50]:
        assert r["phash"] == payload_hash(blob[r["payload_off"] : r["payload_off"] + r["pcap_len"]])


def _expected_offsets(recs: list[c.Rec], header: int, per_record: int) -> list[int]:
    offsets, pos = [], header
    for r in recs:
        offsets.append(pos + per_record)
        pos += per_record + len(r.data)
    return offsets


def test_record_chains_survive_fake_headers_and_a_clock_jump(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chains, "_CHAIN_SPACING", 2048)
    # ts_sec crosses a 65536-second boundary halfway (the chains' literal changes), and payloads
    # are full of byte patterns that look like record headers.
    base = (0x6554 << 16) - 800
    fake = struct.pack("<IIII", base, 5, 60, 60) * 4
    recs = [
        c.Rec(c.eth(c.ipv4(c.udp(fake * (i % 5)), 17)), (base + i) * 1_000_000_000)
        for i in range(1600)
    ]
    blob = c.pcap(recs)
    index = index_capture(blob, "mem")
    assert index.data_off.tolist() == _expected_offsets(recs, 24, 16)
    assert index.caplen.tolist() == [len(r.data) for r in recs]


def test_pcapng_block_chains_with_blocks_between(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chains, "_CHAIN_SPACING", 2048)
    recs = []
    parts = [c.shb(), c.idb(1, name="eth0")]
    for i in range(3000):
        data = c.eth(c.ipv4(c.tcp(b"\x06\x00\x00\x00" * (i % 40), seq=i), 6))
        parts.append(c.epb(data, 0, i))
        recs.append(i)
        if i == 1500:
            parts += [
                c.block(5, struct.pack("<IIIHH", 0, 0, 0, 0, 0)),
                c.shb(">"),
                c.idb(1, ">", name="eth1"),
            ]
        if i > 1500:
            parts[-1] = c.epb(data, 0, i, ">")
    frames = read_both(write(tmp_path, b"".join(parts), ".pcapng"))
    rows = as_rows(frames)
    assert [r["seq"] for r in rows] == recs
    assert [r["iface"] for r in rows] == [0] * 1501 + [1] * 1499


def test_absent_sentinels_on_non_ip_rows(tmp_path: Path) -> None:
    frames = read_both(write(tmp_path, c.pcap([c.eth(b"\0" * 46, 0x0806)])))
    row = {name: col[0].item() for name, col in frames.columns.items()}
    assert (row["family"], row["src"], row["sport"], row["ip_id"], row["payload_off"]) == (
        0,
        -1,
        -1,
        -1,
        -1,
    )


# --- fuzzing -------------------------------------------------------------------------------

LINKTYPES = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147]
_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read_blob(blob: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.pcap"
        path.write_bytes(blob)
        try:
            read_both(path)
        except CaptureFormatError:
            pass


@_FUZZ
@given(st.sampled_from(LINKTYPES), st.lists(st.binary(max_size=200), max_size=8))
def test_fuzz_random_frame_bytes(linktype: int, datas: list[bytes]) -> None:
    _read_blob(c.pcap(datas, linktype))


def _seed_frames() -> list[tuple[int, bytes]]:
    inner = c.eth(c.ipv4(c.tcp(b"payload!", options=c.opt_ts(1, 2)), 6))
    return [
        (1, inner),
        (1, c.eth(c.ipv4(c.tcp(flags=2, options=c.opt_syn(1460, 1, 0)), 6))),
        (1, c.eth(c.ipv4(c.udp(c.vxlan(inner), 1, 4789), 17), vlans=[(0x88A8, 1), (0x8100, 2)])),
        (
            1,
            c.eth(c.ipv4(c.udp(c.geneve(inner, options=b"\x01\x02\x80\x01\0\0\0\0"), 1, 6081), 17)),
        ),
        (
            1,
            c.eth(
                c.ipv4(c.gre(c.mpls(c.ipv4(c.icmp_echo(1, 2, b"x"), 1), [1, 2]), 0x8847, key=3), 47)
            ),
        ),
        (
            1,
            c.eth(
                c.ipv6(
                    c.ext(43) + c.ext(44, 0)[:0] + c.ext(60) + c.frag6(6, 0, True) + c.tcp(b"y"), 0
                ),
                0x86DD,
            ),
        ),
        (276, c.sll2(c.ipv4(c.icmp_echo(3, 4, b"z"), 1), 5, 4)),
        (113, c.sll(c.ipv6(c.icmp_echo(3, 4, b"z", kind=128), 58), 0, 0x86DD)),
        (0, (2).to_bytes(4, "little") + c.ipv4(c.ipv4(c.udp(b"q"), 17), 4)),
    ]


SEEDS = _seed_frames()


@_FUZZ
@given(
    st.sampled_from(range(len(SEEDS))),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)), max_size=6),
    st.integers(0, 400),
)
def test_fuzz_mutated_real_frames(seed: int, flips: list[tuple[int, int]], cut: int) -> None:
    linktype, data = SEEDS[seed]
    mutated = bytearray(data)
    for pos, bit in flips:
        mutated[pos % len(mutated)] ^= 1 << bit
    _read_blob(c.pcap([bytes(mutated[: max(0, len(mutated) - cut)]), bytes(mutated)], linktype))


@_FUZZ
@given(st.binary(max_size=300), st.sampled_from(["pcap-le", "pcap-be", "pcapng", "none"]))
def test_fuzz_random_files(body: bytes, head: str) -> None:
    prefix = {
        "pcap-le": c.pcap([]),
        "pcap-be": c.pcap([], order=">"),
        "pcapng": c.shb() + c.idb(1),
        "none": b"",
    }[head]
    _read_blob(prefix + body)


@_FUZZ
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=12), st.integers(0, 3))
def test_fuzz_pcapng_field_values(values: list[int], which: int) -> None:
    # Overwrite header fields of a valid file with arbitrary 32-bit values (lengths, ids, types).
    blob = bytearray(
        c.shb() + c.idb(1, tsresol=9) + c.epb(c.eth(c.ipv4(c.udp(b"a"), 17)), 0, 7, comment="hi")
    )
    for k, v in enumerate(values):
        pos = 28 + 4 * ((k * 7 + which) % ((len(blob) - 28) // 4))
        struct.pack_into("<I", blob, pos, v)
    _read_blob(bytes(blob))


def test_columns_have_the_contract_dtypes(tmp_path: Path) -> None:
    from tracer.pcap.columns import COLUMNS

    frames = read_both(write(tmp_path, c.pcap([m for m, _ in mixed_frames(30, 2)])))
    for name, dtype, _ in COLUMNS:
        assert frames.columns[name].dtype == np.dtype(dtype)
        assert frames.columns[name].shape == (30,)


@pytest.mark.parametrize("linktype", [1, 113, 276, 101])
def test_fast_path_writes_every_column_the_reader_leaves_to_it(linktype: int) -> None:
    # The reader does not pre-fill columns: a frame the fast path takes must get every one.
    from tracer.pcap import fast

    ip = c.ipv4(c.tcp(b"x", options=c.opt_ts(1, 2)), 6)
    frame = {1: c.eth(ip), 113: c.sll(ip, 0), 276: c.sll2(ip, 2, 0), 101: ip}[linktype]
    blob = np.frombuffer(frame, dtype=np.uint8)
    group = fast.decode_group(
        blob, np.array([0]), np.array([len(frame)]), linktype, np.zeros(1, np.int8)
    )
    assert group.rows.tolist() == [0]
    wanted = set(reader._ROW_COLUMNS) - {"iface", "direction"}
    if linktype == 276:
        wanted |= {"iface", "direction"}
    if linktype == 113:
        wanted |= {"direction"}
    assert set(group.columns) == wanted


@pytest.mark.parametrize("rows", [1, 3, 7, 1000])
def test_pieces_of_a_file_are_its_frames_in_order(tmp_path: Path, rows: int) -> None:
    blob = c.shb() + c.idb(1, name="eth0", tsresol=9)
    for k in range(10):
        data = c.eth(c.ipv4(c.udp(b"x" * k, 1000 + k, 53), 17, src=f"10.0.0.{k + 1}"))
        blob += c.epb(data, 0, 10**18 + k, comment=f"frame {k}" if k % 3 == 0 else None)
    blob += b"\x06\x00\x00\x00"  # a cut block at the end: one warning, in the first piece
    path = tmp_path / "c.pcapng"
    path.write_bytes(blob)
    whole = reader.read_frames(path)
    pieces = list(reader.iter_frames(path, rows=rows))
    assert [len(p) for p in pieces] == [min(rows, 10 - s) for s in range(0, 10, rows)]
    assert pieces[0].warnings == whole.warnings and all(not p.warnings for p in pieces[1:])
    assert [r for p in pieces for r in as_rows(p)] == as_rows(whole)
    comments = {}
    for start, p in zip(range(0, 10, rows), pieces, strict=True):
        assert p.interfaces == whole.interfaces
        comments.update({start + k: v for k, v in p.comments.items()})
    assert comments == whole.comments
