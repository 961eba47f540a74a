"""Ground truth from the kernel: run every scenario in a real namespace lab (iptables mode).

Checks conntrack (DNAT to the configured endpoint, SNAT to the node for eTP=Cluster), curl's
result, DNS answers and that every capture point saw packets. Needs root.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tracer.lab import kubeproxy as kp
from tracer.lab import lab
from tracer.lab.scenarios import scenarios
from tracer.lab.services import cluster_services
from tracer.lab.topology import CLUSTER_CIDR, plan_topology
from tracer.lab.truth import parse_conntrack_entry

pytestmark = pytest.mark.netns
TOPO = plan_topology()
SCENARIOS = scenarios(TOPO)


@pytest.fixture(scope="module")
def lab_up(netns_ok: None) -> Iterator[dict[str, Any]]:
    if lab.status()["status"] != "down":
        pytest.skip("a lab is already present; `pathtrace lab down` first")
    try:
        state = lab.up(mode="iptables")
        yield state
    finally:
        lab.down()


@pytest.fixture(scope="module")
def runs(lab_up: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    return {name: lab.run_scenario(name, out_dir=base / name) for name in SCENARIOS}


def manifest(run: Path) -> dict[str, Any]:
    return json.loads((run / "manifest.json").read_text())


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=20)


def test_generated_rules_are_accepted_by_the_kernel(netns_ok: None) -> None:
    """iptables-restore and nft -f take the payloads, affinity and LB source ranges included."""
    services = (
        *cluster_services(TOPO),
        kp.Service(
            "ns9", "lb", "10.96.0.99",
            (kp.ServicePort(443, 8443, name="https", node_port=30443),),
            (kp.Endpoint("10.244.2.7", node="node2"), kp.Endpoint("10.244.1.7", node="node1")),
            session_affinity="ClientIP", load_balancer_ips=("192.168.60.1",),
            load_balancer_source_ranges=("192.168.50.0/24",),
        ),
    )  # fmt: skip
    node = kp.NodeInfo("node1", ("192.168.50.11",), "10.244.1.0/24", CLUSTER_CIDR)
    ns = "pt-rules-check"
    assert sh("ip", "netns", "add", ns).returncode == 0
    try:
        for j in kp.jump_rules():
            sh("ip", "netns", "exec", ns, "iptables", "-w", "-t", j.table, "-N", j.target)
            p = sh(
                "ip", "netns", "exec", ns, "iptables", "-w", "-t", j.table, "-I", j.chain, *j.args()
            )
            assert p.returncode == 0, p.stderr
        payload = kp.iptables_restore(services, node)
        p = subprocess.run(
            ["ip", "netns", "exec", ns, "iptables-restore", "--noflush"],
            input=payload, capture_output=True, text=True,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        saved = sh("ip", "netns", "exec", ns, "iptables-save", "-t", "nat").stdout
        assert "KUBE-SVC-" in saved and "--random-fully" in saved
        p = subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-f", "-"],
            input=kp.nft_ruleset(services, node), capture_output=True, text=True,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        listed = sh("ip", "netns", "exec", ns, "nft", "list", "table", "ip", "kube-proxy").stdout
        assert "numgen random mod 2" in listed and "masquerade fully-random" in listed
    finally:
        sh("ip", "netns", "del", ns)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_outcome_matches_the_configuration(runs: dict[str, Path], name: str) -> None:
    m = manifest(runs[name])
    truth = m["extra"]["lab"]
    assert truth["outcome"] == SCENARIOS[name].expect_outcome, m["request"]["output"]
    expected_exit = {"http-200": 0, "refused": 7, "unreachable": 7, "timeout": 28, "nxdomain": 6}
    assert m["request"]["exit_code"] == expected_exit[SCENARIOS[name].expect_outcome]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_point_captured_packets(runs: dict[str, Path], name: str) -> None:
    m = manifest(runs[name])
    for p in m["points"]:
        f = runs[name] / p["file"]
        assert p["packets"] and p["packets"] > 0, p["name"]
        assert f.stat().st_size > 24 and (f.stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize(
    "name", sorted(n for n, s in SCENARIOS.items() if s.backend and s.conntrack_node)
)
def test_conntrack_shows_the_dnat(runs: dict[str, Path], name: str) -> None:
    sc = SCENARIOS[name]
    ct = manifest(runs[name])["extra"]["lab"]["conntrack"]
    assert ct is not None, "no conntrack entry for the frontend"
    assert ct["dnat_to"] == sc.backend
    # And the same entry is in the node's saved conntrack table.
    saved = (runs[name] / "nodes" / sc.conntrack_node / "conntrack.txt").read_text()  # type: ignore[operator]
    assert ct["line"] in saved


@pytest.mark.parametrize("name", ["nodeport", "ingress", "ingress-hostnet"])
def test_masquerade_rewrites_source_to_the_node(runs: dict[str, Path], name: str) -> None:
    ct = manifest(runs[name])["extra"]["lab"]["conntrack"]
    node1 = TOPO.nodes[0]
    snat_ip, _, snat_port = ct["snat_to"].rpartition(":")
    # Towards a pod on node2 the route is flannel.1 (its address is the pod CIDR's .0); towards a
    # local pod it is cni0 (the gateway).
    assert snat_ip in (node1.vtep_ip, node1.gateway)
    assert snat_ip != ct["original"]["src"]
    # --random-fully: the port is rewritten too (the chance of keeping it is ~1/28000).
    assert snat_port != ct["original"]["sport"]


def test_nodeport_local_keeps_the_client_address(runs: dict[str, Path]) -> None:
    ct = manifest(runs["nodeport-local"])["extra"]["lab"]["conntrack"]
    assert ct["reply"]["dst"] == TOPO.external_ip
    out = manifest(runs["nodeport-local"])["request"]["output"]
    assert f"you are {TOPO.external_ip}" in out


def test_nodeport_backend_sees_the_node(runs: dict[str, Path]) -> None:
    out = manifest(runs["nodeport"])["request"]["output"]
    assert f"you are {TOPO.nodes[0].vtep_ip}" in out


def test_filtered_requests_leave_no_conntrack_entry(runs: dict[str, Path]) -> None:
    # A packet dropped or rejected in the filter table never confirms its conntrack entry.
    for name in ("local-no-endpoint", "no-endpoints"):
        sc = SCENARIOS[name]
        ip, _, port = (sc.frontend or "").rpartition(":")
        ct = (runs[name] / "nodes" / TOPO.nodes[0].name / "conntrack.txt").read_text()
        assert f"dst={ip} " not in ct or f"dport={port} " not in ct


def test_cluster_dns_answers_from_a_pod(lab_up: dict[str, Any]) -> None:
    client = TOPO.pod("client").netns
    code = "import socket; print(socket.gethostbyname('web'))"
    p = sh("ip", "netns", "exec", client, "python3", "-c", code)
    assert p.stdout.strip() == "10.96.0.100", p.stderr
    code = "import socket\ntry:\n socket.gethostbyname('wbe')\nexcept socket.gaierror as e: print(e.errno)"
    p = sh("ip", "netns", "exec", client, "python3", "-c", code)
    assert p.stdout.strip() == str(socket_eai_noname())


def socket_eai_noname() -> int:
    import socket

    return socket.EAI_NONAME


def test_slow_server_takes_its_delay(runs: dict[str, Path]) -> None:
    out = manifest(runs["slow-server"])["request"]["output"]
    total = float(out.split("total=")[1].split()[0])
    assert 0.2 <= total < 0.4


def _client_ip(point: str) -> str:
    return TOPO.external_ip if point == "external" else TOPO.pod(point).ip


def _analyze(run: Path) -> Any:
    """The path `pathtrace analyze` builds for the request the lab's client sent."""
    from tracer.correlate import (
        build_path,
        correlate,
        l7_requests,
        parse_match,
        select,
    )
    from tracer.inputs import load_run
    from tracer.pcap.payload import PayloadReader

    truth = manifest(run)["extra"]["lab"]
    loaded = load_run(run)
    corr = correlate(loaded.points)
    proto = "udp" if truth["frontend"].endswith(":53") else "tcp"
    client = _client_ip(truth["expected_path"][0])
    ct = truth.get("conntrack") or {}
    if ct.get("original", {}).get("src") == client:
        # The client's own connection is the one conntrack recorded (DNS retries use new ports).
        client = f"{client}:{ct['original']['sport']}"
    conn = select(corr, match=parse_match(f"src={client},proto={proto}"))
    with PayloadReader() as reader:
        l7 = l7_requests(corr, conn, lambda point, frame: reader.read(loaded.frames[point], frame))
    return build_path(corr, conn, l7=l7)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_analyzer_follows_the_true_path(runs: dict[str, Path], name: str) -> None:
    """The analyzer against what the lab knows: its configuration and the kernel's conntrack.

    Points in path order, the DNAT (and SNAT) to the addresses conntrack recorded, the break
    point of each fault, and the server time of slow-server: at least the configured delay, and
    not more than the server's own work beyond it.
    """
    run = runs[name]
    truth = manifest(run)["extra"]["lab"]
    path = _analyze(run)
    seen: list[str] = []
    for hop in path.forward:
        # `extdns` captures on the underlay bridge: a real sighting, but not a lab point of the path.
        if hop.point != "extdns" and (not seen or seen[-1] != hop.point):
            seen.append(hop.point)
    # The forward path stops exactly where the lab says the request stops (the break point).
    assert seen == truth["expected_path"]
    ct = truth.get("conntrack")
    if ct:
        tuples = {(str(h.tuple5.src), str(h.tuple5.dst)) for h in path.forward}
        snat = any(t["kind"] == "SNAT" for t in truth["expected_translations"])
        original = f"{ct['original']['src']}:{ct['original']['sport']}"
        # The conntrack entry's rewritten tuple is what the packet carried after the node.
        assert (ct["snat_to"] if snat else original, ct["dnat_to"]) in tuples
        if name != "ingress-hostnet":  # there nat OUTPUT rewrites before any capture point
            kinds = [(h.point, h.translation.kind) for h in path.forward if h.translation]
            for t in truth["expected_translations"]:
                if t["kind"] == "REDIRECT":
                    continue  # inside a pod: tested with the mesh run below
                assert any(p == t["node"] and t["kind"] in k for p, k in kinds), (t, kinds)
    else:
        # Dropped or rejected before any rewrite: no translation, no server point.
        assert not [h for h in path.forward if h.translation]
    if truth.get("server_delay_ns"):
        assert path.latency.server_ns is not None
        # The server sleeps the configured delay between reading the request and answering:
        # its time at the server point is never shorter, and longer only by its own work and
        # scheduling (a few ms on a busy 2-core machine; a wrong packet would be off by far more).
        delay = truth["server_delay_ns"]
        assert delay <= path.latency.server_ns <= delay + 20_000_000


