"""The run directory's private, atomic writes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from tracer.model import CapturePoint
from tracer.rundir import Manifest, load_manifest, write_json_private, write_manifest, write_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_write_is_owner_only_even_over_a_readable_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "facts.txt"
    target.parent.mkdir()
    target.write_text("old")
    os.chmod(target, 0o644)
    leftover = target.with_name(".facts.txt.tmp")  # as a crash mid-write leaves it
    leftover.write_text("half")
    os.chmod(leftover, 0o666)
    write_private(target, b"new\x00bytes")
    assert target.read_bytes() == b"new\x00bytes"
    assert _mode(target) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["facts.txt"]


def test_json_and_manifest_round_trip(tmp_path: Path) -> None:
    path = write_json_private(tmp_path / "a" / "x.json", {"k": [1, 2]})
    assert json.loads(path.read_text()) == {"k": [1, 2]} and _mode(path) == 0o600
    m = Manifest(source="import", created="now", points=(CapturePoint("c", "client", "c.pcap"),))
    written = write_manifest(tmp_path / "run", m)
    assert _mode(written) == 0o600
    assert load_manifest(tmp_path / "run").points == m.points
