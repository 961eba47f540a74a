"""The traced request as plain HTML, readable with scripts off and when printed: the header
(request, outcome, total, Service and backend), the break when the request went no further,
`diagnose` findings, the ladder, the waterfall, the hop tables, every packet of the connection,
the DNS lookup, the clocks, the rule evidence (collapsed), `explain`'s story and the warnings.

Pure: a `Report` in, HTML lines out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tracer.correlate.legs import is_proxy
from tracer.dnslookup import DnsLookup
from tracer.explain.evidence import PathEvidence
from tracer.model import Hop, Journey, Path
from tracer.report.evidence import compact_lines, evidence_lines
from tracer.report.html.data import endpoint_parts, flat
from tracer.report.html.page import Report, esc
from tracer.report.html.waterfall import waterfall_section
from tracer.report.svg import render_svg
from tracer.report.table import (
    ARROW,
    answered_by_icmp,
    clock_text,
    ms,
    ms_words,
    translation_text,
    utc,
    went_no_further,
)
from tracer.words import count


def _outcome(report: Report, path: Path) -> tuple[str, str, str]:
    """(css class, words, who answered) for the header."""
    row = report.row or {}
    outcome = row.get("outcome")
    by = row.get("outcome_by")
    by_words = flat(by) if by else ""
    if outcome:
        cls = "ok" if outcome == "ok" else "bad"
        return cls, str(outcome), str(by_words)
    if answered_by_icmp(path):
        return "bad", "ICMP error", str(by_words or path.reverse[0].tuple5.src)
    if not path.reverse:
        return "bad", "no reply", ""
    return "ok", "answered", str(by_words)


def _named(address: str | None, names: Mapping[str, str]) -> str:
    if not address:
        return ""
    ip, _ = endpoint_parts(address)
    name = names.get(ip.strip("[]"))
    return f"{address} ({name})" if name else address


def _header(report: Report, path: Path) -> list[str]:
    r = path.request
    cls, words, by = _outcome(report, path)
    title = f"{r.protocol} {r.client} {ARROW} {r.destination}"
    out = ['<header class="request">', f"<h1>{esc(title)}</h1>"]
    if r.summary:
        out.append(f'<p class="summary">{esc(r.summary)}</p>')
    facts = [
        (
            "outcome",
            f'<span class="badge {cls}">{esc(words)}</span>' + (f" by {esc(by)}" if by else ""),
        )
    ]
    total = path.latency.total_ns
    facts.append(("total", f"{esc(ms(total))} ms" if total is not None else "not measured"))
    if path.latency.server_ns is not None:
        facts.append(("server", f"{esc(ms(path.latency.server_ns))} ms"))
    dest_name = _named(r.destination, report.names)
    service = (report.row or {}).get("service")
    if dest_name != r.destination or service:
        # A destination with a name from the run, or one a DNAT rewrote (the listing says so).
        facts.append(("Service", esc(dest_name)))
    if r.backend and r.backend != r.destination:
        facts.append(("backend", esc(_named(r.backend, report.names))))
    if r.start_ns:
        facts.append(("started", esc(utc(r.start_ns))))
    facts.append(("request", f"#{r.index}"))
    out.append('<dl class="facts">')
    out += [f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts]
    out.append("</dl>")
    if went_no_further(path):
        last = path.forward[-1]
        where = f"{last.point} {last.interface}" if last.interface else last.point
        if answered_by_icmp(path):
            back = path.reverse[0]
            after = back.t_ns - last.t_ns
            why = (
                f"an ICMP error from {back.tuple5.src} came back {ms(after)} ms after it was last"
                " seen"
            )
        else:
            why = "no reply was seen at any capture point"
        out.append(
            f'<p class="break" id="break"><b>✕ The request went no further than {esc(where)}</b>'
            f" (node {esc(last.node or '?')}): {esc(why)}.</p>"
        )
    out.append("</header>")
    return out


def findings_section(findings: Sequence[Mapping[str, Any]]) -> list[str]:
    if not findings:
        return []
    out = ['<section id="findings"><h2>Findings</h2><ol class="findings">']
    for f in findings:
        sev = str(f.get("severity", "info"))
        out.append(f'<li class="sev-{esc(sev)}"><span class="badge {esc(sev)}">{esc(sev)}</span> ')
        out.append(f"step {esc(f.get('step', ''))}: <b>{esc(f.get('title', ''))}</b>")
        ev = f.get("evidence") or []
        items = "".join(f"<li>{esc(e)}</li>" for e in ev)
        nxt = f'<p class="next">next: {esc(f["next"])}</p>' if f.get("next") else ""
        if sev == "info" and (ev or nxt):
            # As in the text report: what needs no action keeps its evidence folded.
            out.append(f"<details><summary>evidence</summary><ul>{items}</ul>{nxt}</details>")
        else:
            out.append(f"<ul>{items}</ul>{nxt}" if ev else nxt)
        out.append("</li>")
    out.append("</ol></section>")
    return out


def _hops_table(title: str, hops: Sequence[Hop], empty: str) -> list[str]:
    out = [f"<h3>{esc(title)}</h3>"]
    if not hops:
        return [*out, f'<p class="empty">{esc(empty)}</p>']
    out.append(
        '<table class="hops"><thead><tr><th>#</th><th>point</th><th>node</th><th>interface</th>'
        "<th>dir</th><th>time (ms)</th><th>Δ (ms)</th><th>tuple</th><th>translation</th>"
        "</tr></thead><tbody>"
    )
    prev = None
    for i, h in enumerate(hops, 1):
        delta = "" if prev is None else ms(h.t_ns - prev, signed=True)
        tr = "L7 proxy hand-over" if is_proxy(h) else translation_text(h.translation)
        cls = ' class="rewrite"' if h.translation is not None else ""
        out.append(
            f"<tr{cls}><td class='num'>{i}</td><td>{esc(h.point)}</td><td>{esc(h.node or '')}</td>"
            f"<td>{esc(h.interface or '')}</td><td>{esc('proxy' if is_proxy(h) else h.direction or '')}</td>"
            f"<td class='num'>{esc(ms(h.t_ns))}</td><td class='num'>{esc(delta)}</td>"
            f"<td class='mono'>{esc(f'{h.tuple5.src} {ARROW} {h.tuple5.dst}')}</td>"
            f"<td class='mono'>{esc(tr).replace(chr(10), '<br>')}</td></tr>"
        )
        prev = h.t_ns
    out.append("</tbody></table>")
    return out


_KIND_WORDS = {"syn": "SYN", "syn-ack": "SYN-ACK", "ack": "ACK", "fin": "FIN", "rst": "RST"}


def exchange_rows(journeys: Sequence[Journey], anchor: str) -> list[dict[str, Any]]:
    """Every packet of the connection in the order sent: the time it was seen at `anchor` (the
    client's point: one clock, so the times are exact) since the first, the way it went, what
    it was, and the points that saw it in path order. A packet `anchor` never saw has no time."""
    rows = []
    t0 = None
    for j in journeys:
        at = next((o for o in j.observations if o.point == anchor), None)
        if at is not None and t0 is None:
            t0 = at.t_ns
        points = list(dict.fromkeys(o.point for o in j.observations))
        size = max((o.payload_len for o in j.observations), default=0)
        rows.append(
            {
                "t_ns": None if at is None or t0 is None else at.t_ns - t0,
                "direction": j.direction,
                "kind": _KIND_WORDS.get(j.kind, j.kind),
                "bytes": size,
                "retransmission": j.retransmission,
                "points": points,
            }
        )
    return rows


def _exchange(path: Path, journeys: Sequence[Journey]) -> list[str]:
    if not journeys or not path.forward:
        return []
    anchor = path.forward[0].point
    rows = exchange_rows(journeys, anchor)
    retr = sum(1 for r in rows if r["retransmission"])
    out = [
        '<section id="exchange"><h2>Every packet of the connection</h2>',
        f"<p class='hint'>As the client's point ({esc(anchor)}) saw them, in the order sent;"
        " the ladder above follows the first packet each way."
        + (f" <b class='finding'>{esc(count(retr, 'retransmission'))}</b>." if retr else "")
        + "</p>",
        '<table class="exchange"><thead><tr><th>#</th><th>at (ms)</th><th>way</th>'
        "<th>packet</th><th class='num'>bytes</th><th>seen at</th></tr></thead><tbody>",
    ]
    for i, r in enumerate(rows, 1):
        way = "→ request" if r["direction"] == "forward" else "← reply"
        kind = r["kind"] + (
            f" (retransmission {r['retransmission']})" if r["retransmission"] else ""
        )
        cls = ' class="rewrite"' if r["retransmission"] else ""
        at = ms(r["t_ns"]) if r["t_ns"] is not None else f"not seen at {anchor}"
        out.append(
            f"<tr{cls}><td class='num'>{i}</td><td class='num'>{esc(at)}</td><td>{way}</td>"
            f"<td>{esc(kind)}</td><td class='num'>{r['bytes'] or ''}</td>"
            f"<td class='mono'>{esc(f' {ARROW} '.join(r['points']))}</td></tr>"
        )
    out.append("</tbody></table></section>")
    return out


def _dns(lookup: DnsLookup | None) -> list[str]:
    if lookup is None or not lookup.queries:
        return []
    if lookup.address is not None and lookup.answered_by is not None:
        head = f"{lookup.name} {ARROW} {lookup.address}"
        if lookup.elapsed_ns is not None:
            head += f" in {ms(lookup.elapsed_ns)} ms"
    else:
        rcodes = sorted({q.rcode or "no reply" for q in lookup.queries})
        head = f"{lookup.name}: not resolved ({', '.join(rcodes)})"
    out = [
        '<section id="dns"><h2>DNS lookup</h2>',
        f"<p><b>{esc(head)}</b> ({esc(count(len(lookup.queries), 'query', 'queries'))})</p>",
    ]
    if lookup.search:
        out.append(f"<p class='hint'>search list: {esc(' '.join(lookup.search))}</p>")
    out.append(
        '<table class="dns"><thead><tr><th>#</th><th>at (ms)</th><th>query</th><th>type</th>'
        "<th>rcode</th><th>answer</th><th>latency (ms)</th><th>asked → answered by</th></tr>"
        "</thead><tbody>"
    )
    start = lookup.queries[0].start_ns
    for i, q in enumerate(lookup.queries, 1):
        used = q is lookup.answered_by
        answer = ", ".join(q.answers) or ("(no records)" if q.rcode == "NOERROR" else "")
        server = f"{q.server} ({q.server_name})" if q.server_name else str(q.server)
        cls = ' class="used"' if used else ""
        bad = " bad" if q.rcode not in (None, "NOERROR") else ""
        out.append(
            f"<tr{cls}><td class='num'>{i}</td><td class='num'>{esc(ms(q.start_ns - start))}</td>"
            f"<td class='mono'>{esc(q.name)}{' ✓' if used else ''}</td><td>{esc(q.qtype)}</td>"
            f"<td class='rcode{bad}'>{esc(q.rcode or 'no reply')}</td><td class='mono'>{esc(answer)}</td>"
            f"<td class='num'>{esc(ms(q.latency_ns))}</td>"
            f"<td class='mono'>{esc(f'{q.asked} {ARROW} {server}')}</td></tr>"
        )
    out.append("</tbody></table>")
    if lookup.answered_by is not None:
        out.append("<p class='hint'>✓ the answer that resolved the name</p>")
    out.append("</section>")
    return out


def _evidence(path: Path, evidence: PathEvidence | None) -> list[str]:
    if evidence is None or (not evidence.rewrites and not evidence.findings):
        return []
    out = [
        '<section id="evidence"><h2>Rule evidence</h2>',
        "<p class='hint'>Which kube-proxy rule or conntrack entry made each rewrite; open one"
        " for the deciding rules, and inside it every rule walked.</p>",
    ]
    shown: set[object] = set()
    for ev in evidence.rewrites:
        lines = compact_lines(path, ev)
        bad = " bad" if ev.findings else ""
        out.append(f'<details class="evidence{bad}"><summary>{esc(lines[0])}</summary>')
        out.append(f"<pre>{esc(chr(10).join(line[2:] for line in lines[1:]))}</pre>")
        walked = evidence_lines(path, ev)[1:]
        if walked:
            out.append("<details class='walk'><summary>every rule walked</summary>")
            out.append(f"<pre>{esc(chr(10).join(line[2:] for line in walked))}</pre></details>")
        out.append("</details>")
        shown.update(ev.findings)
    for f in evidence.findings:
        if f not in shown:
            out.append(f'<p class="finding">FINDING ({esc(f.kind)}): {esc(f.message)}</p>')
    out.append("</section>")
    return out


def request_sections(report: Report, path: Path) -> list[str]:
    out = _header(report, path)
    out += findings_section(report.findings)
    out += [
        '<section id="ladder"><h2>Path</h2>',
        '<p class="hint">Every capture point that saw the request\'s first packet, and its first'
        " reply on the way back; rewrites marked where they happen.</p>",
        '<div class="scroll">',
        render_svg(path, titled=False).strip(),
        "</div></section>",
    ]
    out += waterfall_section(path)
    tcp = path.request.protocol == "tcp"
    icmp = answered_by_icmp(path)
    fwd = "Forward path" + (" (SYN)" if tcp and not path.stitches else "")
    rev = "Return path" + (" (SYN-ACK)" if tcp and not path.stitches else "")
    if icmp:
        rev = "Return path (an ICMP error came back instead of a reply)"
    out += ['<section id="hops"><h2>Hops</h2>']
    out += _hops_table(fwd, path.forward, "no packet of the request was seen")
    out += _hops_table(rev, path.reverse, "no reply was seen at any capture point")
    out.append("</section>")
    out += _exchange(path, report.journeys)
    out += _dns(report.dns)
    if path.clocks:
        out.append('<section id="clocks"><h2>Clocks</h2><ul>')
        out += [f"<li>{esc(clock_text(c))}</li>" for c in path.clocks]
        out.append("</ul><p class='hint'>reference time = node time − offset</p></section>")
    out += _evidence(path, report.evidence)
    if report.story:
        out += [
            '<section id="story"><h2>Step by step</h2><details open><summary>explain</summary>',
            f"<pre>{esc(report.story)}</pre></details></section>",
        ]
    if path.warnings or path.notes:
        out.append('<section id="warnings"><h2>Warnings</h2>')
        if path.warnings:
            out.append("<ul>" + "".join(f"<li>{esc(ms_words(w))}</li>" for w in path.warnings))
            out.append("</ul>")
        else:
            out.append("<p class='hint'>none</p>")
        if path.notes:
            out.append(
                f"<details><summary>{esc(count(len(path.notes), 'note'))} about the captures</summary><ul>"
            )
            out += [f"<li>{esc(n)}</li>" for n in path.notes]
            out.append("</ul></details>")
        out.append("</section>")
    return out
