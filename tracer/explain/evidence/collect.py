"""Collecting a path's rule evidence: every rewrite on it (DNAT, SNAT, their undoing on the
reply, a REDIRECT, a rewrite before the first capture point or before the wire) explained by the
rules and conntrack of the node that made it, and a packet that went through or stopped at a node
unchanged walked there. Pure: a path and node facts in, `PathEvidence` out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from tracer.explain.evidence.model import Finding, PathEvidence, RewriteEvidence
from tracer.explain.evidence.nodewalk import (
    candidates,
    conntrack_by_reply,
    conntrack_for,
    conntrack_half_undone,
    facts_at,
    hook_entry,
    stop_finding,
    undoes,
    walk_evidence,
    walk_facts,
)
from tracer.explain.facts import NodeFacts
from tracer.model import Endpoint, Hop, Path, Translation, Tuple5, translation_kind
from tracer.rules import ConntrackEntry
from tracer.rules.model import OTHER_OWNER, Entry, WalkResult


def _masq_seen(path: Path, before: Tuple5, hop: int, node_hop: Hop) -> bool | None:
    """Did the packets show a source rewrite after `hop`? None when no later point could show it."""
    fwd = path.forward
    final = fwd[-1].tuple5
    if final.src != before.src:
        return True
    # POSTROUTING runs on the way out: a packet last seen entering the node cannot show it yet.
    if hop == len(fwd) - 1 and node_hop.role == "node" and node_hop.direction != "out":
        return None
    return False


# --- the three kinds of evidence --------------------------------------------------------------


def _forward(
    path: Path,
    index: int,
    tr: Translation,
    nodes: list[NodeFacts],
    hidden: bool = False,
) -> RewriteEvidence:
    hop = path.forward[index]
    before, after = tr.before, tr.after
    notes: list[str] = []
    if hidden:
        notes.append(
            "rewritten before the first capture point saw it: only conntrack shows the"
            " original tuple"
        )
    best: tuple[NodeFacts, Entry, WalkResult] | None = None
    warnings: list[str] = []
    for nf in nodes:
        entry = hook_entry(before.src.ip, nf, path)
        # A pod's REDIRECT of its own outbound request: sent by the app, not by the proxy.
        owner = OTHER_OWNER if nf.scope == "pod" and entry == "local" else None
        result, warn = walk_facts(nf, before, entry, owner)
        if warn:
            warnings.append(warn)
        if result is None:
            continue
        if best is None:
            best = (nf, entry, result)
        if "DNAT" not in tr.kind or any(e.address == str(after.dst) for e in result.endpoints):
            best = (nf, entry, result)
            break
    nf0 = best[0] if best else (nodes[0] if nodes else None)
    ct = conntrack_for(nf0, before) or conntrack_by_reply(nf0, after.reversed())
    if ct is None and best is None:
        for nf in nodes:
            ct = conntrack_for(nf, before)
            if ct is not None:
                nf0 = nf
                break
    findings: list[Finding] = []
    dnat = "DNAT" in tr.kind or tr.kind == "REDIRECT"
    snat_here = "SNAT" in tr.kind
    chosen = str(after.dst) if dnat else None
    node_name = nf0.node if nf0 else (hop.node or None)
    if best is None:
        if not nodes:
            notes.append(f"no rules were captured for {hop.node or 'the node'}")
        return RewriteEvidence(
            direction="forward",
            hop=index,
            node=node_name,
            kind=tr.kind,
            before=before,
            after=after,
            chosen=chosen,
            masqueraded=snat_here or None,
            conntrack=ct,
            notes=tuple(notes),
            warnings=tuple(warnings),
        )
    nf, entry, result = best
    prob: float | None = None
    if dnat:
        named = [e for e in result.endpoints if e.address == chosen]
        if result.verdict != "DNAT":
            findings.append(
                Finding(
                    "unexplained-rewrite",
                    f"the packet was DNATed to {chosen} on {nf.node}, but its rules"
                    f" {result.verdict} it ({before})",
                )
            )
        elif not named:
            names = ", ".join(e.address for e in result.endpoints) or "none"
            findings.append(
                Finding(
                    "unexplained-endpoint",
                    f"the packet was DNATed to {chosen} on {nf.node}, an endpoint no rule there"
                    f" names (the rules name {names}): stale rules or conntrack",
                )
            )
        else:
            prob = named[0].probability
    elif result.verdict == "DNAT" and not hidden:
        findings.append(
            Finding(
                "missed-rewrite",
                f"the rules on {nf.node} DNAT {before} but the packet kept its destination",
            )
        )
    seen = _masq_seen(path, before, index, hop)
    if hidden:
        seen = after.src != before.src
    # A REDIRECT stays inside the namespace: no masquerade decision is made for it.
    rules_masq = result.masquerade if result.verdict == "DNAT" and tr.kind != "REDIRECT" else None
    if rules_masq is not None and seen is not None and rules_masq != seen:
        if rules_masq:
            msg = (
                f"the rules on {nf.node} masquerade {before} but the packets keep the source"
                f" {before.src.ip}"
            )
        else:
            msg = (
                f"the packets show the source rewritten to {path.forward[-1].tuple5.src}, but no"
                f" rule on {nf.node}'s path sets kube-proxy's masquerade mark"
            )
        findings.append(Finding("masquerade-mismatch", msg))
    if snat_here and result.verdict != "DNAT":
        notes.append(
            f"the source was rewritten by a rule outside kube-proxy's service chains on {nf.node}"
            " (e.g. the CNI's masquerade)"
        )
    if ct is not None:
        if dnat and ct.reply.src != after.dst:
            findings.append(
                Finding(
                    "conntrack-mismatch",
                    f"conntrack on {nf.node} sends replies from {ct.reply.src}, but the packet"
                    f" went to {after.dst}",
                )
            )
        if snat_here and ct.reply.dst != after.src:
            findings.append(
                Finding(
                    "conntrack-mismatch",
                    f"conntrack on {nf.node} expects replies to {ct.reply.dst}, but the packet"
                    f" left from {after.src}",
                )
            )
    elif nf.conntrack is not None:
        notes.append(
            f"no conntrack entry on {nf.node} for {before} (it may have expired before the"
            " table was read)"
        )
    walked = walk_evidence(
        nf, entry, result, hop=index, node=nf.node, kind=tr.kind, before=before, after=after
    )
    return replace(
        walked,
        chosen=chosen,
        chosen_probability=prob,
        masquerade=rules_masq,
        masqueraded=seen,
        conntrack=ct,
        findings=tuple(findings),
        notes=tuple(notes) + walked.notes,
        warnings=tuple(warnings) + walked.warnings,
    )


def _reverse(path: Path, index: int, tr: Translation, nodes: list[NodeFacts]) -> RewriteEvidence:
    ct: ConntrackEntry | None = None
    node: str | None = path.reverse[index].node
    for nf in nodes:
        ct = conntrack_by_reply(nf, tr.before) or conntrack_half_undone(nf, tr.before)
        if ct is not None:
            node = nf.node
            break
    findings: list[Finding] = []
    notes: list[str] = []
    if ct is None:
        if any(nf.conntrack is not None for nf in nodes):
            notes.append(f"no conntrack entry has the reply tuple {tr.before}")
    elif not undoes(ct, tr):
        findings.append(
            Finding(
                "conntrack-mismatch",
                f"conntrack on {node} would rewrite the reply to {ct.original.reversed()},"
                f" but the packets show {tr.after}",
            )
        )
    else:
        undo = []
        if "un-DNAT" in tr.kind:
            undo.append(f"the source back to {tr.after.src}")
        if "un-SNAT" in tr.kind:
            undo.append(f"the destination back to {tr.after.dst}")
        notes.append(
            "no rule is walked for a reply: conntrack matches its reply tuple and rewrites "
            + " and ".join(undo)
        )
    return RewriteEvidence(
        direction="reverse",
        hop=index,
        node=node,
        kind=tr.kind,
        before=tr.before,
        after=tr.after,
        conntrack=ct,
        findings=tuple(findings),
        notes=tuple(notes),
    )


def _hidden(path: Path, facts: Mapping[str, NodeFacts]) -> RewriteEvidence | None:
    """A rewrite done before the first capture point (nat OUTPUT of a host-network client)."""
    if not path.forward:
        return None
    first = path.forward[0].tuple5
    order = [h.node for h in path.forward]
    for nf in candidates(facts, *order):
        ct = conntrack_by_reply(nf, first.reversed())
        if ct is None or ct.original == first:
            continue
        kind = translation_kind(ct.original, first, False)
        if kind is None:
            continue
        return _forward(path, 0, Translation(kind, ct.original, first), [nf], hidden=True)
    return None


def _before_wire(path: Path, tr: Translation, nodes: list[NodeFacts]) -> RewriteEvidence:
    """A Service translated before any packet carried its address (tracer.explain.beforewire):
    the client's node is walked with the Service's address to show no rule there does it."""
    notes: list[str] = []
    warnings: list[str] = []
    for nf in nodes:
        result, warn = walk_facts(nf, tr.before, hook_entry(tr.before.src.ip, nf, path))
        if warn:
            warnings.append(warn)
        if result is None:
            continue
        if result.verdict == "DNAT" and result.mode == "cilium":
            chosen = any(e.address == str(tr.after.dst) for e in result.endpoints)
            notes.append(
                f"Cilium's load-balancer on {nf.node} serves {tr.before.dst} and lists "
                f"{tr.after.dst} {'among its backends' if chosen else 'NOT among its backends'}:"
                " its socket-level translation (connect/sendmsg) put the backend on the wire"
            )
            for entry in nf.cilium_ct:
                if tr.after.src in (entry.src, entry.dst):
                    notes.append(f"Cilium's conntrack on {nf.node}: {entry.text}")
                    break
        elif result.verdict == "DNAT":
            notes.append(
                f"{nf.node}'s rules would DNAT {tr.before.dst} too, but no packet reached them"
                " with it: the socket's translation came first"
            )
        else:
            notes.append(
                f"no rule on {nf.node} translates {tr.before.dst} (verdict {result.verdict}):"
                " kube-proxy serves no such Service there; the translation is not netfilter's"
            )
        ct = conntrack_for(nf, tr.after)
        if ct is not None:
            notes.append(f"{nf.node}'s conntrack holds it untranslated: {ct.text.strip()}")
        walked = walk_evidence(
            nf,
            hook_entry(tr.before.src.ip, nf, path),
            result,
            hop=0,
            node=path.forward[0].point,
            kind=tr.kind,
            before=tr.before,
            after=tr.after,
        )
        return replace(
            walked,
            service=None,  # the socket translated it, not a rule naming a Service
            chosen=str(tr.after.dst),
            by="socket",
            notes=(path.forward[0].note or "", *notes),
            warnings=tuple(warnings) + walked.warnings,
        )
    return RewriteEvidence(
        direction="forward",
        hop=0,
        node=path.forward[0].point,
        kind=tr.kind,
        before=tr.before,
        after=tr.after,
        chosen=str(tr.after.dst),
        by="socket",
        notes=(path.forward[0].note or "", "no node rules were captured to compare"),
        warnings=tuple(warnings),
    )


def inbound_redirects(path: Path, facts: Mapping[str, NodeFacts]) -> list[RewriteEvidence]:
    """Every sidecar's inbound REDIRECT on a stitched path (see `inbound_redirect`)."""
    out: list[RewriteEvidence] = []
    fwd = path.forward
    for i in range(1, len(fwd)):
        if fwd[i].kind == "proxy" and fwd[i - 1].point == fwd[i].point:
            ev = inbound_redirect(path, i - 1, facts)
            if ev is not None:
                out.append(ev)
    return out


