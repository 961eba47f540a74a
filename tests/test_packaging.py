"""Installing pathtrace: the build reads pyproject.toml without a warning, the licence is SPDX."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_build_reads_the_project_quietly_with_an_spdx_licence(tmp_path: Path) -> None:
    # Metadata only (no compile): the same isolated build backend `scripts/setup` uses.
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "-q"]
        + ["--report", str(report), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0 and "Could not find a version" in proc.stderr:
        pytest.skip(f"the build backend cannot be fetched here: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr and "deprecated" not in proc.stderr, proc.stderr
    (item,) = json.loads(report.read_text())["install"]
    assert item["metadata"]["license_expression"] == "Apache-2.0"


def test_setup_keeps_pip_quiet() -> None:
    setup = (REPO / "scripts" / "setup").read_text()
    assert 'PYTHONWARNINGS="ignore:Editable installation"' in setup
    assert "pip install -q -e" in setup
