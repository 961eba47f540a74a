"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Public third-party captures kept beside the repository (never copied into it).
REALPCAPS = Path(os.environ.get("PATHTRACE_REALPCAPS") or REPO.parent / "shared" / "realpcaps")


@pytest.fixture
def realpcaps() -> Path:
    if not REALPCAPS.is_dir():
        pytest.skip(
            f"{REALPCAPS} is not present beside the repository (the public captures these tests "
            "read; set PATHTRACE_REALPCAPS to their directory, see README.md)"
        )
    return REALPCAPS
