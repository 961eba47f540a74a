"""The one BPF filter every point of a capture uses: the request's addresses and ports, its
nodePorts, ICMP, and every overlay's encapsulated copies of its packets. Pure.
"""

from __future__ import annotations

import ipaddress

from tracer.capture.targets import Targets
from tracer.pcap.decode import (
    GENEVE_PORT,
    IPPROTO_ESP,
    IPPROTO_GRE,
    IPPROTO_IPIP,
    IPPROTO_IPV6,
    IPSEC_NAT_T_PORT,
    WIREGUARD_PORTS,
)
from tracer.pcap.decode import VXLAN_PORTS as _VXLAN_PORTS

DNS_PORT = 53


def _ip_key(ip: str) -> tuple[int, int]:
    a = ipaddress.ip_address(ip)
    return (a.version, int(a))


def bpf_filter(targets: Targets) -> str:
    """One filter for every point: traffic of the request's addresses and ports, its nodePorts,
    and every overlay's encapsulated copies on a node's uplink (`overlay_filter`)."""
    return filter_plan(targets)[0]


def _request_hosts(targets: Targets) -> tuple[set[str], set[int]]:
    hosts: set[str] = set(targets.extra_ips)
    ports: set[int] = set(targets.extra_ports)
    for s in targets.services:
        hosts.update(s.cluster_ips)
        for p in s.ports:
            ports.add(p.port)
            if p.target_port is not None:
                ports.add(p.target_port)
        hosts.update(e.address for e in s.endpoints)
    for pod in (targets.client, *targets.servers, *targets.ingress_pods):
        if pod is not None and not pod.host_network:
            hosts.add(pod.ip)
    if targets.uses_name and targets.dns is not None:
        hosts.update(targets.dns.cluster_ips)
        hosts.update(p.ip for p in targets.dns_pods)
        ports.add(DNS_PORT)
    return hosts, ports


def filter_plan(targets: Targets) -> tuple[str, tuple[str, ...]]:
    """The filter and what the user should know about it (warnings)."""
    hosts, ports = _request_hosts(targets)
    node_ports = sorted(
        {p.node_port for s in targets.services for p in s.ports if p.node_port is not None}
    )
    terms = []
    if hosts:
        host_expr = " or ".join(f"host {h}" for h in sorted(hosts, key=_ip_key))
        if ports:
            # ICMP stays in: "port unreachable" and "fragmentation needed" explain failures.
            port_expr = " or ".join([*(f"port {p}" for p in sorted(ports)), "icmp", "icmp6"])
            terms.append(f"(({host_expr}) and ({port_expr}))")
        else:
            terms.append(f"({host_expr})")
    if node_ports:
        terms.append("(" + " or ".join(f"tcp port {p} or udp port {p}" for p in node_ports) + ")")
    overlay, warnings = overlay_filter(sorted(hosts, key=_ip_key))
    terms.append(overlay)
    return " or ".join(terms), warnings


# ---------------------------------------------------------------------------------------------
# Overlays. Each encapsulation's outer header is matched by protocol or port, and its inner packet
# on the request's addresses by fixed byte offsets where the headers have their usual layout (an
# IPv4 outer header of 20 bytes, an IPv6 one without extension headers, Geneve without options,
# GRE without checksum or sequence number). Offsets that depend on packet bytes cost the kernel's
# filter many instructions per comparison; a packet with any other layout is kept whole.
# Encrypted tunnels (WireGuard, ESP) hide the inner packet: they are kept whole, and the analysis
# matches their hops by timing and size.

# VXLAN: 8472 is the Linux (flannel, Cilium) default, 4789 the IANA one (Calico VXLAN); Geneve:
# OVN-Kubernetes, Antrea, Cilium in Geneve mode; IP-in-IP: Calico, flannel's ipip backend.
VXLAN_PORTS = tuple(sorted(_VXLAN_PORTS))
ETH_P_IP, ETH_P_IPV6, ETH_P_TEB = 0x0800, 0x86DD, 0x6558
# Past this many 32-bit address comparisons per encapsulation the program could exceed what the
# kernel accepts (4096 instructions): the overlays are then kept whole.
MAX_INNER_WORDS = 88


def _words(ip: str) -> list[str]:
    """The address as 32-bit hex words, the way a BPF load of 4 bytes sees it."""
    packed = ipaddress.ip_address(ip).packed
    return [f"0x{packed[i : i + 4].hex()}" for i in range(0, len(packed), 4)]


def _inner_ip(acc: str, at: int, hosts: list[str], versions: tuple[int, ...] = (4, 6)) -> str:
    """An IP packet at byte `at` of `acc` (ip or ip6) from or to one of `hosts` (of the IP
    `versions` the encapsulation carries); "" when it can carry none of them."""
    v4 = [h for h in hosts if ipaddress.ip_address(h).version == 4] if 4 in versions else []
    v6 = [h for h in hosts if ipaddress.ip_address(h).version == 6] if 6 in versions else []
    alts = []
    if v4:
        eq = [f"{acc}[{at + off}:4] = {_words(h)[0]}" for h in v4 for off in (12, 16)]
        alts.append(f"({acc}[{at}] & 0xf0 = 0x40 and ({' or '.join(eq)}))")
    if v6:
        eq = [
            "("
            + " and ".join(f"{acc}[{at + base + 4 * i}:4] = {w}" for i, w in enumerate(_words(h)))
            + ")"
            for h in v6
            for base in (8, 24)
        ]
        alts.append(f"({acc}[{at}] & 0xf0 = 0x60 and ({' or '.join(eq)}))")
    return "(" + " or ".join(alts) + ")" if alts else ""


