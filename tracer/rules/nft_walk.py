"""Walk one packet through an `NftRuleset` (kube-proxy's nftables mode) the way the kernel would.

The base chains of each hook run in priority order (prerouting: `filter-prerouting-pre-dnat`
then `nat-prerouting`; then input or forward after the routing decision; output for a process on
the node; postrouting), `jump`/`goto`/`return` behave as in the kernel, verdict maps are looked up
on the concatenated key (`ip daddr . meta l4proto . th dport`), and `numgen random mod N vmap`
forks the walk into N equally likely branches. The mark is tracked for real, so
`mark-for-masquerade` and `masquerading` decide the masquerade as on the node. Dynamic affinity
sets are never assumed to hold the client; they are noted. Pure: data in, data out.
"""

from __future__ import annotations

from dataclasses import replace

from tracer.model import Endpoint
from tracer.rules.iptables_walk import parse_to_destination
from tracer.rules.model import (
    Branch,
    Node,
    Packet,
    RuleHit,
    WalkResult,
    WalkState,
    in_network,
    parse_ip,
    service_from_chain,
)
from tracer.rules.nft import (
    ActionStmt,
    Element,
    MatchStmt,
    NftChain,
    NftRule,
    NftRuleset,
    NftTable,
    Selector,
    VmapStmt,
)
from tracer.rules.result import assemble, delivered

MAX_DEPTH = 64
_PROTOS = {"6": "tcp", "17": "udp", "132": "sctp", "1": "icmp", "58": "ipv6-icmp"}


def endpoint_of_chain(name: str) -> str | None:
    """`10.244.1.60:80` from `endpoint-HASH-ns/svc/tcp/p__10.244.1.60/80`."""
    if "__" not in name:
        return None
    tail = name.rsplit("__", 1)[1]
    ip, _, port = tail.rpartition("/")
    return f"{ip}:{port}" if ip and port else None


