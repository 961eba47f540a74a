"""Format detection by content."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rules.test_conntrack import NODEPORT
from tests.rules.test_ipvs import IPVSADM
from tracer.errors import InputError
from tracer.rules.detect import detect_format

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ((DATA / "iptables-nft-save.txt").read_text(), "iptables"),
        ((DATA / "iptables-legacy-save.txt").read_text(), "iptables"),
        ((DATA / "kube-proxy.restore").read_text(), "iptables"),
        ((DATA / "nft-ruleset.txt").read_text(), "nft"),
        (IPVSADM, "ipvs"),
        (NODEPORT + "\n", "conntrack"),
    ],
)
def test_detects_each_tool(text: str, fmt: str) -> None:
    assert detect_format(text) == fmt


def test_unknown_content_is_an_input_error() -> None:
    with pytest.raises(InputError, match="neither"):
        detect_format("hello world\n")
