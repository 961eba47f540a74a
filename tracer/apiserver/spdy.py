"""The server side of SPDY/3.1 framing, just enough for Kubernetes exec streams (v4.channel.k8s.io).

kubectl uses SPDY for exec when WebSockets are turned off (KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false)
and falls back to it when a server refuses the WebSocket upgrade. Over the upgraded connection the
client opens one stream per channel (SYN_STREAM with a `streamType` header: error, stdin, stdout,
stderr); the server answers each with SYN_REPLY, carries output in DATA frames, ends a stream with
FIN and writes the exit Status on the error stream. Header blocks are zlib-compressed with the
dictionary SPDY/3 defines (one compression context per direction for the whole connection).
Must not: know which process runs (tracer.apiserver.execstream does).
"""

from __future__ import annotations

import socket
import struct
import threading
import zlib
from dataclasses import dataclass
from typing import BinaryIO

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1, 2, 3, 4, 6, 7, 8, 9,
)  # fmt: skip
FLAG_FIN = 0x01
MAX_FRAME = 1 << 24
MAX_HEADER_BLOCK = 1 << 20

# SPDY/3 §2.6.10.1: the header names the dictionary lists (each as a 4-byte length and the
# name), then the common values written out without lengths.
_DICT_NAMES = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base "
    "content-encoding content-language content-length content-location content-md5 "
    "content-range content-type date etag expect expires from host if-match "
    "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
    "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
    "server te trailer transfer-encoding upgrade user-agent vary via warning www-authenticate "
    "method get status"
).split() + ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
_DICT_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = (
    b"".join(struct.pack(">I", len(n)) + n.encode() for n in _DICT_NAMES) + _DICT_TAIL.encode()
)


class SpdyError(Exception):
    """The peer broke the framing or the header compression."""


@dataclass(frozen=True)
class Frame:
    control: bool
    type: int  # control frames; 0 for DATA
    flags: int
    stream_id: int  # DATA, SYN_STREAM, SYN_REPLY, RST_STREAM, WINDOW_UPDATE
    headers: dict[str, str]  # SYN_STREAM, HEADERS
    data: bytes  # DATA payload, or the raw control payload


def encode_headers(headers: dict[str, str]) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for k, v in headers.items():
        kb, vb = k.lower().encode(), v.encode()
        out += [struct.pack(">I", len(kb)), kb, struct.pack(">I", len(vb)), vb]
    return b"".join(out)


def decode_headers(block: bytes) -> dict[str, str]:
    try:
        (n,) = struct.unpack_from(">I", block, 0)
        pos, out = 4, {}
        for _ in range(n):
            (kl,) = struct.unpack_from(">I", block, pos)
            key = block[pos + 4 : pos + 4 + kl]
            pos += 4 + kl
            (vl,) = struct.unpack_from(">I", block, pos)
            value = block[pos + 4 : pos + 4 + vl]
            pos += 4 + vl
            if pos > len(block):
                raise SpdyError("header block cut short")
            out[key.decode("utf-8", "replace").lower()] = value.decode("utf-8", "replace")
        return out
    except struct.error as e:
        raise SpdyError(f"header block cut short: {e}") from None


class SpdyConnection:
    """One upgraded connection; sends are serialised (output pumps write from their threads)."""

    def __init__(self, sock: socket.socket, rfile: BinaryIO) -> None:
        self._sock = sock
        self._rfile = rfile
        self._lock = threading.Lock()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zdict=DICTIONARY)
        self.closed = False

    def _read_exact(self, n: int) -> bytes:
        data = self._rfile.read(n)
        if len(data) < n:
            raise EOFError
        return data

    def read_frame(self) -> Frame | None:
        """The next frame, or None when the peer went away."""
        try:
            head = self._read_exact(8)
            first, flags_len = struct.unpack(">II", head)
            flags, length = flags_len >> 24, flags_len & 0xFFFFFF
            payload = self._read_exact(length) if length else b""
        except (EOFError, OSError, ValueError):
            return None
        if not first & 0x80000000:
            return Frame(False, 0, flags, first & 0x7FFFFFFF, {}, payload)
        ftype = first & 0xFFFF
        stream_id, headers = 0, {}
        if (
            ftype in (SYN_STREAM, SYN_REPLY, HEADERS, RST_STREAM, WINDOW_UPDATE)
            and len(payload) >= 4
        ):
            stream_id = struct.unpack_from(">I", payload, 0)[0] & 0x7FFFFFFF
        if ftype in (SYN_STREAM, SYN_REPLY, HEADERS):
            start = 10 if ftype == SYN_STREAM else 4
            try:
                block = self._inflate.decompress(payload[start:], MAX_HEADER_BLOCK)
            except zlib.error as e:
                raise SpdyError(f"header block does not decompress: {e}") from None
            headers = decode_headers(block)
        return Frame(True, ftype, flags, stream_id, headers, payload)

    def _control(self, ftype: int, flags: int, payload: bytes) -> bool:
        head = struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload))
        return self._send(head + payload)

    def _send(self, frame: bytes) -> bool:
        with self._lock:
            if self.closed:
                return False
            try:
                self._sock.sendall(frame)
                return True
            except OSError:
                self.closed = True
                return False

    def syn_reply(self, stream_id: int, headers: dict[str, str] | None = None) -> bool:
        with self._lock:
            block = self._deflate.compress(encode_headers(headers or {}))
            block += self._deflate.flush(zlib.Z_SYNC_FLUSH)
        return self._control(SYN_REPLY, 0, struct.pack(">I", stream_id) + block)

    def data(self, stream_id: int, payload: bytes, fin: bool = False) -> bool:
        for i in range(0, max(len(payload), 1), MAX_FRAME - 1):
            chunk = payload[i : i + MAX_FRAME - 1]
            last = i + MAX_FRAME - 1 >= len(payload)
            flags = FLAG_FIN if fin and last else 0
            head = struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(chunk))
            if not self._send(head + chunk):
                return False
        return True

    def ping(self, payload: bytes) -> bool:
        return self._control(PING, 0, payload[:4])

    def goaway(self, last_stream: int) -> None:
        self._control(GOAWAY, 0, struct.pack(">II", last_stream, 0))

    def close(self) -> None:
        with self._lock:
            self.closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
