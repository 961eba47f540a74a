"""The edge of `pathtrace explain RUN`: read a run directory into a `StoryInput`.

Reads the captures (through `tracer.inputs.load_run`), correlates them, builds a path for every
connection, reads the few DNS payload bytes each lookup needs (and the HTTP request lines that
join the legs of a proxied request) and the nodes' facts, and collects the rule evidence.
Everything it hands on is data; the story itself is told by `tracer.explain.story`. It prints
nothing. `path_evidence` is the one pure helper here, shared with `pathtrace analyze`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from tracer.correlate import Correlation, build_path, correlate, l7_requests, stitch
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
from tracer.explain.story import DNS_PORTS, DnsExchange, Leg, StoryInput
from tracer.model import Connection, Path, Stitch
from tracer.pcap.columns import Frames
from tracer.rundir import Service
from tracer.summary import DnsMessage, PayloadReader, dns_message, summarize_connection

# A run with more connections than this is not one request: only the earliest are told.
MAX_LEGS = 32


def dns_exchanges(
    conn: Connection, frames: Mapping[str, Frames], reader: PayloadReader
) -> tuple[DnsExchange, ...]:
    """Every question and answer of a DNS connection, as its first point saw them."""
    if conn.client.dst.port not in DNS_PORTS or not conn.points:
        return ()
    point = conn.points[0]
    fr = frames.get(point)
    if fr is None:
        return ()
    tcp = conn.protocol == "tcp"
    queries: list[DnsExchange] = []
    answers: list[tuple[int, DnsMessage]] = []
    for j in conn.journeys:
        if j.retransmission:
            continue
        for o in j.observations:
            if o.point != point or o.payload_len <= 0:
                continue
            msg = dns_message(reader.read(fr, o.frame), tcp=tcp)
            if msg is None:
                continue
            if j.direction == "forward" and not msg.response:
                queries.append(DnsExchange(point, msg, o.frame))
            elif j.direction == "reverse" and msg.response:
                answers.append((o.frame, msg))
            break
    out: list[DnsExchange] = []
    used: set[int] = set()
    for q in queries:
        ans = None
        for k, (frame, msg) in enumerate(answers):
            if k in used or frame < q.query_frame:
                continue
            if msg.qname == q.query.qname and msg.qtype == q.query.qtype:
                used.add(k)
                ans = (frame, msg)
                break
        if ans is None:
            out.append(q)
        else:
            out.append(DnsExchange(q.point, q.query, q.query_frame, ans[1], ans[0]))
    return tuple(out)


def path_evidence(path: Path, facts: Mapping[str, NodeFacts]) -> PathEvidence:
    """The rule evidence of a path; a stitched path's legs are walked one at a time.

    Each leg of a proxied request is its own connection with its own first packet (a
    host-network proxy's connection is rewritten in nat OUTPUT before any capture sees it), so
    the evidence is collected per leg and its hop numbers placed back on the whole path.
    """
    from tracer.correlate.legs import leg_paths

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


def load_story_input(run_dir: str | os.PathLike[str]) -> StoryInput:
    """Read and correlate a run directory; NothingMatchedError when no connection is found."""
    from tracer.inputs import load_run

    loaded = load_run(run_dir)
    run = os.fspath(run_dir)
    correlation = correlate(loaded.points)
    if len(correlation) == 0:
        raise NothingMatchedError(
            f"no connection found in {run}",
            hint="check that the captures overlap in time and that their filters kept the request",
        )
    nodes = {p.point.node for p in loaded.points if p.point.node}
    pods = [p.point.name for p in loaded.points if p.point.pod]
    facts: dict[str, NodeFacts] = read_node_facts(run, nodes, pods)
    frames = loaded.frames
    legs: list[Leg] = []
    with PayloadReader() as reader:
        for i in range(min(len(correlation), MAX_LEGS)):
            conn = correlation.connection(i)
            path = build_path(correlation, conn)
            summary = summarize_connection(conn, frames, reader)
            legs.append(
                Leg(
                    connection=conn,
                    path=path,
                    evidence=path_evidence(path, facts),
                    summary=summary,
                    dns=dns_exchanges(conn, frames, reader),
                )
            )
        stitches = _stitches(correlation, legs, frames, reader)
    manifest = loaded.manifest
    if manifest is not None and manifest.services and not stitches:
        legs = _before_wire(legs, manifest.services, manifest.request, facts)
    warnings = list(dict.fromkeys([*loaded.warnings, *correlation.warnings]))
    for f in facts.values():
        warnings.extend(f.warnings)
    return StoryInput(
        run=run,
        points=tuple(p.point for p in loaded.points),
        legs=tuple(legs),
        services=manifest.services if manifest else (),
        facts=facts,
        request=dict(manifest.request) if manifest else {},
        warnings=tuple(warnings),
        stitches=stitches,
    )


def _before_wire(
    legs: list[Leg],
    services: Sequence[Service],
    request: Mapping[str, Any],
    facts: Mapping[str, NodeFacts],
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
    command = [str(a) for a in request.get("command") or ()]
    bw = before_wire(legs[i].path, services, answers, command)
    if bw is None:
        return legs
    path = with_before_wire(legs[i].path, bw)
    out = list(legs)
    out[i] = replace(legs[i], path=path, evidence=path_evidence(path, facts))
    return out


def _stitches(
    correlation: Correlation,
    legs: list[Leg],
    frames: Mapping[str, Frames],
    reader: PayloadReader,
) -> tuple[Stitch, ...]:
    """The L7 proxies the run's first application request crossed (() when none)."""
    app = [leg for leg in legs if not leg.is_dns and leg.connection.protocol == "tcp"]
    if not app:
        return ()
    first = min(app, key=lambda leg: leg.connection.start_ns).connection

    def payload(point: str, frame: int) -> bytes:
        fr = frames.get(point)
        return reader.read(fr, frame) if fr is not None else b""

    l7 = l7_requests(correlation, first, payload)
    return stitch(correlation, first, l7)[1]
