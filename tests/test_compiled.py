"""Finding the compiled kernels, and turning them off."""

from __future__ import annotations

import pytest

from tracer import compiled


def test_a_module_that_is_not_built_loads_as_none() -> None:
    assert compiled.load("tracer._no_such_kernels") is None


def test_pathtrace_native_0_turns_the_kernels_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(compiled.ENV, "0")
    assert compiled.load("tracer.compiled") is None  # an importable module, refused on request
    monkeypatch.setenv(compiled.ENV, "1")
    assert compiled.load("tracer.compiled") is compiled
