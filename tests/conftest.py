"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Public third-party captures kept beside the repository (never copied into it).
REALPCAPS = REPO.parent / "shared" / "realpcaps"


@pytest.fixture
def realpcaps() -> Path:
    if not REALPCAPS.is_dir():
        pytest.skip(f"{REALPCAPS} is not present beside the repository")
    return REALPCAPS
