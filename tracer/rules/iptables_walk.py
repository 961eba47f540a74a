"""Walk one packet through an `IptablesRuleset` the way the kernel would, for kube-proxy's chains.

nat PREROUTING (or OUTPUT for a process on the node), then the filter hook the routing decision
picks (INPUT, FORWARD or OUTPUT), then nat POSTROUTING. Jumps, gotos and RETURN behave as in the
kernel; the packet mark is tracked for real, so `KUBE-MARK-MASQ` and `KUBE-POSTROUTING` decide the
masquerade exactly as they do on the node. A `-m statistic --mode random` rule forks the walk: every
endpoint is collected with its overall probability. Rules that depend on history
(`-m recent --rcheck`, `--ctstate ESTABLISHED`) never match a first packet; affinity is noted.
Pure: data in, data out.
"""

from __future__ import annotations

from dataclasses import replace

from tracer.model import Endpoint
from tracer.rules.iptables import IptablesRuleset, Option, Rule
from tracer.rules.model import (
    MASQ_MARK,
    Branch,
    Node,
    Packet,
    RuleHit,
    WalkResult,
    WalkState,
    in_network,
)
from tracer.rules.result import assemble, delivered

MAX_DEPTH = 64
MAX_BRANCHES = 5000

_PROTO_NUMBERS = {"6": "tcp", "17": "udp", "132": "sctp", "1": "icmp", "58": "icmpv6"}
# Targets that do not end the traversal of the chain.
_NON_TERMINATING = frozenset(
    {"LOG", "NFLOG", "ULOG", "TRACE", "CONNMARK", "CT", "NOTRACK", "CLASSIFY", "TCPMSS", "CHECKSUM"}
    | {"AUDIT", "NFQUEUE_BYPASS", "TOS", "DSCP", "TTL", "HL", "SET", "COUNTER"}
)
_HISTORY_STATES = frozenset({"ESTABLISHED", "RELATED", "INVALID", "UNTRACKED", "SNAT"})


# Outcome of running a chain on one state.
_Outcome = tuple[WalkState, str]  # kind: return | accept | drop | reject | end


def _parse_mark(text: str) -> tuple[int, int] | None:
    """`0x4000/0x4000` -> (value, mask); a bare value has mask 0xffffffff."""
    try:
        if "/" in text:
            v, m = text.split("/", 1)
            return int(v, 0), int(m, 0)
        return int(text, 0), 0xFFFFFFFF
    except ValueError:
        return None


def _port_in(port: int | None, spec: str) -> bool | None:
    """`80`, `30000:32767`, or `80,443` (multiport, with ranges); None when unparsable."""
    if port is None:
        return False
    try:
        for part in spec.split(","):
            if ":" in part:
                lo, hi = part.split(":", 1)
                if int(lo or 0) <= port <= int(hi or 65535):
                    return True
            elif int(part) == port:
                return True
    except ValueError:
        return None
    return False


def parse_to_destination(text: str) -> Endpoint | None:
    """`10.244.1.10:8080`, `10.244.1.10`, `[fd00::1]:80`, `1.2.3.4:80-90` -> the first address."""
    t = text.strip()
    if t.startswith("["):
        ip, _, rest = t[1:].partition("]")
        port_s = rest.lstrip(":")
    elif t.count(":") == 1:
        ip, _, port_s = t.partition(":")
    else:
        ip, port_s = t, ""
    ip = ip.split("-", 1)[0]
    port_s = port_s.split("-", 1)[0]
    if not ip:
        return None
    try:
        return Endpoint(ip, int(port_s) if port_s else None)
    except ValueError:
        return None


