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


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("--pod-cidr", "banana", "--pod-cidr 'banana' is not a CIDR"),
        ("--pod-cidr", "10.244.0.0/99", "is not a CIDR"),
        ("--pod-cidr", "10.244.0.0", "is not a CIDR"),
        ("--node-ip", "garbage", "--node-ip 'garbage' is not an IP address"),
        ("--node-ip", "10.0.0.300", "is not an IP address"),
    ],
)
def test_bad_pod_cidr_and_node_ip_are_usage_errors(
    capsys: pytest.CaptureFixture[str], option: str, value: str, why: str
) -> None:
    packet = "tcp 10.244.1.7:53700 > 10.96.0.100:80"
    code, out, err = run(
        capsys, str(DATA / "iptables-nft-save.txt"), "--packet", packet, option, value
    )
    assert code == 2 and why in err and out == ""


@pytest.mark.parametrize(
    ("rules", "packet", "why"),
    [
        (
            "iptables-nft-save.txt",
            "tcp [fd00::7]:53700 > [fd00:10:96::100]:80",
            "holds IPv4 rules; the IPv6 packet",
        ),
        ("nft-ruleset.txt", "tcp [fd00::7]:53700 > [fd00:10:96::100]:80", "holds IPv4 rules"),
        ("iptables-nft-save.txt", "tcp [fd00::7]:53700 > 10.96.0.100:80", "source is IPv6"),
        ("iptables-nft-save.txt", "tcp 10.244.1.7:53700 > [fd00:10:96::100]:80", "source is IPv4"),
    ],
)
def test_a_packet_of_the_other_family_is_not_walked(
    capsys: pytest.CaptureFixture[str], rules: str, packet: str, why: str
) -> None:
    code, out, err = run(capsys, str(DATA / rules), "--packet", packet)
    assert code == 2 and why in err
    assert "DNAT" not in out and out == ""


def test_ipv6_rules_walk_an_ipv6_packet_and_refuse_an_ipv4_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    v6 = tmp_path / "ip6tables-save.txt"
    v6.write_text(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-X - [0:0]\n"
        ":KUBE-SEP-A - [0:0]\n"
        "-A PREROUTING -j KUBE-SERVICES\n"
        '-A KUBE-SERVICES -d fd00:10:96::100/128 -p tcp -m comment --comment "default/web:http"'
        " -m tcp --dport 80 -j KUBE-SVC-X\n"
        "-A KUBE-SVC-X -j KUBE-SEP-A\n"
        "-A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination [fd00:10:244:1::5]:8080\nCOMMIT\n"
    )
    code, out, _ = run(capsys, str(v6), "--packet", "tcp [fd00::7]:53700 > [fd00:10:96::100]:80")
    assert code == 0 and "[fd00:10:244:1::5]:8080" in out
    code, _, err = run(capsys, str(v6), "--packet", "tcp 10.244.1.7:53700 > 10.96.0.100:80")
    assert code == 2 and "holds IPv6 rules; the IPv4 packet" in err and "iptables-save" in err


def test_a_missing_rules_file_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, str(tmp_path / "gone.txt"), "--packet", "tcp 10.0.0.1 > 10.0.0.2:80")
    assert code == 1 and f"{tmp_path / 'gone.txt'}" in err


def test_a_latin1_byte_and_escapes_in_a_rules_comment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rules = tmp_path / "iptables-save.txt"
    data = (DATA / "iptables-nft-save.txt").read_bytes()
    marker = b'--comment "default/web:http'
    assert marker in data
    rules.write_bytes(
        data.replace(marker, b'--comment "default/web:http caf\xe9 \x1b]0;pwned\x07', 1)
    )
    code, out, err = run(capsys, str(rules), "--packet", "tcp 10.244.1.7:53700 > 10.96.0.100:80")
    assert code == 0 and "Traceback" not in err
    assert "\x1b" not in out and "\x07" not in out
