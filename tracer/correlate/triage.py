"""Triage of a connection table: `--where` expressions, `--failed`, sorting, latency statistics.

Pure and columnar: takes a `ConnectionTable` (and the summaries' HTTP status / DNS rcode arrays),
returns row selections and numbers. No printing; the report layer renders what this returns.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tracer.correlate import outcome as oc
from tracer.correlate.listing import ConnectionTable
from tracer.errors import UsageError
from tracer.words import count

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_OPS = ("!=", ">=", "<=", "=", ">", "<")
_TERM = re.compile(r"^\s*([a-z_]+)\s*(!=|>=|<=|=|>|<)\s*(.+?)\s*$")
# --where keys: what each compares.
WHERE_KEYS = {
    "outcome": "ok|reset|rejected|unanswered|incomplete (= or !=)",
    "proto": "tcp|udp|icmp|icmpv6",
    "client": "the client's IP[:PORT]",
    "dst": "the destination the client dialled (Service IP[:PORT])",
    "backend": "the backend after DNAT, IP[:PORT]",
    "by": "who answered, IP",
    "point": "the furthest point the request reached (its name)",
    "total": "total time, e.g. total>200ms",
    "connect": "TCP handshake time",
    "server": "time inside the server",
    "status": "HTTP status, e.g. status>=500",
    "rcode": "DNS rcode number (3 = NXDOMAIN)",
    "retrans": "retransmissions",
}
WHERE_HELP = "; ".join(f"{k}: {v}" for k, v in WHERE_KEYS.items())


@dataclass(frozen=True)
class Term:
    key: str
    op: str
    value: str


@dataclass(frozen=True)
class Where:
    """A parsed `--where` expression: terms separated by commas, all of which must hold."""

    text: str
    terms: tuple[Term, ...]


def _bad(text: str, why: str) -> UsageError:
    return UsageError(
        f"--where {text!r}: {why}",
        hint="e.g. --where outcome=reset, --where 'total>200ms,backend=10.244.2.9', "
        "--where status>=500; keys: " + ", ".join(WHERE_KEYS),
    )


def duration_ns(text: str) -> int:
    """'200ms', '1.5s', '350us', '900ns' (a bare number is ms) -> nanoseconds; ValueError."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s)?", text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a duration (e.g. 200ms, 1.5s, 350us)")
    return int(round(float(m.group(1)) * _UNITS[m.group(2) or "ms"]))


def parse_where(text: str) -> Where:
    """Parse `--where`; a UsageError names the term that is wrong and why."""
    terms: list[Term] = []
    for part in text.split(","):
        if not part.strip():
            continue
        m = _TERM.match(part)
        if m is None:
            raise _bad(text, f"{part.strip()!r} is not KEY OP VALUE (OP one of {' '.join(_OPS)})")
        key, op, value = m.groups()
        if key not in WHERE_KEYS:
            raise _bad(text, f"unknown key {key!r}")
        if key in ("outcome", "proto", "client", "dst", "backend", "by", "point") and op not in (
            "=",
            "!=",
        ):
            raise _bad(text, f"{key} takes = or !=, not {op}")
        try:
            if key == "outcome":
                oc.outcome_code(value)
            elif key in ("total", "connect", "server"):
                duration_ns(value)
            elif key in ("status", "rcode", "retrans"):
                int(value)
            elif key in ("client", "dst", "backend", "by"):
                _endpoint(value)
            elif key == "proto" and value not in ("tcp", "udp", "icmp", "icmpv6"):
                raise ValueError(f"unknown protocol {value!r} (tcp, udp, icmp, icmpv6)")
        except ValueError as e:
            raise _bad(text, f"{part.strip()!r}: {e}") from None
        terms.append(Term(key, op, value))
    if not terms:
        raise _bad(text, "no term")
    return Where(text, tuple(terms))


