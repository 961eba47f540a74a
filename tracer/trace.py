"""The one trace pipeline: a loaded run, correlated, and a chosen request traced through it.

load (tracer.inputs) -> `open_run`: correlate, and the node facts on demand -> select a
connection (tracer.correlate.select) -> `trace`: its path (stitched across any L7 proxy its HTTP
request crossed), summary line, the DNS lookup that gave it its destination, the path told as the
client asked for it when a socket load-balancer translated it before the wire, the rule evidence
and every warning. `story_input` gives `explain` the same for each of a run's first connections,
and `list_connections` every connection's row at once for `analyze --list`.
`analyze`, `explain` and `diagnose` all come through here.

This is an edge layer: it reads the few payload bytes a summary needs from the capture files and
the node facts from the run directory; everything it calls to decide anything is pure. It prints
nothing and renders nothing (tracer.report does); errors are tracer.errors types.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from tracer.correlate import Correlation, build_path, correlate, l7_requests, outcome, stitch
from tracer.correlate.legs import leg_paths
from tracer.correlate.listing import ConnectionTable, connection_table, protocol_name
from tracer.correlate.triage import Where, matches, order
from tracer.dnslookup import (
    DnsLookup,
    answered_names,
    dns_exchanges,
    find_lookup,
    lookups,
    nearby,
    read_dns_packets,
    run_names,
)
from tracer.errors import NothingMatchedError
from tracer.explain.beforewire import before_wire, with_before_wire
from tracer.explain.evidence import (
    Finding,
    PathEvidence,
    RewriteEvidence,
    collect_evidence,
    inbound_redirects,
)
from tracer.explain.facts import NodeFacts, read_node_facts
from tracer.explain.story import Leg, StoryInput
from tracer.inputs import LoadedRun
from tracer.model import Connection, Journey, Path, Stitch
from tracer.pcap.columns import Frames
from tracer.pcap.payload import PayloadReader
from tracer.rundir import Manifest, Service
from tracer.summary import Summaries, summarize_connection, summarize_frames

# A run with more connections than this is not one request: `explain` tells only the earliest.
MAX_STORY_LEGS = 32

NO_CONNECTION_HINT = (
    "check that the captures overlap in time and that their filters kept the request"
)


def merge_warnings(*groups: Iterable[str]) -> tuple[str, ...]:
    """Every warning once, in the order first given."""
    return tuple(dict.fromkeys(w for group in groups for w in group))


@dataclass(frozen=True)
class Run:
    """A loaded run and its correlation; the node facts are read when first asked for."""

    loaded: LoadedRun
    correlation: Correlation

    @property
    def manifest(self) -> Manifest | None:
        return self.loaded.manifest

    @property
    def frames(self) -> Mapping[str, Frames]:
        return self.loaded.frames

    @property
    def source(self) -> str:
        """The run directory, or the capture files' names for a bare --point load."""
        return self.loaded.run_dir or ", ".join(
            os.path.basename(p.frames.path) for p in self.loaded.points
        )

    @property
    def warnings(self) -> tuple[str, ...]:
        """What reading and correlating the captures found worth saying."""
        return merge_warnings(self.loaded.warnings, self.correlation.warnings)

    @cached_property
    def facts(self) -> Mapping[str, NodeFacts]:
        """RUN/nodes/<node>/* of every clock domain and RUN/pods/<point>/* of every pod point
        ({} for a bare --point load, which has no run directory)."""
        if self.loaded.run_dir is None:
            return {}
        points = self.loaded.points
        return read_node_facts(
            self.loaded.run_dir,
            {p.point.node for p in points if p.point.node},
            [p.point.name for p in points if p.point.pod],
        )

    def payloads(self) -> Payloads:
        """A reader of payload bytes by (point, frame); close it (use `with`) when done."""
        return Payloads(self.frames)


class Payloads:
    """Payload bytes by (point, frame), each capture file kept open until `close`."""

    def __init__(self, frames: Mapping[str, Frames]) -> None:
        self.frames = frames
        self.reader = PayloadReader()

    def __enter__(self) -> Payloads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reader.close()

    def __call__(self, point: str, frame: int) -> bytes:
        fr = self.frames.get(point)
        return self.reader.read(fr, frame) if fr is not None else b""


def open_run(loaded: LoadedRun) -> Run:
    """Correlate a loaded run."""
    return Run(loaded, correlate(loaded.points))


def require_connections(run: Run) -> None:
    """NothingMatchedError when the run holds no connection at all."""
    if len(run.correlation) == 0:
        raise NothingMatchedError(f"no connection found in {run.source}", hint=NO_CONNECTION_HINT)


