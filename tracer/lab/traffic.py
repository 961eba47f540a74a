"""Background traffic for the lab: one HTTP GET on a new connection every `--interval` seconds.

Run in a pod's namespace as `python3 -m tracer.lab.traffic --url http://10.96.0.100/ --interval
0.2`. Logs one line per request to stdout: `TIME_NS LOCAL_PORT OUTCOME DETAIL`, OUTCOME being
`ok` (an HTTP answer; DETAIL is its status), `reset`, `refused`, `timeout` or `error` — what the
client itself saw, the ground truth tests hold a capture against. Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import http.client
import signal
import sys
import time
import urllib.parse


def one_request(host: str, port: int, path: str, timeout: float) -> tuple[int, str, str]:
    """(local port, outcome, detail) of one GET on a fresh connection."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    local = 0
    try:
        conn.connect()
        assert conn.sock is not None
        local = conn.sock.getsockname()[1]
        conn.request("GET", path, headers={"Connection": "close"})
        r = conn.getresponse()
        r.read()
        return local, "ok", str(r.status)
    except ConnectionResetError:
        return local, "reset", "connection reset by peer"
    except ConnectionRefusedError:
        return local, "refused", "connection refused"
    except TimeoutError:
        return local, "timeout", f"no answer in {timeout:g} s"
    except (OSError, http.client.HTTPException) as e:
        # A reset that arrives while the response is being read shows as a closed connection.
        text = str(e) or type(e).__name__
        return local, "reset" if "reset" in text.lower() else "error", text
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="tracer.lab.traffic")
    ap.add_argument("--url", required=True)
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--timeout", type=float, default=4.0)
    a = ap.parse_args(argv)
    u = urllib.parse.urlsplit(a.url)
    host, port, path = u.hostname or "127.0.0.1", u.port or 80, u.path or "/"
    running = True

    def stop(signum: int, frame: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stderr.write(f"sending to {a.url} every {a.interval:g} s\n")
    sys.stderr.flush()
    while running:
        t = time.time_ns()
        local, outcome, detail = one_request(host, port, path, a.timeout)
        sys.stdout.write(f"{t} {local} {outcome} {detail}\n")
        sys.stdout.flush()
        time.sleep(max(0.0, a.interval - (time.time_ns() - t) / 1e9))


if __name__ == "__main__":
    main()
