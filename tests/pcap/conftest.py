"""The `kernel` fixture: a test module that uses it runs once with the compiled reader kernels
and once with the numpy path, so both are held to the reference decoder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tracer.pcap import fast

BUILT = fast.native


# Module-scoped so that hypothesis tests may use it (it is set once, not per example).
@pytest.fixture(scope="module", params=["native", "numpy"])
def kernel(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "native" and BUILT is None:
        pytest.skip("tracer.pcap._native is not built (python3 setup.py build_ext --inplace)")
    saved = fast.native
    fast.native = BUILT if request.param == "native" else None
    try:
        yield request.param
    finally:
        fast.native = saved