def _inner_frame(acc: str, at: int, hosts: list[str]) -> str:
    """An Ethernet frame at byte `at` whose IP packet is from or to one of `hosts`."""
    et = f"{acc}[{at + 12}:2]"
    return f"(({et} = {ETH_P_IP:#06x} or {et} = {ETH_P_IPV6:#06x}) and {_inner_ip(acc, at + 14, hosts)})"


def _tunnels(acc: str, hl: int, hosts: list[str]) -> list[str]:
    """Every encapsulation under an outer header of `hl` bytes read through `acc`: each term is
    "this tunnel, and either not its usual layout or an inner packet of the request"."""
    proto = "ip proto" if acc == "ip" else "ip6 proto"
    udp = "ip6[6] = 17" if acc == "ip6" else "ip proto 17"
    vxlan_ports = " or ".join(f"udp port {p}" for p in VXLAN_PORTS)
    u = hl + 8  # the UDP payload
    # Geneve: its first byte's low 6 bits are the options' length; its protocol type says
    # whether an Ethernet frame or an IP packet follows.
    gen_proto = f"{acc}[{u + 2}:2]"
    geneve = (
        f"({acc}[{u}] & 0x3f != 0 or ({gen_proto} = {ETH_P_TEB:#06x} and "
        f"{_inner_frame(acc, u + 8, hosts)}) or (({gen_proto} = {ETH_P_IP:#06x} or "
        f"{gen_proto} = {ETH_P_IPV6:#06x}) and {_inner_ip(acc, u + 8, hosts)}))"
    )
    # GRE (RFC 2784/2890): 4 bytes, 8 with a key (NVGRE, ERSPAN); the checksum and sequence
    # number bits (0x80, 0x10) make any other layout.
    gre = []
    for flags, length in ((0x00, 4), (0x20, 8)):
        gp = f"{acc}[{hl + 2}:2]"
        gre.append(
            f"({acc}[{hl}] & 0xb0 = {flags:#04x} and ((({gp} = {ETH_P_IP:#06x} or "
            f"{gp} = {ETH_P_IPV6:#06x}) and {_inner_ip(acc, hl + length, hosts)}) or "
            f"({gp} = {ETH_P_TEB:#06x} and {_inner_frame(acc, hl + length, hosts)})))"
        )
    gre_other = f"({acc}[{hl}] & 0xb0 != 0x00 and {acc}[{hl}] & 0xb0 != 0x20)"
    terms = [
        f"({udp} and ({vxlan_ports}) and {_inner_frame(acc, u + 8, hosts)})",
        f"({udp} and udp port {GENEVE_PORT} and {geneve})",
        f"({proto} {IPPROTO_GRE} and ({gre_other} or {' or '.join(gre)}))",
    ]
    for ipproto, version in ((IPPROTO_IPIP, 4), (IPPROTO_IPV6, 6)):
        inner = _inner_ip(acc, hl, hosts, (version,))
        if inner:
            terms.append(f"({proto} {ipproto} and {inner})")
    return terms


def _whole_tunnels() -> str:
    ports = " or ".join(f"udp port {p}" for p in (*VXLAN_PORTS, GENEVE_PORT))
    protos = " or ".join(
        f"{f} proto {p}" for f in ("ip", "ip6") for p in (IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_GRE)
    )
    return f"({ports} or {protos})"


def _encrypted() -> str:
    wg = " or ".join(f"udp port {p}" for p in WIREGUARD_PORTS)
    return f"({wg} or udp port {IPSEC_NAT_T_PORT} or ip proto {IPPROTO_ESP} or ip6 proto {IPPROTO_ESP})"


def overlay_filter(hosts: list[str]) -> tuple[str, tuple[str, ...]]:
    """Every overlay's encapsulated copies of the request's packets: VXLAN (4789, 8472),
    Geneve (6081), IP-in-IP (4), 6in4 (41), GRE (47), under an IPv4 or IPv6 outer header,
    filtered on the inner addresses; WireGuard and ESP kept whole (their inner packet is
    encrypted). Returns the filter and warnings."""
    words = sum(2 if ipaddress.ip_address(h).version == 4 else 8 for h in hosts)
    if not hosts:
        return f"{_whole_tunnels()} or {_encrypted()}", ()
    if words > MAX_INNER_WORDS:
        return f"{_whole_tunnels()} or {_encrypted()}", (
            f"{len(hosts)} addresses are too many to filter encapsulated packets on their inner "
            "addresses: every overlay packet is captured",
        )
    # Only the usual IPv4 header (20 bytes, no options) is read at fixed offsets.
    v4 = " or ".join(_tunnels("ip", 20, hosts))
    v6 = " or ".join(_tunnels("ip6", 40, hosts))
    v4_other = f"(ip[0] != 0x45 and {_whole_tunnels()})"
    return (
        f"(ip and ip[0] = 0x45 and ({v4})) or (ip6 and ({v6})) or {v4_other} or {_encrypted()}",
        (),
    )