def _endpoint(value: str) -> tuple[str, int | None]:
    """'10.0.0.1', '10.0.0.1:80', '[fd00::1]:80', 'fd00::1' -> (ip, port); ValueError."""
    v = value.strip()
    port: int | None = None
    if v.startswith("["):
        host, _, rest = v[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{value!r} is not IP[:PORT]")
            port = int(rest[1:])
        v = host
    elif v.count(":") == 1:
        v, _, p = v.partition(":")
        port = int(p)
    return str(ipaddress.ip_address(v)), port


def _compare(values: I64, op: str, ref: int) -> Bools:
    known = values >= 0
    cmp = {
        "=": values == ref,
        "!=": values != ref,
        ">": values > ref,
        ">=": values >= ref,
        "<": values < ref,
        "<=": values <= ref,
    }[op]
    return known & cmp


def _address_is(t: ConnectionTable, ids: I64, ports: I64 | None, value: str) -> Bools:
    ip, port = _endpoint(value)
    want = [i for i, a in enumerate(t.addresses) if _same_ip(a, ip)]
    hit = np.isin(ids, np.array(want, dtype=np.int64))
    if port is not None:
        hit &= (ports == port) if ports is not None else np.zeros_like(hit)
    return hit


def _same_ip(a: str, ip: str) -> bool:
    try:
        return str(ipaddress.ip_address(a)) == ip
    except ValueError:
        return False


def matches(where: Where, t: ConnectionTable, status: I64, rcode: I64) -> Bools:
    """Which connections every term of `where` holds for."""
    ok = np.ones(len(t), dtype=bool)
    for term in where.terms:
        k, op, v = term.key, term.op, term.value
        if k == "outcome":
            hit = t.outcome == oc.outcome_code(v)
        elif k == "proto":
            hit = t.proto == {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}[v]
        elif k == "client":
            hit = _address_is(t, t.src, t.sport, v)
        elif k == "dst":
            hit = _address_is(t, t.dst, t.dport, v)
        elif k == "backend":
            hit = _address_is(t, t.backend, t.backend_port, v)
        elif k == "by":
            hit = _address_is(t, t.by, None, v)
        elif k == "point":
            idx = t.points.index(v) if v in t.points else -2
            hit = t.last_point == idx
        elif k in ("total", "connect", "server"):
            col = {"total": t.total_ns, "connect": t.connect_ns, "server": t.server_ns}[k]
            hit = _compare(col, op, duration_ns(v))
            ok &= hit
            continue
        else:
            col = {"status": status, "rcode": rcode, "retrans": t.retransmissions}[k]
            hit = _compare(col, op, int(v))
            ok &= hit
            continue
        ok &= ~hit if op == "!=" else hit
    return ok


def order(t: ConnectionTable, rows: I64, by: str, *, slowest: int | None = None) -> I64:
    """`rows` sorted by `by` (start ascending; a time descending, unknown last), or the
    `slowest` N by total time."""
    if slowest is not None:
        by = "total"
    if by == "start":
        out = rows[np.argsort(t.start_ns[rows], kind="stable")]
    else:
        col = {"total": t.total_ns, "connect": t.connect_ns, "server": t.server_ns}[by][rows]
        out = rows[np.argsort(-col, kind="stable")]  # -1 (unknown) sorts last
        if slowest is not None:
            out = out[col[np.argsort(-col, kind="stable")] >= 0]
    return out[:slowest] if slowest is not None else out


@dataclass(frozen=True)
class Stats:
    """Counts and latency percentiles of a group of connections (times in ns, -1: none)."""

    label: str
    connections: int
    failed: int
    p50: int
    p90: int
    p99: int
    max: int


def _stats(label: str, codes: npt.NDArray[np.int8], total: I64) -> Stats:
    known = total[total >= 0]
    if known.shape[0]:
        p50, p90, p99 = (int(x) for x in np.percentile(known, (50, 90, 99), method="nearest"))
        top = int(known.max())
    else:
        p50 = p90 = p99 = top = -1
    return Stats(label, int(codes.shape[0]), int(oc.failed(codes).sum()), p50, p90, p99, top)


def group_stats(labels: Sequence[str], group: I64, t: ConnectionTable, rows: I64) -> list[Stats]:
    """Stats per group (group id per connection indexes `labels`, -1: none), worst first:
    by failed share, then p99."""
    g = group[rows]
    out: list[Stats] = []
    for k in np.unique(g[g >= 0]).tolist():
        sel = rows[g == k]
        out.append(_stats(labels[k], t.outcome[sel], t.total_ns[sel]))
    out.sort(key=lambda s: (-s.failed / max(s.connections, 1), -s.p99, s.label))
    return out


def overall_stats(t: ConnectionTable, rows: I64) -> Stats:
    return _stats("all", t.outcome[rows], t.total_ns[rows])


def outcome_counts(t: ConnectionTable, rows: I64) -> dict[str, int]:
    counts = np.bincount(t.outcome[rows].astype(np.int64), minlength=len(oc.OUTCOMES))
    return {name: int(counts[i]) for i, name in enumerate(oc.OUTCOMES)}


def endpoint_text(t: ConnectionTable, ip: int, port: int) -> str:
    """`ip:port` (`[ip]:port` for IPv6; the bare address without a port) of table ids."""
    if ip < 0:
        return ""
    a = t.addresses[ip]
    if port < 0:
        return a
    return f"[{a}]:{port}" if ":" in a else f"{a}:{port}"


def _labelled(t: ConnectionTable, ip: I64, port: I64, use: Bools) -> tuple[list[str], I64]:
    key = np.where(use, ip * 65537 + port + 1, -1)  # port -1 (none) and 0 stay apart
    uniq, inv = np.unique(key, return_inverse=True)
    labels = [
        endpoint_text(t, int(k) // 65537, int(k) % 65537 - 1) if k >= 0 else ""
        for k in uniq.tolist()
    ]
    ids = np.where(key >= 0, inv, -1).astype(np.int64)
    return labels, ids


def groupings(
    t: ConnectionTable, point_nodes: Sequence[str | None]
) -> dict[str, tuple[list[str], I64]]:
    """Per grouping ("backend", "service", "node"): labels and each connection's group id.

    A Service is the destination the client dialled where a DNAT rewrote it; a node is the
    node of the furthest point the request reached.
    """
    nat = t.backend >= 0
    out = {
        "backend": _labelled(t, t.backend, t.backend_port, nat),
        "service": _labelled(t, t.dst, t.dport, nat),
    }
    names = sorted({n for n in point_nodes if n})
    node_of_point = np.array([names.index(n) if n else -1 for n in point_nodes] + [-1])
    out["node"] = (names, node_of_point[t.last_point].astype(np.int64))
    return out


@dataclass(frozen=True)
class Failures:
    """How the connections of a listing ended: how many, how many failed, and the failures
    grouped by outcome and by who answered (or where an unanswered request stopped), largest
    group first: ((outcome, who or where, count), ...)."""

    connections: int
    failed: int
    groups: tuple[tuple[str, str, int], ...]

    def sentence(self, limit: int = 4) -> str:
        """'12 of 40 connections failed: 4 reset by 10.244.2.9, 2 rejected by node1 (…)'."""
        if not self.failed:
            return f"{count(self.connections, 'connection')}, none failed"
        parts = []
        for outcome, who, k in self.groups[:limit]:
            how = {"unanswered": "last seen at", "incomplete": "last seen at"}.get(outcome, "by")
            parts.append(f"{k} {outcome}" + (f" {how} {who}" if who else ""))
        more = len(self.groups) - limit
        tail = f", and {more} more groups" if more > 0 else ""
        total = count(self.connections, "connection")
        return f"{self.failed} of {total} failed: {', '.join(parts)}{tail}"


def failures(t: ConnectionTable, rows: I64, point_nodes: Sequence[str | None]) -> Failures:
    """`Failures` of `rows` of the table: reset/rejected grouped by who answered (address, and
    its node where it is one), unanswered/incomplete by the furthest point reached."""
    bad = rows[oc.failed(t.outcome[rows])]
    counts: dict[tuple[str, str], int] = {}
    for code, by, byp, last in zip(
        t.outcome[bad].tolist(),
        t.by[bad].tolist(),
        t.by_point[bad].tolist(),
        t.last_point[bad].tolist(),
        strict=True,
    ):
        if code in (oc.RESET, oc.REJECTED) and by >= 0:
            node = point_nodes[byp] if byp >= 0 else None
            who = t.addresses[by] + (f" ({node})" if node and node != t.points[byp] else "")
            if node and node == t.points[byp]:
                who = f"{node} ({t.addresses[by]})"
        else:
            who = t.points[last] if last >= 0 else ""
        key = (oc.OUTCOMES[code], who)
        counts[key] = counts.get(key, 0) + 1
    groups = sorted(((o, w, k) for (o, w), k in counts.items()), key=lambda g: (-g[2], g[0], g[1]))
    return Failures(int(rows.shape[0]), int(bad.shape[0]), tuple(groups))
