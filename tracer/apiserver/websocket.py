"""The server side of RFC 6455 WebSockets, just enough for Kubernetes exec streams.

Does: the opening handshake (Sec-WebSocket-Accept, subprotocol choice), reading masked client
frames (with continuation and control frames) and writing unmasked server frames.
Must not: know anything about Kubernetes channels (the exec handler does) or open sockets itself.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

# RFC 6455 §1.3: the GUID the server appends to the client's key.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

# A client message larger than this is a protocol abuse for exec (stdin is tiny).
MAX_MESSAGE = 16 * 1024 * 1024


class WebSocketError(Exception):
    """The peer broke the protocol or went away."""


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.strip().encode("ascii") + _GUID).digest()).decode()


def choose_subprotocol(offered: str | None, supported: Sequence[str]) -> str | None:
    """The first protocol in the server's preference order that the client offered."""
    if not offered:
        return None
    wanted = {p.strip() for p in offered.split(",") if p.strip()}
    for p in supported:
        if p in wanted:
            return p
    return None


def encode_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None
) -> bytes:
    """One frame; servers send unmasked frames, `mask` exists for tests that play the client."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mask_bit = 0x80 if mask is not None else 0
    if n < 126:
        head.append(mask_bit | n)
    elif n < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", n)
    if mask is not None:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes(head) + payload


@dataclass(frozen=True)
class Message:
    opcode: int
    data: bytes


class WebSocketConnection:
    """A server-side connection over an already upgraded socket.

    Writes are serialised by a lock because stdout and stderr pumps send from their own threads.
    """

    def __init__(self, sock: socket.socket, rfile: BinaryIO) -> None:
        self._sock = sock
        self._rfile = rfile
        self._lock = threading.Lock()
        self.closed = False

    def _read_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self._rfile.read(n - len(buf))
            if not chunk:
                raise WebSocketError("connection closed in the middle of a frame")
            buf += chunk
        return buf

    def _read_frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._read_exact(2)
        fin = bool(b0 & 0x80)
        opcode = b0 & 0x0F
        masked = bool(b1 & 0x80)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read_exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read_exact(8))
        if n > MAX_MESSAGE:
            raise WebSocketError(f"frame of {n} bytes is too large")
        if not masked:
            # RFC 6455 §5.1: a server must close on an unmasked client frame.
            raise WebSocketError("client frame is not masked")
        key = self._read_exact(4)
        raw = self._read_exact(n)
        # XOR via int arithmetic: far faster than a per-byte loop for large stdin chunks.
        k = (key * (n // 4 + 1))[:n]
        data = (int.from_bytes(raw, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")
        return fin, opcode, data

    def receive(self) -> Message | None:
        """The next data message (control frames are answered here); None once closed."""
        parts: list[bytes] = []
        first_op: int | None = None
        while True:
            try:
                fin, opcode, data = self._read_frame()
            except (OSError, WebSocketError, ValueError):
                self.closed = True
                return None
            if opcode == OP_PING:
                self.send(OP_PONG, data)
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                self.close(data[:2] if len(data) >= 2 else b"")
                return None
            if opcode != OP_CONTINUATION:
                first_op = opcode
                parts = []
            parts.append(data)
            if fin and first_op is not None:
                return Message(first_op, b"".join(parts))

    def send(self, opcode: int, payload: bytes) -> bool:
        """Send one frame; False when the peer is gone."""
        frame = encode_frame(opcode, payload)
        with self._lock:
            if self.closed and opcode != OP_CLOSE:
                return False
            try:
                self._sock.sendall(frame)
            except OSError:
                self.closed = True
                return False
        return True

    def close(self, code: bytes = b"\x03\xe8") -> None:
        """Send a close frame once (1000 normal closure by default)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                self._sock.sendall(encode_frame(OP_CLOSE, code))
            except OSError:
                pass
