"""Reading crafted captures in tests: both decoders, compared, and rows as plain dicts."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from tracer.pcap import read_frames
from tracer.pcap.columns import COLUMN_NAMES, Frames, empty_columns

_counter = itertools.count()


def as_rows(frames: Frames) -> list[dict[str, Any]]:
    """Every frame as a dict of Python values, ids replaced by what they stand for."""
    cols = {name: frames.columns[name].tolist() for name in COLUMN_NAMES}
    rows = []
    for i in range(len(frames)):
        row = {name: cols[name][i] for name in COLUMN_NAMES}
        row["encap"] = frames.encaps[row["encap"]]
        row["src"] = frames.addresses[row["src"]] if row["src"] >= 0 else None
        row["dst"] = frames.addresses[row["dst"]] if row["dst"] >= 0 else None
        rows.append(row)
    return rows


def write(tmp_path: Path, blob: bytes, suffix: str = ".pcap") -> Path:
    path = tmp_path / f"capture{next(_counter)}{suffix}"
    path.write_bytes(blob)
    return path


def read_both(path: Path) -> Frames:
    """Read with the vectorised path and with the reference decoder; they must agree exactly."""
    fast = read_frames(path)
    slow = read_frames(path, vectorise=False)
    assert as_rows(fast) == as_rows(slow)
    assert fast.warnings == slow.warnings
    for name in COLUMN_NAMES:
        assert fast.columns[name].dtype == np.dtype(slow.columns[name].dtype), name
    return fast


def read_rows(tmp_path: Path, blob: bytes, suffix: str = ".pcap") -> list[dict[str, Any]]:
    return as_rows(read_both(write(tmp_path, blob, suffix)))


def payload_frames(path: Path, payloads: list[tuple[int, bytes, int, int]]) -> Frames:
    """Frames whose rows point at payloads written into `path`, one row per (client port,
    payload, src id, dst id) of a TCP exchange between 10.244.1.7 (id 0) and 10.244.2.9:80."""
    blob = bytearray(b"\xee" * 100)  # bytes before the first payload, as headers would be
    cols = empty_columns(len(payloads))
    for i, (sport, data, s, d) in enumerate(payloads):
        cols["payload_off"][i] = len(blob)
        cols["pcap_len"][i] = len(data)
        cols["payload_len"][i] = len(data)
        cols["src"][i], cols["dst"][i] = s, d
        cols["sport"][i], cols["dport"][i] = (sport, 80) if s == 0 else (80, sport)
        cols["proto"][i] = 6
        blob += data + b"\xee" * 30
    path.write_bytes(bytes(blob))
    return Frames(str(path), (1,), cols, (), ("10.244.1.7", "10.244.2.9"))
