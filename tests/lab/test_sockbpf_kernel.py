"""The socket load-balancer in the real kernel: a cgroup v2 directory with the connect4,
sendmsg4 and recvmsg4 programs; processes inside it reach the backend when they ask for the
frontend, over TCP and UDP, and the cgroup is gone afterwards on every exit path."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracer.errors import LabError
from tracer.lab import sockbpf

FRONTEND = "10.96.0.250"


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (loads BPF programs)"
    try:
        sockbpf.cgroup2_root()
    except LabError as e:
        return e.message
    return None


pytestmark = pytest.mark.skipif(_unavailable() is not None, reason=str(_unavailable()))


@pytest.fixture
def cgroup() -> Iterator[Path]:
    cg = sockbpf.cgroup2_root() / f"{sockbpf.CGROUP_PREFIX}test-{os.getpid()}-{os.urandom(3).hex()}"
    cg.mkdir()
    try:
        yield cg
    finally:
        assert sockbpf.remove_cgroup(cg)
    assert not cg.exists()


def _in_cgroup(cg: Path, code: str) -> str:
    p = subprocess.run(
        ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(cg), sys.executable, "-c", code],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_connect_and_sendmsg_reach_the_backend(cgroup: Path) -> None:
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tport, uport = tcp.getsockname()[1], udp.getsockname()[1]

    def echo() -> None:
        data, peer = udp.recvfrom(100)
        udp.sendto(data, peer)

    threading.Thread(target=echo, daemon=True).start()
    lb = sockbpf.SocketLB(cgroup)
    try:
        lb.install(
            [
                sockbpf.Frontend(FRONTEND, 80, "TCP", "127.0.0.1", tport),
                sockbpf.Frontend(FRONTEND, 53, "UDP", "127.0.0.1", uport),
            ]
        )
        assert ((FRONTEND, 80, "TCP"), ("127.0.0.1", tport)) in set(lb.entries())
        peer = _in_cgroup(
            cgroup,
            f"import socket; s = socket.create_connection(('{FRONTEND}', 80), timeout=5);"
            " print(*s.getpeername())",
        )
        assert peer == f"127.0.0.1 {tport}"  # the socket is connected straight to the backend
        # UDP without connect(): sendmsg4 out, recvmsg4 turns the reply's source back.
        reply = _in_cgroup(
            cgroup,
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
            f" s.settimeout(5); s.sendto(b'hi', ('{FRONTEND}', 53));"
            " data, peer = s.recvfrom(100); print(data.decode(), *peer)",
        )
        assert reply == f"hi {FRONTEND} 53"
        # Outside the cgroup nothing is rewritten: never connected to the backend.
        try:
            s = socket.create_connection((FRONTEND, 80), timeout=0.3)
        except OSError:
            pass
        else:
            with s:
                assert s.getpeername()[0] == FRONTEND
    finally:
        lb.close()
        tcp.close()
        udp.close()


def test_remove_cgroup_refuses_other_names(tmp_path: Path) -> None:
    with pytest.raises(LabError):
        sockbpf.remove_cgroup(tmp_path)