@dataclass(frozen=True)
class Trace:
    """One request traced: its path (with summary and every warning), the DNS lookup before
    it, its rule evidence (None without node facts), and every packet of the client's
    connection (the first leg of a proxied request)."""

    path: Path
    dns: DnsLookup | None = None
    evidence: PathEvidence | None = None
    journeys: tuple[Journey, ...] = ()


def path_through_proxies(run: Run, connection: Connection, payloads: Payloads) -> Path:
    """The connection's path, stitched across any L7 proxy its HTTP request crossed."""
    return build_path(
        run.correlation, connection, l7=l7_requests(run.correlation, connection, payloads)
    )


def request_path(run: Run, connection: Connection) -> Path:
    """`path_through_proxies`, reading what it needs and closing the files again."""
    with run.payloads() as payloads:
        return path_through_proxies(run, connection, payloads)


def trace(run: Run, connection: Connection) -> Trace:
    """The request's path with its summary, DNS lookup, rule evidence and every warning."""
    correlation = run.correlation
    with run.payloads() as payloads:
        path = path_through_proxies(run, connection, payloads)
        # A proxied request is the client's: its summary and DNS lookup are the first leg's.
        client = (
            correlation.connection(path.stitches[0].client_leg) if path.stitches else connection
        )
        summary = path.request.summary or summarize_connection(client, run.frames, payloads.reader)
        dns_conns = nearby(correlation, client)
        packets = read_dns_packets(dns_conns, run.frames, payloads.reader)
    manifest = run.manifest
    names = run_names(manifest.services) if manifest is not None else {}
    lookup = find_lookup(client, dns_conns, packets, names)
    if lookup is None and manifest is not None and manifest.services:
        answers = answered_names(lookups(dns_conns, packets, names))
        bw = before_wire(path, manifest.services, answers, request_command(manifest))
        if bw is not None:
            path = with_before_wire(path, bw)
            lookup = find_lookup(client, dns_conns, packets, names, asked=bw.frontend.ip)
    facts = run.facts
    evidence = path_evidence(path, facts) if facts else None
    path = replace(
        path,
        request=replace(path.request, summary=summary),
        warnings=merge_warnings(run.warnings, path.warnings, facts_warnings(facts)),
    )
    return Trace(path, lookup, evidence, client.journeys)


def request_command(manifest: Manifest) -> list[str]:
    """The command the run's request was made with (the manifest's `request.command`)."""
    return [str(a) for a in manifest.request.get("command") or ()]


def facts_warnings(facts: Mapping[str, NodeFacts]) -> tuple[str, ...]:
    return tuple(w for f in facts.values() for w in f.warnings)


def path_evidence(path: Path, facts: Mapping[str, NodeFacts]) -> PathEvidence:
    """The rule evidence of a path; a stitched path's legs are walked one at a time.

    Each leg of a proxied request is its own connection with its own first packet (a
    host-network proxy's connection is rewritten in nat OUTPUT before any capture sees it), so
    the evidence is collected per leg and its hop numbers placed back on the whole path.
    """
    legs = leg_paths(path)
    if len(legs) == 1:
        return collect_evidence(_unanswered(path), facts)
    rewrites: list[RewriteEvidence] = []
    findings: list[Finding] = []
    for leg in legs:
        ev = collect_evidence(_unanswered(leg.path), facts)
        for r in ev.rewrites:
            off = leg.forward_offset if r.direction == "forward" else leg.reverse_offset
            rewrites.append(replace(r, hop=r.hop + off))
        findings.extend(f for f in ev.findings if f not in findings)
    # A sidecar's inbound REDIRECT lies between two legs: only the whole path shows where.
    rewrites.extend(inbound_redirects(path, facts))
    order = {"forward": 0, "reverse": 1}
    rewrites.sort(key=lambda r: (order[r.direction], r.hop))
    return PathEvidence(tuple(rewrites), tuple(findings))


def _unanswered(path: Path) -> Path:
    """The path as the rules see it: an ICMP error that came back instead of a reply (the
    correlator shows it as the way back) leaves the request unanswered, and the rules are
    walked to say which one stopped it."""
    rev = path.reverse
    request_proto = path.forward[0].tuple5.proto if path.forward else ""
    if rev and rev[0].tuple5.proto.startswith("icmp") and not request_proto.startswith("icmp"):
        return replace(path, reverse=())
    return path


# --- explain: the run's first connections, each as a leg of the story ----------------------------


