"""pods/exec streams: the Kubernetes remote-command channels over a WebSocket, or over SPDY.

Channels 0-3 are stdin, stdout, stderr and the error channel that carries the exit Status;
v5.channel.k8s.io adds channel 255 (CLOSE) so that a client can end stdin. The command runs
through `Processes` in the container's place; `pkill` is answered inside the container's PID
namespace, as a container's own pkill sees only its processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from tracer.apiserver.processes import Processes, terminate
from tracer.apiserver.spdy import FLAG_FIN, GOAWAY, PING, SYN_STREAM, SpdyConnection, SpdyError
from tracer.apiserver.websocket import OP_BINARY, OP_TEXT, WebSocketConnection

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
SPDY_PROTOCOL = "SPDY/3.1"
CLOSE_CHANNEL = 255
JSON = dict[str, Any]


def exit_status(code: int | None, error: str | None) -> JSON:
    """The error channel's Status for an exit code (or for a command that could not start)."""
    if error is not None:
        return {
            "metadata": {},
            "status": "Failure",
            "message": error,
            "reason": "InternalError",
            "details": {"causes": [{"message": error}]},
        }
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def _read_chunk(stream: Any) -> bytes:
    """What the command wrote so far (up to 32 KiB), without waiting for more; b"" at its end."""
    chunk: bytes = stream.read1(32768) if hasattr(stream, "read1") else stream.read(32768)
    return chunk


def _start_pumps(
    target: Callable[..., None], args: list[tuple[Any, ...]]
) -> list[threading.Thread]:
    """One thread per output stream of the command, started."""
    pumps = [threading.Thread(target=target, args=a, daemon=True) for a in args]
    for t in pumps:
        t.start()
    return pumps


def _feed_stdin(popen: subprocess.Popen[bytes], data: bytes, *, close: bool = False) -> None:
    """Write `data` to the command's stdin, then close it when `close`; a command that stopped
    reading its stdin is no error."""
    if popen.stdin is None:
        return
    try:
        if data:
            popen.stdin.write(data)
            popen.stdin.flush()
        if close:
            popen.stdin.close()
    except (BrokenPipeError, ValueError):
        pass


def _await_exit(
    popen: subprocess.Popen[bytes], pumps: list[threading.Thread], reader: Callable[[], None]
) -> int:
    """Read the client's side with `reader` while the command runs; once it ends and its output
    is pumped, its exit code as a shell says it (128 + the signal that killed it)."""
    threading.Thread(target=reader, daemon=True).start()
    code = popen.wait()
    for t in pumps:
        t.join(timeout=5)
    return 128 - code if code < 0 else code


def _pump(ws: WebSocketConnection, channel: int, stream: Any) -> None:
    prefix = bytes([channel])
    while True:
        chunk = _read_chunk(stream)
        if not chunk:
            return
        if not ws.send(OP_BINARY, prefix + chunk):
            return


def run_exec(
    procs: Processes,
    ws: WebSocketConnection,
    proto: str,
    namespace: str,
    pod: str,
    container: str,
    argv: list[str],
    *,
    stdin: bool = True,
) -> None:
    error_ch = bytes([3])
    if os.path.basename(argv[0]) == "pkill":
        code = procs.pkill(namespace, pod, container, argv)
        ws.send(OP_BINARY, error_ch + json.dumps(exit_status(code, None)).encode())
        ws.close()
        return
    try:
        popen = procs.start(namespace, pod, container, argv)
    except OSError as e:
        msg = f'exec: "{argv[0]}": {e.strerror or e}'
        ws.send(OP_BINARY, error_ch + json.dumps(exit_status(None, msg)).encode())
        ws.close()
        return
    if not stdin and popen.stdin is not None:
        popen.stdin.close()  # no stdin stream: the command reads EOF, as in a container
    pumps = _start_pumps(_pump, [(ws, 1, popen.stdout), (ws, 2, popen.stderr)])

    def reader() -> None:
        # Client → server: stdin (channel 0), v5 CLOSE of stdin, or the end of the connection.
        while True:
            msg = ws.receive()
            if msg is None:
                # The client went away: end the command, as kubelet ends a stream's process.
                terminate(popen)
                return
            if msg.opcode not in (OP_BINARY, OP_TEXT) or not msg.data:
                continue
            ch, data = msg.data[0], msg.data[1:]
            if ch == 0:
                _feed_stdin(popen, data)
            elif ch == CLOSE_CHANNEL and proto == V5 and data[:1] == b"\x00":
                _feed_stdin(popen, b"", close=True)

    code = _await_exit(popen, pumps, reader)
    ws.send(OP_BINARY, error_ch + json.dumps(exit_status(code, None)).encode())
    ws.close()
    time.sleep(0.05)


# How long the client has to open the streams it asked for (the kubelet allows 30 s).
STREAM_SETUP_S = 30.0


def run_spdy_exec(
    procs: Processes,
    conn: SpdyConnection,
    namespace: str,
    pod: str,
    container: str,
    argv: list[str],
    wanted: set[str],
) -> None:
    """Exec over SPDY (v4.channel.k8s.io): wait for the client's streams (`wanted`: error,
    stdin, stdout, stderr), run the command, send the exit Status on the error stream."""
    streams: dict[str, int] = {}
    last = 0
    try:
        while not wanted <= set(streams):
            frame = conn.read_frame()
            if frame is None:
                return
            if frame.control and frame.type == SYN_STREAM:
                kind = frame.headers.get("streamtype", "")
                streams[kind] = frame.stream_id
                last = max(last, frame.stream_id)
                conn.syn_reply(frame.stream_id)
            elif frame.control and frame.type == PING:
                conn.ping(frame.data)
    except SpdyError:
        conn.close()
        return
    error_id = streams["error"]

    def finish(status: JSON) -> None:
        conn.data(error_id, json.dumps(status).encode(), fin=True)
        conn.goaway(last)
        time.sleep(0.05)
        conn.close()

    if os.path.basename(argv[0]) == "pkill":
        for kind in ("stdout", "stderr"):
            if kind in streams:
                conn.data(streams[kind], b"", fin=True)
        finish(exit_status(procs.pkill(namespace, pod, container, argv), None))
        return
    try:
        popen = procs.start(namespace, pod, container, argv)
    except OSError as e:
        finish(exit_status(None, f'exec: "{argv[0]}": {e.strerror or e}'))
        return
    if "stdin" not in streams and popen.stdin is not None:
        popen.stdin.close()

    def pump(kind: str, stream: Any) -> None:
        sid = streams.get(kind)
        while True:
            chunk = _read_chunk(stream)
            if not chunk:
                break
            if sid is not None and not conn.data(sid, chunk):
                return
        if sid is not None:
            conn.data(sid, b"", fin=True)

    pumps = _start_pumps(pump, [("stdout", popen.stdout), ("stderr", popen.stderr)])

    def reader() -> None:
        stdin_id = streams.get("stdin")
        while True:
            try:
                frame = conn.read_frame()
            except SpdyError:
                frame = None
            if frame is None or (frame.control and frame.type == GOAWAY):
                terminate(popen)  # the client went away: end the command, as the kubelet does
                return
            if frame.control:
                if frame.type == PING:
                    conn.ping(frame.data)
                continue
            if frame.stream_id == stdin_id:
                _feed_stdin(popen, frame.data, close=bool(frame.flags & FLAG_FIN))

    finish(exit_status(_await_exit(popen, pumps, reader), None))
