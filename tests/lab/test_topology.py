"""The network plan and teardown, checked without root through a fake runner."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from tracer.lab import topology as t
from tracer.lab.runner import Completed


class FakeRunner:
    def __init__(self, outputs: dict[tuple[str, ...], str] | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.outputs = outputs or {}

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        check: bool = True,
        timeout: float = 30.0,
    ) -> Completed:
        self.calls.append(tuple(argv))
        return Completed(tuple(argv), 0, self.outputs.get(tuple(argv), ""), "")

    def spawn(self, argv: Sequence[str], **kw: Any) -> Any:
        raise AssertionError("no process should be started")


def test_plan_addresses() -> None:
    topo = t.plan_topology(3)
    assert [n.underlay_ip for n in topo.nodes] == [
        "192.168.50.11",
        "192.168.50.12",
        "192.168.50.13",
    ]
    for n in topo.nodes:
        assert ipaddress.ip_network(n.pod_cidr).subnet_of(ipaddress.ip_network(t.CLUSTER_CIDR))
    for p in topo.pods:
        assert ipaddress.ip_address(p.ip) in ipaddress.ip_network(topo.node(p.node).pod_cidr)
    ips = [p.ip for p in topo.pods]
    assert len(ips) == len(set(ips))


def test_every_name_has_the_prefix_and_fits_ifnamsiz() -> None:
    topo = t.plan_topology(2)
    assert all(ns.startswith("pt-") for ns in topo.namespaces())
    for argv in t.build_commands(topo):
        if argv[:2] == ["ip", "netns"] and argv[2] == "add":
            assert argv[3].startswith("pt-")
        if "veth" in argv:
            host_end = argv[argv.index("add") + 1]
            assert host_end.startswith("pt-") and len(host_end) <= 15


def test_overlay_routes_point_at_every_other_node() -> None:
    topo = t.plan_topology(3)
    cmds = t.build_commands(topo)
    routes = [c for c in cmds if "route" in c and "onlink" in c and c[2] == "pt-node1"]
    assert sorted(c[5] for c in routes) == ["10.244.2.0/24", "10.244.3.0/24"]
    fdb = [c for c in cmds if "fdb" in c and c[3] == "pt-node1"]
    assert sorted(c[-1] for c in fdb) == ["192.168.50.12", "192.168.50.13"]
    vx = next(c for c in cmds if "vxlan" in c and c[2] == "pt-node2")
    assert vx[vx.index("dstport") + 1] == "8472" and vx[vx.index("id") + 1] == "1"
    assert vx[vx.index("local") + 1] == "192.168.50.12" and "nolearning" in vx


def test_br_netfilter_is_set_in_every_node() -> None:
    topo = t.plan_topology(2)
    cmds = [" ".join(c) for c in t.build_commands(topo)]
    for n in topo.nodes:
        assert any(n.netns in c and "bridge-nf-call-iptables=1" in c for c in cmds)


def test_teardown_only_touches_prefixed_things(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(t, "STATE_DIR", tmp_path)
    monkeypatch.setattr(t, "RESOLV_DIR", tmp_path / "netns")
    runner = FakeRunner(
        {
            ("ip", "netns", "list"): "pt-node1 (id: 0)\nother\npt-external\n",
            (
                "ip",
                "-o",
                "link",
                "show",
            ): "1: lo: <LOOPBACK>\n7: pt-stray@if3: <UP>\n8: eth0: <UP>\n",
        }
    )
    removed = t.teardown(runner)
    assert removed == ["pt-node1", "pt-external", "pt-stray"]
    deleted = [c for c in runner.calls if "del" in c]
    assert ("ip", "netns", "del", "other") not in deleted
    assert ("ip", "link", "del", "eth0") not in deleted
