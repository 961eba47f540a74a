"""HTTP/1 (RFC 9112): the request line, the headers and the status line of a message's first bytes.

Pure: bytes in, data out; None for anything that is not an HTTP/1.x message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tracer.protocols.text import printable

_TARGET_MAX = 80  # longer request targets are cut when shown, a summary is one line

_REQUEST_LINE = re.compile(rb"([A-Z][A-Z-]{1,19}) ([\x21-\x7e]+) HTTP/(\d)\.(\d)\r?\n")
_STATUS_LINE = re.compile(rb"HTTP/(\d)(?:\.(\d))? (\d{3})(?: |\r?\n)")
H2_PREFACE = b"PRI * HTTP/2.0\r\n"  # what an HTTP/2 client with prior knowledge sends first


@dataclass(frozen=True)
class HttpRequest:
    """A request line and Host header, as shown to a user (unprintable bytes as "?")."""

    method: str
    target: str
    host: str | None


@dataclass(frozen=True)
class HttpRequestInfo:
    """The request line and the headers that identify a request across a proxy."""

    method: str
    target: str
    host: str | None = None
    request_id: str | None = None  # X-Request-ID
    traceparent: str | None = None  # W3C Trace Context: version-traceid-parentid-flags

    @property
    def trace_id(self) -> str | None:
        parts = (self.traceparent or "").split("-")
        return parts[1].lower() if len(parts) >= 4 and len(parts[1]) == 32 else None

    @property
    def host_name(self) -> str | None:
        """The Host header without its port (a proxy commonly drops or changes the port)."""
        if self.host is None:
            return None
        h = self.host.strip().lower()
        if h.startswith("["):
            return h[: h.find("]") + 1] if "]" in h else h
        return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def http_request_head(payload: bytes) -> tuple[str, bytes, dict[bytes, bytes]] | None:
    """The method, raw target and headers of an HTTP/1.x request, or None.

    Header names are lower-cased and each keeps its first value, stripped, as raw bytes.
    """
    m = _REQUEST_LINE.match(payload)
    if m is None:
        return None
    headers: dict[bytes, bytes] = {}
    head = payload[m.end() :].split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\n"):
        name, sep, value = line.partition(b":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    return m.group(1).decode("ascii"), m.group(2), headers


def http_request(payload: bytes) -> HttpRequest | None:
    """The request line and Host header of an HTTP/1.x request, or None."""
    parsed = http_request_head(payload)
    if parsed is None:
        return None
    method, target, headers = parsed
    host = headers.get(b"host")
    shown_host = printable(host, 100) or None if host is not None else None
    return HttpRequest(method, printable(target, _TARGET_MAX), shown_host)


def http_request_info(payload: bytes) -> HttpRequestInfo | None:
    """Decode an HTTP/1.x request's first line and identifying headers, or None."""
    parsed = http_request_head(payload)
    if parsed is None:
        return None
    method, target, headers = parsed

    def header(name: bytes) -> str | None:
        value = headers.get(name)
        return value.decode("ascii", "replace") or None if value is not None else None

    return HttpRequestInfo(
        method=method,
        target=target.decode("ascii", "replace"),
        host=header(b"host"),
        request_id=header(b"x-request-id"),
        traceparent=header(b"traceparent"),
    )


def http_status(payload: bytes) -> int | None:
    """The status code of an HTTP/1.x response, or None."""
    m = _STATUS_LINE.match(payload)
    return int(m.group(3)) if m else None