class _Walker:
    def __init__(self, rs: NftRuleset, node: Node):
        self.rs = rs
        self.node = node
        self.warnings: list[str] = list(rs.warnings)
        self.notes: list[str] = []
        self.phase = 0

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    # -- values --------------------------------------------------------------------------
    def _values(self, sel: Selector, st: WalkState) -> list[str] | None:
        out: list[str] = []
        for part in sel.parts:
            v: str | None
            if part in (("ip", "saddr"), ("ip6", "saddr")):
                v = st.src
            elif part in (("ip", "daddr"), ("ip6", "daddr")):
                v = st.dst
            elif part in (("meta", "l4proto"), ("ip", "protocol")):
                v = st.proto
            elif part[1:] == ("dport",):
                if part[0] != "th" and part[0] != st.proto:
                    return []  # `tcp dport` on a UDP packet: no value, no match
                v = None if st.dport is None else str(st.dport)
            elif part[1:] == ("sport",):
                if part[0] != "th" and part[0] != st.proto:
                    return []
                if st.sport is None:
                    self.warn(
                        "a rule matches on the source port, which the packet spec does not give; "
                        "assumed not to match"
                    )
                    return []
                v = str(st.sport)
            elif part == ("ct", "state"):
                v = ",".join(sorted(st.ctstates))
            elif part == ("fib", "saddr", "type"):
                v = "local" if self.node.is_local(st.src) else "unicast"
            elif part == ("fib", "daddr", "type"):
                v = "local" if self.node.is_local(st.dst) else "unicast"
            elif part in (("meta", "mark"), ("mark",)):
                mark = st.mark & sel.mask if sel.mask is not None else st.mark
                v = str(mark)
            elif part == ("meta", "nfproto"):
                v = "ipv4"
            else:
                return None
            if v is None:
                return None
            out.append(v)
        return out

    @staticmethod
    def _component(part: tuple[str, ...], value: str, lit: str) -> bool:
        if part in (("ip", "saddr"), ("ip", "daddr"), ("ip6", "saddr"), ("ip6", "daddr")):
            if "-" in lit and "/" not in lit:
                lo, hi = (parse_ip(x) for x in lit.split("-", 1))
                v = parse_ip(value)
                if lo is None or hi is None or v is None or lo.version != v.version:
                    return False
                return lo <= v <= hi  # type: ignore[operator]
            return in_network(value, lit)
        if part in (("meta", "l4proto"), ("ip", "protocol")):
            return _PROTOS.get(lit, lit) == value
        if part[-1] in ("dport", "sport"):
            try:
                if "-" in lit:
                    lo_s, hi_s = lit.split("-", 1)
                    return int(lo_s) <= int(value) <= int(hi_s)
                return int(lit) == int(value)
            except ValueError:
                return False
        if part == ("ct", "state"):
            wanted = {s.strip() for s in lit.split(",")}
            return bool(wanted & set(value.split(",")))
        if part in (("meta", "mark"), ("mark",)):
            try:
                return int(lit, 0) == int(value)
            except ValueError:
                return False
        return lit == value

    def _element_matches(self, sel: Selector, values: list[str], el: Element) -> bool:
        if len(el.key) != len(values):
            return False
        return all(
            self._component(part, v, k)
            for part, v, k in zip(sel.parts, values, el.key, strict=True)
        )

    def _set(self, table: NftTable, name: str) -> tuple[Element, ...] | None:
        s = table.sets.get(name)
        return None if s is None else s.elements

    # -- rules ---------------------------------------------------------------------------
    def exec_rule(
        self, table: NftTable, chain: NftChain, rule: NftRule, st: WalkState, depth: int
    ) -> list[tuple[WalkState, str]]:
        if rule.unknown:
            return [(st, "continue")]
        tname = f"{table.family} {table.name}"
        hit_comment = rule.comment
        recorded = False

        def record(s: WalkState, comment: str | None = None) -> WalkState:
            nonlocal recorded
            if recorded:
                return s
            recorded = True
            return replace(
                s,
                hits=(
                    *s.hits,
                    RuleHit(tname, chain.name, rule.text, comment or hit_comment, self.phase),
                ),
            )

        states: list[WalkState] = [st]
        out: list[tuple[WalkState, str]] = []
        for stmt in rule.statements:
            nxt: list[WalkState] = []
            for s in states:
                if isinstance(stmt, MatchStmt):
                    m = self._match(table, chain, rule, stmt, s)
                    if m:
                        nxt.append(s)
                    else:
                        out.append((s, "continue"))
                elif isinstance(stmt, VmapStmt):
                    for ns, verdict, comment in self._vmap(table, rule, stmt, s):
                        if verdict is None:
                            out.append((ns, "continue"))
                            continue
                        ns = replace(
                            ns,
                            hits=(
                                *ns.hits,
                                RuleHit(
                                    tname, chain.name, rule.text, comment or hit_comment, self.phase
                                ),
                            ),
                        )
                        out.extend(self._verdict(table, verdict, ns, depth))
                else:
                    s = record(s)
                    res = self._action(table, chain, rule, stmt, s, depth)
                    for ns, kind in res:
                        if kind == "next-statement":
                            nxt.append(ns)
                        else:
                            out.append((ns, kind))
            states = nxt
        for s in states:
            out.append((record(s), "continue"))
        return out

    def _match(
        self, table: NftTable, chain: NftChain, rule: NftRule, m: MatchStmt, st: WalkState
    ) -> bool:
        values = self._values(m.lhs, st)
        if values is None:
            self.warn(
                f"cannot evaluate {' . '.join(' '.join(p) for p in m.lhs.parts)} in chain "
                f"{chain.name} (line {rule.line}); assumed not to match"
            )
            return False
        if not values:
            return False
        if m.set_ref is not None:
            s = table.sets.get(m.set_ref)
            if s is None:
                self.warn(f"set @{m.set_ref} is not in the dump; assumed not to match")
                return False
            if "dynamic" in s.flags or m.set_ref.startswith("affinity-"):
                ep = None
                for stmt in rule.statements:
                    if isinstance(stmt, ActionStmt) and stmt.kind in ("goto", "jump"):
                        ep = endpoint_of_chain(stmt.args[0]) or stmt.args[0]
                self.notes.append(
                    f"session affinity (ClientIP): if the client's address is already in "
                    f"@{m.set_ref}, the kernel sends it to {ep or 'that endpoint'} instead of "
                    "picking at random"
                )
                return m.op == "!="
            found = any(self._element_matches(m.lhs, values, e) for e in s.elements)
        elif m.anon is not None:
            found = any(self._element_matches(m.lhs, values, e) for e in m.anon)
        else:
            found = self._element_matches(m.lhs, values, Element(m.rhs))
        return found != (m.op == "!=")

    def _vmap(
        self, table: NftTable, rule: NftRule, v: VmapStmt, st: WalkState
    ) -> list[tuple[WalkState, tuple[str, ...] | None, str | None]]:
        elements: tuple[Element, ...] | None
        if v.map_ref is not None:
            elements = self._set(table, v.map_ref)
            if elements is None:
                self.warn(f"map @{v.map_ref} is not in the dump; the lookup finds nothing")
                return [(st, None, None)]
        else:
            elements = v.anon or ()
        if v.lhs.numgen_mod is not None:
            mod = v.lhs.numgen_mod
            picks = [e for e in elements if e.key and e.key[0].isdigit() and int(e.key[0]) < mod]
            if not picks:
                return [(st, None, None)]
            out: list[tuple[WalkState, tuple[str, ...] | None, str | None]] = []
            covered = 0.0
            for e in picks:
                out.append((replace(st, prob=st.prob / mod), e.verdict, e.comment))
                covered += 1.0 / mod
            if covered < 1.0 - 1e-9:
                out.append((replace(st, prob=st.prob * (1.0 - covered)), None, None))
            return out
        values = self._values(v.lhs, st)
        if values is None:
            self.warn(f"cannot evaluate the key of a verdict map in line {rule.line}")
            return [(st, None, None)]
        if not values:
            return [(st, None, None)]
        for e in elements:
            if self._element_matches(v.lhs, values, e):
                return [(st, e.verdict, e.comment)]
        return [(st, None, None)]

    def _verdict(
        self, table: NftTable, verdict: tuple[str, ...], st: WalkState, depth: int
    ) -> list[tuple[WalkState, str]]:
        kind = verdict[0] if verdict else ""
        if kind in ("goto", "jump") and len(verdict) > 1:
            return self._call(table, kind, verdict[1], st, depth)
        if kind in ("accept", "drop", "reject", "return", "continue"):
            return [(st, _verdict_kind(kind))]
        self.warn(f"verdict {' '.join(verdict)!r} not understood; assumed to continue")
        return [(st, "continue")]

    def _call(
        self, table: NftTable, kind: str, target: str, st: WalkState, depth: int
    ) -> list[tuple[WalkState, str]]:
        chain = table.chains.get(target)
        if chain is None:
            self.warn(f"chain {target} is not in the dump; assumed to return")
            return [(st, "continue")]
        out: list[tuple[WalkState, str]] = []
        for ns, k in self.run_chain(table, chain, st, depth + 1):
            if k in ("return", "end"):
                out.append((ns, "return" if kind == "goto" else "continue"))
            else:
                out.append((ns, k))
        return out

    def _action(
        self,
        table: NftTable,
        chain: NftChain,
        rule: NftRule,
        a: ActionStmt,
        st: WalkState,
        depth: int,
    ) -> list[tuple[WalkState, str]]:
        k = a.kind
        if k in ("jump", "goto"):
            return self._call(table, k, a.args[0], st, depth)
        if k == "accept":
            return [(replace(st, accepted=True), "accept")]
        if k in ("drop", "reject", "return", "continue"):
            return [(st, _verdict_kind(k))]
        if k == "dnat":
            ep = parse_to_destination(a.args[0]) if a.args else None
            if ep is None:
                self.warn(f"dnat in chain {chain.name} (line {rule.line}) has no readable address")
                return [(st, "accept")]
            if ep.port is None:
                ep = Endpoint(ep.ip, st.dport)
            return [
                (
                    replace(
                        st,
                        dnat=st.dnat or ep,
                        dst=ep.ip,
                        dport=ep.port,
                        ctstates=st.ctstates | {"dnat"},
                    ),
                    "accept",
                )
            ]
        if k in ("masquerade", "snat"):
            return [(replace(st, masq=True), "accept")]
        if k == "redirect":
            return [(st, "accept")]
        if k == "mark-set":
            op, val = a.args
            try:
                v = int(val, 0)
            except ValueError:
                self.warn(f"mark value {val!r} not understood (line {rule.line})")
                return [(st, "next-statement")]
            mark = {"|": st.mark | v, "^": st.mark ^ v, "&": st.mark & v}.get(op, v)
            return [(replace(st, mark=mark & 0xFFFFFFFF), "next-statement")]
        return [(st, "next-statement")]  # update, log: no effect on the path

    def run_chain(
        self, table: NftTable, chain: NftChain, st: WalkState, depth: int = 0
    ) -> list[tuple[WalkState, str]]:
        if depth > MAX_DEPTH:
            self.warn(f"chain {chain.name}: jumps nest deeper than {MAX_DEPTH} (a loop?); stopped")
            return [(st, "drop")]
        active = [st]
        done: list[tuple[WalkState, str]] = []
        for rule in chain.rules:
            if not active:
                break
            nxt: list[WalkState] = []
            for s in active:
                for ns, kind in self.exec_rule(table, chain, rule, s, depth):
                    if kind == "continue":
                        nxt.append(ns)
                    else:
                        done.append((ns, kind))
            active = nxt
        done.extend((s, "end") for s in active)
        return done

    def run_hook(self, hook: str, st: WalkState) -> list[tuple[WalkState, str]]:
        """Every base chain of `hook` (ip and inet tables) in priority order."""
        chains: list[tuple[int, NftTable, NftChain]] = []
        for t in self.rs.tables:
            if t.family not in ("ip", "inet"):
                continue
            for c in t.chains.values():
                if c.hook == hook:
                    chains.append((c.priority if c.priority is not None else 0, t, c))
        chains.sort(key=lambda x: x[0])
        states: list[tuple[WalkState, str]] = [(st, "end")]
        for _prio, t, c in chains:
            nxt: list[tuple[WalkState, str]] = []
            for s, kind in states:
                if kind in ("drop", "reject"):
                    nxt.append((s, kind))
                    continue
                for ns, k in self.run_chain(t, c, s):
                    if k in ("return", "end"):
                        if (c.policy or "accept") == "drop":
                            self.warn(f"chain {c.name} has policy drop")
                            nxt.append((ns, "drop"))
                        else:
                            nxt.append((ns, "end"))
                    elif k == "accept":
                        nxt.append((ns, "end"))  # accept ends this base chain only
                    else:
                        nxt.append((ns, k))
            states = nxt
        return states


