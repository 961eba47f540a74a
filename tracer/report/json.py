"""The `pathtrace/v1` JSON document of a path: the contract other tools parse.

Key names are a contract with other tools: keys may be added, never renamed or removed.
Times are integer nanoseconds; endpoints are "ip:port" strings ("[v6]:port" for IPv6).
This module only reshapes a `Path`; it computes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from tracer.dnslookup import DnsLookup, DnsQuery
from tracer.model import Hop, Path, Segment, Translation, Tuple5
from tracer.report.stitched import Handoff, handoffs

SCHEMA = "pathtrace/v1"


def _pair(t: Tuple5) -> dict[str, str]:
    return {"src": str(t.src), "dst": str(t.dst)}


def _translation(tr: Translation | None) -> dict[str, Any] | None:
    if tr is None:
        return None
    return {"kind": tr.kind, "before": _pair(tr.before), "after": _pair(tr.after)}


def hop_json(hop: Hop) -> dict[str, Any]:
    return {
        "point": hop.point,
        "role": hop.role,
        "node": hop.node,
        "interface": hop.interface,
        "direction": hop.direction,
        "t_ns": int(hop.t_ns),
        "src": str(hop.tuple5.src),
        "dst": str(hop.tuple5.dst),
        "ttl": hop.ttl,
        "translation": _translation(hop.translation),
        "frame": hop.frame,  # extra: the frame index in the point's capture, for Wireshark
        "kind": hop.kind,  # "packet", or "proxy": an L7 proxy sending the request/response on
        "note": hop.note,  # what the hop's time means where it is not plain (offload), or null
    }


def _segment(s: Segment) -> dict[str, Any]:
    return {
        "from": s.from_point,
        "to": s.to_point,
        "first_ns": int(s.first_ns),
        "median_ns": int(s.median_ns),
        "packets": int(s.packets),
        "negative": s.negative,
    }


def _stitch(h: Handoff) -> dict[str, Any]:
    s = h.stitch
    return {
        "client_leg": s.client_leg,
        "server_leg": s.server_leg,
        "proxy": s.proxy,
        "confidence": s.confidence,
        "reasons": list(s.reasons),
        "proxy_ns": s.proxy_ns,
        # 0-based indexes of the proxy hop in "forward"/"reverse" (null: not seen), and the
        # proxy's own time on each side.
        "forward_hop": h.forward_hop,
        "reverse_hop": h.reverse_hop,
        "request_ns": h.request_ns,
        "response_ns": h.response_ns,
    }


def dns_query_json(q: DnsQuery, lookup: DnsLookup) -> dict[str, Any]:
    """One query of the lookup: the documented keys first (name, qtype, rcode, answers,
    latency_ns, server), then where it was asked and when."""
    return {
        "name": q.name,
        "qtype": q.qtype,
        "rcode": q.rcode,  # null: no reply was seen
        "answers": list(q.answers),
        "latency_ns": q.latency_ns,
        "server": str(q.server),
        "server_name": q.server_name,
        "asked": str(q.asked),
        "asked_name": q.asked_name,
        "point": q.point,
        "protocol": q.protocol,
        "connection": q.connection,
        "start_ns": int(q.start_ns),
        "search_expansion": q.expansion,
        "used": q is lookup.answered_by,  # its answer gave the request its destination
    }


def path_json(
    path: Path,
    *,
    dns: DnsLookup | None = None,
    evidence: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The document as plain JSON-able data.

    Keys added after the first release: "dns" (the lookup's queries, [] when none was captured),
    "evidence" (the rule and conntrack evidence of each rewrite; null when the run holds no node
    facts), "notes" (informational messages about the captures, kept out of "warnings"),
    "stitches" (the L7 proxies the request crossed, [] when none), "kind" and "note" (null
    unless the hop's time needs saying, as for an offload super-segment) on every hop and
    "proxy_ns" in "latency" (null without a proxy).
    """
    r = path.request
    lat = path.latency
    return {
        "schema": SCHEMA,
        "request": {
            "index": r.index,
            "protocol": r.protocol,
            "client": r.client,
            "destination": r.destination,
            "backend": r.backend,
            "summary": r.summary,
            "start_ns": int(r.start_ns),
        },
        "forward": [hop_json(h) for h in path.forward],
        "reverse": [hop_json(h) for h in path.reverse],
        "latency": {
            "total_ns": lat.total_ns,
            "connect_ns": lat.connect_ns,
            "server_ns": lat.server_ns,
            "segments": [_segment(s) for s in lat.segments],
            "proxy_ns": lat.proxy_ns,
        },
        "clocks": [
            {
                "node": c.node,
                "reference": c.reference,
                "offset_ns": int(c.offset_ns),
                "error_bound_ns": int(c.error_bound_ns),
                "samples": int(c.samples),
                "drift_ppm": c.drift_ppm,
            }
            for c in path.clocks
        ],
        "warnings": list(path.warnings),
        "dns": [dns_query_json(q, dns) for q in dns.queries] if dns is not None else [],
        "evidence": evidence,
        "notes": list(path.notes),
        "stitches": [_stitch(h) for h in handoffs(path)],
    }


def render_json(
    path: Path,
    *,
    dns: DnsLookup | None = None,
    evidence: list[dict[str, Any]] | None = None,
) -> str:
    """The document as text (indented, one trailing newline)."""
    doc = path_json(path, dns=dns, evidence=evidence)
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