def story_input(run: Run) -> StoryInput:
    """Every leg `explain` tells (the run's first MAX_STORY_LEGS connections, each with its own path,
    summary, evidence and DNS exchanges), the L7 proxies the first application request crossed,
    and the run's facts. NothingMatchedError when no connection is found."""
    require_connections(run)
    correlation, frames, facts = run.correlation, run.frames, run.facts
    legs: list[Leg] = []
    with run.payloads() as payloads:
        for i in range(min(len(correlation), MAX_STORY_LEGS)):
            conn = correlation.connection(i)
            path = build_path(correlation, conn)
            legs.append(
                Leg(
                    connection=conn,
                    path=path,
                    evidence=path_evidence(path, facts),
                    summary=summarize_connection(conn, frames, payloads.reader),
                    dns=dns_exchanges(conn, frames, payloads.reader),
                )
            )
        stitches = _first_request_stitches(run, legs, payloads)
    manifest = run.manifest
    if manifest is not None and manifest.services and not stitches:
        legs = _before_wire(legs, manifest.services, request_command(manifest), facts)
    return StoryInput(
        run=run.loaded.run_dir or run.source,
        points=tuple(p.point for p in run.loaded.points),
        legs=tuple(legs),
        services=manifest.services if manifest else (),
        facts=facts,
        request=dict(manifest.request) if manifest else {},
        warnings=(*run.warnings, *facts_warnings(facts)),
        stitches=stitches,
    )


def _before_wire(
    legs: list[Leg], services: Sequence[Service], command: list[str], facts: Mapping[str, Any]
) -> list[Leg]:
    """The first application leg told as the client asked for it, when a socket load-balancer
    translated its Service before the wire (tracer.explain.beforewire)."""
    answers: dict[str, str] = {}
    for leg in legs:
        for x in leg.dns:
            for _, rdata in x.answer.answers if x.answer is not None else ():
                answers.setdefault(rdata, x.query.qname.rstrip("."))
    app = [i for i, leg in enumerate(legs) if not leg.is_dns and not leg.is_icmp]
    if not app:
        return legs
    i = min(app, key=lambda k: legs[k].connection.start_ns)
    bw = before_wire(legs[i].path, services, answers, command)
    if bw is None:
        return legs
    path = with_before_wire(legs[i].path, bw)
    out = list(legs)
    out[i] = replace(legs[i], path=path, evidence=path_evidence(path, facts))
    return out


def _first_request_stitches(run: Run, legs: list[Leg], payloads: Payloads) -> tuple[Stitch, ...]:
    """The L7 proxies the run's first application request crossed (() when none)."""
    app = [leg for leg in legs if not leg.is_dns and leg.connection.protocol == "tcp"]
    if not app:
        return ()
    first = min(app, key=lambda leg: leg.connection.start_ns).connection
    l7 = l7_requests(run.correlation, first, payloads)
    return stitch(run.correlation, first, l7)[1]


# --- every connection at once (`analyze --list`, the HTML report's listing) ---------------------


@dataclass(frozen=True)
class Listing:
    """What to list: `rows` (connection numbers, in order) of `table`, and the connections the
    summary counts (`counted`: every row that passed the filters, before --slowest)."""

    table: ConnectionTable
    summaries: Summaries
    rows: npt.NDArray[np.int64]
    counted: npt.NDArray[np.int64]
    point_nodes: tuple[str | None, ...]
    total: int  # connections found (ICMP errors folded into theirs, chatter not counted)
    hidden: int  # link-local / multicast chatter left out (shown with --all)


def list_connections(
    run: Run,
    *,
    failed: bool = False,
    where: Where | None = None,
    sort_by: str | None = None,
    slowest: int | None = None,
    show_all: bool = False,
) -> Listing:
    """Every connection's row, filtered and ordered as asked (columnar: no per-connection
    objects; see tracer.correlate.listing). Link-local and multicast chatter is left out unless
    `show_all`; `failed` keeps the connections whose outcome is not ok, `where` those for which
    every term holds, and the rows are ordered by `sort_by` (start by default), cut to the
    `slowest` N."""
    correlation = run.correlation
    table = connection_table(correlation)
    visible = ~table.folded if show_all else ~table.folded & ~table.noise
    rows = np.flatnonzero(visible)
    names = [protocol_name(p) for p in table.proto.tolist()]
    ports = [
        tuple(sorted({p for p in (a, b) if p >= 0}))
        for a, b in zip(table.dport.tolist(), table.backend_port.tolist(), strict=True)
    ]
    req_point = np.where(visible, table.req_point, -1)
    summaries = summarize_frames(
        [p.frames for p in run.loaded.points],
        names,
        ports,
        (req_point, table.req_frame),
        (table.resp_point, table.resp_frame),
    )
    if failed:
        rows = rows[outcome.failed(table.outcome[rows])]
    if where is not None:
        rows = rows[matches(where, table, summaries.status, summaries.rcode)[rows]]
    return Listing(
        table=table,
        summaries=summaries,
        rows=order(table, rows, sort_by or "start", slowest=slowest),
        counted=rows,
        point_nodes=tuple(p.node for p in correlation.points),
        total=int((~table.folded & ~table.noise).sum()),
        hidden=0 if show_all else int((~table.folded & table.noise).sum()),
    )
