"""Golden files: compare rendered output with the reviewed file, or rewrite it on request.

One switch, read one way: PATHTRACE_REGEN_GOLDEN set to anything but "" or "0" rewrites the
files (then read the diff: the golden files are the reviewed output). A missing golden file is a
failure, never written silently, so a new case cannot pass before its output has been reviewed.
"""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden"


def regen_requested() -> bool:
    return os.environ.get("PATHTRACE_REGEN_GOLDEN", "") not in ("", "0")


def assert_matches_golden(path: Path, text: str) -> None:
    """`text` equals the golden file at `path` (rewritten instead when regeneration is asked)."""
    if regen_requested():
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} missing: rerun with PATHTRACE_REGEN_GOLDEN=1 and review it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, (
        f"{path.name} differs from {path}; regenerate if the change is intended"
    )
