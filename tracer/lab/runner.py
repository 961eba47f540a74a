"""The seam between the lab and the machine: run a command, or start one in the background.

`SubprocessRunner` is the real one; tests pass a fake that records argv. Nothing else in the lab
calls subprocess directly, so the lab's command plans can be checked without root.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
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
