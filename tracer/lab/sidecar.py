"""The lab's mesh sidecar: a transparent TCP proxy that works the way Envoy's sidecar does.

istio-iptables' REDIRECT sends the app's outbound connections to port 15001 and the pod's inbound
ones to 15006. The sidecar reads where each connection was going with getsockopt(SO_ORIGINAL_DST)
(the conntrack entry of the REDIRECT), opens its own connection there, and copies bytes both
ways. It runs as UID/GID 1337 (istio-proxy), whose own traffic the rules exclude; inbound it
connects from 127.0.0.6, the address the rules let through on loopback, as Envoy does.

It prints one JSON line per proxied connection: the original destination, both legs' addresses,
and the time it held the first request and the first response (its own share of the latency).
Usage: python -m tracer.lab.sidecar [--outbound 15001] [--inbound 15006] [--uid 1337]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import threading
import time

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
INBOUND_SOURCE = "127.0.0.6"  # Envoy's inbound passthrough source address
PROXY_UID = 1337
_print_lock = threading.Lock()


def original_dst(conn: socket.socket) -> tuple[str, int]:
    raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port = struct.unpack("!H", raw[2:4])[0]
    return socket.inet_ntoa(raw[4:8]), port


def _pump(src: socket.socket, dst: socket.socket, marks: dict[str, int], first: str) -> None:
    """Copy src -> dst until EOF; note when the first bytes arrived and left."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            got = time.time_ns()
            dst.sendall(data)
            if f"{first}_in_ns" not in marks:
                marks[f"{first}_in_ns"] = got
                marks[f"{first}_out_ns"] = time.time_ns()
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _serve(conn: socket.socket, peer: tuple[str, int], direction: str) -> None:
    marks: dict[str, int] = {}
    record: dict[str, object] = {"direction": direction, "downstream": f"{peer[0]}:{peer[1]}"}
    up: socket.socket | None = None
    try:
        ip, port = original_dst(conn)
        record["original_dst"] = f"{ip}:{port}"
        up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if direction == "inbound":
            up.bind((INBOUND_SOURCE, 0))
        up.connect((ip, port))
        here = up.getsockname()
        record["upstream"] = f"{here[0]}:{here[1]} -> {ip}:{port}"
        t = threading.Thread(target=_pump, args=(up, conn, marks, "response"), daemon=True)
        t.start()
        _pump(conn, up, marks, "request")
        t.join(timeout=60)
    except OSError as e:
        record["error"] = e.strerror or str(e)
    finally:
        for s in (conn, up):
            if s is not None:
                s.close()
    record.update(marks)
    with _print_lock:
        sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
        sys.stdout.flush()


def _listen(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    return s


def _accept_loop(listener: socket.socket, direction: str) -> None:
    while True:
        conn, peer = listener.accept()
        threading.Thread(target=_serve, args=(conn, peer, direction), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outbound", type=int, default=15001)
    ap.add_argument("--inbound", type=int, default=15006)
    ap.add_argument("--uid", type=int, default=PROXY_UID)
    args = ap.parse_args(argv)
    listeners = [(_listen(args.outbound), "outbound"), (_listen(args.inbound), "inbound")]
    if os.geteuid() == 0:
        # The rules exempt the proxy's own traffic by its owner: it must not run as root.
        os.setgroups([])
        os.setgid(args.uid)
        os.setuid(args.uid)
    for s, direction in listeners:
        threading.Thread(target=_accept_loop, args=(s, direction), daemon=True).start()
    sys.stderr.write(
        f"listening on {args.outbound} (outbound) and {args.inbound} (inbound) as uid {os.getuid()}\n"
    )
    sys.stderr.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
