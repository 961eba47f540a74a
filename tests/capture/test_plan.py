"""The capture plan against golden files; the addresses come from the fixed targets below.

Regenerate after a deliberate change with: python -m tests.capture.test_plan
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tracer.capture.plan import (
    CaptureOptions,
    describe_changes,
    make_plan,
    plan_to_json,
    request_argv,
)
from tracer.capture.targets import NodeTarget, PodTarget, Targets
from tracer.rundir import Service, ServiceEndpoint, ServicePort

GOLDEN = Path(__file__).parent / "golden"
CLIENT = PodTarget("default", "client", "10.244.1.2", "n1", ("app",))
WEB = PodTarget("default", "web-1", "10.244.2.3", "n2", ("web",))
DNS_POD = PodTarget("kube-system", "coredns-1", "10.244.1.9", "n1", ("coredns",))
WEB_SVC = Service(
    "default",
    "web",
    ("10.96.0.20",),
    (ServicePort(80, "TCP", "http", 8080, 30080),),
    (ServiceEndpoint("10.244.2.3", "web-1", "n2"),),
)
DNS_SVC = Service("kube-system", "kube-dns", ("10.96.0.10",), (ServicePort(53, "UDP", "dns", 53),))
NODES = (NodeTarget("n1", "10.0.0.1"), NodeTarget("n2", "10.0.0.2"))

CASES = {
    "pod-to-svc-by-name": (
        Targets("web", CLIENT, (WEB,), (WEB_SVC,), NODES, DNS_SVC, (DNS_POD,), uses_name=True),
        CaptureOptions(run_id="20240102-030405-abcd"),
    ),
    "external-to-nodeport-privileged": (
        Targets("svc/web", None, (WEB,), (WEB_SVC,), NODES),
        CaptureOptions(
            run_id="20240102-030405-abcd",
            duration=30,
            privileged=True,
            max_packets=1000,
            snaplen=128,
            image="registry.local/netshoot:1",
            node_namespace="pathtrace",
        ),
    ),
}


def _render(name: str) -> str:
    targets, options = CASES[name]
    return json.dumps(plan_to_json(make_plan(targets, options)), indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("name", sorted(CASES))
def test_plan_matches_golden(name: str) -> None:
    assert _render(name) == (GOLDEN / f"{name}.json").read_text()


def test_filter_keeps_service_pods_dns_and_overlay() -> None:
    targets, options = CASES["pod-to-svc-by-name"]
    f = make_plan(targets, options).filter
    for needle in ("host 10.96.0.20", "host 10.244.2.3", "host 10.96.0.10", "host 10.244.1.9"):
        assert needle in f
    for port in (
        "port 80",
        "port 8080",
        "port 53",
        "tcp port 30080",
        "udp port 8472",
        "udp port 4789",
    ):
        assert port in f


def test_no_dns_when_the_request_uses_an_address() -> None:
    targets, options = CASES["external-to-nodeport-privileged"]
    plan = make_plan(targets, options)
    assert "10.96.0.10" not in plan.filter and "port 53" not in plan.filter
    assert [p.role for p in plan.points] == ["server", "node", "node"]


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
@pytest.mark.parametrize("name", sorted(CASES))
def test_filter_compiles_with_tcpdump(name: str) -> None:
    targets, options = CASES[name]
    f = make_plan(targets, options).filter
    r = subprocess.run(["tcpdump", "-i", "lo", "-d", f], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_containers_ask_only_for_net_raw_and_net_admin() -> None:
    targets, options = CASES["pod-to-svc-by-name"]
    plan = make_plan(targets, options)
    for e in plan.ephemeral:
        assert e.spec["securityContext"] == {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}}
        assert e.spec["tty"] is False and "ports" not in e.spec
    for n in plan.node_pods:
        spec = n.manifest["spec"]
        assert spec["activeDeadlineSeconds"] == plan.deadline_s == 180
        assert "privileged" not in spec["containers"][0]["securityContext"]
        assert n.manifest["metadata"]["labels"] == {
            "app.kubernetes.io/managed-by": "pathtrace",
            "pathtrace.io/run": "20240102-030405-abcd",
        }


def test_request_argv_uses_shell_quoting_rules() -> None:
    assert request_argv("curl -s -H 'Host: a b' http://web/") == [
        "curl",
        "-s",
        "-H",
        "Host: a b",
        "http://web/",
    ]
    with pytest.raises(ValueError):
        request_argv("curl 'unclosed")


def test_bad_run_id_is_refused() -> None:
    targets, options = CASES["pod-to-svc-by-name"]
    with pytest.raises(ValueError):
        make_plan(targets, CaptureOptions(run_id="Bad_ID"))


if __name__ == "__main__":
    for case in CASES:
        (GOLDEN / f"{case}.json").write_text(_render(case))


def test_dns_pods_are_left_alone_unless_asked() -> None:
    targets, options = CASES["pod-to-svc-by-name"]
    plan = make_plan(targets, options)
    touched = {(e.namespace, e.pod) for e in plan.ephemeral}
    assert touched == {("default", "client"), ("default", "web-1")}
    assert not any(p.namespace == "kube-system" for p in plan.points)
    # The lookup is still captured where it already passes: the filter keeps DNS, and the
    # DNS pod's node is on the path.
    assert "host 10.244.1.9" in plan.filter and "port 53" in plan.filter
    assert any("--capture-dns-pods" in w for w in plan.warnings)
    asked = make_plan(targets, replace(options, dns_pod_capture=True))
    assert ("kube-system", "coredns-1") in {(e.namespace, e.pod) for e in asked.ephemeral}
    assert any(
        c.startswith("kube-system/coredns-1:")
        for c in plan_to_json(asked)["changes"]["permanent_ephemeral_containers"]
    )


def test_points_are_named_like_lab_points() -> None:
    targets, options = CASES["pod-to-svc-by-name"]
    names = [p.name for p in make_plan(targets, options).points]
    assert names == ["client", "web-1", "n1", "n2"]
    # A pod named like a node, and one name in two namespaces, are told apart.
    twin = PodTarget("other", "web-1", "10.244.2.7", "n1", ("web",))
    odd = PodTarget("default", "n2", "10.244.2.8", "n2", ("x",))
    t = Targets("web", CLIENT, (WEB, twin, odd), (WEB_SVC,), NODES)
    names = [p.name for p in make_plan(t, options).points]
    assert names == ["client", "default-web-1", "other-web-1", "default-n2", "n1", "node-n2"]
    assert len(set(names)) == len(names)


def test_describe_changes_names_every_pod() -> None:
    targets, options = CASES["pod-to-svc-by-name"]
    lines = describe_changes(make_plan(targets, options))
    assert "default/client, default/web-1" in lines[0] and "permanent" in lines[0]
    assert "default/pathtrace-20240102-030405-abcd-node-0 on n1" in lines[1]
    none = make_plan(targets, replace(options, pod_capture=False, node_capture=False))
    assert describe_changes(none) == ["changes nothing in the cluster"]


def test_meshed_pods_are_captured_on_any_and_their_own_facts_read() -> None:
    """A pod with an istio or linkerd sidecar (or its init container) is captured on `any`
    inside the pod, where its loopback carries the app-to-sidecar legs; others stay on eth0."""
    istio = replace(CLIENT, containers=("app", "istio-proxy"), init_containers=("istio-init",))
    linkerd = replace(WEB, containers=("web", "linkerd-proxy"))
    plain = Targets("web", CLIENT, (WEB,), (WEB_SVC,), NODES)
    meshed = replace(plain, client=istio, servers=(linkerd,))
    opts = CaptureOptions(run_id="20240102-030405-abcd")
    by_name = {p.name: p for p in make_plan(meshed, opts).points}
    assert (by_name["client"].interface, by_name["client"].mesh) == ("any", "istio")
    assert (by_name["web-1"].interface, by_name["web-1"].mesh) == ("any", "linkerd")
    assert by_name["client"].argv[by_name["client"].argv.index("-i") + 1] == "any"
    plan = make_plan(meshed, opts)
    assert any("istio sidecar" in w for w in plan.warnings)
    for p in make_plan(plain, opts).points:
        if p.kind == "ephemeral":
            assert (p.interface, p.mesh) == ("eth0", None)
