"""Reading crafted captures in tests: both decoders, compared, and rows as plain dicts."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from tracer.pcap import read_frames
from tracer.pcap.columns import COLUMN_NAMES, Frames

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
