"""The two datapaths where the translation is not where kube-proxy puts it, told by `analyze`,
`explain` and `diagnose` from the recorded lab runs (pcaps/mesh, pcaps/ebpf-socket-lb).

Ground truth is the run's manifest (`extra.lab`): the lab's configuration, the sidecars' own
records of each connection (SO_ORIGINAL_DST and when they read and wrote the request and the
response), the socket load-balancer's BPF map as the kernel held it, and the pods' conntrack.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tracer.cli import main
from tracer.diagnose import diagnose, gather
from tracer.explain.story import tell_story
from tracer.inputs import load_run
from tracer.report.story import render_story
from tracer.trace import open_run, story_input

PCAPS = Path(__file__).resolve().parents[2] / "pcaps"
MESH, EBPF = PCAPS / "mesh", PCAPS / "ebpf-socket-lb"
# Clock error between node1 and node2 in these runs is a few microseconds; timestamps here are
# compared with that much slack, far below the sidecars' own handling windows' size.
SLACK_NS = 20_000


def _truth(run: Path) -> dict[str, Any]:
    lab: dict[str, Any] = json.loads((run / "manifest.json").read_text())["extra"]["lab"]
    return lab


def _analyze_json(capsys: pytest.CaptureFixture[str], run: Path) -> dict[str, Any]:
    with pytest.raises(SystemExit) as e:
        main(["analyze", str(run), "--format", "json"])
    out = capsys.readouterr().out
    assert e.value.code in (0, None)
    doc: dict[str, Any] = json.loads(out)
    return doc


def _frame_time_ns(run: Path, point: str, frame: int) -> int:
    from scapy.utils import rdpcap

    pkt = rdpcap(str(run / "points" / f"{point}.pcap"))[frame]
    return int(pkt.time * 1_000_000_000)


# ----------------------------------------------------------------------------- mesh


def test_mesh_is_one_request_told_as_what_the_app_asked(capsys: pytest.CaptureFixture[str]) -> None:
    truth = _truth(MESH)
    doc = _analyze_json(capsys, MESH)
    req = doc["request"]
    assert req["destination"] == truth["frontend"]  # not 127.0.0.1:15001
    assert req["backend"] == truth["backend"]
    assert req["summary"].endswith("-> 200")
    first = doc["forward"][0]
    assert first["point"] == "client" and first["interface"] == "lo"
    redirect = first["translation"]
    assert redirect["kind"] == "REDIRECT"
    assert redirect["before"]["dst"] == truth["frontend"]
    assert redirect["after"]["dst"] == "127.0.0.1:15001"
    # The legs: app -> client sidecar, sidecar -> Service (the wire), sidecar -> app.
    stitches = doc["stitches"]
    assert [s["proxy"] for s in stitches] == list(truth["sidecars"])
    assert all(s["confidence"] == "high" for s in stitches)
    points = []
    for h in doc["forward"]:
        if not points or points[-1] != h["point"]:
            points.append(h["point"])
    assert points == truth["expected_path"]
    # The response reaches the app on the client pod's loopback.
    last = doc["reverse"][-1]
    assert (last["point"], last["interface"]) == ("client", "lo")
    # kube-proxy's DNAT between the sidecars, to the backend the kernel recorded.
    dnat = [h for h in doc["forward"] if h["translation"] and h["translation"]["kind"] == "DNAT"]
    (dnat_node,) = [t["node"] for t in truth["expected_translations"] if t["kind"] == "DNAT"]
    assert [h["node"] for h in dnat] == [dnat_node]
    assert dnat[0]["translation"]["after"]["dst"] == truth["conntrack"]["dnat_to"]


def test_mesh_proxy_times_agree_with_the_sidecars_own_records(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each sidecar's time as the packets show it, against the sidecar's own record: the
    request (and the response) reached it before it read it, and left after it read it and
    before its write returned."""
    truth = _truth(MESH)
    doc = _analyze_json(capsys, MESH)
    first = doc["forward"][0]
    t0 = _frame_time_ns(MESH, first["point"], first["frame"])
    fwd, rev = doc["forward"], doc["reverse"]
    for st in doc["stitches"]:
        (record,) = truth["sidecars"][st["proxy"]]
        for hops, at, what in (
            (fwd, st["forward_hop"], "request"),
            (rev, st["reverse_hop"], "response"),
        ):
            came = t0 + hops[at - 1]["t_ns"]  # the last sighting before the proxy's own hop
            left = t0 + hops[at]["t_ns"]
            read, written = record[f"{what}_in_ns"], record[f"{what}_out_ns"]
            assert came <= read + SLACK_NS, (st["proxy"], what)
            assert read - SLACK_NS <= left <= written + SLACK_NS, (st["proxy"], what)
            assert st[f"{what}_ns"] == left - came
        assert st["proxy_ns"] == st["request_ns"] + st["response_ns"]
    assert doc["latency"]["proxy_ns"] == sum(s["proxy_ns"] for s in doc["stitches"])


