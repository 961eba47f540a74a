"""The same data plane in kube-proxy's nftables mode: DNAT and masquerade come from `table ip
kube-proxy`, and conntrack shows them exactly as in iptables mode."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tracer.lab import lab
from tracer.lab.scenarios import scenarios
from tracer.lab.topology import plan_topology

pytestmark = pytest.mark.netns
TOPO = plan_topology()


@pytest.fixture(scope="module")
def nft_lab(netns_ok: None) -> Iterator[None]:
    if lab.status()["status"] != "down":
        pytest.skip("a lab is already present; `pathtrace lab down` first")
    try:
        lab.up(mode="nftables")
        yield
    finally:
        lab.down()


@pytest.mark.parametrize(
    "name", ["clusterip-remote", "nodeport", "no-endpoints", "local-no-endpoint"]
)
def test_nftables_mode(nft_lab: None, tmp_path: Path, name: str) -> None:
    sc = scenarios(TOPO)[name]
    run = lab.run_scenario(name, out_dir=tmp_path / name)
    m: dict[str, Any] = json.loads((run / "manifest.json").read_text())
    truth = m["extra"]["lab"]
    assert truth["outcome"] == sc.expect_outcome, m["request"]["output"]
    nft = (run / "nodes" / TOPO.nodes[0].name / "nft.txt").read_text()
    assert "table ip kube-proxy" in nft
    iptables = (run / "nodes" / TOPO.nodes[0].name / "iptables-save.txt").read_text()
    assert "KUBE-SERVICES" not in iptables
    if sc.backend:
        assert truth["conntrack"]["dnat_to"] == sc.backend
    if sc.snat_node:
        assert truth["conntrack"]["snat_to"].split(":")[0] == TOPO.nodes[0].vtep_ip
