"""Parse `conntrack -L` lines (with or without the `-o extended` prefix) into frozen dataclasses.

An entry has the original and the reply tuple; for a DNAT the reply's `src=` is the endpoint, for
a masquerade the reply's `dst=`/`dport=` are the node's. Lines that are not entries become
warnings, never silent drops. Pure: text in, data out.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.model import Endpoint, Tuple5

_L4 = frozenset({"tcp", "udp", "icmp", "sctp", "udplite", "dccp", "icmpv6", "gre", "unknown"})
_STATES = frozenset(
    {
        "SYN_SENT",
        "SYN_RECV",
        "ESTABLISHED",
        "FIN_WAIT",
        "CLOSE_WAIT",
        "LAST_ACK",
        "TIME_WAIT",
        "CLOSE",
        "LISTEN",
        "SYN_SENT2",
        "NONE",
    }
)


@dataclass(frozen=True)
class ConntrackEntry:
    proto: str
    ttl: int | None
    state: str | None
    original: Tuple5
    reply: Tuple5
    flags: tuple[str, ...]  # UNREPLIED, ASSURED, …
    mark: int | None
    zone: int | None
    text: str

    @property
    def dnat(self) -> bool:
        """The destination was rewritten (the reply comes from somewhere else)."""
        return self.reply.src != self.original.dst

    @property
    def snat(self) -> bool:
        """The source was rewritten (masquerade): the reply goes back to another address/port."""
        return self.reply.dst != self.original.src


@dataclass(frozen=True)
class ConntrackTable:
    entries: tuple[ConntrackEntry, ...]
    warnings: tuple[str, ...] = ()

    def by_original(self, original: Tuple5) -> ConntrackEntry | None:
        """The entry whose original tuple is `original` (the packet as it left its sender)."""
        return next((e for e in self.entries if e.original == original), None)

    def by_reply(self, reply: Tuple5) -> ConntrackEntry | None:
        """The entry whose reply tuple is `reply` (the reply as it arrives, before un-NAT)."""
        return next((e for e in self.entries if e.reply == reply), None)


class _BadLineError(ValueError):
    pass


def _tuple(proto: str, kv: dict[str, str]) -> Tuple5:
    try:
        src, dst = kv["src"], kv["dst"]
    except KeyError as e:
        raise _BadLineError(f"missing {e.args[0]}=") from e
    sport = kv.get("sport")
    dport = kv.get("dport")
    try:
        sp = int(sport) if sport is not None else None
        dp = int(dport) if dport is not None else None
    except ValueError as e:
        raise _BadLineError("port is not a number") from e
    return Tuple5(proto, Endpoint(src, sp), Endpoint(dst, dp))


def parse_conntrack_line(line: str) -> ConntrackEntry:
    words = line.split()
    if len(words) >= 2 and words[0] in ("ipv4", "ipv6") and words[1].isdigit():
        words = words[2:]  # -o extended
    if len(words) < 3 or words[0] not in _L4 or not words[1].isdigit():
        raise _BadLineError("not a conntrack entry")
    proto = words[0]
    ttl: int | None = None
    i = 2
    if words[i].isdigit():
        ttl = int(words[i])
        i += 1
    state = None
    if i < len(words) and words[i] in _STATES:
        state = words[i]
        i += 1
    tuples: list[dict[str, str]] = [{}]
    flags: list[str] = []
    mark = zone = None
    for w in words[i:]:
        if w.startswith("[") and w.endswith("]"):
            flags.append(w[1:-1])
            continue
        k, sep, v = w.partition("=")
        if not sep:
            continue
        if k in ("mark", "zone", "use", "secctx", "id", "delta-time", "timeout"):
            try:
                if k == "mark":
                    mark = int(v, 0)
                elif k == "zone":
                    zone = int(v)
            except ValueError as e:
                raise _BadLineError(f"{k}= is not a number") from e
            continue
        if k == "src" and "src" in tuples[-1]:
            if len(tuples) == 2:
                raise _BadLineError("more than two tuples")
            tuples.append({})
        tuples[-1].setdefault(k, v)
    if len(tuples) != 2:
        raise _BadLineError("no reply tuple")
    name = "icmpv6" if proto == "icmpv6" else proto
    return ConntrackEntry(
        proto=name,
        ttl=ttl,
        state=state,
        original=_tuple(name, tuples[0]),
        reply=_tuple(name, tuples[1]),
        flags=tuple(flags),
        mark=mark,
        zone=zone,
        text=line.strip(),
    )


def parse_conntrack(text: str, *, source: str = "<conntrack>") -> ConntrackTable:
    entries: list[ConntrackEntry] = []
    warnings: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if not s or s.startswith("conntrack v") or "flow entries have been shown" in s:
            continue
        try:
            entries.append(parse_conntrack_line(s))
        except _BadLineError as e:
            warnings.append(f"{source}:{lineno}: ignored ({e}): {s[:120]}")
    return ConntrackTable(tuple(entries), tuple(warnings))


# ---------------------------------------------------------------------------------------------
# `conntrack -S`: the kernel's per-CPU conntrack counters, one `cpu=N key=value ...` line each.

# Counters that mean a packet lost its conntrack entry (and so its NAT): a failed insert (two
# packets racing to create the same entry, the UDP race behind 5-second DNS delays; or the table
# full), a drop for want of room, an early drop of an unassured entry to make room.
LOSS_COUNTERS = ("insert_failed", "drop", "early_drop")


@dataclass(frozen=True)
class ConntrackStats:
    """The counters summed over every CPU."""

    counters: tuple[tuple[str, int], ...]
    cpus: int
    warnings: tuple[str, ...] = ()

    def get(self, name: str) -> int | None:
        return next((v for k, v in self.counters if k == name), None)


def parse_conntrack_stats(text: str, *, source: str = "<conntrack -S>") -> ConntrackStats:
    totals: dict[str, int] = {}
    cpus = 0
    warnings: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        words = raw.split()
        if not words:
            continue
        if not words[0].startswith("cpu="):
            warnings.append(f"{source}:{lineno}: ignored (not a cpu= line): {raw.strip()[:120]}")
            continue
        cpus += 1
        pairs = [w.partition("=")[::2] for w in words[1:] if "=" in w]
        # Older conntrack-tools print every counter as 8 hex digits (entries=0000012a ...).
        base = 16 if pairs and all(len(v) == 8 for _, v in pairs) else 10
        for k, v in pairs:
            try:
                n = int(v, base)
            except ValueError:
                warnings.append(f"{source}:{lineno}: {k}= is not a number: {v[:40]}")
                continue
            totals[k] = totals.get(k, 0) + n
    return ConntrackStats(tuple(totals.items()), cpus, tuple(warnings))


def parse_sysctl_limits(text: str) -> dict[str, int]:
    """`sysctl net.netfilter.nf_conntrack_count net.netfilter.nf_conntrack_max` output."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep and v.strip().isdigit():
            out[k.strip().rsplit(".", 1)[-1]] = int(v.strip())
    return out
