"""Shared fixtures."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
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


def _lab_namespaces() -> set[str]:
    """The lab's network namespaces (`pt-` prefix) present now; empty where `ip` is missing."""
    try:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    except OSError:
        return set()
    return {line.split()[0] for line in out.splitlines() if line.startswith("pt-")}


@pytest.fixture(autouse=True, scope="module")
def no_lab_left_behind() -> Iterator[None]:
    """Every test module leaves the lab as it found it: a namespace left over fails the module.

    Without this, one module that forgets its teardown makes every later lab module skip with
    "a lab is already present", and the leak itself goes unseen. The leftover is removed (so later
    modules still run), and the module that left it is named.
    """
    before = _lab_namespaces()
    yield
    left = sorted(_lab_namespaces() - before)
    if left:
        from tracer.lab import lab

        lab.down()
        pytest.fail(f"this module left lab namespaces behind: {', '.join(left)}")
