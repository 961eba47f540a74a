"""Finding pathtrace's compiled kernels (tracer/pcap/_native.c, tracer/correlate/_native.c).

Each kernel has a numpy twin that gives the same results; the twins run when the extension was
not built (no C compiler at install time) or when PATHTRACE_NATIVE=0 asks for them (to compare
the two on a capture, or to measure the difference).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

ENV = "PATHTRACE_NATIVE"


def load(module: str) -> ModuleType | None:
    """The compiled module `module`, or None: not built, or turned off with PATHTRACE_NATIVE=0."""
    if os.environ.get(ENV, "1").strip() == "0":
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
