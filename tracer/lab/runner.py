"""The seam between the lab and the machine: run a command, or start one in the background.

`SubprocessRunner` is the real one; tests pass a fake that records argv. Nothing else in the lab
calls subprocess directly, so the lab's command plans can be checked without root.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from tracer.errors import LabError


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        check: bool = True,
        timeout: float = 30.0,
    ) -> Completed: ...

    def spawn(
        self, argv: Sequence[str], *, stdout: IO[bytes] | int, stderr: IO[bytes] | int
    ) -> subprocess.Popen[bytes]: ...


class SubprocessRunner:
    """Runs commands for real; a failing checked command raises LabError naming it."""

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        check: bool = True,
        timeout: float = 30.0,
    ) -> Completed:
        try:
            p = subprocess.run(
                list(argv),
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as e:
            raise LabError(f"{argv[0]}: not found") from e
        except subprocess.TimeoutExpired as e:
            raise LabError(f"`{' '.join(argv)}` did not finish within {timeout:g} s") from e
        done = Completed(tuple(argv), p.returncode, p.stdout, p.stderr)
        if check and p.returncode != 0:
            raise LabError(
                f"`{' '.join(argv)}` failed (exit {p.returncode}): {p.stderr.strip()[:500]}"
            )
        return done

    def spawn(
        self, argv: Sequence[str], *, stdout: IO[bytes] | int, stderr: IO[bytes] | int
    ) -> subprocess.Popen[bytes]:
        # A new session: a Ctrl-C on the terminal reaches only us, and we stop children in order.
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )


def process_alive(pid: int) -> bool:
    """Is `pid` a running process? A zombie (a child not yet reaped) is as good as gone."""
    if pid <= 0:
        return False  # 0 and -1 would signal a whole process group, not one process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, and running
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
