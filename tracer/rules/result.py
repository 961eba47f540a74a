"""Fold the branches of a rule walk into one `WalkResult`.

Endpoints are grouped with their overall probability (the product of the conditional
probabilities along each branch), the verdict is the one most of the probability mass ends in, and
anything that differs between branches (a hairpin that masquerades only when the client picks
itself) becomes a warning. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from fractions import Fraction

from tracer.rules.model import Branch, EndpointChoice, Packet, RuleHit, WalkResult, WalkState


def fraction_text(p: float) -> str:
    """1/3 for 0.33333333349; the decimal when no small fraction is close."""
    f = Fraction(p).limit_denominator(64)
    if abs(float(f) - p) < 1e-6:
        return "1" if f == 1 else f"{f.numerator}/{f.denominator}"
    return f"{p:.3f}"


def delivered(st: WalkState, postrouting: Iterable[WalkState] | None = None) -> Branch:
    """The branch of a packet the filter hook let through: after nat POSTROUTING (None for a
    packet delivered locally, which never reaches it) it is masqueraded when any way through
    POSTROUTING masquerades, and those rules join its own; then DNAT, ACCEPT or NO-MATCH."""
    if postrouting is not None:
        hits = st.hits
        masq = False
        for p in postrouting:
            masq = masq or p.masq
            for h in p.hits:
                if h not in hits:
                    hits = (*hits, h)
        st = replace(st, masq=masq, hits=hits)
    if st.dnat is not None:
        return st.branch("DNAT")
    return st.branch("ACCEPT" if st.accepted else "NO-MATCH")


def assemble(
    mode: str,
    packet: Packet,
    branches: list[Branch],
    warnings: list[str],
    notes: list[str],
    service: str | None = None,
) -> WalkResult:
    warns = list(dict.fromkeys(warnings))
    mass: dict[str, float] = {}
    for b in branches:
        mass[b.verdict] = mass.get(b.verdict, 0.0) + b.probability
    if not branches:
        verdict = "NO-MATCH"
    else:
        verdict = max(mass.items(), key=lambda kv: (kv[1], kv[0] == "DNAT"))[0]
    if len(mass) > 1:
        parts = ", ".join(f"{v} with probability {fraction_text(p)}" for v, p in mass.items())
        warns.append(f"the outcome depends on the random endpoint choice: {parts}")
    eps: dict[str, list[Branch]] = {}
    for b in branches:
        if b.endpoint is not None and b.verdict == "DNAT":
            eps.setdefault(str(b.endpoint), []).append(b)
    endpoints = tuple(
        EndpointChoice(
            address=addr,
            probability=sum(b.probability for b in bs),
            masquerade=any(b.masquerade for b in bs),
        )
        for addr, bs in eps.items()
    )
    deciding = [b for b in branches if b.verdict == verdict]
    masq_flags = {b.masquerade for b in deciding}
    masquerade = any(masq_flags)
    if len(masq_flags) > 1:
        which = [e.address for e in endpoints if e.masquerade]
        warns.append(
            "masqueraded only when the kernel picks "
            + ", ".join(which)
            + " (the client reaches itself through the Service: hairpin)"
        )
    seen: dict[RuleHit, None] = {}
    for b in branches:
        for r in b.rules:
            seen.setdefault(r, None)
    ordered = sorted(seen, key=lambda r: r.phase)  # stable: first appearance within a phase
    all_notes = list(notes)
    for b in branches:
        all_notes.extend(b.notes)
    return WalkResult(
        mode=mode,
        packet=packet,
        verdict=verdict,
        endpoints=endpoints,
        masquerade=masquerade,
        rules=tuple(ordered),
        warnings=tuple(warns),
        notes=tuple(dict.fromkeys(all_notes)),
        branches=tuple(branches),
        service=service,
    )
