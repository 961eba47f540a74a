"""The "Rule evidence" section of the text report, compact: only the rules that decided.

A walk through kube-proxy's rules passes a dozen jumps that decide nothing (PREROUTING to
KUBE-SERVICES, the filter FORWARD chains, KUBE-POSTROUTING's RETURN). This view keeps what a
person checks: the Service match, the SVC/EXT/SEP choice with the chosen endpoint's
probability, the DNAT, the masquerade (only when the mark was set), a DROP/REJECT, the
conntrack line, and every note, warning and finding. `--verbose` shows the full walk
(`tracer.explain.evidence.render_evidence`). Pure: evidence in, text out.
"""

from __future__ import annotations

from typing import cast

from tracer.explain.evidence import PathEvidence, RewriteEvidence
from tracer.model import Path, Translation, TranslationKind
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


def _head(path: Path, ev: RewriteEvidence) -> str:
    hops = path.forward if ev.direction == "forward" else path.reverse
    h = hops[ev.hop] if 0 <= ev.hop < len(hops) else None
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
        seen = {True: "yes", False: "no", None: "not visible"}[ev.masqueraded]
        agree = " (they agree)" if ev.masquerade == ev.masqueraded else ""
        out.append(f"  masquerade: rules {'yes' if ev.masquerade else 'no'}, packets {seen}{agree}")
    if ev.conntrack is not None:
        out.append(f"  conntrack: {ev.conntrack.text}")  # verbatim, as conntrack -L wrote it
    out.extend(f"  note: {n}" for n in ev.notes if not n.startswith(_REPLY_NOTE))
    out.extend(f"  warning: {w}" for w in ev.warnings)
    out.extend(f"  FINDING ({f.kind}): {f.message}" for f in ev.findings)
    return out


def render_evidence_compact(path: Path, evidence: PathEvidence) -> str:
    """The compact "Rule evidence" section ("" when there is nothing to show)."""
    if not evidence.rewrites and not evidence.findings:
        return ""
    out = ["Rule evidence (the deciding rules; --verbose shows every rule walked)"]
    for ev in evidence.rewrites:
        out.extend("  " + line for line in compact_lines(path, ev))
    shown = {f for ev in evidence.rewrites for f in ev.findings}
    out.extend(f"  FINDING ({f.kind}): {f.message}" for f in evidence.findings if f not in shown)
    return "\n".join(out) + "\n"
