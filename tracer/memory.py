"""Handing freed heap memory back to the kernel between the large stages of an analysis.

Reading and correlating millions of rows allocate and free arrays of tens of megabytes. Once
glibc's mmap threshold has grown past that size it serves them from the heap and keeps what is
freed, so the process's RSS stays at its high-water mark for the rest of the run unless the heap
is trimmed. `give_back` does that where the C library offers malloc_trim (glibc) and nothing
elsewhere. No other effect: it never frees anything still in use.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        # The process's own symbols include the C library's (no library search: that would
        # spawn a subprocess).
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def give_back() -> None:
    """Return the heap's free pages to the kernel (a no-op where malloc_trim is missing)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
