"""A tiny HTTP backend for lab pods: answers `GET /` with its name and the client address it saw.

Run as `python3 -m tracer.lab.httpd --port 8080 --name web-a [--delay 0.2]`; `--delay` holds
every answer that many seconds (the slow-server scenario's known processing time). Prints one
`listening on ...` line to stderr once the socket is bound, which the lab waits for. Serves
nothing else and never writes files.
"""

from __future__ import annotations

import argparse
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(name: str, delay: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "pathtrace-lab"
        sys_version = ""

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
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
    a = ap.parse_args(argv)
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer((a.bind, a.port), make_handler(a.name, a.delay))
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
