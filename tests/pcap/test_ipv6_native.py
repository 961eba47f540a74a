"""IPv6 through the compiled reader: the same columns and address table as the reference
decoder, on many addresses (the kernel leaves IPv6 addresses as offsets that the reader
interns in one hash pass)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.pcap.conftest import BUILT
from tracer.pcap import fast
from tracer.pcap.reader import read_frames
from tracer.testing.synth import bulk_dnat_pcaps

pytestmark = pytest.mark.skipif(BUILT is None, reason="tracer.pcap._native is not built")


def _read(
    path: Path, native: bool
) -> tuple[dict[str, np.ndarray], list[str], dict[int, tuple[str, ...]]]:
    saved = fast.native
    fast.native = BUILT if native else None
    try:
        f = read_frames(path)
    finally:
        fast.native = saved
    cols = {k: np.asarray(v) for k, v in f.columns.items()}
    return cols, list(f.addresses), dict(enumerate(f.encaps))


@pytest.mark.parametrize("ipv6", [True, False])
def test_compiled_reader_equals_the_reference_on_a_bulk_run(tmp_path: Path, ipv6: bool) -> None:
    _, files = bulk_dnat_pcaps(tmp_path, 1500, any_capture=True, ipv6=ipv6)
    for name, path in files.items():
        got, got_addr, got_enc = _read(path, True)
        want, want_addr, want_enc = _read(path, False)
        assert int(got["family"][0]) == (6 if ipv6 else 4)
        # Address ids may be numbered differently: compare the addresses they name.
        for side in ("src", "dst"):
            assert [got_addr[i] for i in got[side]] == [want_addr[i] for i in want[side]], name
        assert [got_enc[int(e)] for e in got["encap"]] == [want_enc[int(e)] for e in want["encap"]]
        for k in want:
            if k not in ("src", "dst", "encap"):
                assert np.array_equal(got[k], want[k]), (name, k)
        if ipv6:
            assert len(set(got_addr)) == len(got_addr) >= 1500  # the C table grew
