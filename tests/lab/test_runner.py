"""Process liveness as the lab and its API check it."""

from __future__ import annotations

import os
import subprocess
import time

from tracer.lab.runner import process_alive


def test_running_exited_and_zombie_processes() -> None:
    assert process_alive(os.getpid())
    assert not process_alive(0) and not process_alive(-1)  # process groups, never one process
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert process_alive(child.pid)
        child.kill()
        # Not reaped yet: the kernel keeps a zombie, which is not a running process.
        deadline = time.monotonic() + 5
        while process_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not process_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not process_alive(child.pid)