def _verdict_kind(word: str) -> str:
    return {"continue": "continue", "return": "return"}.get(word, word)


def walk_nft(ruleset: NftRuleset, packet: Packet, node: Node) -> WalkResult:
    w = _Walker(ruleset, node)
    if ruleset.table("ip", "kube-proxy") is None and ruleset.table("ip6", "kube-proxy") is None:
        w.warn("no table ip kube-proxy in the ruleset: this is not kube-proxy's nftables mode")
    init = WalkState.first(packet, "new")
    local = packet.entry == "local"
    branches: list[Branch] = []
    first = w.run_hook("output" if local else "prerouting", init)
    for s, kind in first:
        if kind in ("drop", "reject"):
            branches.append(s.branch(kind.upper()))
            continue
        # For a local packet the output hook (nat-output, then filter-output) has already run.
        hook = "output" if local else ("input" if node.is_local(s.dst) else "forward")
        w.phase = 1
        outs: list[tuple[WalkState, str]] = [(s, "end")] if local else w.run_hook(hook, s)
        for fs, k in outs:
            if k in ("drop", "reject"):
                branches.append(fs.branch(k.upper()))
            elif hook == "input":
                branches.append(delivered(fs))
            else:
                w.phase = 2
                post = w.run_hook("postrouting", fs)
                branches.append(delivered(fs, (p for p, _k in post)))
    service = None
    for b in branches:
        for h in b.rules:
            service = service or service_from_chain(h.chain)
            if service is None and h.comment and "/" in h.comment and " " not in h.comment:
                service = h.comment
            for word in h.rule.split():
                service = service or service_from_chain(word)
    return assemble("nftables", packet, branches, w.warnings, w.notes, service)
