"""The merged pcapng: every packet of the request, from every point, readable back intact."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tracer.correlate import build_path, correlate
from tracer.inputs import LoadedRun, load_run
from tracer.model import Connection
from tracer.model import Path as TracePath
from tracer.pcap import read_frames
from tracer.report.pcapng import (
    plan_packets,
    point_offsets,
    wireshark_command,
    write_merged_pcapng,
)

RUN = Path(__file__).resolve().parents[2] / "pcaps" / "nodeport"


@pytest.fixture(scope="module")
def traced() -> tuple[LoadedRun, Connection, TracePath]:
    loaded = load_run(RUN)
    corr = correlate(loaded.points)
    conn = corr.connection(0)
    return loaded, conn, build_path(corr, conn)


def test_every_packet_is_written_with_its_comment(
    traced: tuple[LoadedRun, Connection, TracePath], tmp_path: Path
) -> None:
    loaded, conn, path = traced
    out = tmp_path / "request.pcapng"
    n = write_merged_pcapng(out, loaded.points, conn, path)
    sightings = {(o.point, o.frame) for j in conn.journeys for o in j.observations}
    assert n == len(sightings)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    back = read_frames(out)
    assert len(back) == n
    assert len(back.comments) == n
    names = set(back.interfaces.values())
    assert all("/" in name for name in names)
    # The bytes are the source's: the same TCP sequence numbers, in corrected-time order.
    sources = {p.point.name: p.frames for p in loaded.points}
    plan = plan_packets(conn, path)
    for i, pk in enumerate(plan):
        src = sources[pk.point]
        assert int(back.columns["seq"][i]) == int(src.columns["seq"][pk.frame])
        assert int(back.columns["sport"][i]) == int(src.columns["sport"][pk.frame])
    t = back.columns["t_ns"]
    assert all(int(a) <= int(b) for a, b in zip(t, t[1:], strict=False))


def test_times_are_clock_corrected(traced: tuple[LoadedRun, Connection, TracePath]) -> None:
    _, conn, path = traced
    offs = point_offsets(path)
    plan = plan_packets(conn, path)
    obs = {(o.point, o.frame): o for j in conn.journeys for o in j.observations}
    for pk in plan:
        o = obs[(pk.point, pk.frame)]
        assert pk.t_ns == o.t_ns - offs.get(pk.point, 0)


def test_rewrite_is_in_the_comment(traced: tuple[LoadedRun, Connection, TracePath]) -> None:
    _, conn, path = traced
    comments = [p.comment for p in plan_packets(conn, path)]
    assert any("DNAT 192.168.50.11:30080 → 10.244.2.3:8080" in c for c in comments)
    assert any("path forward hop 1" in c for c in comments)


def _tshark(path: Path, *args: str) -> list[list[str]]:
    proc = subprocess.run(
        ["tshark", "-r", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [line.split("\t") for line in proc.stdout.splitlines()]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_reads_every_packet_and_comment(
    traced: tuple[LoadedRun, Connection, TracePath], tmp_path: Path
) -> None:
    loaded, conn, path = traced
    out = tmp_path / "request.pcapng"
    n = write_merged_pcapng(out, loaded.points, conn, path)
    rows = _tshark(
        out, "-T", "fields", "-e", "frame.comment", "-e", "tcp.srcport", "-e", "udp.dstport"
    )
    assert len(rows) == n
    want = [p.comment for p in plan_packets(conn, path)]
    assert [r[0] for r in rows] == want
    # Every packet still decodes: TCP, or the VXLAN UDP 8472 that tshark does not open by default.
    assert all(r[1] or r[2] == "8472" for r in rows)
    assert sum(r[2] == "8472" for r in rows) > 0


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_with_the_printed_settings_wireshark_flags_no_sighting_and_opens_vxlan(
    traced: tuple[LoadedRun, Connection, TracePath], tmp_path: Path
) -> None:
    loaded, conn, path = traced
    out = tmp_path / "request.pcapng"
    n = write_merged_pcapng(out, loaded.points, conn, path)
    fields = ["-T", "fields", "-e", "tcp.analysis.flags", "-e", "udp.dstport", "-e", "vxlan.vni"]
    plain = _tshark(out, *fields)
    # Without them, every repeat sighting of one segment reads as a retransmission or dup ACK,
    # and the overlay stays opaque UDP: what the settings are for.
    assert sum(1 for r in plain if r[0]) > 0
    assert all(not r[2] for r in plain)
    command = wireshark_command(out, "tshark").split()
    assert command[0] == "tshark" and command[-1] == str(out)
    tuned = _tshark(out, *command[1:-1], *fields)
    assert len(tuned) == n
    assert all(not r[0] for r in tuned)  # no analysis flag on any packet
    vxlan = [r for r in tuned if r[1] == "8472"]
    assert vxlan and all(r[2] for r in vxlan)  # each 8472 datagram opened as VXLAN (a VNI)
    # The capture file says the same to whoever opens it without this command.
    info = subprocess.run(
        ["capinfos", str(out)], capture_output=True, text=True, timeout=60, check=True
    )
    assert "tcp.analyze_sequence_numbers:FALSE" in info.stdout
