"""Rule evidence for a path: which kube-proxy rule did each rewrite, and does conntrack agree.

For every hop whose tuple changed (DNAT, SNAT and their undoing on the reply) this module finds
the node that did it, walks that node's ruleset with the packet as it was *before* the rewrite,
and returns the rule path, the candidate endpoints with their overall probabilities, the
masquerade decision and the conntrack entry that confirms it. Where the packets and the rules
disagree (a DNAT to an endpoint no rule names, a rewrite the rules do not make or one they make
that did not happen, a masquerade decision the packets contradict) it says so in a `Finding`.
A path that ends at a node is also walked there, so a DROP/REJECT rule is named.

Pure: takes a `model.Path` and parsed node facts, returns frozen dataclasses (data, not text:
`tracer.report.evidence` renders them). It reads no files and prints nothing; the edge
(`tracer.explain.facts`) reads RUN/nodes/<node>/.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from tracer.errors import PathtraceError
from tracer.explain.facts import NodeFacts
from tracer.model import Endpoint, Hop, Path, Translation, Tuple5, translation_kind
from tracer.rules import ConntrackEntry, EndpointChoice, Node, Packet, RuleHit, walk
from tracer.rules.cilium import walk_cilium
from tracer.rules.model import OTHER_OWNER, Entry, WalkResult, in_network

Direction = Literal["forward", "reverse"]
Key = tuple[str, int]  # (direction, 0-based hop index in path.forward / path.reverse)

_WALKABLE = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class Finding:
    """Something the packets and the rules disagree on, or the rule that stopped the packet.

    `kind`: unexplained-endpoint, unexplained-rewrite, missed-rewrite, masquerade-mismatch,
    conntrack-mismatch, rejected, dropped.
    """

    kind: str
    message: str


@dataclass(frozen=True)
class RewriteEvidence:
    """The evidence for one rewrite (or, with kind "none", for a packet the node let through)."""

    direction: Direction
    hop: int
    node: str | None
    kind: str  # a TranslationKind, or "none" when the walk explains a packet left unchanged
    before: Tuple5
    after: Tuple5 | None
    entry: Entry | None = None
    mode: str | None = None  # iptables | nftables | ipvs
    rules_source: str | None = None
    verdict: str | None = None
    service: str | None = None
    rules: tuple[RuleHit, ...] = ()
    endpoints: tuple[EndpointChoice, ...] = ()
    chosen: str | None = None  # the endpoint the packets show (DNAT)
    chosen_probability: float | None = None
    masquerade: bool | None = None  # the rules' decision
    masqueraded: bool | None = None  # what the packets show
    conntrack: ConntrackEntry | None = None
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    # "socket": translated before the wire by a socket load-balancer (no rule made it).
    by: str | None = None

    @property
    def key(self) -> Key:
        return (self.direction, self.hop)


@dataclass(frozen=True)
class PathEvidence:
    """Every rewrite's evidence, in path order (forward first), and findings for the whole path."""

    rewrites: tuple[RewriteEvidence, ...] = ()
    findings: tuple[Finding, ...] = field(default=())

    def get(self, direction: str, hop: int) -> RewriteEvidence | None:
        for r in self.rewrites:
            if r.key == (direction, hop):
                return r
        return None

    @property
    def by_key(self) -> dict[Key, RewriteEvidence]:
        return {r.key: r for r in self.rewrites}

    @property
    def all_findings(self) -> tuple[Finding, ...]:
        seen: dict[Finding, None] = {}
        for r in self.rewrites:
            for f in r.findings:
                seen.setdefault(f, None)
        for f in self.findings:
            seen.setdefault(f, None)
        return tuple(seen)


# --- helpers ---------------------------------------------------------------------------------


def _entry(src_ip: str, facts: NodeFacts, path: Path) -> Entry:
    """Where the packet met the node's hooks: from the node itself, a pod, or outside."""
    if src_ip in facts.addresses or src_ip.startswith("127."):
        return "local"
    if facts.pod_cidr is not None:
        return "from_pod" if in_network(src_ip, facts.pod_cidr) else "external"
    if path.forward and path.forward[0].role == "external":
        return "external"
    return "from_pod"


def _walk(
    facts: NodeFacts, packet: Tuple5, entry: Entry, owner: int | None = None
) -> tuple[WalkResult | None, str | None]:
    """The packet through the node's (or pod's) netfilter rules; where those do not translate
    it and the node runs an eBPF load-balancer (Cilium's facts), through that instead."""
    if packet.proto not in _WALKABLE or packet.dst.port is None:
        return None, None
    node = Node(facts.addresses, facts.pod_cidr)
    oif = None
    if facts.scope == "pod" and entry == "local":
        # Inside a pod the route is simple: its own addresses over loopback, the rest via eth0.
        oif = "lo" if node.is_local(packet.dst.ip) else "eth0"
    pkt = Packet(packet.proto, packet.src, packet.dst, entry, oif, owner, owner)
    result: WalkResult | None = None
    warn: str | None = None
    if facts.rules is not None:
        try:
            result = walk(facts.rules, pkt, node)
        except PathtraceError as e:
            warn = f"{facts.rules_source}: the walk failed: {e.message}"
    if facts.cilium is not None and (result is None or result.verdict != "DNAT"):
        ebpf = walk_cilium(facts.cilium, pkt)
        if ebpf.verdict == "DNAT" or result is None:
            return ebpf, warn
    return result, warn


