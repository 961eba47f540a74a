"""`lab down` after the process running `lab run` was SIGKILLed midway leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tracer.lab import lab
from tracer.lab.runner import SubprocessRunner
from tracer.lab.topology import lab_namespaces

pytestmark = pytest.mark.netns


def lab_processes() -> list[str]:
    """Command lines of any tcpdump, lab server or nginx still running."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "tracer.lab.httpd" in cmd or "tracer.lab.dns" in cmd or "pathtrace-lab" in cmd:
            found.append(cmd)
        elif cmd.startswith("tcpdump") and "pt-killed" in cmd:
            found.append(cmd)
    return found


def test_kill_midway_then_down(netns_ok: None, tmp_path: Path) -> None:
    if lab.status()["status"] != "down":
        pytest.skip("a lab is already present; `pathtrace lab down` first")
    try:
        lab.up()
        out = tmp_path / "pt-killed"
        p = subprocess.Popen(
            [sys.executable, "-c", "from tracer.cli import main; main()", "lab", "run", "drop", "--out", str(out), "--no-analyze"],
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        assert p.stderr is not None
        for line in p.stderr:  # the request starts once every tcpdump listens
            if "request from" in line:
                break
        time.sleep(0.5)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert any("tcpdump" in c for c in lab_processes_all())
    finally:
        lab.down()
    assert lab_namespaces(SubprocessRunner()) == []
    assert lab_processes() == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert " pt-" not in links
    # No rule of ours in the host namespace.
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert "KUBE-" not in saved and "10.244.2.3" not in saved


def lab_processes_all() -> list[str]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                out.append(
                    (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            except OSError:
                pass
    return [c for c in out if "pt-killed" in c]
