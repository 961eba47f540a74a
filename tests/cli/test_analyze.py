from __future__ import annotations

import json
import re
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.report.shape import check_path_document
from tracer.cli import main

# --- a ClusterIP request written as two captures (ground truth: the addresses and times below) --

CLIENT = ("10.244.1.7", 53700)
SERVICE = ("10.96.0.100", 80)
BACKEND = ("10.244.2.9", 8080)
T0 = Decimal("1714564800.000000")
ONE_WAY = Decimal("0.000200")  # 200 µs from client to server and back, same clock on both
REQ = b"GET /hello HTTP/1.1\r\nHost: web\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _exchange() -> list[tuple[Decimal, bool, str, int, int, bytes, tuple[int, int]]]:
    """(client-side send time, forward?, flags, seq, ack, payload, (tsval, tsecr))."""
    c, s = 1000, 5000
    step = Decimal("0.001")
    return [
        (T0, True, "S", c, 0, b"", (100, 0)),
        (T0 + step, False, "SA", s, c + 1, b"", (900, 100)),
        (T0 + 2 * step, True, "A", c + 1, s + 1, b"", (101, 900)),
        (T0 + 3 * step, True, "PA", c + 1, s + 1, REQ, (102, 900)),
        (T0 + 4 * step, False, "PA", s + 1, c + 1 + len(REQ), RESP, (901, 102)),
        (T0 + 5 * step, True, "A", c + 1 + len(REQ), s + 1 + len(RESP), b"", (103, 901)),
    ]


def _packet(
    src: tuple[str, int],
    dst: tuple[str, int],
    flags: str,
    seq: int,
    ack: int,
    payload: bytes,
    ts: tuple[int, int],
    ip_id: int,
    t: Decimal,
    ttl: int,
) -> Any:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    tcp = TCP(
        sport=src[1], dport=dst[1], flags=flags, seq=seq, ack=ack, options=[("Timestamp", ts)]
    )
    pkt = Ether() / IP(src=src[0], dst=dst[0], id=ip_id, ttl=ttl, flags="DF") / tcp
    if payload:
        pkt = pkt / Raw(payload)
    pkt.time = t  # type: ignore[assignment]  # scapy keeps a Decimal time exact (ns)
    return pkt


def write_clusterip_captures(where: Path) -> tuple[Path, Path]:
    """client.pcap sees CLIENT <-> SERVICE; server.pcap sees CLIENT <-> BACKEND (after DNAT)."""
    from scapy.utils import wrpcap

    client, server = [], []
    for i, (t, fwd, flags, seq, ack, data, ts) in enumerate(_exchange()):
        ip_id = 0 if flags == "SA" else 4000 + i
        if fwd:
            client.append(_packet(CLIENT, SERVICE, flags, seq, ack, data, ts, ip_id, t, 64))
            server.append(
                _packet(CLIENT, BACKEND, flags, seq, ack, data, ts, ip_id, t + ONE_WAY, 63)
            )
        else:
            server.append(
                _packet(BACKEND, CLIENT, flags, seq, ack, data, ts, ip_id, t - ONE_WAY, 64)
            )
            client.append(_packet(SERVICE, CLIENT, flags, seq, ack, data, ts, ip_id, t, 63))
    server.sort(key=lambda p: p.time)
    cpath, spath = where / "client.pcap", where / "server.pcap"
    wrpcap(str(cpath), client)
    wrpcap(str(spath), server)
    return cpath, spath


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(["analyze", *argv])
    out = capsys.readouterr()
    code = e.value.code
    return (code if isinstance(code, int) else 1), out.out, out.err


def _have_correlator() -> bool:
    try:
        import tracer.correlate as c
    except ImportError:
        return False
    return all(hasattr(c, n) for n in ("PointFrames", "correlate", "select", "build_path"))


needs_correlator = pytest.mark.skipif(not _have_correlator(), reason="tracer.correlate not built")


# --- usage and input errors: exit codes and messages ---------------------------------------------


def test_help_teaches_run_dir_point_spec_match_and_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "RUN/manifest.json" in out and "RUN/points/" in out
    assert "ROLE:NAME[@NODE]=FILE" in out and "--point client:web-client@node-a=client.pcap" in out
    assert "--match SPEC" in out
    assert "0 ok" in out and "2 usage" in out and "3 no request found" in out


def test_nothing_given_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 2 and out == ""
    assert "give a RUN directory or --point" in err