def test_mesh_evidence_walks_each_pods_own_nat_table(capsys: pytest.CaptureFixture[str]) -> None:
    truth = _truth(MESH)
    doc = _analyze_json(capsys, MESH)
    redirects = {
        e["node"]: e
        for e in doc["evidence"]
        if e["kind"] == "REDIRECT" and e["direction"] == "forward"
    }
    for t in truth["expected_translations"]:
        if t["kind"] != "REDIRECT":
            continue
        ev = redirects[t["pod"]]
        assert ev["rules_source"] == f"pods/{t['pod']}/iptables-save.txt"
        assert ev["before"]["dst"] == t["from"] and ev["after"]["dst"] == t["to"]
        assert any("REDIRECT --to-ports" in r["rule"] for r in ev["rules"])
        assert ev["findings"] == []
    # No finding anywhere: the loopback legs are not walked through a node's rules.
    assert [f for e in doc["evidence"] for f in e["findings"]] == []


def test_mesh_story_and_diagnosis() -> None:
    truth = _truth(MESH)
    story = tell_story(story_input(open_run(load_run(MESH))))
    text = render_story(story)
    assert story.access == "mesh"
    assert f"it asked for {truth['frontend']}" in text
    assert "REDIRECT to the sidecar by client's own rules" in text
    assert "REDIRECT to the sidecar by web-b's own rules" in text
    assert f"{truth['backend']} is redirected to {truth['backend'].split(':')[0]}:15006" in text
    d = diagnose(gather(MESH))
    assert not d.problem
    assert d.request["destination"] == truth["frontend"]
    assert d.request["backend"] == truth["backend"]
    titles = [f.title for f in d.findings]
    assert any(
        t.startswith("Sidecar: the app's connection to " + truth["frontend"]) for t in titles
    )
    assert any(t.startswith("Path complete: client -> node1 -> node2 -> web-b") for t in titles)


# ----------------------------------------------------------------------------- eBPF socket LB


def test_socket_lb_is_translated_before_the_wire(capsys: pytest.CaptureFixture[str]) -> None:
    truth = _truth(EBPF)
    (entry,) = truth["socket_lb"]["map"]  # what the kernel's BPF map held
    doc = _analyze_json(capsys, EBPF)
    req = doc["request"]
    assert req["destination"] == truth["frontend"] == entry["frontend"]
    assert req["backend"] == truth["backend"] == entry["backend"]
    frontend_ip = truth["frontend"].split(":")[0]
    # Honest about the packets: none carries the ClusterIP, and only the first hop holds the
    # (socket's) translation.
    assert all(not h["dst"].startswith(frontend_ip + ":") for h in doc["forward"])
    translated = [i for i, h in enumerate(doc["forward"]) if h["translation"]]
    assert translated == [0]
    assert "socket" in doc["forward"][0]["note"]
    (ev,) = [e for e in doc["evidence"] if e["direction"] == "forward"]
    assert ev["verdict"] == "NO-MATCH"  # no node rule translates the Service
    assert ev["findings"] == []
    # The lookup that gave the client its destination is the Service's.
    used = [q for q in doc["dns"] if q["used"]]
    assert [q["answers"] for q in used] == [[frontend_ip]]


