"""How a packet meets a node's (or a meshed pod's) saved facts: where it entered the hooks, its
walk through the netfilter rules or through Cilium's load-balancer, the conntrack entry for a
tuple, whose facts each hop of a path met, and the finding a DROP or REJECT rule makes. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping

from tracer.errors import PathtraceError
from tracer.explain.evidence.model import Finding, RewriteEvidence
from tracer.explain.facts import NodeFacts
from tracer.model import Hop, Path, Translation, Tuple5
from tracer.rules import ConntrackEntry, Node, Packet, RuleHit, walk
from tracer.rules.cilium import walk_cilium
from tracer.rules.model import Entry, WalkResult, in_network

_WALKABLE = ("tcp", "udp", "sctp")


def hook_entry(src_ip: str, facts: NodeFacts, path: Path) -> Entry:
    """Where the packet met the node's hooks: from the node itself, a pod, or outside."""
    if src_ip in facts.addresses or src_ip.startswith("127."):
        return "local"
    if facts.pod_cidr is not None:
        return "from_pod" if in_network(src_ip, facts.pod_cidr) else "external"
    if path.forward and path.forward[0].role == "external":
        return "external"
    return "from_pod"


def walk_facts(
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


def rules_source(facts: NodeFacts, result: WalkResult | None) -> str | None:
    """The dump a walk's result comes from."""
    if result is not None and result.mode == "cilium" and facts.cilium is not None:
        return facts.cilium.source
    return facts.rules_source


def walk_evidence(
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
        rules_source=rules_source(nf, result),
        verdict=result.verdict,
        service=result.service,
        rules=result.rules,
        endpoints=result.endpoints,
        notes=result.notes,
        warnings=result.warnings,
    )


def conntrack_for(facts: NodeFacts | None, original: Tuple5) -> ConntrackEntry | None:
    if facts is None or facts.conntrack is None:
        return None
    return facts.conntrack.by_original(original)


def conntrack_by_reply(facts: NodeFacts | None, reply: Tuple5) -> ConntrackEntry | None:
    if facts is None or facts.conntrack is None:
        return None
    return facts.conntrack.by_reply(reply)


def conntrack_half_undone(facts: NodeFacts | None, packet: Tuple5) -> ConntrackEntry | None:
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


def undoes(ct: ConntrackEntry, tr: Translation) -> bool:
    """Does the entry's un-NAT give the rewritten side(s) of the reply `tr`?"""
    ok = True
    if tr.before.src != tr.after.src:
        ok &= tr.after.src == ct.original.dst
    if tr.before.dst != tr.after.dst:
        ok &= tr.after.dst == ct.original.src
    return ok


def facts_at(facts: Mapping[str, NodeFacts], *hops: Hop) -> list[NodeFacts]:
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
            found = candidates(facts, hop.node)
        out.extend(f for f in found if f not in out)
    return out


def candidates(facts: Mapping[str, NodeFacts], *nodes: str | None) -> list[NodeFacts]:
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


def stop_finding(node: str, result: WalkResult) -> Finding | None:
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