def test_run_and_point_are_exclusive(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, str(tmp_path), "--point", f"client:c={tmp_path}/x.pcap")
    assert code == 2
    assert "not both" in err


def test_list_with_request_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "runs/x", "--list", "--request", "1")
    assert code == 2 and "--list" in err


def test_bad_point_spec_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--point", "pod:web=client.pcap")
    assert code == 2
    assert "'pod:web=client.pcap'" in err and "ROLE:NAME[@NODE]=FILE" in err
    assert "Traceback" not in err


def test_missing_file_exits_1_naming_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "client.pcap"
    code, _, err = run(capsys, "--point", f"client:c={missing}")
    assert code == 1
    assert str(missing) in err and "not found" in err


def test_not_a_run_directory_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, str(tmp_path))
    assert code == 1
    assert "no manifest.json" in err


def test_garbage_capture_exits_1_naming_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"this is not a capture file at all, just text\n" * 3)
    code, _, err = run(capsys, "--point", f"client:c={bad}")
    assert code == 1
    assert str(bad) in err and "Traceback" not in err


# --- end to end over real capture files ----------------------------------------------------------


@needs_correlator
def test_json_end_to_end_through_a_dnat(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cpath, spath = write_clusterip_captures(tmp_path)
    code, out, err = run(
        capsys,
        "--point",
        f"client:c@node-a={cpath}",
        "--point",
        f"server:s@node-a={spath}",
        "--format",
        "json",
    )
    assert code == 0, err
    doc = json.loads(out)
    check_path_document(doc)
    r = doc["request"]
    assert (r["protocol"], r["client"], r["destination"]) == (
        "tcp",
        "10.244.1.7:53700",
        "10.96.0.100:80",
    )
    assert r["backend"] == "10.244.2.9:8080"
    assert r["summary"] == "HTTP GET /hello (Host web) -> 200"
    assert r["start_ns"] == int(T0 * 10**9)
    assert [h["point"] for h in doc["forward"]] == ["c", "s"]
    assert doc["forward"][0]["t_ns"] == 0
    assert doc["forward"][1]["t_ns"] == 200_000  # the one-way delay written into the files
    kinds = [h["translation"]["kind"] for h in doc["forward"] + doc["reverse"] if h["translation"]]
    assert "DNAT" in kinds
    dnat = next(h["translation"] for h in doc["forward"] if h["translation"])
    assert dnat["before"]["dst"] == "10.96.0.100:80" and dnat["after"]["dst"] == "10.244.2.9:8080"


@needs_correlator
def test_table_list_and_selection(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cpath, spath = write_clusterip_captures(tmp_path)
    points = ["--point", f"client:c@node-a={cpath}", "--point", f"server:s@node-a={spath}"]
    code, out, err = run(capsys, *points)
    assert code == 0, err
    assert "DNAT 10.96.0.100:80 → 10.244.2.9:8080" in out
    assert "HTTP GET /hello (Host web) -> 200" in out

    code, out, err = run(capsys, *points, "--list")
    assert code == 0, err
    # The exchange written has no FINs: the capture ended inside the connection.
    assert out.startswith("1 connection: 1 incomplete")
    rows = out.split("\n\n")[-1].splitlines()[2:]
    assert len(rows) == 1 and rows[0].split()[:3] == ["0", "0.000", "tcp"]
    assert "HTTP GET /hello" in rows[0]

    # Triage: the filters, in table and JSON; a bad expression is a usage error naming it.
    code, out, err = run(capsys, *points, "--failed", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert [c["outcome"] for c in doc["connections"]] == ["incomplete"]
    assert doc["summary"]["outcomes"]["incomplete"] == 1
    code, out, err = run(capsys, *points, "--where", "outcome=incomplete,status>=200,total<10s")
    assert code == 0 and "HTTP GET /hello" in out, err
    code, out, err = run(capsys, *points, "--where", "status>=500", "--format", "jsonl")
    assert code == 0 and out == "", err
    code, out, err = run(capsys, *points, "--slowest", "1", "--format", "csv")
    assert code == 0 and out.splitlines()[1].startswith("0,tcp,"), err
    code, out, err = run(capsys, *points, "--sort", "total", "--format", "json")
    assert code == 0 and json.loads(out)["connections"][0]["http_status"] == 200, err
    code, _, err = run(capsys, *points, "--where", "latency>2")
    assert code == 2 and "unknown key 'latency'" in err and "Traceback" not in err
    code, _, err = run(capsys, *points, "--format", "csv")
    assert code == 2 and "--list" in err

    code, out, err = run(capsys, *points, "--list", "--format", "json")
    assert code == 0, err
    listed = json.loads(out)["connections"]
    assert [(c["index"], c["destination"], c["backend"]) for c in listed] == [
        (0, "10.96.0.100:80", "10.244.2.9:8080")
    ]

    code, _, err = run(capsys, *points, "-o", str(tmp_path / "no-such-dir" / "out.txt"))
    assert code == 1 and "no-such-dir" in err and "Traceback" not in err

    code, out, err = run(capsys, *points, "--request", "7")
    assert code == 3 and out == ""
    assert "pathtrace: error:" in err


@needs_correlator
def test_output_file_and_run_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "points").mkdir(parents=True)
    write_clusterip_captures(run_dir / "points")
    manifest = {
        "schema": "pathtrace-run/v1",
        "source": "import",
        "created": "2024-05-01T12:00:00Z",
        "points": [
            {"name": "client", "role": "client", "node": "node-a", "file": "points/client.pcap"},
            {"name": "server", "role": "server", "node": "node-a", "file": "points/server.pcap"},
        ],
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    target = tmp_path / "path.json"
    code, out, err = run(capsys, str(run_dir), "--format", "json", "-o", str(target))
    assert code == 0, err
    assert out == ""
    doc = json.loads(target.read_text())
    check_path_document(doc)
    assert [h["point"] for h in doc["forward"]] == ["client", "server"]


# --- end to end over synthetic kube-proxy scenarios (ground truth: the scenario itself) ---------


def write_run(scenario: Any, run_dir: Path) -> Path:
    """The scenario as a run directory: one Ethernet pcapng per point, and its manifest."""
    from tracer.rundir import Manifest, write_manifest
    from tracer.testing.wire import write_pcapng

    (run_dir / "points").mkdir(parents=True)
    points = []
    for p in scenario.points:
        file = f"points/{p.name}.pcapng"
        write_pcapng(run_dir / file, scenario.frames[p.name])
        points.append(replace(p, file=file))
    write_manifest(run_dir, Manifest("import", "2024-05-01T12:00:00Z", tuple(points)))
    return run_dir


def _analyze_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, *argv, "--format", "json")
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    check_path_document(doc)
    return doc


@needs_correlator
def test_dnat_scenario_across_two_clocks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tracer.testing.synth import dnat_scenario

    sc = dnat_scenario(offsets={"node-b": 3_000_000})  # node-b's clock runs 3 ms ahead
    doc = _analyze_json(capsys, str(write_run(sc, tmp_path / "run")))
    r = doc["request"]
    assert r["client"] == str(sc.client.src) and r["destination"] == str(sc.client.dst)
    assert r["backend"] == str(sc.backend)
    assert r["summary"] == "HTTP GET / (Host web) -> 200"
    syn = sc.first("syn", "forward")
    assert [h["point"] for h in doc["forward"]] == [pt for pt, _ in syn.sightings]
    bound = max((c["error_bound_ns"] for c in doc["clocks"]), default=0)
    for hop, true_ns in zip(doc["forward"], syn.true_ns, strict=True):
        assert abs(hop["t_ns"] - (true_ns - syn.true_ns[0])) <= bound
    ((_, dnat),) = sc.forward_translations
    got = [h["translation"] for h in doc["forward"] if h["translation"]]
    assert got == [
        {
            "kind": "DNAT",
            "before": {"src": str(dnat.before.src), "dst": str(dnat.before.dst)},
            "after": {"src": str(dnat.after.src), "dst": str(dnat.after.dst)},
        }
    ]
    code, out, _ = run(capsys, str(tmp_path / "run"))
    assert code == 0
    assert f"DNAT {dnat.before.dst} → {dnat.after.dst}" in out
    assert "node-b against node-a" in out or "node-a against node-b" in out


@needs_correlator
def test_nodeport_scenario_shows_dnat_and_snat(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tracer.testing.synth import nodeport_scenario

    sc = nodeport_scenario()
    doc = _analyze_json(capsys, str(write_run(sc, tmp_path / "run")))
    kinds = {h["translation"]["kind"] for h in doc["forward"] if h["translation"]}
    assert kinds == {t.kind for _, t in sc.forward_translations}
    assert doc["request"]["backend"] == "10.244.2.9:8080"
    rkinds = {h["translation"]["kind"] for h in doc["reverse"] if h["translation"]}
    assert rkinds == {t.kind for _, t in sc.reverse_translations}


@needs_correlator
def test_dns_scenario_summary_and_match(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from tracer.testing.synth import dns_scenario

    run_dir = str(write_run(dns_scenario(), tmp_path / "run"))
    doc = _analyze_json(capsys, run_dir, "--match", "dst=10.96.0.10:53,proto=udp")
    assert doc["request"]["protocol"] == "udp"
    assert doc["request"]["summary"] == (
        "DNS A web.default.svc.cluster.local -> 10.96.0.100 (NOERROR)"
    )
    code, out, err = run(capsys, run_dir, "--match", "proto=icmp")
    assert code == 3 and out == "" and "no connection matches" in err


# --- the lab's recorded runs (ground truth: each manifest's extra.lab and its node facts) --------

PCAPS = Path(__file__).resolve().parents[2] / "pcaps"


def _lab(run: str) -> dict[str, Any]:
    lab: dict[str, Any] = json.loads((PCAPS / run / "manifest.json").read_text())["extra"]["lab"]
    return lab


def _sep_chain(run: str, node: str, backend: str) -> str:
    """The KUBE-SEP chain of the lab's Service that DNATs to `backend` (node's iptables-save)."""
    text = (PCAPS / run / "nodes" / node / "iptables-save.txt").read_text()
    service = _lab(run)["service"]
    (chain,) = {
        line.split()[1]
        for line in text.splitlines()
        if line.startswith("-A KUBE-SEP-")
        and f"--to-destination {backend}" in line
        and f'"{service}:' in line
    }
    return chain


def _conntrack_line(run: str, node: str, original_src_port: str) -> str:
    lines = (PCAPS / run / "nodes" / node / "conntrack.txt").read_text().splitlines()
    (line,) = [x for x in lines if x.startswith("tcp") and f"sport={original_src_port} " in x]
    return line


@needs_correlator
def test_clusterip_remote_table_shows_dns_dnat_and_its_evidence(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lab = _lab("clusterip-remote")
    (dnat,) = lab["expected_translations"]
    code, out, err = run(capsys, str(PCAPS / "clusterip-remote"))
    assert code == 0, err
    # The lookup, above the forward path, with the search expansion and who answered.
    dns, rest = out.split("Forward path", 1)
    assert "DNS lookup  web-remote → 10.96.0.101" in dns
    assert "search-list expansions" in dns
    assert "web-remote.default.svc.cluster.local *" in dns
    assert "answered by 10.244.1.4:53 (kube-system/coredns)" in dns
    # The DNAT hop exactly as the lab configured it, on the node it names.
    row = next(line for line in rest.splitlines() if f"DNAT {dnat['from']} → {dnat['to']}" in line)
    assert row.split()[1:3] == ["node1", dnat["node"]]
    # The rule path and the conntrack entry that confirm it.
    evidence = out.split("Rule evidence", 1)[1]
    assert _sep_chain("clusterip-remote", "node1", dnat["to"]) in evidence
    assert f"conntrack: {lab['conntrack']['line']}" in evidence
    # A pod's plain pcap has no interface names: the manifest's interface is shown.
    first = next(line for line in rest.splitlines() if line.strip().startswith("1  client"))
    assert first.split()[1:4] == ["client", "node1", "eth0"]
    # Non-IP frames in an `any` capture are no warning; --verbose still shows them.
    assert "frames were not IP" not in out
    code, out, _ = run(capsys, str(PCAPS / "clusterip-remote"), "--verbose")
    assert "Notes" in out and "frames were not IP" in out.split("Notes", 1)[1]


@needs_correlator
def test_clusterip_remote_json_has_dns_evidence_and_notes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lab = _lab("clusterip-remote")
    doc = _analyze_json(capsys, str(PCAPS / "clusterip-remote"))
    assert doc["request"]["destination"] == lab["frontend"]
    assert doc["request"]["backend"] == lab["backend"]
    used = [q for q in doc["dns"] if q["used"]]
    assert len(used) == 1
    q = used[0]
    assert {k: q[k] for k in ("name", "qtype", "rcode", "answers", "server")} == {
        "name": "web-remote.default.svc.cluster.local",
        "qtype": "A",
        "rcode": "NOERROR",
        "answers": [lab["frontend"].rsplit(":", 1)[0]],
        "server": "10.244.1.4:53",
    }
    assert isinstance(q["latency_ns"], int) and q["latency_ns"] > 0
    assert all(x["search_expansion"] for x in doc["dns"])
    (fwd,) = [e for e in doc["evidence"] if e.get("direction") == "forward"]
    assert fwd["kind"] == "DNAT" and fwd["chosen"] == lab["backend"]
    chains = [r["chain"] for r in fwd["rules"]]
    assert _sep_chain("clusterip-remote", "node1", lab["backend"]) in chains
    assert fwd["conntrack"]["line"] == lab["conntrack"]["line"]
    assert not any("frames were not IP" in w for w in doc["warnings"])
    assert any("frames were not IP" in n for n in doc["notes"])


@needs_correlator
def test_nodeport_evidence_shows_dnat_and_masquerade(capsys: pytest.CaptureFixture[str]) -> None:
    lab = _lab("nodeport")
    ct = lab["conntrack"]
    doc = _analyze_json(capsys, str(PCAPS / "nodeport"))
    (fwd,) = [e for e in doc["evidence"] if e.get("direction") == "forward"]
    assert fwd["kind"] == "DNAT+SNAT" and fwd["node"] == lab["snat_node"]
    assert fwd["before"]["dst"] == lab["frontend"] and fwd["after"]["dst"] == lab["backend"]
    assert fwd["after"]["src"] == ct["snat_to"]  # what conntrack's reply tuple is sent to
    assert fwd["masquerade"] is True and fwd["masqueraded"] is True
    assert any("MASQUERADE" in r["rule"] for r in fwd["rules"])
    assert fwd["conntrack"]["line"] == ct["line"]
    (rev,) = [e for e in doc["evidence"] if e.get("direction") == "reverse"]
    assert rev["kind"] == "un-DNAT+un-SNAT" and rev["conntrack"]["line"] == ct["line"]
    code, out, err = run(capsys, str(PCAPS / "nodeport"))
    assert code == 0, err
    assert "masquerade: rules yes, packets yes" in out
    assert f"conntrack: {_conntrack_line('nodeport', 'node1', ct['original']['sport'])}" in out


@needs_correlator
def test_mermaid_names_every_point_and_the_rewrite(capsys: pytest.CaptureFixture[str]) -> None:
    lab = _lab("clusterip-remote")
    (dnat,) = lab["expected_translations"]
    code, out, err = run(capsys, str(PCAPS / "clusterip-remote"), "--format", "mermaid")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "sequenceDiagram"
    participants = [line.split()[3] for line in lines if line.strip().startswith("participant")]
    assert participants == lab["expected_path"]
    assert any(
        line.strip().startswith("Note over") and f"DNAT {dnat['from']} → {dnat['to']}" in line
        for line in lines
    )


@needs_correlator
def test_diagram_svg_and_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import shutil
    import xml.etree.ElementTree as ET

    lab = _lab("clusterip-remote")
    svg = tmp_path / "path.svg"
    code, out, err = run(capsys, str(PCAPS / "clusterip-remote"), "--diagram", str(svg))
    assert code == 0, err
    assert "Forward path" in out  # the report is still printed
    root = ET.fromstring(svg.read_text())
    texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert [p for p in lab["expected_path"] if p in texts] == lab["expected_path"]
    assert any(f"DNAT {lab['frontend']}" in t for t in texts)
    if shutil.which("rsvg-convert") is None:
        pytest.skip("rsvg-convert is not installed: the PNG half is not tested")
    png = tmp_path / "path.png"
    code, _, err = run(capsys, str(PCAPS / "clusterip-remote"), "--diagram", str(png))
    assert code == 0, err
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert width > 500 and height > 500


def test_html_report_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lab = _lab("clusterip-remote")
    page = tmp_path / "r.html"
    code, out, err = run(capsys, str(PCAPS / "clusterip-remote"), "--html", str(page))
    assert code == 0, err
    assert "Forward path" in out  # the report is still printed
    assert f"wrote {page}" in err
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert f"DNAT {lab['frontend']}" in text
    assert 'id="connections"' in text  # the run holds a DNS lookup and the request


def test_html_with_list_writes_every_connection_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    page = tmp_path / "r.html"
    code, out, err = run(capsys, str(PCAPS / "clusterip-remote"), "--list", "--html", str(page))
    assert code == 0, err
    text = page.read_text(encoding="utf-8")
    assert 'id="connections"' in text and 'id="ladder"' not in text


def test_html_needs_an_html_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, str(PCAPS / "clusterip-remote"), "--html", str(tmp_path / "r.txt"))
    assert code == 2
    assert "must end in .html" in err


def _pcapng_comments(data: bytes) -> list[str]:
    """The opt_comment of every Enhanced Packet Block (little-endian files only)."""
    import struct

    out: list[str] = []
    pos = 0
    while pos + 12 <= len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        if btype == 6:
            caplen = struct.unpack_from("<I", data, pos + 20)[0]
            opt = pos + 28 + caplen + (-caplen % 4)
            while opt + 4 <= pos + blen - 4:
                code, olen = struct.unpack_from("<HH", data, opt)
                if code == 0:
                    break
                if code == 1:
                    out.append(data[opt + 4 : opt + 4 + olen].decode("utf-8"))
                opt += 4 + olen + (-olen % 4)
        pos += blen
    return out


@needs_correlator
def test_pcapng_holds_every_frame_of_the_connection(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import numpy as np

    from tracer.pcap import read_frames

    lab = _lab("clusterip-remote")
    port = int(lab["conntrack"]["original"]["sport"])  # the client's port: no SNAT in this run
    expected = 0
    for name in lab["expected_path"]:
        f = read_frames(str(PCAPS / "clusterip-remote" / "points" / f"{name}.pcap"))
        c = f.columns
        expected += int(np.sum((c["proto"] == 6) & ((c["sport"] == port) | (c["dport"] == port))))
    out_file = tmp_path / "merged.pcapng"
    code, _, err = run(capsys, str(PCAPS / "clusterip-remote"), "--pcapng", str(out_file))
    assert code == 0, err
    merged = read_frames(str(out_file))
    m = merged.columns
    tcp = (m["proto"] == 6) & ((m["sport"] == port) | (m["dport"] == port))
    dns = (m["proto"] == 17) & ((m["sport"] == 53) | (m["dport"] == 53))
    assert int(np.sum(tcp)) == expected
    # The lookup that gave the client the Service address is in the trace, with the DNS point.
    assert int(np.sum(dns)) > 0 and len(merged) == expected + int(np.sum(dns))
    assert f"{len(merged)} packets of request #1 and its DNS lookup #0 from 5 capture" in err
    assert "open it with: wireshark -o tcp.analyze_sequence_numbers:FALSE" in err
    comments = _pcapng_comments(out_file.read_bytes())
    assert len(comments) == len(merged)
    assert any(" at coredns " in c for c in comments)
    assert any(f"DNAT {lab['frontend']} → {lab['backend']}" in c for c in comments)
    times = np.asarray(merged.columns["t_ns"])
    assert bool(np.all(np.diff(times) >= 0))  # one clock, in order


@needs_correlator
def test_bare_points_have_no_evidence_and_no_error(capsys: pytest.CaptureFixture[str]) -> None:
    points = PCAPS / "clusterip-remote" / "points"
    argv = ["--point", f"client:c={points}/client.pcap", "--point", f"server:s={points}/web-b.pcap"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "Rule evidence" not in out and "DNS lookup  web-remote" in out
    doc = _analyze_json(capsys, *argv)
    assert doc["evidence"] is None
    assert doc["forward"][0]["interface"] is None  # nothing names it: nothing is invented


def test_output_options_are_checked_before_reading(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, str(tmp_path), "--diagram", str(tmp_path / "x.gif"))
    assert code == 2 and ".svg or .png" in err
    code, _, err = run(capsys, str(tmp_path), "--list", "--pcapng", str(tmp_path / "m.pcapng"))
    assert code == 2 and "--pcapng" in err
    code, _, err = run(capsys, str(tmp_path), "--list", "--format", "mermaid")
    assert code == 2 and "mermaid" in err


def test_help_has_an_example_for_each_output_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for example in (
        "--format json -o path.json",
        "--format mermaid",
        "--diagram path.svg",
        "--pcapng merged.pcapng",
        "--list",
        "--verbose",
    ):
        assert example in out, example


# --- a request through an L7 proxy (nginx ingress) is one path --------------------------------

EXTERNAL_CLIENT = "192.168.50.100"  # the lab's external client (pcaps/README.md, lab config)


def _final_backend(lab: dict[str, Any]) -> str:
    """The pod the lab's proxy sent the request to: the last hop its notes name for the second
    leg ("second leg: nginx -> SERVICE -> POD"), else the run's backend."""
    for note in lab["notes"]:
        if note.startswith("second leg:"):
            return str(note.split("->")[-1].strip())
    return str(lab["backend"])


@needs_correlator
@pytest.mark.parametrize("scenario", ["ingress", "ingress-hostnet"])
def test_proxied_request_is_one_path_in_the_table(
    capsys: pytest.CaptureFixture[str], scenario: str
) -> None:
    lab = _lab(scenario)
    backend = _final_backend(lab)
    code, out, err = run(capsys, str(PCAPS / scenario))
    assert code == 0, err
    head = out.splitlines()[0]
    # One request: from the external client, to the backend behind the proxy.
    assert f"{EXTERNAL_CLIENT}:" in head.split("→")[0]
    assert f"(backend {backend})" in head
    if lab["frontend"].startswith("192.168.50."):
        assert f"→ {lab['frontend']}" in head
    fwd = out.split("Forward path", 1)[1].split("Return path", 1)[0]
    rev = out.split("Return path", 1)[1].split("\nL7 proxy (", 1)[0]
    # The sections follow the request and its response, not the two handshakes.
    assert "first data packet" in fwd.splitlines()[0]
    assert "(SYN)" not in out and "(SYN-ACK)" not in out
    hop_lines = [line for line in fwd.splitlines() if line.strip()[:1].isdigit()]
    rows = [line.split() for line in hop_lines]
    # The path starts at the client and ends at the backend pod, crossing the proxy once.
    assert rows[0][1] == lab["expected_path"][0]
    assert rows[-1][1] == lab["expected_path"][-1] and backend in hop_lines[-1]
    proxy_rows = [r for r in rows if r[4] == "proxy"]
    assert len(proxy_rows) == 1 and proxy_rows[0][1] in lab["expected_path"]
    assert "L7 proxy: #" in fwd and "L7 proxy: #" in rev
    # The proxy section: confidence and why, and the proxy's own time also in the latency.
    section = out.split("\nL7 proxy (", 1)[1].split("\nLatency", 1)[0]
    assert "confidence high" in section and "why: same request GET /" in section
    latency = out.split("\nLatency", 1)[1].split("\n\n", 1)[0]
    proxy_line = next(line for line in latency.splitlines() if line.split()[:1] == ["proxy"])
    assert float(proxy_line.split()[1]) > 0
    # Every DNAT the lab configured shows in the rule evidence, on its node.
    evidence = out.split("Rule evidence", 1)[1]
    for x in lab["expected_translations"]:
        if x["kind"] == "DNAT":
            assert f"on {x['node']}: DNAT {x['from']} → {x['to']}" in evidence


@needs_correlator
@pytest.mark.parametrize("scenario", ["ingress", "ingress-hostnet"])
def test_proxied_request_json_has_stitches_kinds_and_proxy_time(
    capsys: pytest.CaptureFixture[str], scenario: str
) -> None:
    lab = _lab(scenario)
    code, out, err = run(capsys, str(PCAPS / scenario), "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    check_path_document(doc)
    assert doc["request"]["client"].startswith(f"{EXTERNAL_CLIENT}:")
    assert doc["request"]["backend"] == _final_backend(lab)
    (st,) = doc["stitches"]
    assert set(st) >= {"client_leg", "server_leg", "proxy", "confidence", "reasons", "proxy_ns"}
    assert doc["request"]["index"] == st["client_leg"]
    assert st["confidence"] == "high" and st["proxy"] in lab["expected_path"]
    kinds = [h["kind"] for h in doc["forward"]]
    assert kinds.count("proxy") == 1 and set(kinds) == {"packet", "proxy"}
    assert doc["latency"]["proxy_ns"] == st["proxy_ns"] > 0
    # The proxy's time is part of the client's total, never more than it.
    assert doc["latency"]["proxy_ns"] < doc["latency"]["total_ns"]
    assert doc["forward"][0]["point"] == lab["expected_path"][0]
    assert doc["forward"][-1]["point"] == lab["expected_path"][-1]
    assert doc["reverse"][-1]["point"] == lab["expected_path"][0]


@needs_correlator
def test_proxied_request_mermaid_and_pcapng_hold_both_legs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, str(PCAPS / "ingress"), "--format", "mermaid")
    assert code == 0, err
    assert "via an L7 proxy" in out
    assert "L7 proxy ingress: request of connection 1 sent on as connection 2" in out
    merged = tmp_path / "m.pcapng"
    code, _, err = run(capsys, str(PCAPS / "ingress"), "--pcapng", str(merged))
    assert code == 0, err
    assert "request #1 + #2" in err
    data = merged.read_bytes()
    assert b"connection #1 " in data and b"connection #2 " in data
    assert b"the L7 proxy sends the request on" in data


@needs_correlator
def test_rule_evidence_is_compact_unless_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    lab = _lab("clusterip-remote")
    (dnat,) = lab["expected_translations"]
    _, out, _ = run(capsys, str(PCAPS / "clusterip-remote"))
    _, verbose, _ = run(capsys, str(PCAPS / "clusterip-remote"), "--verbose")
    compact_ev = out.split("Rule evidence", 1)[1]
    full_ev = verbose.split("Rule evidence", 1)[1]
    for ev in (compact_ev, full_ev):
        # The decisive rules and the conntrack line are always there.
        assert _sep_chain("clusterip-remote", "node1", dnat["to"]) in ev
        assert "-j DNAT --to-destination " + dnat["to"] in ev
        assert f"conntrack: {lab['conntrack']['line']}" in ev
        assert "kubernetes service portals" in full_ev
    # The jumps that decide nothing only with --verbose.
    assert "[filter FORWARD]" in full_ev and "[filter FORWARD]" not in compact_ev
    assert "-j KUBE-SERVICES" in full_ev and "-j KUBE-SERVICES" not in compact_ev
    assert "--verbose shows every rule walked" in out


def test_terminal_controls_from_the_manifest_are_printed_escaped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "points").mkdir(parents=True)
    write_clusterip_captures(run_dir / "points")
    evil = "client\x1b]0;owned\x07\nserver 99 ms"
    manifest = {
        "schema": "pathtrace-run/v1",
        "points": [
            {"name": evil, "role": "client", "node": "node\x1b[2J", "file": "points/client.pcap"},
            {"name": "server", "role": "server", "node": "node-b", "file": "points/server.pcap"},
            {"name": "gone\x1b[31m", "role": "node", "file": "points/\x1b[5mmissing.pcap"},
        ],
        "warnings": ["dropped\x1b]8;;http://x\x07 packets"],
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    for args in ((), ("--list",), ("--format", "mermaid")):
        code, out, err = run(capsys, str(run_dir), *args)
        assert code == 0, err
        for text in (out, err):
            assert "\x1b" not in text and "\x07" not in text
        if "--format" not in args:
            assert "client\\x1b]0;owned\\x07\\x0aserver" in out + err


@pytest.mark.parametrize("option", ["--pcapng", "--diagram"])
def test_no_report_above_a_failed_file_write(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str
) -> None:
    client, server = write_clusterip_captures(tmp_path)
    target = tmp_path / "no-such-dir" / ("out.pcapng" if option == "--pcapng" else "out.svg")
    code, out, err = run(
        capsys,
        "--point",
        f"client:client@a={client}",
        "--point",
        f"server:server@b={server}",
        option,
        str(target),
    )
    assert code == 1 and out == ""  # nothing that reads as a result above the error
    assert str(target) in err and "Traceback" not in err


def test_html_lists_every_packet_of_a_dropped_request(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lab = _lab("drop")
    page = tmp_path / "r.html"
    code, _, err = run(capsys, str(PCAPS / "drop"), "--html", str(page))
    assert code == 0, err
    text = page.read_text(encoding="utf-8")
    section = text[
        text.index('id="exchange"') : text.index("</section>", text.index('id="exchange"'))
    ]
    rows = re.findall(r"<tr[^>]*><td class='num'>\d+</td>.*?</tr>", section)
    # The kernel retransmits an unanswered SYN; the filter rule on node2 drops every one, so each
    # was seen along the lab's path up to node2 and no further, and nothing came back.
    assert len(rows) >= 2
    assert all("SYN" in r and "→ request" in r for r in rows)
    assert all(" → ".join(lab["expected_path"]) in r for r in rows)
    assert f"{len(rows) - 1} retransmissions" in section