class _Walker:
    def __init__(self, ruleset: IptablesRuleset, node: Node, extra_local: tuple[str, ...] = ()):
        self.rs = ruleset
        self.node = node
        self.extra_local = extra_local
        self.warnings: list[str] = []
        self.notes: list[str] = []
        self.branches = 0
        self.phase = 0
        self.packet: Packet | None = None

    # -- helpers -------------------------------------------------------------------------
    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def is_local(self, ip: str) -> bool:
        return self.node.is_local(ip) or ip in self.extra_local

    def _ip_match(self, ip: str, o: Option) -> bool:
        hit = any(in_network(ip, a) for a in o.arg.split(","))
        return hit != o.negated

    # -- matches -------------------------------------------------------------------------
    def match_probability(self, rule: Rule, st: WalkState) -> float:
        """The probability that `rule` matches `st` (1 or 0, or P for a random match)."""
        p = 1.0
        for m in rule.matches:
            for o in m.options:
                r = self._option(rule, m.module, o, st)
                if r is None:
                    self.warn(
                        f"cannot evaluate {('-m ' + m.module + ' ') if m.module else ''}{o.name} "
                        f"in {rule.table} {rule.chain} (line {rule.line}); assumed not to match"
                    )
                    return 0.0
                p *= r
                if p == 0.0:
                    return 0.0
        return p

    def _option(self, rule: Rule, module: str, o: Option, st: WalkState) -> float | None:
        b = self._bool_option(rule, module, o, st)
        if isinstance(b, float):
            return b
        if b is None:
            return None
        return 1.0 if b else 0.0

    def _bool_option(
        self, rule: Rule, module: str, o: Option, st: WalkState
    ) -> bool | float | None:
        name = o.name
        neg = o.negated
        if name == "-s":
            return self._ip_match(st.src, o)
        if name == "-d":
            return self._ip_match(st.dst, o)
        if name == "-p":
            want = _PROTO_NUMBERS.get(o.arg, o.arg.lower())
            res = want in ("all", "0") or want == st.proto
            return res != neg
        if name == "-o" and self.packet is not None and self.packet.out_interface is not None:
            want = o.arg
            out = self.packet.out_interface
            hit = out.startswith(want[:-1]) if want.endswith("+") else out == want
            return hit != neg
        if name in ("-i", "-o"):
            return None
        if module == "owner" and self.packet is not None:
            owner = {"--uid-owner": self.packet.owner_uid, "--gid-owner": self.packet.owner_gid}
            if name in owner:
                have = owner[name]
                if have is None:
                    return None
                try:
                    return (have == int(o.arg)) != neg
                except ValueError:
                    return None  # a user name: the dump would need the pod's /etc/passwd
        if name == "-f":
            return neg  # a first packet is never a fragment
        if module in ("", "tcp", "udp", "sctp", "multiport", "udplite"):
            if name in ("--dport", "--destination-port", "--dports", "--destination-ports"):
                r = _port_in(st.dport, o.arg)
                return None if r is None else r != neg
            if name in ("--sport", "--source-port", "--sports", "--source-ports"):
                if st.sport is None:
                    self.warn(
                        f"{rule.chain} (line {rule.line}) matches on the source port, which the "
                        "packet spec does not give; assumed not to match"
                    )
                    return False
                r = _port_in(st.sport, o.arg)
                return None if r is None else r != neg
            if name in ("--ports",):
                a = _port_in(st.dport, o.arg)
                b = _port_in(st.sport, o.arg) if st.sport is not None else False
                if a is None or b is None:
                    return None
                return (a or b) != neg
            if name == "--syn":
                return (st.proto == "tcp") != neg
            if name == "--tcp-flags":
                return None
            return None
        if module == "comment" or module == "nfacct":
            return True
        if module == "addrtype":
            if name in ("--src-type", "--dst-type"):
                types = {t.upper() for t in o.arg.split(",")}
                ip = st.src if name == "--src-type" else st.dst
                local = self.is_local(ip)
                if types <= {"LOCAL"}:
                    return local != neg
                if types <= {"UNICAST", "LOCAL"}:
                    return True != neg  # noqa: E712 - every address here is unicast
                return None
            if name in ("--limit-iface-in", "--limit-iface-out"):
                return True
            return None
        if module == "statistic":
            if name == "--mode":
                return True if o.arg == "random" else None
            if name == "--probability":
                try:
                    pr = float(o.arg)
                except ValueError:
                    return None
                pr = min(max(pr, 0.0), 1.0)
                return (1.0 - pr) if neg else pr
            return None
        if module == "recent":
            if name in ("--rcheck", "--update"):
                chain = self._recent_name(rule) or "?"
                ep = self._chain_dnat(rule.table, chain)
                seconds = ""
                for mo in rule.match_options("recent"):
                    if mo.name == "--seconds":
                        seconds = f", {mo.arg} s"
                self.notes.append(
                    f"session affinity (ClientIP{seconds}): if the client already has an affinity "
                    f"entry in /proc/net/xt_recent/{chain}, the kernel sends it to "
                    f"{ep or chain} instead of picking at random"
                )
                return neg  # never matches a client without history
            if name in ("--set", "--remove", "--name", "--seconds", "--reap", "--mask"):
                return True
            if name in ("--rsource", "--rdest", "--hitcount", "--rttl"):
                return True
            return None
        if module == "mark":
            if name == "--mark":
                vm = _parse_mark(o.arg)
                if vm is None:
                    return None
                v, mask = vm
                return ((st.mark & mask) == v) != neg
            return None
        if module in ("conntrack", "state"):
            if name in ("--ctstate", "--state"):
                wanted = {s.upper() for s in o.arg.split(",")}
                res = bool(wanted & st.ctstates)
                return res != neg
            if name == "--ctstatus":
                return None
            return None
        if module == "icmp" and name == "--icmp-type":
            return (st.proto == "icmp") != neg
        return None

    def _recent_name(self, rule: Rule) -> str | None:
        for o in rule.match_options("recent"):
            if o.name == "--name":
                return o.arg
        return rule.target

    def _chain_dnat(self, table: str, chain: str) -> str | None:
        c = self.rs.chain(table, chain)
        if c is None:
            return None
        for r in c.rules:
            if r.target == "DNAT":
                o = r.target_option("--to-destination")
                if o is not None:
                    return o.arg
        return None

    # -- chains --------------------------------------------------------------------------
    def run_chain(self, table: str, chain: str, st: WalkState, depth: int = 0) -> list[_Outcome]:
        c = self.rs.chain(table, chain)
        if c is None:
            return [(st, "end")]
        if depth > MAX_DEPTH:
            self.warn(f"{table} {chain}: jumps nest deeper than {MAX_DEPTH} (a loop?); stopped")
            return [(st, "drop")]
        active = [st]
        done: list[_Outcome] = []
        for rule in c.rules:
            if not active:
                break
            nxt: list[WalkState] = []
            for s in active:
                p = self.match_probability(rule, s)
                if p < 1.0:
                    if self.branches > MAX_BRANCHES:
                        self.warn(f"more than {MAX_BRANCHES} branches; the walk was cut short")
                        p = 0.0 if p < 0.5 else 1.0
                    elif p > 0.0:
                        self.branches += 1
                if p < 1.0:
                    nxt.append(replace(s, prob=s.prob * (1.0 - p)))
                if p > 0.0:
                    hit = RuleHit(table, chain, rule.text, rule.comment, self.phase)
                    ms = replace(s, prob=s.prob * p, hits=(*s.hits, hit))
                    for ost, kind in self.apply_target(rule, ms, depth):
                        if kind == "continue":
                            nxt.append(ost)
                        else:
                            done.append((ost, kind))
            active = nxt
        done.extend((s, "end") for s in active)
        return done

    def apply_target(self, rule: Rule, st: WalkState, depth: int) -> list[tuple[WalkState, str]]:
        t = rule.target
        table = rule.table
        if t is None:
            return [(st, "continue")]
        if self.rs.chain(table, t) is not None and t not in ("ACCEPT", "DROP", "RETURN"):
            out: list[tuple[WalkState, str]] = []
            for ost, kind in self.run_chain(table, t, st, depth + 1):
                if kind in ("return", "end"):
                    # A goto returns to the caller of this chain, a jump to the next rule here.
                    out.append((ost, "return" if rule.goto else "continue"))
                else:
                    out.append((ost, kind))
            return out
        if t == "RETURN":
            return [(st, "return")]
        if t == "ACCEPT":
            return [(replace(st, accepted=st.accepted or rule.chain.startswith("KUBE-")), "accept")]
        if t == "DROP":
            return [(st, "drop")]
        if t == "REJECT":
            return [(st, "reject")]
        if t == "DNAT":
            o = rule.target_option("--to-destination")
            ep = parse_to_destination(o.arg) if o is not None else None
            if ep is None:
                self.warn(
                    f"{rule.chain} (line {rule.line}): DNAT without a readable --to-destination"
                )
                return [(st, "accept")]
            if ep.port is None:
                ep = Endpoint(ep.ip, st.dport)
            ns = replace(
                st,
                dnat=st.dnat or ep,
                dst=ep.ip,
                dport=ep.port,
                ctstates=st.ctstates | {"DNAT"},
            )
            return [(ns, "accept")]
        if t == "REDIRECT":
            self.notes.append(
                f"{rule.chain} redirects the packet to a port of its own network namespace"
            )
            # The kernel's choice: 127.0.0.1 for a local process's packet, else the first
            # address of the interface it came in on (here: the first non-loopback one).
            local = self.packet is not None and self.packet.entry == "local"
            own = [a for a in self.node.addresses if not a.startswith("127.")]
            ip = "127.0.0.1" if local or not own else own[0]
            o = rule.target_option("--to-ports")
            try:
                port = int(o.arg.split("-", 1)[0]) if o is not None else st.dport
            except ValueError:
                port = st.dport
            return [
                (
                    replace(
                        st,
                        dst=ip,
                        dport=port,
                        dnat=Endpoint(ip, port),
                        ctstates=st.ctstates | {"DNAT"},
                    ),
                    "accept",
                )
            ]
        if t in ("MASQUERADE", "SNAT"):
            return [(replace(st, masq=True), "accept")]
        if t == "MARK":
            return [(replace(st, mark=self._mark(rule, st.mark)), "continue")]
        if t == "KUBE-MARK-MASQ":
            self.warn("chain KUBE-MARK-MASQ is missing from the dump; assumed to set mark 0x4000")
            return [(replace(st, mark=st.mark | MASQ_MARK), "continue")]
        if t == "KUBE-MARK-DROP":
            self.warn("chain KUBE-MARK-DROP is missing from the dump; assumed to set mark 0x8000")
            return [(replace(st, mark=st.mark | 0x8000), "continue")]
        if t in _NON_TERMINATING:
            return [(st, "continue")]
        self.warn(
            f"{rule.table} {rule.chain} (line {rule.line}) jumps to {t}, which is neither a chain "
            "in the dump nor a known target; assumed to continue"
        )
        return [(st, "continue")]

    def _mark(self, rule: Rule, mark: int) -> int:
        for o in rule.target_options:
            vm = _parse_mark(o.arg) if o.args else None
            if vm is None:
                continue
            v, m = vm
            if o.name == "--set-xmark":
                return ((mark & ~m) ^ v) & 0xFFFFFFFF
            if o.name == "--set-mark":
                return ((mark & ~m) | v) & 0xFFFFFFFF
            if o.name == "--or-mark":
                return mark | v
            if o.name == "--and-mark":
                return mark & v
            if o.name == "--xor-mark":
                return mark ^ v
        self.warn(f"{rule.chain} (line {rule.line}): MARK target without a readable mark")
        return mark

    def run_hook(
        self, table: str, chain: str, st: WalkState, fallback: tuple[str, ...]
    ) -> list[_Outcome]:
        """Run a built-in chain; without one in the dump, run kube-proxy's chains in hook order."""
        c = self.rs.chain(table, chain)
        if c is not None and c.rules:
            outs = self.run_chain(table, chain, st)
            res: list[_Outcome] = []
            for ost, kind in outs:
                if kind in ("return", "end"):
                    pol = (c.policy or "ACCEPT").upper()
                    if pol == "DROP":
                        self.warn(
                            f"{table} {chain} has policy DROP: a packet no rule accepts is dropped "
                            "there (rules outside kube-proxy decide)"
                        )
                        res.append((ost, "drop"))
                    else:
                        res.append((ost, "end"))
                else:
                    res.append((ost, kind))
            return res
        present = [f for f in fallback if self.rs.chain(table, f) is not None]
        if not present:
            return [(st, "end")]
        self.warn(
            f"{table} {chain} is not in the dump (or empty); walked {', '.join(present)} directly"
        )
        states: list[_Outcome] = [(st, "end")]
        for f in present:
            nxt: list[_Outcome] = []
            for s, kind in states:
                if kind != "end":
                    nxt.append((s, kind))
                    continue
                for ost, k in self.run_chain(table, f, s):
                    nxt.append((ost, "end" if k in ("return", "end") else k))
            states = nxt
        return states


