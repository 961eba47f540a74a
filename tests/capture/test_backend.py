"""Running a command on this machine, where an external client is."""

from __future__ import annotations

from pathlib import Path

from tracer.capture.backend import run_here


def test_request_here_reports_a_missing_command_and_a_timeout(tmp_path: Path) -> None:
    code, _, _, msg = run_here([str(tmp_path / "no-such-program"), "x"], 5.0)
    assert code is None and msg.endswith("no-such-program: command not found")
    code, out, _, msg = run_here(["sh", "-c", "echo started; exec sleep 30"], 0.5)
    assert code is None and msg == "timed out after 0.5s" and out == b"started\n"
