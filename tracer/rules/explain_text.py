"""Tell a walk's outcome as a short narrative followed by the rule path (for `pathtrace explain`).

Takes a `WalkResult` and returns text; it computes nothing the walker did not.
"""

from __future__ import annotations

import re

from tracer.rules.model import Node, RuleHit, WalkResult, in_network
from tracer.rules.result import fraction_text
from tracer.rules.walk import Rules

_ENTRY = {
    "from_pod": "comes from a pod interface",
    "external": "arrives on an external interface",
    "local": "is sent by a process on the node itself",
}
_LOCAL_CIDR = re.compile(
    r"(?:! -s (\S+) .*-j KUBE-MARK-MASQ|ip saddr != (\S+) jump mark-for-masquerade)"
)


def local_traffic_cidr(rules: Rules) -> str | None:
    """The CIDR kube-proxy's local-traffic detector treats as pods (`! -s CIDR -j KUBE-MARK-MASQ`)."""
    texts: list[str] = []
    if rules.iptables is not None:
        for t in rules.iptables.tables.values():
            for c in t.chains.values():
                texts.extend(r.text for r in c.rules)
    if rules.nft is not None:
        for nt in rules.nft.tables:
            for nc in nt.chains.values():
                texts.extend(r.text for r in nc.rules)
    for text in texts:
        m = _LOCAL_CIDR.search(text)
        if m:
            return m.group(1) or m.group(2)
    return None


def _hook_words(result: WalkResult) -> str:
    local = result.packet.entry == "local"
    if result.mode == "nftables":
        return "the output hook (nat-output)" if local else "the prerouting hook (nat-prerouting)"
    return "nat OUTPUT" if local else "nat PREROUTING"


def _step(h: RuleHit) -> str:
    what = f"“{h.comment}”" if h.comment else h.rule
    return f"{h.table} {h.chain}: {what}"


def describe(result: WalkResult, rules: Rules | None = None, node: Node | None = None) -> str:
    p = result.packet
    out: list[str] = []
    out.append(
        f"The packet {p} {_ENTRY.get(p.entry, 'arrives')}, so it enters {_hook_words(result)}."
    )
    if result.service:
        out.append(f"It belongs to Service {result.service}.")
    first = result.branches[0] if result.branches else None
    if first is not None:
        kube = [
            h for h in first.rules if h.comment or "KUBE" in h.chain or result.mode == "nftables"
        ]
        if kube:
            out.append("On its way it matches:")
            out.extend(f"  - {_step(h)}" for h in kube[:12])
            if len(kube) > 12:
                out.append(f"  - … {len(kube) - 12} more (see the rule path)")
    n = len(result.endpoints)
    if result.verdict == "DNAT" and n:
        if n == 1:
            e = result.endpoints[0]
            out.append(f"It is DNATed to {e.address} (the only endpoint it can reach).")
        else:
            probs = {fraction_text(e.probability) for e in result.endpoints}
            each = f", each with probability {probs.pop()}" if len(probs) == 1 else ""
            out.append(f"The kernel picks one of {n} endpoints at random{each}, and DNATs to it:")
            for e in result.endpoints:
                out.append(f"  {e.address:<24} probability {fraction_text(e.probability)}")
    elif result.verdict in ("DROP", "REJECT"):
        last = first.rules[-1] if first is not None and first.rules else None
        where = (
            f" in {last.table} {last.chain}"
            + (f" (“{last.comment}”)" if last and last.comment else "")
            if last
            else ""
        )
        out.append(f"The packet is {'dropped' if result.verdict == 'DROP' else 'rejected'}{where}.")
    elif result.verdict == "ACCEPT":
        out.append("A kube-proxy rule accepts it without rewriting the destination.")
    else:
        out.append(
            "No kube-proxy rule rewrites or stops it: it goes on to its destination unchanged."
        )
    if result.verdict == "DNAT":
        if result.masquerade:
            marks = [
                h
                for b in result.branches
                for h in b.rules
                if "KUBE-MARK-MASQ" in h.rule or "mark-for-masquerade" in h.rule
            ]
            why = (
                f" (marked by {marks[0].table} {marks[0].chain}"
                + (f": “{marks[0].comment}”)" if marks[0].comment else ")")
                if marks
                else ""
            )
            out.append(
                f"It is masqueraded{why}: the endpoint sees the node's address as the source."
            )
        else:
            cidr = local_traffic_cidr(rules) if rules is not None else None
            if cidr is None and node is not None:
                cidr = node.pod_cidr
            if cidr and in_network(p.src.ip, cidr):
                out.append(
                    f"It is not masqueraded because the source is inside the pod CIDR {cidr}: the endpoint sees {p.src.ip}."
                )
            else:
                out.append(
                    f"It is not masqueraded: no rule on the path sets the masquerade mark, so the endpoint sees {p.src.ip}."
                )
    out.append(f"Verdict: {result.verdict}")
    for note in result.notes:
        out.append(f"Note: {note}")
    for w in result.warnings:
        out.append(f"Warning: {w}")
    out.append("")
    out.append("Rule path:")
    if not result.rules:
        out.append("  (no rule matched)")
    for h in result.rules:
        out.append(f"  [{h.table} {h.chain}] {h.rule}")
    return "\n".join(out) + "\n"
