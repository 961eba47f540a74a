"""The errors the CLI tells apart.

Every layer raises one of these (or lets a bug escape as anything else); only `tracer.cli`
turns them into a message and an exit code. Keep the set small: add a class only when the CLI
must treat it differently.
"""

from __future__ import annotations


class PathtraceError(Exception):
    """Something the user can act on: a bad file, a missing permission, a failed command."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(PathtraceError):
    """The command line itself is wrong (a spec that does not parse, options that clash)."""

    exit_code = 2


class CaptureFormatError(PathtraceError):
    """A capture file cannot be read (wrong magic, lying lengths, truncation before any frame)."""

    def __init__(
        self, path: str, message: str, *, offset: int | None = None, hint: str | None = None
    ) -> None:
        where = f"{path}" if offset is None else f"{path} at byte {offset}"
        super().__init__(f"{where}: {message}", hint=hint)
        self.path = path
        self.offset = offset


class InputError(PathtraceError):
    """A run directory, manifest, links file or rules file is missing or malformed."""


class NothingMatchedError(PathtraceError):
    """No request could be found (or none matched the user's selection)."""

    exit_code = 3


class MissingPrerequisiteError(PathtraceError):
    """The machine cannot do what was asked: not root, a missing tool, no network namespaces."""


class LabError(PathtraceError):
    """A lab operation failed (setup, a scenario, teardown)."""


class ClusterError(PathtraceError):
    """The Kubernetes API refused or failed a call."""