def _source(facts: NodeFacts, result: WalkResult | None) -> str | None:
    """The dump a walk's result comes from."""
    if result is not None and result.mode == "cilium" and facts.cilium is not None:
        return facts.cilium.source
    return facts.rules_source


def _walked(
    nf: NodeFacts,
    entry: Entry,
    result: WalkResult,
    *,
    hop: int,
    node: str | None,
    kind: str,
    before: Tuple5,
    after: Tuple5 | None,
) -> RewriteEvidence:
    """A forward hop's evidence as one walk of `nf`'s rules gives it; the caller adds what it
    knows besides (the endpoint chosen, conntrack, findings, notes)."""
    return RewriteEvidence(
        direction="forward",
        hop=hop,
        node=node,
        kind=kind,
        before=before,
        after=after,
        entry=entry,
        mode=result.mode,
        rules_source=_source(nf, result),
        verdict=result.verdict,
        service=result.service,
        rules=result.rules,
        endpoints=result.endpoints,
        notes=result.notes,
        warnings=result.warnings,
    )


def _conntrack_for(facts: NodeFacts | None, original: Tuple5) -> ConntrackEntry | None:
    if facts is None or facts.conntrack is None:
        return None
    return facts.conntrack.by_original(original)


def _conntrack_by_reply(facts: NodeFacts | None, reply: Tuple5) -> ConntrackEntry | None:
    if facts is None or facts.conntrack is None:
        return None
    return facts.conntrack.by_reply(reply)


def _conntrack_half_undone(facts: NodeFacts | None, packet: Tuple5) -> ConntrackEntry | None:
    """The entry of a reply already partly un-NATed (bridge netfilter undoes SNAT and DNAT at
    different devices, so a capture can see the packet between the two)."""
    if facts is None or facts.conntrack is None:
        return None
    for e in facts.conntrack.entries:
        if e.proto != packet.proto or not (e.dnat or e.snat):
            continue
        if packet.src in (e.reply.src, e.original.dst) and packet.dst in (
            e.reply.dst,
            e.original.src,
        ):
            return e
    return None


def _undoes(ct: ConntrackEntry, tr: Translation) -> bool:
    """Does the entry's un-NAT give the rewritten side(s) of the reply `tr`?"""
    ok = True
    if tr.before.src != tr.after.src:
        ok &= tr.after.src == ct.original.dst
    if tr.before.dst != tr.after.dst:
        ok &= tr.after.dst == ct.original.src
    return ok


def _facts_at(facts: Mapping[str, NodeFacts], *hops: Hop) -> list[NodeFacts]:
    """Whose rules each hop's packet met: its pod's own when they were captured, else its
    node's; none for a pod's loopback, which no node sees."""
    out: list[NodeFacts] = []
    for hop in hops:
        own = facts.get(hop.point)
        if own is not None and own.scope == "pod":
            found = [own]
        elif hop.role != "node" and hop.interface == "lo":
            found = []
        else:
            found = _candidates(facts, hop.node)
        out.extend(f for f in found if f not in out)
    return out


def _candidates(facts: Mapping[str, NodeFacts], *nodes: str | None) -> list[NodeFacts]:
    out: list[NodeFacts] = []
    for n in nodes:
        if n is not None and n in facts and facts[n] not in out:
            out.append(facts[n])
    return out


def _stop_rule(result: WalkResult) -> RuleHit | None:
    for b in result.branches:
        if b.verdict == result.verdict and b.rules:
            return b.rules[-1]
    return result.rules[-1] if result.rules else None


def _reject_with(rule: str) -> str:
    words = rule.split()
    if "--reject-with" in words:
        i = words.index("--reject-with")
        if i + 1 < len(words):
            return words[i + 1].replace("icmp-", "ICMP ").replace("-", " ")
    if "reject" in words and "with" in words:
        return " ".join(words[words.index("with") + 1 :])
    return "ICMP port unreachable"  # iptables' and nft's default for REJECT


