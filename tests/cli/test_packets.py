"""`pathtrace packets` as a user runs it: table, JSON lines, --links, --limit, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.pcap import craft as c
from tracer.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(["packets", *args])
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


@pytest.fixture
def sll2_file(tmp_path: Path) -> Path:
    frames = [
        c.sll2(
            c.ipv4(
                c.tcp(flags=0x02, seq=100, options=c.opt_syn(1460, 1, 0)),
                6,
                "10.244.0.5",
                "10.96.0.10",
                ip_id=1,
            ),
            7,
            4,
        ),
        c.sll2(
            c.ipv4(c.tcp(flags=0x12, seq=900, ack=101), 6, "10.244.1.9", "10.244.0.5", ip_id=0),
            3,
            0,
        ),
        c.sll2(
            c.ipv6(c.icmp_echo(9, 1, b"ping", kind=128), 58, "fd00::1", "fd00::2"), 3, 0, 0x86DD
        ),
    ]
    path = tmp_path / "any.pcap"
    path.write_bytes(c.pcap(frames, 276))
    return path


def test_jsonl_one_object_per_frame(capsys: pytest.CaptureFixture[str], sll2_file: Path) -> None:
    code, out, err = run(capsys, str(sll2_file), "--format", "jsonl")
    assert code == 0 and err == ""
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["frame"] for d in docs] == [1, 2, 3]  # numbered as Wireshark numbers them
    syn, synack, echo = docs
    assert (syn["interface"], syn["direction"], syn["flags"], syn["seq"]) == ("7", "out", "S", 100)
    assert (syn["src"], syn["dst"], syn["dport"]) == ("10.244.0.5", "10.96.0.10", 80)
    assert (synack["flags"], synack["ack"], synack["ip_id"], synack["direction"]) == (
        "S.",
        101,
        0,
        "in",
    )
    assert (echo["proto"], echo["icmp_type"], echo["icmp_code"], echo["ip_id"]) == (
        "icmpv6",
        128,
        0,
        None,
    )
    assert "icmp_type" not in syn


def test_json_alias_and_links_name_the_interfaces(
    capsys: pytest.CaptureFixture[str], sll2_file: Path, tmp_path: Path
) -> None:
    links = tmp_path / "links.json"
    links.write_text(
        json.dumps([{"ifindex": 7, "ifname": "vethc0ffee"}, {"ifindex": 3, "ifname": "cni0"}])
    )
    code, out, _ = run(
        capsys, str(sll2_file), "--format", "json", "--links", str(links), "--limit", "2"
    )
    assert code == 0
    assert [json.loads(line)["interface"] for line in out.splitlines()] == ["vethc0ffee", "cni0"]


def test_table_with_ip_o_link_text(
    capsys: pytest.CaptureFixture[str], sll2_file: Path, tmp_path: Path
) -> None:
    links = tmp_path / "links.txt"
    links.write_text("3: cni0: <BROADCAST,UP> mtu 1450\n7: veth1@if2: <UP> mtu 1450\n")
    code, out, _ = run(capsys, str(sll2_file), "--links", str(links))
    assert code == 0
    header, *lines = out.splitlines()
    assert len(lines) == 3 and "flags" in header
    assert lines[0].split()[2:4] == ["veth1", "out"] and "10.244.0.5:40000" in lines[0]
    assert " S. " in lines[1] and "icmpv6:128/0" in lines[2]


def test_not_a_capture_is_an_error_naming_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello, this is not a capture\n")
    code, out, err = run(capsys, str(bogus))
    assert code == 1 and out == ""
    assert str(bogus) in err and "Traceback" not in err


def test_bad_links_file_is_an_error(
    capsys: pytest.CaptureFixture[str], sll2_file: Path, tmp_path: Path
) -> None:
    links = tmp_path / "links.json"
    links.write_text("{ not json")
    code, _, err = run(capsys, str(sll2_file), "--links", str(links))
    assert code == 1 and str(links) in err


def test_truncated_file_warns_but_lists(
    capsys: pytest.CaptureFixture[str], sll2_file: Path
) -> None:
    sll2_file.write_bytes(sll2_file.read_bytes()[:-5])
    code, out, err = run(capsys, str(sll2_file), "--format", "jsonl")
    assert code == 0 and len(out.splitlines()) == 2
    assert "warning" in err and str(sll2_file) in err


def test_usage_error_for_an_unknown_format(
    capsys: pytest.CaptureFixture[str], sll2_file: Path
) -> None:
    code, _, _ = run(capsys, str(sll2_file), "--format", "xml")
    assert code == 2


def test_closing_the_pipe_early_is_not_an_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "many.pcap"
    path.write_bytes(c.pcap([c.eth(c.ipv4(c.udp(b"x" * 50), 17))] * 30000))
    cmd = [sys.executable, "-c", "from tracer.cli import main; main()", "packets", str(path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0
    assert first.split()[:2] == [b"frame", b"time"] and b"Traceback" not in err
