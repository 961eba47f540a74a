"""A path as text: the request, the forward and return hops, the latency, the clocks, the warnings.

Times are milliseconds with microsecond precision, relative to the first forward hop after clock
correction (as the `Hop`s carry them). A negative delay is never printed without a "!" and a
note, because it only means the clock estimate's error bound is larger than the delay.
Pure: takes a `Path`, returns a string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from tabulate import tabulate

from tracer.correlate.legs import is_proxy, leg_paths
from tracer.dnslookup import DnsLookup, DnsQuery
from tracer.model import ClockEstimate, Hop, Latency, Path, Translation, Tuple5
from tracer.report.stitched import Handoff, handoffs

ARROW = "→"
NEGATIVE_MARK = "!"
NEGATIVE_NOTE = (
    f"{NEGATIVE_MARK} negative: the true delay is smaller than the clock offset's error bound"
)

# Which endpoint each NAT kind rewrites: DNAT the destination, SNAT the source; on replies the
# reverse (conntrack's reply tuple), so un-DNAT rewrites the source and un-SNAT the destination.
_REWRITES = {"DNAT": "dst", "SNAT": "src", "un-DNAT": "src", "un-SNAT": "dst", "REDIRECT": "dst"}

_MAX_ANSWERS_SHOWN = 3
# Messages from the correlator give durations in integer nanoseconds (exact, for JSON); the text
# report shows them in milliseconds like every other time in it.
_NS = re.compile(r"(?<![\w.])(-?\d+) ns\b")


def ms_words(text: str) -> str:
    """A message with every "<integer> ns" written as milliseconds ("246000 ns" -> "0.246 ms")."""
    return _NS.sub(lambda m: f"{int(m.group(1)) / 1e6:.3f} ms", text)


def ms(ns: int | None, *, signed: bool = False) -> str:
    """Nanoseconds as milliseconds with three decimals ("—" when unknown)."""
    if ns is None:
        return "—"
    text = f"{ns / 1e6:+.3f}" if signed else f"{ns / 1e6:.3f}"
    return text + (f" {NEGATIVE_MARK}" if ns < 0 else "")


def utc(ns: int) -> str:
    """Epoch nanoseconds as a UTC timestamp with microseconds."""
    sec, rem = divmod(int(ns), 1_000_000_000)
    return (
        datetime.fromtimestamp(sec, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        + f".{rem // 1000:06d} UTC"
    )


def flow(t: Tuple5) -> str:
    return f"{t.src} {ARROW} {t.dst}"


def translation_text(tr: Translation | None) -> str:
    """E.g. "DNAT 10.96.0.100:80 → 10.244.2.9:8080"; a combined kind gives one line per rewrite."""
    if tr is None:
        return ""
    parts = []
    for kind in tr.kind.split("+"):
        side = _REWRITES.get(kind)
        if side == "src":
            parts.append(f"{kind} {tr.before.src} {ARROW} {tr.after.src}")
        elif side == "dst":
            parts.append(f"{kind} {tr.before.dst} {ARROW} {tr.after.dst}")
    if not parts:  # an unknown kind: show the whole change rather than nothing
        return f"{tr.kind} {flow(tr.before)} {ARROW} {flow(tr.after)}"
    return "\n".join(parts)  # one rewrite per line keeps the column narrow


def answered_by_icmp(path: Path) -> bool:
    """Did an ICMP error come back instead of a reply? (The correlator then shows the error
    that quotes the request as the path's way back.)"""
    return (
        bool(path.reverse)
        and not path.request.protocol.startswith("icmp")
        and path.reverse[0].tuple5.proto.startswith("icmp")
    )


def went_no_further(path: Path) -> bool:
    """Did the request stop on the way: no reply at any point, or an ICMP error instead?"""
    return bool(path.forward) and (not path.reverse or answered_by_icmp(path))


def _hop_rows(
    hops: Sequence[Hop], start: int, proxy_words: Mapping[int, str] | None = None
) -> tuple[list[list[str]], bool]:
    rows = []
    negative = False
    prev: int | None = None
    words = proxy_words or {}
    for i, h in enumerate(hops):
        delta = None if prev is None else h.t_ns - prev
        negative |= delta is not None and delta < 0
        proxy = is_proxy(h)
        rows.append(
            [
                str(start + i),
                h.point,
                h.node or "",
                h.interface or "",
                "proxy" if proxy else (h.direction or ""),
                ms(h.t_ns),
                ms(delta, signed=True) if delta is not None else "",
                flow(h.tuple5),
                words.get(i, "") if proxy else translation_text(h.translation),
            ]
        )
        prev = h.t_ns
    return rows, negative


_HOP_HEADERS = [
    "#",
    "point",
    "node",
    "interface",
    "dir",
    "time (ms)",
    "Δ (ms)",
    "tuple",
    "translation",
]
_HOP_ALIGN = ("right", "left", "left", "left", "left", "right", "right", "left", "left")


def _hops_section(
    title: str,
    hops: Sequence[Hop],
    start: int,
    empty: str,
    proxy_words: Mapping[int, str] | None = None,
) -> list[str]:
    if not hops:
        return [title, f"  {empty}"]
    rows, negative = _hop_rows(hops, start, proxy_words)
    table = tabulate(
        rows, headers=_HOP_HEADERS, tablefmt="simple", colalign=_HOP_ALIGN, disable_numparse=True
    )
    lines = [title, *table.splitlines()]
    if negative:
        lines.append(NEGATIVE_NOTE)
    return lines


def _latency_section(lat: Latency, tcp: bool, missing: str, proxied: bool) -> list[str]:
    """The latency rows; `missing` says why a time that is not there could not be measured."""
    lines = ["Latency"]
    summary: list[tuple[str, int | None, str]] = [
        ("server", lat.server_ns, "request in to reply out at the server"),
        ("total", lat.total_ns, "first request packet to last reply packet"),
    ]
    if proxied:
        summary = [
            ("server", lat.server_ns, "request in to response out at the backend"),
            ("proxy", lat.proxy_ns, "inside the L7 proxy: request in to out + response in to out"),
            ("total", lat.total_ns, "first request packet to last response packet at the client"),
        ]
    if tcp or lat.connect_ns is not None:
        summary.insert(0, ("connect", lat.connect_ns, "handshake (SYN to SYN-ACK) at the client"))
    # A time that could not be measured says why, so that "—" is never read as zero.
    rows = [[name, ms(v), "ms" if v is not None else "", why] for name, v, why in summary]
    lines += [
        "  " + line
        for line in tabulate(
            rows,
            tablefmt="plain",
            colalign=("left", "right", "left", "left"),
            disable_numparse=True,
        ).splitlines()
    ]
    if any(v is None for _, v, _ in summary):
        lines.append(f"  (— not measured: {missing})")
    if lat.segments:
        seg_rows = [
            [
                f"{s.from_point} {ARROW} {s.to_point}",
                ms(s.first_ns),
                ms(s.median_ns),
                str(s.packets),
            ]
            for s in lat.segments
        ]
        headers = ["segment", "first (ms)", "median (ms)", "packets"]
        align = ["left", "right", "right", "right"]
        if any(s.negative for s in lat.segments):
            # The correlator may flag a segment whose shown value was already clamped at zero.
            headers.append("note")
            align.append("left")
            for row, s in zip(seg_rows, lat.segments, strict=True):
                row.append(NEGATIVE_MARK if s.negative else "")
        table = tabulate(
            seg_rows, headers=headers, tablefmt="simple", colalign=align, disable_numparse=True
        )
        lines += ["", *("  " + line.rstrip() for line in table.splitlines())]
        if any(s.negative or s.first_ns < 0 or s.median_ns < 0 for s in lat.segments):
            lines.append("  " + NEGATIVE_NOTE)
    return lines


def _proxy_words(hand: Sequence[Handoff]) -> tuple[dict[int, str], dict[int, str]]:
    """The translation-column words of each proxy hop (forward, reverse), by hop index."""
    fwd: dict[int, str] = {}
    rev: dict[int, str] = {}
    for h in hand:
        s = h.stitch
        if h.forward_hop is not None:
            fwd[h.forward_hop] = f"L7 proxy: #{s.client_leg} sent on as #{s.server_leg}"
        if h.reverse_hop is not None:
            rev[h.reverse_hop] = f"L7 proxy: #{s.server_leg} answered on #{s.client_leg}"
    return fwd, rev


def proxy_section(path: Path, hand: Sequence[Handoff]) -> list[str]:
    """The "L7 proxy" block: which connections a proxy joined, how sure, and its own time."""
    legs = leg_paths(path)
    sent = [lp.path.forward[0].tuple5 if lp.path.forward else None for lp in legs]
    lines = ["L7 proxy (the proxy ends the client's connection and opens its own)"]
    for i, h in enumerate(hand):
        s = h.stitch
        lines.append(
            f"  {s.proxy}: connection #{s.client_leg} → #{s.server_leg}, confidence {s.confidence}"
        )
        client = sent[i] if i < len(sent) else None
        server = sent[i + 1] if i + 1 < len(sent) else None
        if client is not None:
            lines.append(f"    #{s.client_leg}  {flow(client)}")
        if server is not None:
            lines.append(f"    #{s.server_leg}  {flow(server)}")
        lines.append(f"    why: {'; '.join(s.reasons)}")
        if s.proxy_ns is not None:
            parts = []
            if h.request_ns is not None:
                parts.append(f"request {ms(h.request_ns)} ms")
            if h.response_ns is not None:
                parts.append(f"response {ms(h.response_ns)} ms")
            split = f" ({' + '.join(parts)})" if parts else ""
            lines.append(f"    time inside the proxy: {ms(s.proxy_ns)} ms{split}")
        else:
            lines.append("    time inside the proxy: not measured (one side was not seen)")
    return lines


def clock_text(c: ClockEstimate) -> str:
    # The correlator gives a negative bound when it has none (packets seen one way only).
    bound = f"± {ms(c.error_bound_ns)} ms" if c.error_bound_ns >= 0 else "(error bound unknown)"
    text = (
        f"{c.node} against {c.reference}: offset {ms(c.offset_ns, signed=True).rstrip(' !')} ms"
        f" {bound} ({c.samples} sample{'s' if c.samples != 1 else ''}"
    )
    if c.drift_ppm is not None:
        text += f", drift {c.drift_ppm:+.2f} ppm"
    return text + ")"


def _named(endpoint: object, name: str | None) -> str:
    return f"{endpoint} ({name})" if name else str(endpoint)


def _answer_text(q: DnsQuery) -> str:
    if q.rcode is None:
        return "no reply"
    if not q.answers:
        return "(no records)" if q.rcode == "NOERROR" else ""
    shown = ", ".join(q.answers[:_MAX_ANSWERS_SHOWN])
    return shown + (", …" if len(q.answers) > _MAX_ANSWERS_SHOWN else "")


def dns_section(lookup: DnsLookup) -> list[str]:
    """The "DNS lookup" block: what the client asked before the request, and who answered."""
    qs = lookup.queries
    n = len(qs)
    counts = f"{n} quer{'y' if n == 1 else 'ies'}"
    if lookup.expansions:
        counts += f", {lookup.expansions} of them search-list expansions"
    if lookup.address is not None and lookup.answered_by is not None:
        head = f"DNS lookup  {lookup.name} {ARROW} {lookup.address}"
        if lookup.elapsed_ns is not None:
            head += f" in {ms(lookup.elapsed_ns)} ms"
    else:
        rcodes = sorted({q.rcode or "no reply" for q in qs})
        head = f"DNS lookup  {lookup.name}: not resolved ({', '.join(rcodes)})"
    lines = [f"{head}  ({counts})"]
    pairs = {(str(q.asked), q.asked_name, str(q.server), q.server_name, q.point) for q in qs}
    one_server = len(pairs) == 1
    if one_server:
        q0 = qs[0]
        where = f"asked by {q0.point} {ARROW} {_named(q0.asked, q0.asked_name)}"
        if q0.server != q0.asked:
            where += f", answered by {_named(q0.server, q0.server_name)}"
        lines.append(f"  {where}")
    if lookup.search:
        lines.append(f"  search list (from the names asked): {' '.join(lookup.search)}")
    start = qs[0].start_ns
    rows = []
    for i, q in enumerate(qs, 1):
        mark = " *" if q is lookup.answered_by else ""
        row = [
            str(i),
            ms(q.start_ns - start),
            q.name + mark,
            q.qtype,
            q.rcode or "—",
            _answer_text(q),
            ms(q.latency_ns),
        ]
        if not one_server:
            row.append(f"{q.asked} {ARROW} {_named(q.server, q.server_name)}")
        rows.append(row)
    headers = ["#", "at (ms)", "query", "type", "rcode", "answer", "latency (ms)"]
    align = ["right", "right", "left", "left", "left", "left", "right"]
    if not one_server:
        headers.append("asked → answered by")
        align.append("left")
    table = tabulate(
        rows, headers=headers, tablefmt="simple", colalign=align, disable_numparse=True
    )
    lines += ["  " + line for line in table.splitlines()]
    notes = ["at: since the first query; latency: query out to answer in, at the asking point"]
    if lookup.answered_by is not None:
        notes.append("* the answer that resolved the name")
    lines += [f"  ({'; '.join(notes)})"]
    return lines


def render_table(
    path: Path,
    *,
    dns: DnsLookup | None = None,
    evidence: str = "",
    verbose: bool = False,
) -> str:
    """The whole report as text, ending with a newline.

    `dns` adds the lookup that gave the client its destination (above the forward path);
    `evidence` is the already rendered "Rule evidence" section (tracer.report.evidence);
    `verbose` shows the informational notes about the captures as well as the warnings.
    """
    r = path.request
    head = f"Request #{r.index}  {r.protocol}  {r.client} {ARROW} {r.destination}"
    if r.backend and r.backend != r.destination:
        head += f"  (backend {r.backend})"
    lines = [head]
    if r.summary:
        lines.append(f"  {r.summary}")
    if r.start_ns:
        lines.append(f"  started {utc(r.start_ns)}")
    first = path.forward[0] if path.forward else None
    if first is not None and first.translation is not None and first.note:
        # A translation no node made (a sidecar's REDIRECT, a socket load-balancer): say where.
        lines.append(f"  {translation_text(first.translation)}: {first.note}")
    tcp = r.protocol.lower() == "tcp"
    hand = handoffs(path)
    if hand:
        chain = " → ".join(
            [f"#{hand[0].stitch.client_leg}", *(f"#{h.stitch.server_leg}" for h in hand)]
        )
        proxies = ", ".join(dict.fromkeys(h.stitch.proxy for h in hand))
        lines.append(f"  through the L7 proxy {proxies}: connections {chain}, one request")
    if dns is not None and dns.queries:
        lines.append("")
        lines += dns_section(dns)
    lines.append("")
    if hand:
        fwd_title = "Forward path (the request's first data packet, through the proxy)"
        rev_title = "Return path (the response's first data packet, through the proxy)"
    else:
        fwd_title = "Forward path" + (" (SYN)" if tcp else " (first request packet)")
        rev_title = "Return path" + (" (SYN-ACK)" if tcp else " (first reply packet)")
    icmp_back = answered_by_icmp(path)
    if icmp_back:
        rev_title = "Return path (an ICMP error came back instead of a reply)"
    fwd_words, rev_words = _proxy_words(hand)
    lines += _hops_section(
        fwd_title, path.forward, 1, "no packet of the request was seen", fwd_words
    )
    lines.append("")
    lines += _hops_section(
        rev_title, path.reverse, 1, "no reply was seen at any capture point", rev_words
    )
    if hand:
        lines.append("")
        lines += proxy_section(path, hand)
    lines.append("")
    if icmp_back:
        missing = "an ICMP error came back instead of a reply"
    elif not path.reverse:
        missing = "no reply was seen"
    else:
        missing = "not every packet it needs was captured"
    lines += _latency_section(path.latency, tcp, missing, bool(hand))
    if path.clocks:
        lines += ["", "Clocks (reference time = node time - offset)"]
        lines += [f"  {clock_text(c)}" for c in path.clocks]
    if evidence.strip():
        lines += ["", *evidence.rstrip("\n").splitlines()]
    if path.warnings:
        lines += ["", "Warnings"]
        lines += [f"  - {ms_words(w)}" for w in path.warnings]
    if verbose and path.notes:
        lines += ["", "Notes"]
        lines += [f"  - {w}" for w in path.notes]
    return "\n".join(line.rstrip() for line in lines) + "\n"
