"""`pathtrace explain` as a user runs it: exit codes, text and the JSON contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracer.cli import main

DATA = Path(__file__).resolve().parent.parent / "rules" / "data"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(["explain", *args])
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_json_for_nodeport_from_outside(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        str(DATA / "iptables-nft-save.txt"),
        "--packet",
        "tcp 203.0.113.5:51000 > 192.168.49.2:30080",
        "--node-ip",
        "192.168.49.2",
        "--from",
        "external",
        "--format",
        "json",
    )
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == {"verdict", "endpoints", "masquerade", "rules", "warnings"}
    assert doc["verdict"] == "DNAT" and doc["masquerade"] is True
    assert doc["endpoints"] == [
        {"address": "10.244.1.30:80", "probability": 0.5},
        {"address": "10.244.2.31:80", "probability": 0.5},
    ]
    assert {"table", "chain", "rule", "comment"} == set(doc["rules"][0])


def test_text_for_lb_source_range_drop_in_nft_mode(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        str(DATA / "nft-ruleset.txt"),
        "--packet",
        "tcp 198.51.100.7 > 172.18.255.10:80",
        "--from",
        "external",
    )
    assert code == 0
    assert "Verdict: DROP" in out and "firewall-D2RGPZ6L-default/lb/tcp/http" in out


def test_node_ip_makes_the_packet_local(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        str(DATA / "iptables-legacy-save.txt"),
        "--packet",
        "tcp 192.168.49.2 > 10.96.0.100:80",
        "--node-ip",
        "192.168.49.2",
        "--format",
        "json",
    )
    doc = json.loads(out)
    assert code == 0 and doc["masquerade"] is True and len(doc["endpoints"]) == 3


def test_bad_packet_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, str(DATA / "nft-ruleset.txt"), "--packet", "tcp 10.0.0.1 -> 10.0.0.2"
    )
    assert code == 2 and "expected 'PROTO SRC_IP[:PORT] > DST_IP:PORT'" in err


def test_missing_packet_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, str(DATA / "nft-ruleset.txt"))
    assert code == 2 and "--packet" in err


def test_unreadable_and_unknown_files_are_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, str(tmp_path / "nope.txt"), "--packet", "tcp 10.0.0.1 > 10.0.0.2:80")
    assert code == 1 and "nope.txt" in err and "Traceback" not in err
    junk = tmp_path / "junk.txt"
    junk.write_bytes(b"\x00\xffnot rules\n")
    code, _, err = run(capsys, str(junk), "--packet", "tcp 10.0.0.1 > 10.0.0.2:80")
    assert code == 1 and "neither iptables-save" in err


def test_truncated_dump_explains_what_it_can_and_warns(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = (DATA / "iptables-nft-save.txt").read_text()
    cut = tmp_path / "cut.txt"
    cut.write_text(text[: text.index("-A KUBE-SVC-JSLCNGWSGB5JPS5Q")])
    code, out, _ = run(
        capsys, str(cut), "--packet", "tcp 10.244.1.7 > 10.96.0.100:80", "--format", "json"
    )
    doc = json.loads(out)
    assert code == 0 and doc["verdict"] == "DNAT"
    assert any("no COMMIT" in w for w in doc["warnings"])


def test_source_outside_the_pod_cidr_is_told_as_arriving_from_outside(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The lab's rules carry kube-proxy's own pod CIDR (`! -s 10.244.0.0/16 … KUBE-MARK-MASQ`).
    rules = Path(__file__).resolve().parents[2] / "pcaps/nodeport/nodes/node1/iptables-save.txt"
    code, out, _ = run(
        capsys, str(rules), "--packet", "tcp 192.168.50.100:40000 > 192.168.50.11:30080"
    )
    assert code == 0
    assert "arrives on an external interface" in out.splitlines()[0]
    code, out, _ = run(capsys, str(rules), "--packet", "tcp 10.244.1.2:40000 > 10.96.0.101:80")
    assert "comes from a pod interface" in out.splitlines()[0]