def _stop_finding(node: str, result: WalkResult) -> Finding | None:
    rule = _stop_rule(result)
    where = f"{rule.table} {rule.chain}" if rule else "its rules"
    said = f" “{rule.comment}”" if rule and rule.comment else ""
    if result.verdict == "REJECT":
        answer = _reject_with(rule.rule) if rule else "ICMP port unreachable"
        if rule and rule.comment and rule.comment.endswith("has no endpoints"):
            svc = rule.comment[: -len(" has no endpoints")]
            msg = (
                f"kube-proxy has no endpoints for {svc}: {node} rejects the packet in {where}"
                f" and answers {answer}"
            )
        else:
            msg = f"{node} rejects the packet in {where}{said} and answers {answer}"
        return Finding("rejected", msg)
    if result.verdict == "DROP":
        if rule and rule.comment and "has no local endpoints" in rule.comment:
            svc = rule.comment.split(" has no local endpoints")[0]
            msg = (
                f"{svc} has no local endpoints on {node} (externalTrafficPolicy=Local):"
                f" {node} drops the packet in {where}"
            )
        else:
            text = rule.rule if rule else ""
            msg = f"{node} drops the packet in {where}{said}" + (f": {text}" if text else "")
        return Finding("dropped", msg)
    return None


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
        entry = _entry(before.src.ip, nf, path)
        # A pod's REDIRECT of its own outbound request: sent by the app, not by the proxy.
        owner = OTHER_OWNER if nf.scope == "pod" and entry == "local" else None
        result, warn = _walk(nf, before, entry, owner)
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
    ct = _conntrack_for(nf0, before) or _conntrack_by_reply(nf0, after.reversed())
    if ct is None and best is None:
        for nf in nodes:
            ct = _conntrack_for(nf, before)
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
    walked = _walked(
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
        ct = _conntrack_by_reply(nf, tr.before) or _conntrack_half_undone(nf, tr.before)
        if ct is not None:
            node = nf.node
            break
    findings: list[Finding] = []
    notes: list[str] = []
    if ct is None:
        if any(nf.conntrack is not None for nf in nodes):
            notes.append(f"no conntrack entry has the reply tuple {tr.before}")
    elif not _undoes(ct, tr):
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
    for nf in _candidates(facts, *order):
        ct = _conntrack_by_reply(nf, first.reversed())
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
        result, warn = _walk(nf, tr.before, _entry(tr.before.src.ip, nf, path))
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
        ct = _conntrack_for(nf, tr.after)
        if ct is not None:
            notes.append(f"{nf.node}'s conntrack holds it untranslated: {ct.text.strip()}")
        walked = _walked(
            nf,
            _entry(tr.before.src.ip, nf, path),
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
    result, _ = _walk(own, prev.tuple5, _entry(prev.tuple5.src.ip, own, path))
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
        entry = _entry(packet.src.ip, nf, path)
        result, warn = _walk(nf, packet, entry)
        if result is None:
            continue
        findings: list[Finding] = []
        stop = _stop_finding(nf.node, result)
        if stop is not None and ended_here:
            findings.append(stop)
        if result.verdict == "DNAT" and not ended_here:
            findings.append(
                Finding(
                    "missed-rewrite",
                    f"the rules on {nf.node} DNAT {packet} but the packet went on unchanged",
                )
            )
        walked = _walked(
            nf, entry, result, hop=index, node=nf.node, kind="none", before=packet, after=None
        )
        return replace(
            walked,
            masquerade=result.masquerade if result.verdict == "DNAT" else None,
            conntrack=_conntrack_for(nf, packet),
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
                items.append(_forward(path, 0, hop.translation, _facts_at(facts, hop)))
            else:
                items.append(_before_wire(path, hop.translation, _candidates(facts, hop.node)))
            continue
        prev = fwd[i - 1]
        items.append(_forward(path, i, hop.translation, _facts_at(facts, prev, hop)))
    items.extend(inbound_redirects(path, facts))
    for i, hop in enumerate(rev):
        if i == 0 or hop.translation is None:
            continue
        prev = rev[i - 1]
        items.append(_reverse(path, i, hop.translation, _facts_at(facts, hop, prev)))
    findings: list[Finding] = []
    if fwd and not any(
        "DNAT" in r.kind or r.kind == "REDIRECT" for r in items if r.direction == "forward"
    ):
        # Nothing was DNATed: say what the first node's rules do with the packet.
        for i, hop in enumerate(fwd):
            nodes = _facts_at(facts, hop)
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
            nodes = _facts_at(facts, fwd[last])
            ev = _unchanged(path, last, nodes, True)
            if ev is not None and ev.findings:
                findings.extend(f for f in ev.findings if f.kind in ("dropped", "rejected"))
    order = {"forward": 0, "reverse": 1}
    items.sort(key=lambda r: (order[r.direction], r.hop))
    return PathEvidence(tuple(items), tuple(findings))


def path_findings(evidences: Sequence[PathEvidence]) -> tuple[Finding, ...]:
    """Every finding of several paths, once each, in order."""
    seen: dict[Finding, None] = {}
    for e in evidences:
        for f in e.all_findings:
            seen.setdefault(f, None)
    return tuple(seen)
