"""Giving freed heap memory back never disturbs memory still in use."""

from __future__ import annotations

import numpy as np

from tracer.memory import give_back


def test_give_back_keeps_live_arrays_intact() -> None:
    live = np.arange(1_000_000, dtype=np.int64)
    freed = [np.ones(2_000_000, dtype=np.int64) for _ in range(4)]
    del freed
    give_back()
    assert int(live.sum()) == 999_999 * 1_000_000 // 2