def _listing(run: Path, *args: str) -> Any:
    p = subprocess.run(
        [sys.executable, "-m", "tracer", "analyze", str(run), *args, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_listing_gives_every_connection_of_the_mixed_run_its_true_outcome(
    runs: dict[str, Path],
) -> None:
    """`analyze --list` on one capture of every outcome, against the lab's configuration, what
    curl got from the kernel, and the nodes' conntrack tables."""
    run = runs["mixed"]
    truth = manifest(run)["extra"]["lab"]
    first = {
        "frontend": truth["frontend"],
        "outcome": {"http-200": "ok"}.get(truth["outcome"]),
        "answered_by": truth["backend"].rpartition(":")[0],
        "answered_at_node": None,
        "last_point": truth["expected_path"][-1],
        "server_delay_ns": None,
    }
    expected = [first, *truth["requests"]]
    assert all(e["outcome"] for e in expected), [e.get("output") for e in truth["requests"]]
    rows = sorted(_listing(run, "--list")["connections"], key=lambda r: r["start_ns"])
    # Every connection listed is one of the client's requests, in the order it sent them: the
    # ICMP errors are on the connections they answer, the link chatter is hidden.
    assert [r["destination"] for r in rows] == [e["frontend"] for e in expected]
    conntrack = (run / "nodes" / TOPO.nodes[0].name / "conntrack.txt").read_text()
    for r, e in zip(rows, expected, strict=True):
        where = (r["destination"], r)
        assert r["client"].startswith(TOPO.pod("client").ip + ":"), where
        assert r["outcome"] == e["outcome"], where
        assert r["last_point"] == e["last_point"], where
        if e["answered_by"]:
            assert r["outcome_by"]["address"] == e["answered_by"], where
        if e["answered_at_node"]:
            assert r["outcome_by"]["node"] == e["answered_at_node"], where
            assert r["outcome_by"]["point"] == e["answered_at_node"], where
        if r["outcome"] == "unanswered":
            assert r["outcome_by"] is None, where
        if e["server_delay_ns"]:
            assert r["server_ns"] >= e["server_delay_ns"], where
        if r["service"] is not None:
            # The DNAT the listing shows is the one the client's node's conntrack recorded.
            ip, _, port = r["service"].rpartition(":")
            entries = [
                ct
                for line in conntrack.splitlines()
                if f"sport={r['client'].rpartition(':')[2]} " in line
                for ct in [parse_conntrack_entry(line, ip, int(port), "tcp")]
                if ct is not None
            ]
            assert [ct["dnat_to"] for ct in entries] == [r["backend"]], where
    # The triage options select by those outcomes.
    failed = _listing(run, "--failed")
    assert [c["outcome"] for c in failed["connections"]] == [
        e["outcome"] for e in expected if e["outcome"] != "ok"
    ]
    assert failed["summary"]["outcomes"]["ok"] == 0
    resets = _listing(run, "--where", "outcome=reset")["connections"]
    assert [c["destination"] for c in resets] == [
        e["frontend"] for e in expected if e["outcome"] == "reset"
    ]
    slowest = _listing(run, "--slowest", "1")["connections"]
    assert [c["destination"] for c in slowest] == [
        e["frontend"] for e in expected if e["server_delay_ns"]
    ]


def test_mesh_run_proxies_through_both_sidecars(runs: dict[str, Path]) -> None:
    """The sidecars' own records (each connection's SO_ORIGINAL_DST) and the pods' conntrack
    agree with the configuration, and the run leaves no rule or proxy behind."""
    run = runs["mesh"]
    truth = manifest(run)["extra"]["lab"]
    sc = SCENARIOS["mesh"]
    (client_side,) = truth["sidecars"]["client"]
    (server_side,) = truth["sidecars"]["web-b"]
    # The app asked for the Service: the REDIRECT kept it as the original destination.
    assert client_side["direction"] == "outbound"
    assert client_side["original_dst"] == truth["frontend"]
    # The server sidecar got the request kube-proxy DNATed to the backend.
    assert server_side["direction"] == "inbound"
    assert server_side["original_dst"] == truth["backend"]
    assert server_side["upstream"].startswith("127.0.0.6:")
    assert client_side["request_in_ns"] <= client_side["request_out_ns"]
    # The kernel's own record of each REDIRECT, in each pod's conntrack table.
    ct = (run / "pods" / "client" / "conntrack.txt").read_text()
    assert f"dst={truth['frontend'].split(':')[0]}" in ct and "sport=15001" in ct
    ct = (run / "pods" / "web-b" / "conntrack.txt").read_text()
    assert "sport=15006" in ct
    assert "ISTIO_REDIRECT" in (run / "pods" / "client" / "iptables-save.txt").read_text()
    for pod in sc.sidecars:
        ns = TOPO.pod(pod).netns
        saved = sh("ip", "netns", "exec", ns, "iptables-save", "-t", "nat").stdout
        assert "ISTIO" not in saved  # the rules went with the run
        pids = sh("ip", "netns", "pids", ns).stdout.split()
        cmdlines = [Path(f"/proc/{p}/cmdline").read_bytes() for p in pids]
        assert not [c for c in cmdlines if b"tracer.lab.sidecar" in c]


def test_socket_lb_run_translates_in_the_socket(runs: dict[str, Path]) -> None:
    """The BPF map the kernel held, curl's own view of its socket, and no DNAT anywhere."""
    from tracer.lab.sockbpf import CGROUP_PREFIX, cgroup2_root

    run = runs["ebpf-socket-lb"]
    m = manifest(run)
    truth = m["extra"]["lab"]
    assert truth["outcome"] == "http-200"
    assert {"frontend": truth["frontend"], "protocol": "TCP", "backend": truth["backend"]} in (
        truth["socket_lb"]["map"]
    )
    backend_ip = truth["backend"].split(":")[0]
    # curl reports the peer its socket is connected to: the backend, not the ClusterIP.
    assert f"Connected to web-ebpf ({backend_ip})" in m["request"]["output"]
    frontend_ip = truth["frontend"].split(":")[0]
    for node in TOPO.nodes:
        ct = (run / "nodes" / node.name / "conntrack.txt").read_text()
        assert f"dst={frontend_ip} " not in ct  # no node ever saw the ClusterIP
    # The run's cgroup is gone (its name is unique to the run: none of ours is left).
    assert not [p for p in cgroup2_root().iterdir() if p.name.startswith(CGROUP_PREFIX)]


def test_html_report_shows_where_a_failing_request_broke(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """The report of a failing run, opened in a real browser, shows the break at the last point
    the lab's configuration lets the request reach; the mixed run's report counts every
    outcome the lab's requests had."""
    import re
    from collections import Counter

    from click.testing import CliRunner

    from tests.report.html import browser
    from tracer.cli import cli

    if browser.find() is None:
        pytest.skip("chromium is not installed (scripts/setup --dev installs it)")
    pages = {}
    for name in ("drop", "mixed"):
        pages[name] = tmp_path / f"{name}.html"
        r = CliRunner().invoke(cli, ["analyze", str(runs[name]), "--html", str(pages[name])])
        assert r.exit_code == 0, r.output
    last = manifest(runs["drop"])["extra"]["lab"]["expected_path"][-1]
    dom = browser.dump_dom(pages["drop"])
    assert f"The request went no further than {last}" in dom
    assert 'class="badge bad"' in dom
    lab_truth = manifest(runs["mixed"])["extra"]["lab"]
    # The scenario's first request (the run's own) and then each of its further requests.
    first = {"http-200": "ok"}.get(lab_truth["outcome"])
    truth = Counter([first, *(r["outcome"] for r in lab_truth["requests"])])
    dom = browser.dump_dom(pages["mixed"])
    shown = re.findall(r'data-outcome="(\w+)"><i[^>]*></i>\w+: <b>(\d+)</b>', dom)
    assert {o: int(n) for o, n in shown} == dict(truth)
