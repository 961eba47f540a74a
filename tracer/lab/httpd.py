"""A tiny HTTP backend for lab pods: answers `GET /` with its name and the client address it saw.

Run as `python3 -m tracer.lab.httpd --port 8080 --name web-a [--delay 0.2] [--fault-file F]`;
`--delay` holds every answer that many seconds (the slow-server scenario's known processing time).
`--fault-file` names a JSON file read before each request (absent: no fault): with
`{"reset_every": N}` every Nth request (counted from when the file was written) is answered
with a TCP RST instead (SO_LINGER 0, then close), the lab's intermittent fault; each reset is
logged as `reset CLIENT:PORT request N`.
Prints one `listening on ...` line to stderr once the socket is bound, which the lab waits for.
Serves nothing else and never writes files.
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Fault:
    """The fault file's current setting, and the requests counted since it last changed."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.lock = threading.Lock()
        self.requests = 0
        self.version: int | None = None  # the file's mtime when last read

    def reset_now(self) -> int | None:
        """This request's number (counted since the fault was set) if it must be reset."""
        every, version = 0, None
        if self.path is not None:
            try:
                version = self.path.stat().st_mtime_ns
                every = int(json.loads(self.path.read_text()).get("reset_every") or 0)
            except (OSError, ValueError, AttributeError):
                every, version = 0, None
        with self.lock:
            if version != self.version:
                self.version, self.requests = version, 0  # a new setting counts afresh
            self.requests += 1
            n = self.requests
        return n if every > 0 and n % every == 0 else None


def make_handler(
    name: str, delay: float, fault: Fault | None = None
) -> type[BaseHTTPRequestHandler]:
    faults = fault if fault is not None else Fault(None)

    class Handler(BaseHTTPRequestHandler):
        server_version = "pathtrace-lab"
        sys_version = ""

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            n = faults.reset_now()
            if n is not None:
                sys.stderr.write(
                    f"reset {self.client_address[0]}:{self.client_address[1]} request {n}\n"
                )
                sys.stderr.flush()
                # Linger 0: close() sends an RST at once instead of a FIN.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
                self.wfile = io.BytesIO()  # nothing more goes to the closed socket
                self.close_connection = True
                return
            if delay:
                time.sleep(delay)
            body = f"{name}: hello from {name}, you are {self.client_address[0]}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            sys.stderr.write(f"{self.client_address[0]} {format % args}\n")

    return Handler


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="tracer.lab.httpd")
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--name", default="web")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--fault-file", default=None)
    a = ap.parse_args(argv)
    ThreadingHTTPServer.allow_reuse_address = True
    if ":" in a.bind:  # an IPv6 address (`::`: both families)
        ThreadingHTTPServer.address_family = socket.AF_INET6
    server = ThreadingHTTPServer(
        (a.bind, a.port), make_handler(a.name, a.delay, Fault(a.fault_file))
    )
    sys.stderr.write(f"listening on {a.bind}:{a.port}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
