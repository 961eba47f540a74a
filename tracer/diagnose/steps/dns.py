"""Step 3, DNS: each lookup the client made (tracer.dnslookup folds the search-list expansions
into one), and whether it failed (NXDOMAIN for every name tried, a server failure), timed out,
was retried or was slow. Pure: facts in, findings out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from tracer.diagnose.model import Finding, RunFacts
from tracer.diagnose.steps.common import LOCATED, MS, ROOT, SLOW, SLOW_MS, SYMPTOM, frame_ref
from tracer.dnslookup import DnsLookup, DnsQuery
from tracer.model import Tuple5
from tracer.rundir import Manifest
from tracer.words import count


def step_dns(f: RunFacts) -> list[Finding]:
    wanted = _wanted_host(f.manifest)
    if not f.lookups:
        text = (
            f"the request named {wanted!r} but no lookup was captured (cached, /etc/hosts, or the "
            "DNS point missed it)"
            if wanted
            else "the client used an address"
        )
        return [Finding("info", 3, "No DNS lookup in the capture", (text,))]
    out: list[Finding] = []
    for lookup in f.lookups:
        out += _lookup_findings(lookup, wanted)
    return out


def _wanted_host(m: Manifest) -> str | None:
    """The host name the request asked for (the URL in the request's command), if any."""
    argv = m.request.get("command") or m.request.get("argv") or []
    for word in argv if isinstance(argv, list) else str(argv).split():
        if "://" in str(word):
            host = urlsplit(str(word)).hostname
            if host:
                try:
                    ipaddress.ip_address(host)
                    return None  # an address needs no lookup
                except ValueError:
                    return host.rstrip(".").lower()
    return None


def _ms3(ns: int) -> str:
    # DNS times as `pathtrace analyze` prints them, so both commands show the same number.
    return f"{ns / MS:.3f} ms"


def _query_line(q: DnsQuery) -> str:
    """`client frame 1: A web.default.svc.cluster.local -> NOERROR 10.96.0.100 (client frame
    3, 0.972 ms)`: one question, its answer and how long it took at the asking point."""
    head = f"{frame_ref(q.point, q.frame)}: {q.qtype} {q.name}"
    sent = f", sent {q.sends} times" if q.sends > 1 else ""
    if q.rcode is None or q.latency_ns is None:
        return f"{head} -> no answer{sent}"
    got = ", ".join(q.answers[:3])
    if not got and q.rcode == "NOERROR":
        got = "(no records)"  # the name exists, just not with this type
    answer = f"{q.rcode} {got}".rstrip()
    return f"{head} -> {answer} ({frame_ref(q.point, q.answer_frame)}, {_ms3(q.latency_ns)}{sent})"


def _lookup_findings(lookup: DnsLookup, wanted: str | None) -> list[Finding]:
    name = lookup.name.rstrip(".")
    qs = lookup.queries
    lines = tuple(_query_line(q) for q in qs[:16])
    resolved = lookup.address is not None
    out: list[Finding] = []
    if not resolved:
        failed = _failure(name, qs, lines, wanted)
        if failed is not None:
            out.append(failed)
    unanswered = [q for q in qs if q.rcode is None]
    if unanswered:
        out.append(_timeout(name, unanswered, resolved))
    retried = [q for q in qs if q.sends > 1]
    if retried:
        out.append(
            Finding(
                "warning",
                3,
                f"DNS: retries for {name!r}: "
                + ", ".join(f"{q.name} {q.qtype} sent {q.sends} times" for q in retried),
                lines,
                "retries mean lost or slow answers: look at CoreDNS's load and at conntrack "
                "races on UDP (the 5 s resolver delay)",
                SYMPTOM,
            )
        )
    if resolved:
        out.append(_resolved(lookup, name, lines))
    return out


def _failure(
    name: str, qs: Sequence[DnsQuery], lines: tuple[str, ...], wanted: str | None
) -> Finding | None:
    """An unresolved name: NXDOMAIN for every name tried, or the server failing; None when no
    answer came at all (that is a timeout)."""
    rcodes = {q.rcode for q in qs if q.rcode is not None}
    if rcodes and rcodes <= {"NXDOMAIN", "NOERROR"} and "NXDOMAIN" in rcodes:
        tried = list(dict.fromkeys(q.name for q in qs))
        expanded = list(dict.fromkeys(q.name for q in qs if q.expansion))
        is_wanted = wanted is None or name.lower() == wanted.lower()
        return Finding(
            "error" if is_wanted else "warning",
            3,
            f"DNS: {name!r} does not exist: NXDOMAIN for all {count(len(tried), 'name')} tried"
            + (f" ({len(expanded)} search-domain expansions, ndots:5)" if expanded else ""),
            lines,
            f"check the name: the Service is <name>.<namespace>.svc.cluster.local "
            f"(kubectl get svc -A | grep -i {name.split('.')[0]!s}); "
            "if it should exist, check CoreDNS's logs and the Service's namespace",
            ROOT,
        )
    if rcodes - {"NXDOMAIN", "NOERROR"}:
        return Finding(
            "error",
            3,
            f"DNS: the server failed to resolve {name!r} ({', '.join(sorted(rcodes))})",
            lines,
            "kubectl logs -n kube-system -l k8s-app=kube-dns; check CoreDNS's upstream "
            "(forward) servers",
            ROOT - 5,
        )
    return None


def _timeout(name: str, unanswered: Sequence[DnsQuery], resolved: bool) -> Finding:
    return Finding(
        "warning" if resolved else "error",
        3,
        f"DNS: {count(len(unanswered), 'query', 'queries')} for {name!r} got no answer (timeout)",
        tuple(
            f"{frame_ref(q.point, q.frame)}: {q.qtype} {q.name} "
            f"({Tuple5(q.protocol, q.client, q.asked)})"
            for q in unanswered[:10]
        ),
        "check the DNS pods (step 1) and that UDP 53 to the kube-dns ClusterIP is "
        "DNATed (conntrack -L -p udp --dport 53 on the client's node)",
        LOCATED if not resolved else SYMPTOM,
    )


def _resolved(lookup: DnsLookup, name: str, lines: tuple[str, ...]) -> Finding:
    """The answer and how long the whole lookup took (a warning when slow)."""
    qs = lookup.queries
    elapsed = lookup.elapsed_ns or 0
    missed = [q for q in qs if q.rcode == "NXDOMAIN"]
    parts = [count(len(qs), "query", "queries")]
    if lookup.expansions:
        parts.append(f"{lookup.expansions} of them search-list expansions")
    if missed:
        parts.append(f"{count(len(missed), 'NXDOMAIN answer')} first (ndots:5)")
    title = f"DNS: {name} -> {lookup.address} in {_ms3(elapsed)} ({', '.join(parts)})"
    if elapsed >= SLOW_MS * MS:
        return Finding(
            "warning",
            3,
            f"DNS is slow: {title}",
            lines,
            "check CoreDNS's CPU and its upstreams; use the FQDN with a trailing dot "
            "to skip the search list",
            SLOW,
        )
    return Finding("info", 3, title, lines)