def inbound_redirect(
    path: Path, index: int, facts: Mapping[str, NodeFacts]
) -> RewriteEvidence | None:
    """A sidecar's inbound capture of the request that reached a pod at forward hop `index`.

    The REDIRECT to the proxy happens in the pod's nat PREROUTING, after its capture point,
    and is undone before it on the way back: no packet shows it, only the pod's own rules and
    conntrack do. None without the pod's facts or when its rules leave the packet alone.
    """
    prev = path.forward[index]
    own = facts.get(prev.point)
    if own is None or own.scope != "pod" or prev.translation is not None:
        return None
    if prev.interface == "lo":
        return None
    result, _ = walk_facts(own, prev.tuple5, hook_entry(prev.tuple5.src.ip, own, path))
    if result is None or result.verdict != "DNAT" or not result.endpoints:
        return None
    ip, _, port = result.endpoints[0].address.rpartition(":")
    after = Tuple5(prev.tuple5.proto, prev.tuple5.src, Endpoint(ip, int(port)))
    ev = _forward(path, index, Translation("REDIRECT", prev.tuple5, after), [own])
    note = (
        f"done in {own.node}'s own nat PREROUTING after its capture point saw the packet:"
        " only the pod's rules and conntrack show it"
    )
    return replace(ev, notes=(note, *ev.notes))


