"""`pathtrace analyze`: read captures, find the request, print its path.

Only wiring: inputs -> the trace pipeline (tracer.trace) -> report. Every decision is made in
those modules; this one parses options, shows progress and writes the result.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import click

from tracer.cli import say
from tracer.errors import InputError, MissingPrerequisiteError, NothingMatchedError, UsageError
from tracer.inputs import LINKS_FORM, POINT_EXAMPLE, POINT_FORM, LoadedRun, load_points, load_run

if TYPE_CHECKING:
    from tracer.correlate import Correlation
    from tracer.model import Connection, Path
    from tracer.trace import Listing, Run, Trace

# --sort keys: the start time, or one of the times (longest first).
SORT_KEYS = ("start", "total", "connect", "server")
# Files smaller than this read in well under a second: no progress line for them.
PROGRESS_MIN_BYTES = 32 * 1024 * 1024

HELP = f"""Trace one request through the captures and print its path, hop by hop.

\b
RUN is a run directory, as `pathtrace capture`, `pathtrace lab` and `pathtrace demo` write it:
  RUN/manifest.json                 the capture points (role, node = clock domain, file)
  RUN/points/<point>.pcap|.pcapng   one capture per point
  RUN/nodes/<node>/links.json       ifindex -> interface name (for `tcpdump -i any` captures)
  RUN/pods/<point>/links.json       the same for an `any` capture inside a pod (a meshed pod's,
                                    whose loopback carries the app-to-sidecar leg), and the
                                    pod's own nat table and conntrack (its sidecar REDIRECTs)

Without a run directory, name each capture file with --point {POINT_FORM}. ROLE is one of
client, node, server, ingress, dns, external; NAME is how the point shows in the report; NODE
names the clock domain (points on the same node share one clock; without @NODE a point is a
clock domain of its own). Give --links {LINKS_FORM} (`ip -j link` or `ip -o link` output) for
the ifindexes of an `any` capture taken on NODE, or --links POINT=FILE for one taken inside a
pod (a pod numbers its interfaces on its own).

\b
Examples:
  pathtrace analyze runs/2024-05-01T12-00-00
  pathtrace analyze runs/x --list                    every connection: outcome, who answered,
                                                     where it stopped, latency; summary first
  pathtrace analyze runs/x --failed                  only those whose outcome is not ok
  pathtrace analyze runs/x --slowest 20              the 20 longest total times
  pathtrace analyze runs/x --where 'outcome=reset,backend=10.244.2.9'
  pathtrace analyze runs/x --where 'total>200ms' --format csv -o slow.csv
  pathtrace analyze runs/x --request 3 --format json -o path.json
  pathtrace analyze runs/x --format mermaid          a Mermaid sequenceDiagram, for Markdown
  pathtrace analyze runs/x --diagram path.svg        a ladder diagram (.png needs rsvg-convert)
  pathtrace analyze runs/x --pcapng merged.pcapng    the request's packets from every point on
                                                     one clock, commented, for Wireshark
  pathtrace analyze runs/x --verbose                 also every rule walked and the notes
                                                     about the captures
  pathtrace analyze --point {POINT_EXAMPLE} \\
                    --point node:node-a@node-a=node-a.pcap \\
                    --point server:web-0@node-b=server.pcap

The report shows the DNS lookup that gave the client its destination (when the captures hold
it), the forward and return path with every rewrite, the latency, and, when the run directory
holds node facts (RUN/nodes/<node>/iptables-save.txt, nft.txt, ipvsadm.txt, conntrack.txt),
the kube-proxy rules and the conntrack entry behind each rewrite (the deciding rules; every rule
walked with --verbose).

A request that crossed an L7 proxy (an Ingress controller, a sidecar) is traced as one request
from the client to the backend: the proxy's connections are joined by the HTTP request they carry
and by time, the report follows the request's first data packet and its response through every
connection, marks the proxy's own hop and time, and says how sure the join is.

\b
--where EXPR keeps connections for which every KEY OP VALUE term (comma-separated) holds;
OP is = != > >= < <=. Keys: outcome (ok reset rejected unanswered incomplete), proto,
client, dst, backend (IP[:PORT]), by (who answered), point (furthest reached), total,
connect, server (durations: 200ms, 1.5s, 350us), status (HTTP), rcode (DNS), retrans.

By default the request seen at the most capture points is traced (the earliest of them); choose
another with --request N (its number in --list) or --match SPEC.

\b
--match SPEC keeps the connections for which every KEY=VALUE term holds at some capture point
(either side of a NAT); terms are separated by commas:
  --match dst=10.96.0.100:80              sent to the Service (or --match dst=10.244.2.9 for a pod)
  --match src=10.244.1.7,proto=tcp        from this client address, TCP only
  --match dst=[fd00:10:96::100]:80        IPv6 endpoints in brackets
