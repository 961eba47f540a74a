"""Fixtures for the lab's namespace tests: skip with a reason when the machine cannot run them."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest


def netns_unavailable() -> str | None:
    """Why network-namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (creates network namespaces)"
    name = f"pt-probe-{uuid.uuid4().hex[:6]}"
    p = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if p.returncode != 0:
        return f"`ip netns add` fails here: {p.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


@pytest.fixture(scope="session")
def netns_ok() -> None:
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
