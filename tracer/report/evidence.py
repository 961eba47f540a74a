"""Rule evidence (`tracer.explain.evidence`) as text and JSON: the "Rule evidence" section of
the text report, compact or in full, and the "evidence" key of `analyze --format json`.

A walk through kube-proxy's rules passes a dozen jumps that decide nothing (PREROUTING to
KUBE-SERVICES, the filter FORWARD chains, KUBE-POSTROUTING's RETURN). The compact view keeps
what a person checks: the Service match, the SVC/EXT/SEP choice with the chosen endpoint's
probability, the DNAT, the masquerade (only when the mark was set), a DROP/REJECT, the
conntrack line, and every note, warning and finding. `--verbose` shows the full walk
(`render_evidence`). Pure: evidence in, text out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

from tracer.explain.evidence import Finding, PathEvidence, RewriteEvidence
from tracer.model import Hop, Path, Translation, TranslationKind, Tuple5
from tracer.report.table import ARROW, translation_text
from tracer.rules.model import RuleHit
from tracer.rules.result import fraction_text

# Chains where kube-proxy matches the Service and picks the endpoint (iptables and nftables).
_SERVICE_CHAINS = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES", "services")
_SERVICE_PREFIXES = (
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-EXT-",
    "KUBE-FW-",
    "KUBE-XLB-",
    "KUBE-SEP-",
    "service-",
    "external-",
    "endpoint-",
    "nodeports",
    "firewall",
)
_DECISIVE_WORDS = ("DNAT", "dnat to", "MASQUERADE", "masquerade", "SNAT", "snat to")
_STOP_WORDS = ("-j DROP", "-j REJECT", " drop", " reject")
_MASQ_MARK = ("KUBE-MARK-MASQ", "mark-for-masquerade")
_MAX_ENDPOINTS_LISTED = 4
_SIDECAR_PREFIX = "ISTIO_"  # istio-iptables' chains in a meshed pod's own nat table
# The note every reply rewrite carries; the compact view says "by conntrack" instead.
_REPLY_NOTE = "no rule is walked for a reply"
_ENTRY_WORDS = {
    "from_pod": "from a pod (nat PREROUTING)",
    "external": "from outside the node (nat PREROUTING)",
    "local": "from a process on the node itself (nat OUTPUT)",
}


def decisive(ev: RewriteEvidence, hit: RuleHit) -> bool:
    """Is this rule one a person needs to see to know why the packet went where it did?"""
    text = hit.rule
    if hit.table == "ipvs":
        return True
    if hit.chain in _MASQ_MARK:
        return False  # the mark itself: the jump to it (kept below) says why it was set
    if any(w in text for w in _MASQ_MARK):
        return bool(ev.masquerade)
    if any(w in text for w in _STOP_WORDS):
        return ev.verdict in ("DROP", "REJECT")
    if (
        "REDIRECT" in text
        or hit.chain.startswith(_SIDECAR_PREFIX)
        or f"-j {_SIDECAR_PREFIX}" in text
    ):
        return True  # a sidecar's capture rules are few, and each one decides
    if any(w in text for w in _DECISIVE_WORDS):
        # The masquerade rule decides only when the packet was marked for it.
        masq = "MASQUERADE" in text or "masquerade" in text
        return ev.masquerade is not False if masq else True
    if hit.chain in _SERVICE_CHAINS or hit.chain.startswith(_SERVICE_PREFIXES):
        return hit.table not in ("filter", "ip filter") or ev.verdict in ("DROP", "REJECT")
    return False


# --- both views ------------------------------------------------------------------------------


def _hop(path: Path, ev: RewriteEvidence) -> Hop | None:
    hops = path.forward if ev.direction == "forward" else path.reverse
    return hops[ev.hop] if 0 <= ev.hop < len(hops) else None


def _masquerade(ev: RewriteEvidence) -> str:
    """The masquerade decision of the rules against what the packets show."""
    seen = {True: "yes", False: "no", None: "not visible"}[ev.masqueraded]
    return f"masquerade: rules {'yes' if ev.masquerade else 'no'}, packets {seen}"


def _finding(f: Finding) -> str:
    return f"FINDING ({f.kind}): {f.message}"


def _section(
    title: str,
    path: Path,
    evidence: PathEvidence,
    block: Callable[[Path, RewriteEvidence], list[str]],
    findings: Iterable[Finding],
) -> str:
    """A "Rule evidence" section: one block per rewrite, then the path's own findings ("" when
    there is nothing to show)."""
    if not evidence.rewrites and not evidence.findings:
        return ""
    out = [title]
    for ev in evidence.rewrites:
        out.extend("  " + line for line in block(path, ev))
    out.extend(f"  {_finding(f)}" for f in findings)
    return "\n".join(out) + "\n"


# --- the full walk (--verbose) ------------------------------------------------------------------


def evidence_lines(path: Path, ev: RewriteEvidence) -> list[str]:
    """The text block for one rewrite: every rule walked (used by `render_evidence` and the
    HTML report)."""
    h = _hop(path, ev)
    where = f"{h.point} {h.interface}" if h is not None and h.interface else (h.point if h else "")
    what = (
        f"no rewrite of {ev.before}" if ev.after is None else f"{ev.kind} {ev.before} → {ev.after}"
    )
    out = [f"{ev.direction} hop {ev.hop + 1} ({where}) on {ev.node or '?'}: {what}"]
    if ev.rules_source:
        entry = _ENTRY_WORDS.get(ev.entry or "", "")
        svc = f", Service {ev.service}" if ev.service else ""
        out.append(f"  rules: {ev.rules_source} ({ev.mode}){svc}; the packet came {entry}")
        for r in ev.rules:
            out.append(f"    [{r.table} {r.chain}] {r.rule}")
        out.append(f"  verdict: {ev.verdict}")
    if ev.endpoints:
        for e in ev.endpoints:
            mark = "  ← chosen" if ev.chosen == e.address else ""
            out.append(
                f"  endpoint {e.address:<22} probability {fraction_text(e.probability)}{mark}"
            )
    if ev.masquerade is not None:
        out.append(f"  {_masquerade(ev)}")
    if ev.conntrack is not None:
        out.append(f"  conntrack: {ev.conntrack.text}")
    for n in ev.notes:
        out.append(f"  note: {n}")
    for w in ev.warnings:
        out.append(f"  warning: {w}")
    for f in ev.findings:
        out.append(f"  {_finding(f)}")
    return out


def render_evidence(path: Path, evidence: PathEvidence) -> str:
    """The "Rule evidence" section of the text report with every rule walked (`--verbose`)."""
    return _section("Rule evidence", path, evidence, evidence_lines, evidence.findings)


# --- compact: the rules that decided ----------------------------------------------------------


def _head(path: Path, ev: RewriteEvidence) -> str:
    h = _hop(path, ev)
    where = ""
    if h is not None:
        where = f" ({h.point} {h.interface})" if h.interface else f" ({h.point})"
    if ev.after is None:
        what = f"no rewrite of {ev.before.src} {ARROW} {ev.before.dst}"
        if ev.verdict in ("ACCEPT", "NO-MATCH"):
            whose = "the pod's" if (ev.rules_source or "").startswith("pods/") else "kube-proxy's"
            what += f" (verdict {ev.verdict}: {whose} rules let it through unchanged)"
        elif ev.verdict:
            what += f", verdict {ev.verdict}"
    else:
        tr = Translation(cast(TranslationKind, ev.kind), ev.before, ev.after)
        what = translation_text(tr).replace("\n", ", ")
    svc = f" (Service {ev.service})" if ev.service else ""
    return f"{ev.direction} hop {ev.hop + 1}{where} on {ev.node or '?'}: {what}{svc}"


def _endpoints(ev: RewriteEvidence) -> str | None:
    if not ev.endpoints:
        return None
    n = len(ev.endpoints)
    chosen = next((e for e in ev.endpoints if e.address == ev.chosen), None)
    if chosen is not None:
        text = (
            f"endpoint {chosen.address} chosen with probability {fraction_text(chosen.probability)}"
        )
        others = [e.address for e in ev.endpoints if e is not chosen]
        if others:
            shown = ", ".join(others[:_MAX_ENDPOINTS_LISTED])
            more = len(others) - _MAX_ENDPOINTS_LISTED
            text += f" (of {n}; also {shown}{f', +{more}' if more > 0 else ''})"
        return text
    listed = ", ".join(
        f"{e.address} ({fraction_text(e.probability)})"
        for e in ev.endpoints[:_MAX_ENDPOINTS_LISTED]
    )
    return f"endpoints in the rules: {listed}" + (" …" if n > _MAX_ENDPOINTS_LISTED else "")


def compact_lines(path: Path, ev: RewriteEvidence) -> list[str]:
    """The compact block for one rewrite."""
    out = [_head(path, ev)]
    if ev.direction == "reverse" and ev.conntrack is not None and not ev.rules:
        out[0] += ", by conntrack"
    if ev.rules_source:
        rules = [r for r in ev.rules if decisive(ev, r)]
        out.append(f"  rules: {ev.rules_source} ({ev.mode})")
        out.extend(f"    [{r.table} {r.chain}] {r.rule}" for r in rules)
        if not rules and ev.verdict:
            out.append(f"    verdict {ev.verdict} (no rule that rewrites matched)")
    ep = _endpoints(ev)
    if ep:
        out.append(f"  {ep}")
    if ev.masquerade is not None:
        agree = " (they agree)" if ev.masquerade == ev.masqueraded else ""
        out.append(f"  {_masquerade(ev)}{agree}")
    if ev.conntrack is not None:
        out.append(f"  conntrack: {ev.conntrack.text}")  # verbatim, as conntrack -L wrote it
    out.extend(f"  note: {n}" for n in ev.notes if not n.startswith(_REPLY_NOTE))
    out.extend(f"  warning: {w}" for w in ev.warnings)
    out.extend(f"  {_finding(f)}" for f in ev.findings)
    return out


def render_evidence_compact(path: Path, evidence: PathEvidence) -> str:
    """The compact "Rule evidence" section ("" when there is nothing to show); a path finding
    already told under its rewrite is not told again."""
    shown = {f for ev in evidence.rewrites for f in ev.findings}
    return _section(
        "Rule evidence (the deciding rules; --verbose shows every rule walked)",
        path,
        evidence,
        compact_lines,
        [f for f in evidence.findings if f not in shown],
    )


# --- JSON ----------------------------------------------------------------------------------------


def _tuple_json(t: Tuple5 | None) -> dict[str, str] | None:
    if t is None:
        return None
    return {"proto": t.proto, "src": str(t.src), "dst": str(t.dst)}


def evidence_json(evidence: PathEvidence) -> list[dict[str, Any]]:
    """The evidence as JSON objects (the "evidence" key of `analyze --format json`)."""
    out: list[dict[str, Any]] = []
    for ev in evidence.rewrites:
        ct = ev.conntrack
        out.append(
            {
                "direction": ev.direction,
                "hop": ev.hop,
                "node": ev.node,
                "kind": ev.kind,
                "before": _tuple_json(ev.before),
                "after": _tuple_json(ev.after),
                "entry": ev.entry,
                "mode": ev.mode,
                "rules_source": ev.rules_source,
                "verdict": ev.verdict,
                "service": ev.service,
                "rules": [r.to_json() for r in ev.rules],
                "endpoints": [
                    {"address": e.address, "probability": round(e.probability, 6)}
                    for e in ev.endpoints
                ],
                "chosen": ev.chosen,
                "chosen_probability": (
                    round(ev.chosen_probability, 6) if ev.chosen_probability is not None else None
                ),
                "masquerade": ev.masquerade,
                "masqueraded": ev.masqueraded,
                "conntrack": (
                    {
                        "line": ct.text,
                        "state": ct.state,
                        "original": _tuple_json(ct.original),
                        "reply": _tuple_json(ct.reply),
                    }
                    if ct is not None
                    else None
                ),
                "findings": [{"kind": f.kind, "message": f.message} for f in ev.findings],
                "notes": list(ev.notes),
            }
        )
    for f in evidence.findings:
        out.append(
            {"direction": None, "hop": None, "finding": {"kind": f.kind, "message": f.message}}
        )
    return out