Keys: src=IP[:PORT], dst=IP[:PORT], proto=tcp|udp|icmp|icmpv6; an IP without a port matches any.

\b
Exit codes: 0 ok, 1 error (unreadable file, bad run directory), 2 usage,
            3 no request found (or none matched --request/--match), 130 interrupted.
"""


def _progress_printer() -> Any:
    if not sys.stderr.isatty():
        return None

    def show(name: str, path: str, size: int) -> None:
        if size >= PROGRESS_MIN_BYTES:
            click.echo(f"reading {name}: {path} ({size / 1e6:.0f} MB)…", err=True)

    return show


def _check_sources(run: str | None, points: Sequence[str]) -> None:
    if run is not None and points:
        raise UsageError(
            "give either a RUN directory or --point files, not both",
            hint="a run directory already names its capture points in manifest.json",
        )
    if run is None and not points:
        raise UsageError(
            f"nothing to analyze: give a RUN directory or --point {POINT_FORM}",
            hint="see `pathtrace analyze --help`",
        )


def _load(run: str | None, points: Sequence[str], links: Sequence[str]) -> LoadedRun:
    progress = _progress_printer()
    if run is not None:
        return load_run(run, links, progress=progress)
    return load_points(points, links, progress=progress)


def _write(text: str, output: str | None) -> None:
    if output is None or output == "-":
        click.echo(text, nl=False)
        return
    _write_file(text, output, "the report")


def _write_chunks(chunks: Iterable[str], output: str | None) -> None:
    """Text made a piece at a time (a listing of every connection), written as it is made."""
    if output is None or output == "-":
        for chunk in chunks:
            click.echo(chunk, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as f:
            for chunk in chunks:
                f.write(chunk)
    except OSError as e:
        raise InputError(f"{output}: cannot write the listing: {e.strerror or e}") from e


def _write_file(text: str, where: str, what: str) -> None:
    try:
        with open(where, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise InputError(f"{where}: cannot write {what}: {e.strerror or e}") from e


@click.command("analyze", help=HELP, no_args_is_help=False)
@click.argument("run", required=False, metavar="[RUN]")
@click.option(
    "--point",
    "points",
    multiple=True,
    metavar=POINT_FORM,
    help=f"A capture file and where it was taken (repeat), e.g. {POINT_EXAMPLE}.",
)
@click.option(
    "--links",
    multiple=True,
    metavar=LINKS_FORM,
    help="Interface names of NODE (`ip -j link` or `ip -o link` output) (repeat).",
)
@click.option(
    "--list",
    "list_only",
    is_flag=True,
    help="List every connection: a summary by outcome and latency, then one row each.",
)
@click.option(
    "--failed", is_flag=True, help="List only connections whose outcome is not ok (implies --list)."
)
@click.option(
    "--slowest",
    type=click.IntRange(min=1),
    metavar="N",
    help="List the N connections with the longest total time (implies --list).",
)
@click.option(
    "--sort",
    "sort_by",
    type=click.Choice(SORT_KEYS),
    help="Order the listing by start (default) or by a time, longest first (implies --list).",
)
@click.option(
    "--where",
    "where_text",
    metavar="EXPR",
    help="List connections for which every KEY OP VALUE term holds, e.g. "
    "'outcome=reset', 'total>200ms,backend=10.244.2.9' (implies --list).",
)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Also list link-local and multicast chatter (neighbour discovery, MLD, ...).",
)
@click.option(
    "--request",
    "request_index",
    type=click.IntRange(min=0),
    metavar="N",
    help="Trace connection N (its number in --list).",
)
@click.option(
    "--match",
    "match_text",
    metavar="SPEC",
    help="Trace a connection matching SPEC, e.g. dst=10.96.0.100:80,proto=tcp.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "jsonl", "csv", "mermaid"]),
    default="table",
    show_default=True,
    help="table for people, json (schema pathtrace/v1; pathtrace-list/v1 with --list) for "
    "programs, jsonl/csv (--list) one connection a line, mermaid for Markdown.",
)
@click.option("-o", "--output", metavar="FILE", help="Write the report to FILE instead of stdout.")
@click.option(
    "--diagram",
    metavar="FILE.svg|FILE.png",
    help="Also draw the path as a ladder diagram, e.g. --diagram path.svg.",
)
@click.option(
    "--pcapng",
    "pcapng_out",
    metavar="FILE",
    help="Also write the request's packets from every point into one commented pcapng.",
)
@click.option(
    "--html",
    "html_out",
    metavar="FILE.html",
    help="Also write one self-contained HTML report (the path, latency, rules and, for a busy "
    "run, every connection); opens offline in any browser.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Show every rule walked, and informational notes about the captures.",
)
def command(
    run: str | None,
    points: tuple[str, ...],
    links: tuple[str, ...],
    list_only: bool,
    failed: bool,
    slowest: int | None,
    sort_by: str | None,
    where_text: str | None,
    show_all: bool,
    request_index: int | None,
    match_text: str | None,
    fmt: str,
    output: str | None,
    diagram: str | None,
    pcapng_out: str | None,
    html_out: str | None,
    verbose: bool,
) -> None:
    list_only = list_only or failed or show_all or bool(slowest or sort_by or where_text)
    if not list_only and fmt in ("jsonl", "csv"):
        raise UsageError(f"--format {fmt} writes a listing: add --list")
    if slowest is not None and sort_by not in (None, "total"):
        raise UsageError("--slowest N lists by total time; it takes no other --sort")
    where = None
    if where_text is not None:
        from tracer.correlate.triage import parse_where

        where = parse_where(where_text)
    if list_only and (request_index is not None or match_text is not None):
        raise UsageError("--list shows every connection; it takes neither --request nor --match")
    if list_only and (diagram or pcapng_out):
        raise UsageError("--list shows every connection; --diagram and --pcapng draw one request")
    if list_only and fmt == "mermaid":
        raise UsageError("--list prints a table or JSON; --format mermaid draws one request")
    if request_index is not None and match_text is not None:
        raise UsageError("give --request N or --match SPEC, not both")
    _check_sources(run, points)
    if html_out is not None:
        check_html_name(html_out)
    if diagram is not None:
        _check_diagram(diagram)
    match = None
    if match_text is not None:
        # Parsed before any file is read: a typo should not cost a long read.
        from tracer.correlate import parse_match

        match = parse_match(match_text)

    loaded = _load(run, points, links)
    # Imported after the inputs are known good, so that a bad spec or file is reported even
    # where the heavier modules are missing or slow to import.
    from tracer.correlate import select
    from tracer.report.listing import listing_chunks
    from tracer.trace import (
        list_connections,
        merge_warnings,
        open_run,
        require_connections,
        trace,
    )

    traced_run = open_run(loaded)
    correlation = traced_run.correlation
    if list_only:
        # A listing has no warnings section: say them where a person will still see them.
        for w in merge_warnings(loaded.warnings, correlation.warnings):
            say("warning", w)
        for w in correlation.notes if verbose else ():
            say("note", w)
        require_connections(traced_run)
        listing = list_connections(
            traced_run,
            failed=failed,
            where=where,
            sort_by=sort_by,
            slowest=slowest,
            show_all=show_all,
        )
        if html_out is not None:
            write_html(html_out, traced_run, None, listing)
        _write_chunks(listing_chunks(listing, fmt), output)
        return

    try:
        connection = select(correlation, index=request_index, match=match)
    except NothingMatchedError as e:
        if e.hint is not None:
            raise
        run_name = loaded.run_dir or "…"
        raise NothingMatchedError(
            e.message,
            hint=f"`pathtrace analyze {run_name} --list` shows every connection, numbered",
        ) from None
    traced = trace(traced_run, connection)
    path, lookup, evidence = traced.path, traced.dns, traced.evidence
    if fmt == "json":
        from tracer.report.evidence import evidence_json
        from tracer.report.json import render_json

        ev_json = evidence_json(evidence) if evidence is not None else None
        text = render_json(path, dns=lookup, evidence=ev_json)
    elif fmt == "mermaid":
        from tracer.report.mermaid import render_mermaid

        text = render_mermaid(path)
    else:
        from tracer.report.evidence import render_evidence, render_evidence_compact
        from tracer.report.table import render_table

        ev_text = ""
        if evidence is not None:
            render = render_evidence if verbose else render_evidence_compact
            ev_text = render(path, evidence)
        text = render_table(path, dns=lookup, evidence=ev_text, verbose=verbose)
    # The files first: a report on the screen above an error would read as success.
    if diagram is not None:
        _draw(path, diagram)
    if html_out is not None:
        listing = list_connections(traced_run)
        write_html(html_out, traced_run, traced, listing)
    if pcapng_out is not None:
        from tracer.report.pcapng import wireshark_command, write_merged_pcapng

        legs = _legs(correlation, connection, path)
        # The lookup that gave the client its destination belongs in the trace too.
        dns = [
            correlation.connection(k)
            for k in dict.fromkeys(q.connection for q in (lookup.queries if lookup else ()))
            if k not in {c.index for c in legs}
        ]
        n = write_merged_pcapng(pcapng_out, loaded.points, [*dns, *legs], path)
        n_points = len({o.point for c in (*dns, *legs) for j in c.journeys for o in j.observations})
        which = " + ".join(f"#{c.index}" for c in legs)
        if dns:
            which += f" and its DNS lookup {' + '.join(f'#{c.index}' for c in dns)}"
        click.echo(
            f"wrote {pcapng_out}: {n} packets of request {which} from {n_points} capture points"
            f"\n  open it with: {wireshark_command(pcapng_out)}"
            "\n  (one packet seen at several points is not a retransmission; 8472 is VXLAN)",
            err=True,
        )
    _write(text, output)


def html_for_run(
    run: str,
    where: str,
    *,
    index: int | None = None,
    findings: Sequence[dict[str, Any]] = (),
    story: str = "",
) -> None:
    """Write the HTML report of a run directory for `diagnose`, `explain` and `capture`: the
    request numbered `index` (analyze's choice when None) with the findings or story given,
    and every connection of the run."""
    from tracer.correlate import select
    from tracer.trace import list_connections, open_run, trace

    traced_run = open_run(_load(run, (), ()))
    correlation = traced_run.correlation
    traced = trace(traced_run, select(correlation, index=index)) if len(correlation) else None
    listing = list_connections(traced_run)
    write_html(where, traced_run, traced, listing, findings=findings, story=story)


def _legs(correlation: Correlation, connection: Connection, path: Path) -> list[Connection]:
    """Every connection the path crosses (one unless an L7 proxy joined several)."""
    if not path.stitches:
        return [connection]
    chain = [path.stitches[0].client_leg, *(s.server_leg for s in path.stitches)]
    return [connection if k == connection.index else correlation.connection(k) for k in chain]


def _check_diagram(diagram: str) -> None:
    ext = os.path.splitext(diagram)[1].lower()
    if ext not in (".svg", ".png"):
        raise UsageError(
            f"--diagram {diagram!r}: the file name must end in .svg or .png",
            hint="e.g. --diagram path.svg (any browser shows it) or --diagram path.png",
        )
    if ext == ".png" and shutil.which("rsvg-convert") is None:
        # Said before the captures are read: a long analysis should not end in this.
        raise MissingPrerequisiteError(
            "--diagram *.png needs rsvg-convert to turn the SVG ladder into a PNG",
            hint="install it (apt-get install librsvg2-bin) or write --diagram path.svg",
        )


def _draw(path: Path, diagram: str) -> None:
    from tracer.report.svg import render_svg, svg_to_png

    svg = render_svg(path)
    if diagram.lower().endswith(".png"):
        svg_to_png(svg, diagram)
    else:
        _write_file(svg, diagram, "the diagram")
    click.echo(f"wrote {diagram}", err=True)


def check_html_name(where: str) -> None:
    if not where.lower().endswith((".html", ".htm")):
        raise UsageError(
            f"--html {where!r}: the file name must end in .html",
            hint="e.g. --html report.html (one file; open it in any browser, offline)",
        )


def write_html(
    where: str,
    run: Run,
    request: Trace | None,
    listing: Listing,
    *,
    findings: Sequence[dict[str, Any]] = (),
    story: str = "",
) -> None:
    """Write the HTML report: the traced request (its outcome from `listing`), and every
    connection of `listing` when there is more than the request (with the paths of the failed
    and the slowest ones)."""
    import tracer
    from tracer.dnslookup import run_names
    from tracer.report.html import Report, details_to_precompute, render_html, rows_to_embed
    from tracer.report.listing import LIST_SCHEMA, rows_json, summary_json
    from tracer.trace import request_path

    rows = list(rows_json(listing))
    doc: dict[str, Any] | None = None
    details: dict[int, Path] = {}
    note = capped = ""
    if request is None or len(rows) > 1:
        kept, capped = rows_to_embed(rows)
        doc = {"schema": LIST_SCHEMA, "summary": summary_json(listing), "connections": kept}
        chosen, note = details_to_precompute(kept)
        for k in chosen:
            if request is not None and k == request.path.request.index:
                details[k] = request.path
            else:
                details[k] = request_path(run, run.correlation.connection(k))
    names = run_names(run.manifest.services) if run.manifest is not None else {}
    row = None
    if request is not None:
        want = request.path.request.index
        row = next((r for r in rows if r.get("index") == want), None)
    ev_json = None
    if request is not None and request.evidence is not None:
        from tracer.report.evidence import evidence_json

        ev_json = evidence_json(request.evidence)
    report = Report(
        source=run.source,
        path=request.path if request is not None else None,
        dns=request.dns if request is not None else None,
        evidence=request.evidence if request is not None else None,
        evidence_json=ev_json,
        journeys=request.journeys if request is not None else (),
        findings=tuple(findings),
        story=story,
        listing=doc,
        details=details,
        details_note=note,
        listing_note=capped,
        row=row,
        names=names,
        version=tracer.__version__,
    )
    text = render_html(report)
    _write_file(text, where, "the HTML report")
    click.echo(f"wrote {where} ({len(text.encode('utf-8')) / 1024:.0f} KB)", err=True)