def test_socket_lb_story_and_diagnosis() -> None:
    truth = _truth(EBPF)
    story = tell_story(story_input(open_run(load_run(EBPF))))
    text = render_story(story)
    assert story.access == "socket-lb"
    assert "before the wire" in text and truth["backend"] in text
    d = diagnose(gather(EBPF))
    assert not d.problem
    assert d.request["destination"] == truth["frontend"]
    assert d.request["service"] == truth["service"]
    step4 = [f for f in d.findings if f.step == 4]
    assert len(step4) == 1 and "translated in the client's socket" in step4[0].title
    assert any("NO-MATCH" in e for e in step4[0].evidence)
    assert not any("not a Service" in f.title for f in d.findings)


# ----------------------------------------------------------------------------- Cilium facts

CILIUM_LB = """\
SERVICE ADDRESS          BACKEND ADDRESS (REVNAT_ID) (SLOT)
10.96.0.110:80/TCP       0.0.0.0:0 (9) (0) [ClusterIP, non-routable]
                         {backend}/TCP (9) (1)
"""


def _with_cilium(tmp_path: Path, backend: str) -> Path:
    """The recorded socket-LB run with node1's facts as a Cilium agent would give them."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(EBPF, run)
    (run / "nodes" / "node1" / "cilium-bpf-lb-list.txt").write_text(
        CILIUM_LB.format(backend=backend)
    )
    return run


def test_cilium_facts_are_the_evidence_for_a_socket_translation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = _truth(EBPF)
    run = _with_cilium(tmp_path, truth["backend"])
    doc = _analyze_json(capsys, run)
    (ev,) = [e for e in doc["evidence"] if e["direction"] == "forward"]
    assert ev["mode"] == "cilium" and ev["verdict"] == "DNAT"
    assert ev["rules_source"] == "nodes/node1/cilium-bpf-lb-list.txt"
    assert [e["address"] for e in ev["endpoints"]] == [truth["backend"]]
    assert any("Cilium's load-balancer on node1 serves" in n for n in ev["notes"])
    d = diagnose(gather(run))
    (step4,) = [f for f in d.findings if f.step == 4]
    assert step4.severity == "info"
    assert any("Cilium serves" in e for e in step4.evidence)


def test_a_backend_cilium_does_not_list_is_a_warning(tmp_path: Path) -> None:
    run = _with_cilium(tmp_path, "10.244.2.99:8080")
    d = diagnose(gather(run))
    (step4,) = [f for f in d.findings if f.step == 4]
    assert step4.severity == "warning" and "does not list" in step4.title


def test_a_dnat_no_iptables_rule_explains_is_explained_by_cilium(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DNAT between the pod and the node (a tc program) with no iptables rule behind it: the
    recorded clusterip-remote run with kube-proxy's rules for its Service taken away and the
    Service in Cilium's dump instead."""
    import shutil

    src = PCAPS / "clusterip-remote"
    truth = _truth(src)
    run = tmp_path / "run"
    shutil.copytree(src, run)
    node = run / "nodes" / "node1"
    for name in ("iptables-save.txt", "nft.txt"):
        kept = [ln for ln in (node / name).read_text().splitlines() if "web-remote" not in ln]
        (node / name).write_text("\n".join(kept) + "\n")
    doc = _analyze_json(capsys, run)
    (bare,) = [e for e in doc["evidence"] if e["kind"] == "DNAT"]
    assert bare["findings"]  # without Cilium's dump the rewrite has no rule behind it
    frontend = truth["frontend"]
    (node / "cilium-bpf-lb-list.txt").write_text(
        "SERVICE ADDRESS          BACKEND ADDRESS (REVNAT_ID) (SLOT)\n"
        f"{frontend}/TCP       0.0.0.0:0 (4) (0) [ClusterIP, non-routable]\n"
        f"                         {truth['backend']}/TCP (4) (1)\n"
    )
    doc = _analyze_json(capsys, run)
    (ev,) = [e for e in doc["evidence"] if e["kind"] == "DNAT"]
    assert ev["mode"] == "cilium" and ev["rules_source"].endswith("cilium-bpf-lb-list.txt")
    assert ev["chosen"] == truth["backend"] and ev["findings"] == []
