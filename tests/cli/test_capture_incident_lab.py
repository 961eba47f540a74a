"""Incident mode against the lab through its Kubernetes API, as the on-call engineer runs it:
background traffic, an intermittent reset at the backend, `capture --until failed`.

Needs root and network namespaces; skipped with the reason otherwise. The truth is the lab's:
the backend's log names the connections it reset, the traffic generator's log says what its
real sockets saw, and the lab's configuration says where the client and the backend are.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apiserver.test_lab_e2e import lab_up_with_api, run_cli
from tests.cli.test_capture_lab import nothing_left, pcap_records

pytestmark = [pytest.mark.netns, pytest.mark.slow]

RING = 64 * 1024


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, Any]]:
    from tracer.lab.topology import topology_from_json

    with lab_up_with_api() as up:
        up["topo"] = topology_from_json(up["state"]["topology"])
        up["kubeconfig"] = up["state"]["api"]["kubeconfig"]
        code, out, err = run_cli(["lab", "traffic", "start", "--to", "web", "--interval", "0.05"])
        assert code == 0, err
        up["traffic_log"] = Path(out.split(" log ")[1].split(";")[0])
        try:
            yield up
        finally:
            run_cli(["lab", "fault", "web-a", "--clear"])
            run_cli(["lab", "traffic", "stop"])


def when_armed(run: Path, points: int, action: Any, timeout: float = 60.0) -> threading.Thread:
    """Run `action` once every point's ring holds packets (its tcpdump is capturing)."""

    def wait() -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rings = [d for d in (run / ".ring").glob("*") if d.is_dir()]
            if len(rings) >= points and all(
                any(f.stat().st_size > 0 for f in d.glob("*.seg")) for d in rings
            ):
                action()
                return
            time.sleep(0.05)

    t = threading.Thread(target=wait, daemon=True)
    t.start()
    return t


def ports_seen(path: Path, port: int) -> list[int]:
    """TCP flags of every record to or from `port` (Ethernet or Linux SLL2, IPv4)."""
    from tracer.pcap.decode import decode_frame

    data = path.read_bytes()
    (link,) = struct.unpack_from("<I", data, 20)
    flags, off = [], 24
    while off < len(data):
        (incl,) = struct.unpack_from("<I", data, off + 8)
        row = decode_frame(data, off + 16, incl, link)
        if row.proto == 6 and port in (row.sport, row.dport):
            flags.append(row.tcp_flags)
        off += 16 + incl
    return flags


def capture(lab: dict[str, Any], run: Path, *extra: str) -> tuple[int, str, str]:
    return run_cli(
        [
            "capture", "--kubeconfig", lab["kubeconfig"], "--from", "pod/client",
            "--to", "svc/web", "-o", str(run), *extra,
        ]
    )  # fmt: skip


