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


def test_output_streams_a_piece_at_a_time(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tracer.cli.packets as packets
    import tracer.pcap.reader as reader
    from tracer.pcap import read_frames
    from tracer.pcap.listing import records

    path = tmp_path / "many.pcap"
    path.write_bytes(
        c.pcap(
            [
                c.Rec(c.eth(c.ipv4(c.udp(b"x" * k, 1000 + k, 53), 17, ip_id=k)), 10**18 + k)
                for k in range(2500)
            ]
        )
    )
    decoded: list[int] = []
    real = reader._decode_index

    def counting(buf: object, index: reader.FrameIndex, *args: object) -> object:
        decoded.append(len(index))
        return real(buf, index, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(reader, "_decode_index", counting)
    monkeypatch.setattr(packets, "PIECE_ROWS", 1000)
    code, out, _ = run(capsys, str(path), "--limit", "3")
    assert code == 0 and len(out.splitlines()) == 4
    assert decoded == [1000]  # only the first piece was decoded for three lines
    decoded.clear()
    code, out, _ = run(capsys, str(path), "--format", "jsonl")
    assert decoded == [1000, 1000, 500]
    whole = [json.dumps(r, separators=(",", ":")) for r in records(read_frames(path))]
    assert out.splitlines() == whole  # the pieces give exactly what one read gives
    code, out, _ = run(capsys, str(path), "--format", "jsonl", "--limit", "1500")
    assert out.splitlines() == whole[:1500]


@pytest.mark.parametrize("kind", ["directory", "fifo", "loop", "unreadable"])
def test_packets_and_analyze_agree_on_a_file_that_cannot_be_read(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    import os

    path = tmp_path / "x.pcap"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "loop":
        path.symlink_to(path)
    else:
        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        path.write_bytes(b"")
        path.chmod(0)
    code, out, err = run(capsys, str(path))
    with pytest.raises(SystemExit) as e:
        main(["analyze", "--point", f"client:c={path}"])
    a_err = capsys.readouterr().err
    assert code == e.value.code == 1 and out == ""
    assert err.splitlines()[0] in a_err  # the same message, naming the file
    assert str(path) in err and "not found" not in err


def test_escapes_in_interface_names_are_printed_escaped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sll2_file: Path
) -> None:
    path = tmp_path / "named.pcapng"
    evil = "eth0\x1b]0;owned\x07\n99 fake row"
    path.write_bytes(
        c.shb() + c.idb(1, name=evil) + c.epb(c.eth(c.ipv4(c.udp(b"x"), 17)), 0, 10**18)
    )
    code, out, _ = run(capsys, str(path))
    assert code == 0 and len(out.splitlines()) == 2
    assert "\x1b" not in out and "\x07" not in out and "eth0\\x1b]0;owned\\x07\\x0a99" in out
    links = tmp_path / "links.json"
    links.write_text(json.dumps({"7": "veth\x1b[2J", "3": "cni\r0"}))
    code, out, _ = run(capsys, str(sll2_file), "--links", str(links))
    assert code == 0 and "\x1b" not in out and "\r" not in out and "veth\\x1b[2J" in out


def test_a_capture_in_a_run_takes_the_runs_interface_names(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sll2_file: Path
) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "points").mkdir(parents=True)
    (run_dir / "nodes" / "node1").mkdir(parents=True)
    (run_dir / "points" / "node1.pcap").write_bytes(sll2_file.read_bytes())
    (run_dir / "nodes" / "node1" / "links.json").write_text(
        json.dumps([{"ifindex": 7, "ifname": "vethc0ffee"}, {"ifindex": 3, "ifname": "cni0"}])
    )
    manifest = {
        "schema": "pathtrace-run/v1",
        "points": [{"name": "node1", "role": "node", "file": "points/node1.pcap", "node": "node1"}],
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    code, out, err = run(capsys, str(run_dir / "points" / "node1.pcap"), "--format", "jsonl")
    assert code == 0 and err == ""
    assert [json.loads(line)["interface"] for line in out.splitlines()] == [
        "vethc0ffee",
        "cni0",
        "cni0",
    ]
