"""The front door of the rules layer: read a rules file, parse a packet spec, walk the packet.

`load_rules(text)` detects the format by content and parses it; `walk(ruleset, packet, node)`
dispatches to the iptables, nftables or IPVS walker and always returns a `WalkResult`. Pure: the
caller reads the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tracer.errors import InputError, UsageError
from tracer.model import Endpoint
from tracer.rules.detect import detect_format
from tracer.rules.iptables import IptablesRuleset, parse_iptables_save
from tracer.rules.iptables_walk import parse_to_destination, walk_iptables
from tracer.rules.ipvs import IpvsTable, parse_ipvsadm, walk_ipvs
from tracer.rules.model import Entry, Node, Packet, WalkResult, parse_ip
from tracer.rules.nft import NftRuleset, parse_nft_ruleset
from tracer.rules.nft_walk import walk_nft

PACKET_FORM = "'PROTO SRC_IP[:PORT] > DST_IP:PORT', e.g. 'tcp 10.244.1.7:53700 > 10.96.0.100:80'"
_PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class Rules:
    """One parsed rules file (exactly one of the three fields is set).

    `families` are the IP versions the rules apply to (empty when the dump does not tell)."""

    format: str
    iptables: IptablesRuleset | None = None
    nft: NftRuleset | None = None
    ipvs: IpvsTable | None = None
    families: frozenset[int] = frozenset()


def load_rules(text: str, *, source: str = "<rules>") -> Rules:
    """Parse the text of an `iptables-save`, `nft list ruleset` or `ipvsadm -Ln` dump."""
    fmt = detect_format(text)
    if fmt == "iptables":
        ipt = parse_iptables_save(text, source=source)
        return Rules(fmt, iptables=ipt, families=_iptables_families(ipt))
    if fmt == "nft":
        nft = parse_nft_ruleset(text, source=source)
        return Rules(fmt, nft=nft, families=_nft_families(nft))
    if fmt == "ipvs":
        ipvs = parse_ipvsadm(text, source=source)
        return Rules(fmt, ipvs=ipvs, families=_ipvs_families(ipvs))
    raise InputError(
        f"{source} holds conntrack entries, not rules",
        hint="give the node's `iptables-save`, `nft list ruleset` or `ipvsadm -Ln` output",
    )


_ENDPOINT = re.compile(
    r"^(?:\[(?P<ip6>[0-9a-fA-F:.]+)\]|(?P<ip>[0-9.]+|[0-9a-fA-F:]*:[0-9a-fA-F:.]*))(?::(?P<port>\d+))?$"
)


def _endpoint(text: str, *, need_port: bool, what: str) -> Endpoint:
    m = _ENDPOINT.match(text)
    if m is None:
        raise UsageError(f"--packet: {what} {text!r} is not an address; expected {PACKET_FORM}")
    ip = m.group("ip6") or m.group("ip") or ""
    port_s = m.group("port")
    if m.group("ip") and ":" in ip and port_s is None and not m.group("ip6"):
        pass  # a bare IPv6 address without a port
    if parse_ip(ip) is None:
        raise UsageError(f"--packet: {what} {ip!r} is not an IP address; expected {PACKET_FORM}")
    port = int(port_s) if port_s is not None else None
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"--packet: {what} port {port} is out of range; expected {PACKET_FORM}")
    if need_port and port is None:
        raise UsageError(f"--packet: the destination needs a port; expected {PACKET_FORM}")
    return Endpoint(ip, port)


def parse_packet(spec: str, *, entry: Entry | None = None, node: Node | None = None) -> Packet:
    """`tcp 10.244.1.7:53700 > 10.96.0.100:80` -> Packet; UsageError naming the form otherwise.

    Without `entry`, a source that is one of the node's addresses is locally originated (nat
    OUTPUT); any other source arrives from a pod (nat PREROUTING).
    """
    words = spec.replace(">", " > ").split()
    if len(words) != 4 or words[2] != ">":
        raise UsageError(f"--packet {spec!r} does not parse; expected {PACKET_FORM}")
    proto = words[0].lower()
    if proto not in _PROTOCOLS:
        raise UsageError(
            f"--packet: protocol {words[0]!r} is not one of tcp, udp, sctp; expected {PACKET_FORM}"
        )
    src = _endpoint(words[1], need_port=False, what="source")
    dst = _endpoint(words[3], need_port=True, what="destination")
    if entry is None:
        entry = "local" if node is not None and src.ip in node.addresses else "from_pod"
    return Packet(proto, src, dst, entry)


# --- which IP version a dump is for -------------------------------------------------------------
# iptables-save and ip6tables-save look alike and an IPVS table holds both: the addresses in the
# rules tell. An nft table names its family (ip, ip6, inet).
_ADDRESS_OPTIONS = frozenset({"-s", "-d", "--to-destination", "--to-source"})


def _version(text: str) -> int | None:
    ep = parse_to_destination(text.split("/", 1)[0]) if text else None
    ip = parse_ip(ep.ip) if ep is not None else None
    return ip.version if ip is not None else None


def _iptables_families(rs: IptablesRuleset) -> frozenset[int]:
    found: set[int] = set()
    for table in rs.tables.values():
        for chain in table.chains.values():
            for rule in chain.rules:
                options = [o for m in rule.matches for o in m.options] + list(rule.target_options)
                for o in options:
                    if o.name in _ADDRESS_OPTIONS and (v := _version(o.arg)) is not None:
                        found.add(v)
    return frozenset(found)


def _nft_families(rs: NftRuleset) -> frozenset[int]:
    by_family = {"ip": {4}, "ip6": {6}, "inet": {4, 6}}
    return frozenset(v for t in rs.tables for v in by_family.get(t.family, ()))


def _ipvs_families(table: IpvsTable) -> frozenset[int]:
    return frozenset(
        v
        for s in table.services
        if s.address is not None and (v := _version(s.address.ip)) is not None
    )


def packet_family(packet: Packet) -> int:
    """The packet's IP version; UsageError when its source and destination differ."""
    src, dst = parse_ip(packet.src.ip), parse_ip(packet.dst.ip)
    if src is None or dst is None:
        raise UsageError(f"packet {packet}: not an IP address")
    if src.version != dst.version:
        raise UsageError(
            f"packet {packet}: the source is IPv{src.version} and the destination "
            f"IPv{dst.version}; one packet has one family (kube-proxy never translates between them)"
        )
    return dst.version


def check_family(rules: Rules, packet: Packet, source: str = "the rules") -> None:
    """UsageError when the packet's IP version is not one the rules are for: an IPv6 packet never
    meets iptables-save's rules (ip6tables-save holds them), and the walk must not pretend."""
    family = packet_family(packet)
    if rules.families and family not in rules.families:
        have = "/".join(f"IPv{v}" for v in sorted(rules.families))
        other = {"iptables": "ip6tables-save" if family == 6 else "iptables-save"}.get(
            rules.format, f"the IPv{family} rules"
        )
        raise UsageError(
            f"{source} holds {have} rules; the IPv{family} packet {packet} never meets them",
            hint=f"give the node's IPv{family} rules ({other} output)",
        )


def walk(rules: Rules, packet: Packet, node: Node) -> WalkResult:
    """Walk `packet` through whichever ruleset `rules` holds (UsageError for a packet of another
    IP version than the rules', see `check_family`)."""
    check_family(rules, packet)
    if rules.iptables is not None:
        return walk_iptables(rules.iptables, packet, node)
    if rules.nft is not None:
        return walk_nft(rules.nft, packet, node)
    if rules.ipvs is not None:
        return walk_ipvs(rules.ipvs, packet, node)
    raise InputError("no rules to walk")