def test_until_failed_catches_the_reset_at_every_point(lab: dict[str, Any], tmp_path: Path) -> None:
    from tracer.lab.incident import resets_logged, traffic_log

    topo = lab["topo"]
    client, backend = topo.pod("client"), topo.pod("web-a")
    run = tmp_path / "run"
    # The fault starts once every point is armed: one request in 120 (about 6 s of traffic,
    # several times the ring at the node) is reset by web-a.
    from tracer.lab.incident import set_fault

    armed = when_armed(run, 3, lambda: set_fault("web-a", 120))
    code, out, err = capture(
        lab, run, "--until", "failed", "--duration", "60", "--ring-bytes", str(RING),
        "--keep-before", "2", "--keep-after", "1",
    )  # fmt: skip
    armed.join(timeout=10)
    run_cli(["lab", "fault", "web-a", "--clear"])
    assert code == 0, err
    m = json.loads((run / "manifest.json").read_text())
    trig = m["extra"]["trigger"]
    assert (m["extra"]["outcome"], trig["condition"], trig["outcome"]) == (
        "triggered",
        "reset",
        "reset",
    )
    ip, _, port_text = trig["connection"]["client"].rpartition(":")
    port = int(port_text)
    assert ip == client.ip and trig["connection"]["server"] == "10.96.0.100:80"
    # The lab's word: web-a reset exactly that connection, and the client's socket saw a reset.
    assert (client.ip, port) in resets_logged("web-a")
    assert (port, "reset") in [(p, o) for _, p, o, _ in traffic_log(lab["traffic_log"])]
    # The failing request at every point it crossed (no SNAT: the client port is kept), with
    # the RST from the backend at each.
    roles = sorted((p["role"], p["node"]) for p in m["points"])
    assert roles == [("client", client.node), ("node", backend.node), ("server", backend.node)]
    assert {p["pod"] for p in m["points"] if p["role"] in ("client", "server")} == {
        client.name,
        backend.name,
    }
    for p in m["points"]:
        flags = ports_seen(run / p["file"], port)
        assert any(f & 0x02 for f in flags) and any(f & 0x04 for f in flags), p["name"]
        # Bounded by the ring, whatever was seen while waiting.
        assert (run / p["file"]).stat().st_size <= RING + 24 + 300
        assert p["packets"] == len(pcap_records(run / p["file"]))
    node_point = next(p["name"] for p in m["points"] if p["role"] == "node")
    node = m["extra"]["until"]["ring"][node_point]
    assert node["seen_bytes"] > RING > node["kept_bytes"]
    assert trig["stop_requested_ns"] - trig["detected_ns"] >= 1e9  # --keep-after 1
    assert trig["stop_latency_ms"] is not None and trig["stop_latency_ms"] < 10_000
    # The analysis opens on the request that fired, then lists the window's connections.
    assert f"{client.ip}:{port}" in out.split("\n", 3)[0], (trig, out[:3000])
    assert out.count(f"{client.ip}:{port}") >= 2
    assert "fired on reset" in err
    nothing_left(lab)


def test_quiet_exits_5_and_keeps_the_last_window_or_nothing(
    lab: dict[str, Any], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    code, _, err = capture(lab, run, "--until", "reset", "--duration", "4", "--keep-before", "1")
    assert code == 5, err
    assert "did not hold in 4 s" in err
    m = json.loads((run / "manifest.json").read_text())
    assert m["extra"]["outcome"] == "quiet" and "trigger" not in m["extra"]
    assert m["extra"]["until"]["connections_seen"] > 10  # the traffic was watched
    for p in m["points"]:
        times = [t for t, _ in pcap_records(run / p["file"])]
        assert times and max(times) - min(times) <= 3.2e9  # --keep-before 1 + --keep-after 2
    nothing_left(lab)
    gone = tmp_path / "gone"
    code, _, err = capture(
        lab, gone, "--until", "reset", "--duration", "3", "--discard-if-quiet", "--no-analyze"
    )
    assert code == 5, err
    assert not gone.exists() and "nothing kept" in err
    nothing_left(lab)


def test_ctrl_c_while_armed_keeps_the_rings(
    lab: dict[str, Any], tmp_path: Path, sigint_interrupts: None
) -> None:
    run = tmp_path / "run"

    def interrupt() -> None:
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    armed = when_armed(run, 3, interrupt)
    t0 = time.monotonic()
    code, _, err = capture(lab, run, "--until", "failed", "--duration", "60", "--no-analyze")
    armed.join(timeout=10)
    assert code == 130, err
    assert time.monotonic() - t0 < 45, "the interrupt did not end the capture"
    m = json.loads((run / "manifest.json").read_text())
    assert m["extra"]["outcome"] == "interrupted"
    for p in m["points"]:
        assert p["packets"] == len(pcap_records(run / p["file"])) > 0
    assert not (run / ".ring").exists()
    nothing_left(lab)


def test_traffic_stops_and_says_what_it_met(lab: dict[str, Any]) -> None:
    code, _, err = run_cli(["lab", "traffic", "start"])
    assert code == 1 and "already running" in err
    code, out, _ = run_cli(["lab", "traffic", "stop"])
    assert code == 0 and "stopped" in out and " ok" in out
    assert run_cli(["lab", "traffic", "stop"])[1].strip() == "lab traffic: none running"