def _service_of(hits: tuple[RuleHit, ...]) -> str | None:
    suffixes = (
        " cluster IP",
        " loadbalancer IP",
        " external IP",
        " has no endpoints",
        " has no local endpoints",
        " health check node port",
    )
    for h in hits:
        c = h.comment
        if not c or c.startswith("kubernetes "):
            continue
        if h.chain in ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES"):
            for s in suffixes:
                if c.endswith(s):
                    return c[: -len(s)]
            if " " not in c:
                return c
        if h.chain == "KUBE-PROXY-FIREWALL" and " traffic not accepted" in c:
            return c.split(" traffic not accepted")[0]
    return None


def walk_iptables(
    ruleset: IptablesRuleset,
    packet: Packet,
    node: Node,
    *,
    mode: str = "iptables",
    extra_local: tuple[str, ...] = (),
    post_dnat: tuple[tuple[Endpoint, float], ...] | None = None,
) -> WalkResult:
    """Walk `packet` through nat, filter and nat POSTROUTING of `ruleset`.

    `post_dnat` is used by the IPVS walk: IPVS rewrites the destination between the nat
    pre-routing hook and POSTROUTING, so the caller supplies the real servers with their weights.
    """
    w = _Walker(ruleset, node, extra_local)
    w.packet = packet
    w.warnings.extend(ruleset.warnings)
    init = WalkState.first(packet, "NEW")
    local = packet.entry == "local"
    if "nat" not in ruleset.tables:
        w.warn("the dump has no nat table: no DNAT or masquerade can be explained")
    pre = "OUTPUT" if local else "PREROUTING"
    nat_out = w.run_hook("nat", pre, init, ("KUBE-SERVICES",))
    branches: list[Branch] = []
    survivors: list[WalkState] = []
    for s, kind in nat_out:
        if kind in ("drop", "reject"):
            branches.append(s.branch(kind.upper()))
        else:
            survivors.append(s)
    if post_dnat is not None:
        expanded: list[WalkState] = []
        for s in survivors:
            for ep, weight in post_dnat:
                expanded.append(
                    replace(
                        s,
                        prob=s.prob * weight,
                        dnat=ep,
                        dst=ep.ip,
                        dport=ep.port,
                        ctstates=s.ctstates | {"DNAT"},
                    )
                )
        survivors = expanded
    w.phase = 1
    for s in survivors:
        w.phase = 1
        if local:
            hook = "OUTPUT"
            fallback: tuple[str, ...] = ("KUBE-PROXY-FIREWALL", "KUBE-SERVICES")
        elif w.is_local(s.dst):
            hook = "INPUT"
            fallback = ("KUBE-PROXY-FIREWALL", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES")
        else:
            hook = "FORWARD"
            fallback = (
                "KUBE-PROXY-FIREWALL",
                "KUBE-FORWARD",
                "KUBE-SERVICES",
                "KUBE-EXTERNAL-SERVICES",
            )
        for fs, kind in w.run_hook("filter", hook, s, fallback):
            if kind in ("drop", "reject"):
                branches.append(fs.branch(kind.upper()))
            elif hook == "INPUT":
                branches.append(delivered(fs))
            else:
                w.phase = 2
                post = w.run_hook("nat", "POSTROUTING", fs, ("KUBE-POSTROUTING",))
                branches.append(delivered(fs, (p for p, _k in post)))
    service = None
    for b in branches:
        service = service or _service_of(b.rules)
    return assemble(mode, packet, branches, w.warnings, w.notes, service)
