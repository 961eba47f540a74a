"""A real browser for the HTML report's tests: Debian's `chromium`, headless.

`dump_dom` returns the DOM after the page's scripts ran; `screenshot` writes a PNG of a fixed
size. Root needs --no-sandbox (CI runs as root); the profile lives in a temporary directory
so that nothing is left behind. Every network request is refused: the report must not need one.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome")


def find() -> str | None:
    return next((p for p in map(shutil.which, NAMES) if p), None)


def _run(args: list[str], timeout: float = 90) -> str:
    exe = find()
    if exe is None:
        pytest.skip("chromium is not installed (scripts/setup --dev installs it)")
    with tempfile.TemporaryDirectory(prefix="pathtrace-chromium-") as profile:
        argv = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--disable-extensions",
            "--disable-background-networking",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={profile}",
            *args,
        ]
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")[-2000:]
    return proc.stdout.decode("utf-8", "replace")


def dump_dom(page: Path, fragment: str = "") -> str:
    """The page's DOM as serialised HTML once its scripts ran."""
    return _run(["--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri() + fragment])


def screenshot(page: Path, out: Path, width: int, height: int) -> None:
    _run(
        [
            f"--window-size={width},{height}",
            "--virtual-time-budget=5000",
            f"--screenshot={out}",
            page.resolve().as_uri(),
        ]
    )


def print_pdf(page: Path, out: Path) -> None:
    """Print the page as the browser's print dialog would (A4/Letter, print styles)."""
    _run(
        [
            "--virtual-time-budget=5000",
            "--no-pdf-header-footer",
            f"--print-to-pdf={out}",
            page.resolve().as_uri(),
        ]
    )
