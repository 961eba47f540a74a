"""The dual-stack lab in nftables mode: kube-proxy's `table ip6 kube-proxy` accepted by the
kernel and translating (DNAT + masquerade of an external IPv6 client). Needs root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracer.lab import lab

pytestmark = pytest.mark.netns


def test_nft_ip6_rules_are_accepted_and_translate(netns_ok: None, tmp_path: Path) -> None:
    if lab.status()["status"] != "down":
        pytest.skip("a lab is already present")
    try:
        lab.up(mode="nftables", ipv6=True)
        run = lab.run_scenario("nodeport6", out_dir=tmp_path / "np6")
        truth = json.loads((run / "manifest.json").read_text())["extra"]["lab"]
        assert truth["outcome"] == "http-200"
        assert truth["conntrack"]["dnat_to"] == truth["backend"]
        nft = (run / "nodes" / "node1" / "nft.txt").read_text()
        assert "table ip6 kube-proxy" in nft and "table ip kube-proxy" in nft
    finally:
        lab.down()
