"""Fixtures for the CLI tests."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest


@pytest.fixture
def sigint_interrupts() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in this process for the test, as Ctrl-C does in a terminal.

    A process started in the background by a non-interactive shell inherits SIGINT ignored, and
    Python then installs no handler of its own: a test that sends itself SIGINT would wait in
    vain. The handler is put back as it was afterwards.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