def _unchanged(
    path: Path, index: int, nodes: list[NodeFacts], ended_here: bool
) -> RewriteEvidence | None:
    """Walk a packet that went through (or stopped at) a node without any rewrite."""
    hop = path.forward[index]
    packet = hop.tuple5
    for nf in nodes:
        entry = hook_entry(packet.src.ip, nf, path)
        result, warn = walk_facts(nf, packet, entry)
        if result is None:
            continue
        findings: list[Finding] = []
        stop = stop_finding(nf.node, result)
        if stop is not None and ended_here:
            findings.append(stop)
        if result.verdict == "DNAT" and not ended_here:
            findings.append(
                Finding(
                    "missed-rewrite",
                    f"the rules on {nf.node} DNAT {packet} but the packet went on unchanged",
                )
            )
        walked = walk_evidence(
            nf, entry, result, hop=index, node=nf.node, kind="none", before=packet, after=None
        )
        return replace(
            walked,
            masquerade=result.masquerade if result.verdict == "DNAT" else None,
            conntrack=conntrack_for(nf, packet),
            findings=tuple(findings),
            warnings=((warn,) if warn else ()) + walked.warnings,
        )
    return None


def collect_evidence(path: Path, facts: Mapping[str, NodeFacts]) -> PathEvidence:
    """The rule and conntrack evidence for every rewrite on `path` (see the module docstring)."""
    fwd, rev = path.forward, path.reverse
    if fwd:
        # Each family has its own rules (iptables-save, ip6tables-save): walk the path's.
        version = 6 if ":" in fwd[0].tuple5.dst.ip else 4
        facts = {name: f.for_family(version) for name, f in facts.items()}
    items: list[RewriteEvidence] = []
    hidden = _hidden(path, facts)
    if hidden is not None:
        items.append(hidden)
    for i, hop in enumerate(fwd):
        if hop.translation is None:
            continue
        if i == 0:
            # Only a rewrite inside the client's own namespace shows on the first hop (a
            # sidecar's REDIRECT), or one made before the wire (a socket load-balancer's).
            if hop.translation.kind == "REDIRECT":
                items.append(_forward(path, 0, hop.translation, facts_at(facts, hop)))
            else:
                items.append(_before_wire(path, hop.translation, candidates(facts, hop.node)))
            continue
        prev = fwd[i - 1]
        items.append(_forward(path, i, hop.translation, facts_at(facts, prev, hop)))
    items.extend(inbound_redirects(path, facts))
    for i, hop in enumerate(rev):
        if i == 0 or hop.translation is None:
            continue
        prev = rev[i - 1]
        items.append(_reverse(path, i, hop.translation, facts_at(facts, hop, prev)))
    findings: list[Finding] = []
    if fwd and not any(
        "DNAT" in r.kind or r.kind == "REDIRECT" for r in items if r.direction == "forward"
    ):
        # Nothing was DNATed: say what the first node's rules do with the packet.
        for i, hop in enumerate(fwd):
            nodes = facts_at(facts, hop)
            if not nodes or nodes[0].rules is None:
                continue
            later = any(h.node != hop.node for h in fwd[i + 1 :])
            ended = not later and not rev
            ev = _unchanged(path, i, nodes, ended)
            if ev is not None:
                items.append(ev)
            break
    reached = bool(fwd) and fwd[-1].role in ("server", "dns", "ingress")
    if fwd and not rev and not reached:
        last = len(fwd) - 1
        if all(r.key != ("forward", last) or r.kind != "none" for r in items):
            nodes = facts_at(facts, fwd[last])
            ev = _unchanged(path, last, nodes, True)
            if ev is not None and ev.findings:
                findings.extend(f for f in ev.findings if f.kind in ("dropped", "rejected"))
    order = {"forward": 0, "reverse": 1}
    items.sort(key=lambda r: (order[r.direction], r.hop))
    return PathEvidence(tuple(items), tuple(findings))
