"""kube-proxy's rules, generated the way kube-proxy writes them, from a small model of Services.

Pure: functions take frozen Services and a node description and return text (an iptables-restore
payload, the hook jump rules, an `nft -f` file). Nothing here runs a command or reads a file; the
lab applies the text inside its own namespaces.

The iptables output follows the iptables proxier's `syncProxyRules` line for line (chain
declarations, then rules, in the order the proxier writes them; comments quoted exactly where the
proxier quotes them); the nftables output follows the nftables proxier's base rules and per-service
chains. Services are processed in the order of their port names, where kube-proxy iterates a map.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Chain names from pkg/proxy/iptables/proxier.go.
KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_FIREWALL = "KUBE-FIREWALL"  # kubelet's; kube-proxy duplicates it for localhost NodePorts

NFT_TABLE = "kube-proxy"


@dataclass(frozen=True)
class ServicePort:
    """One port of a Service (`spec.ports[]`)."""

    port: int
    target_port: int
    protocol: str = "TCP"
    name: str = ""
    node_port: int | None = None

    @property
    def proto(self) -> str:
        """The protocol as iptables and nft spell it (lower case)."""
        return self.protocol.lower()


@dataclass(frozen=True)
class Endpoint:
    """One endpoint address of a Service (EndpointSlice `endpoints[]`)."""

    ip: str
    node: str | None = None
    ready: bool = True
    pod: str | None = None


@dataclass(frozen=True)
class Service:
    """The parts of a Service (and its EndpointSlices) that kube-proxy turns into rules."""

    namespace: str
    name: str
    cluster_ip: str
    ports: tuple[ServicePort, ...]
    endpoints: tuple[Endpoint, ...] = ()
    external_traffic_policy: str = "Cluster"  # Cluster | Local
    session_affinity: str = "None"  # None | ClientIP
    affinity_timeout: int = 10800
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()

    @property
    def external_local(self) -> bool:
        return self.external_traffic_policy == "Local"

    def ready_endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.ready)

    @property
    def externally_accessible(self) -> bool:
        return bool(
            self.external_ips or self.load_balancer_ips or any(p.node_port for p in self.ports)
        )


@dataclass(frozen=True)
class NodeInfo:
    """The node kube-proxy runs on."""

    name: str
    ips: tuple[str, ...]
    pod_cidr: str
    cluster_cidr: str
    service_cidr: str = "10.96.0.0/12"

    @property
    def ipv6(self) -> bool:
        """The family of this proxier: a dual-stack node runs one per family."""
        return ":" in self.service_cidr


@dataclass(frozen=True)
class ProxyOptions:
    """kube-proxy flags and machine capabilities that change the rule text."""

    masquerade_bit: int = 14
    random_fully: bool = True  # HasRandomFully(): iptables >= 1.6.2
    localhost_nodeports: bool = True  # --iptables-localhost-nodeports (default true)
    nfacct: bool = False  # nfacct counters present (recent releases, with nfnetlink_acct)
    masquerade_all: bool = False
    conntrack_tcp_liberal: bool = False

    @property
    def mark(self) -> str:
        return f"{1 << self.masquerade_bit:#x}"


@dataclass(frozen=True)
class JumpRule:
    """A hook rule kube-proxy adds with `iptables -I` (EnsureRule Prepend), outside the payload."""

    table: str
    chain: str
    target: str
    comment: str
    extra: tuple[str, ...] = field(default=())

    def args(self) -> list[str]:
        """The rule's arguments, in the order kube-proxy passes them."""
        out = list(self.extra)
        if self.comment:
            out += ["-m", "comment", "--comment", self.comment]
        return [*out, "-j", self.target]

    def render(self) -> str:
        """The rule as `-A CHAIN ...` text, with the comment quoted as iptables-save shows it."""
        words = list(self.extra)
        if self.comment:
            words += ["-m", "comment", "--comment", f'"{self.comment}"']
        return " ".join(["-A", self.chain, *words, "-j", self.target])


# iptablesJumpChains then iptablesKubeletJumpChains, in kube-proxy's order.
_NEW = ("-m", "conntrack", "--ctstate", "NEW")
JUMP_RULES: tuple[JumpRule, ...] = (
    JumpRule(
        "filter",
        "INPUT",
        KUBE_EXTERNAL_SERVICES,
        "kubernetes externally-visible service portals",
        _NEW,
    ),
    JumpRule(
        "filter",
        "FORWARD",
        KUBE_EXTERNAL_SERVICES,
        "kubernetes externally-visible service portals",
        _NEW,
    ),
    JumpRule("filter", "INPUT", KUBE_NODEPORTS, "kubernetes health check service ports"),
    JumpRule("filter", "FORWARD", KUBE_SERVICES, "kubernetes service portals", _NEW),
    JumpRule("filter", "OUTPUT", KUBE_SERVICES, "kubernetes service portals", _NEW),
    JumpRule("filter", "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules"),
    JumpRule("filter", "INPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    JumpRule("filter", "OUTPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    JumpRule("filter", "FORWARD", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    JumpRule("nat", "OUTPUT", KUBE_SERVICES, "kubernetes service portals"),
    JumpRule("nat", "PREROUTING", KUBE_SERVICES, "kubernetes service portals"),
    JumpRule("nat", "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules"),
    JumpRule("filter", "INPUT", KUBE_FIREWALL, ""),
    JumpRule("filter", "OUTPUT", KUBE_FIREWALL, ""),
)


def jump_rules(opts: ProxyOptions | None = None, *, ipv6: bool = False) -> tuple[JumpRule, ...]:
    """The hook rules; KUBE-FIREWALL's only when kube-proxy writes that chain (IPv4, localhost
    NodePorts on)."""
    opts = opts or ProxyOptions()
    if opts.localhost_nodeports and not ipv6:
        return JUMP_RULES
    return tuple(j for j in JUMP_RULES if j.target != KUBE_FIREWALL)


# ---------------------------------------------------------------------------------------------
# Names


def _b32(s: str) -> str:
    return base64.b32encode(hashlib.sha256(s.encode()).digest()).decode()


def port_name(svc: Service, port: ServicePort) -> str:
    """`ns/name:port`, or `ns/name` for an unnamed port (ServicePortName.String())."""
    base = f"{svc.namespace}/{svc.name}"
    return f"{base}:{port.name}" if port.name else base


def endpoint_string(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _port_hash(svc: Service, port: ServicePort) -> str:
    return _b32(port_name(svc, port) + port.proto)[:16]


def svc_chain(svc: Service, port: ServicePort) -> str:
    return "KUBE-SVC-" + _port_hash(svc, port)


def svl_chain(svc: Service, port: ServicePort) -> str:
    return "KUBE-SVL-" + _port_hash(svc, port)


def ext_chain(svc: Service, port: ServicePort) -> str:
    return "KUBE-EXT-" + _port_hash(svc, port)


def fw_chain(svc: Service, port: ServicePort) -> str:
    return "KUBE-FW-" + _port_hash(svc, port)


def sep_chain(svc: Service, port: ServicePort, ep_ip: str) -> str:
    ep = endpoint_string(ep_ip, port.target_port)
    return "KUBE-SEP-" + _b32(port_name(svc, port) + port.proto + ep)[:16]


def nft_port_base(svc: Service, port: ServicePort) -> str:
    """`ns/name/proto/portname`: the nftables proxier's per-port name."""
    return f"{svc.namespace}/{svc.name}/{port.proto}/{port.name}"


def nft_hashed(prefix: str, base: str) -> str:
    return f"{prefix}-{_b32(base)[:8]}-{base}"


def nft_service_chain(svc: Service, port: ServicePort) -> str:
    return nft_hashed("service", nft_port_base(svc, port))


def nft_local_chain(svc: Service, port: ServicePort) -> str:
    return nft_hashed("local", nft_port_base(svc, port))


def nft_external_chain(svc: Service, port: ServicePort) -> str:
    return nft_hashed("external", nft_port_base(svc, port))


def nft_endpoint_base(svc: Service, port: ServicePort, ep_ip: str) -> str:
    # servicePortEndpointChainNameBase: an IPv6 address's colons (not allowed in a chain name)
    # become dots.
    return f"{nft_port_base(svc, port)}__{ep_ip.replace(':', '.')}/{port.target_port}"


def nft_endpoint_chain(svc: Service, port: ServicePort, ep_ip: str) -> str:
    return nft_hashed("endpoint", nft_endpoint_base(svc, port, ep_ip))


def nft_affinity_set(svc: Service, port: ServicePort, ep_ip: str) -> str:
    return nft_hashed("affinity", nft_endpoint_base(svc, port, ep_ip))


def probability(n: int) -> str:
    """computeProbability: the conditional probability for the first of `n` remaining rules."""
    return f"{1.0 / n:0.10f}"


def chain_line(chain: str) -> str:
    return f":{chain} - [0:0]"


# ---------------------------------------------------------------------------------------------
# iptables


def _categorize(svc: Service, node: NodeInfo) -> tuple[list[Endpoint], list[Endpoint]]:
    """(cluster endpoints, local endpoints), as proxy.CategorizeEndpoints with ready endpoints."""
    ready = list(svc.ready_endpoints())
    return ready, [e for e in ready if e.node == node.name]


def _write_service_to_endpoints(
    rules: list[str], svc: Service, port: ServicePort, chain: str, eps: Sequence[Endpoint]
) -> None:
    spn = port_name(svc, port)
    if svc.session_affinity == "ClientIP":
        for ep in eps:
            sep = sep_chain(svc, port, ep.ip)
            comment = f'"{spn} -> {endpoint_string(ep.ip, port.target_port)}"'
            rules.append(
                f"-A {chain} -m comment --comment {comment} -m recent --name {sep} "
                f"--rcheck --seconds {svc.affinity_timeout} --reap -j {sep}"
            )
    n = len(eps)
    for i, ep in enumerate(eps):
        sep = sep_chain(svc, port, ep.ip)
        comment = f'"{spn} -> {endpoint_string(ep.ip, port.target_port)}"'
        stat = (
            f" -m statistic --mode random --probability {probability(n - i)}" if i < n - 1 else ""
        )
        rules.append(f"-A {chain} -m comment --comment {comment}{stat} -j {sep}")


def iptables_restore(
    services: Iterable[Service], node: NodeInfo, opts: ProxyOptions | None = None
) -> str:
    """The iptables-restore payload (filter then nat) kube-proxy writes on a full sync."""
    opts = opts or ProxyOptions()
    mark = opts.mark
    filter_chains = [
        chain_line(c)
        for c in (
            KUBE_SERVICES,
            KUBE_EXTERNAL_SERVICES,
            KUBE_FORWARD,
            KUBE_NODEPORTS,
            KUBE_PROXY_FIREWALL,
        )
    ]
    filter_rules: list[str] = []
    nat_chains = [
        chain_line(c) for c in (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ)
    ]
    nat_rules = [
        f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
        f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}",
        f'-A {KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE" + (" --random-fully" if opts.random_fully else ""),
        f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}",
    ]
    v6 = node.ipv6
    if opts.localhost_nodeports and not v6:
        # IPv4 only: localhost NodePorts never work over IPv6 (the proxier checks !isIPv6).
        filter_chains.append(chain_line(KUBE_FIREWALL))
        filter_rules.append(
            f'-A {KUBE_FIREWALL} -m comment --comment "block incoming localnet connections" '
            "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT "
            "-j DROP"
        )

    ports = sorted(
        ((svc, p) for svc in services for p in svc.ports),
        key=lambda sp: port_name(sp[0], sp[1]) + sp[1].proto,
    )
    for svc, port in ports:
        _service_rules(svc, port, node, opts, filter_rules, nat_chains, nat_rules)

    nodeports_dest = "-m addrtype --dst-type LOCAL"
    if v6:
        nodeports_dest += " ! -d ::1/128"
    elif not opts.localhost_nodeports:
        nodeports_dest += " ! -d 127.0.0.0/8"
    nat_rules.append(
        f"-A {KUBE_SERVICES} -m comment --comment "
        '"kubernetes service nodeports; NOTE: this must be the last rule in this chain" '
        f"{nodeports_dest} -j {KUBE_NODEPORTS}"
    )
    if not opts.conntrack_tcp_liberal:
        acct = " -m nfacct --nfacct-name ct_state_invalid_dropped_pkts" if opts.nfacct else ""
        filter_rules.append(f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID{acct} -j DROP")
    filter_rules.append(
        f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" '
        f"-m mark --mark {mark}/{mark} -j ACCEPT"
    )
    filter_rules.append(
        f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    )
    lines = ["*filter", *filter_chains, *filter_rules, "COMMIT"]
    lines += ["*nat", *nat_chains, *nat_rules, "COMMIT"]
    return "\n".join(lines) + "\n"


def _service_rules(
    svc: Service,
    port: ServicePort,
    node: NodeInfo,
    opts: ProxyOptions,
    filter_rules: list[str],
    nat_chains: list[str],
    nat_rules: list[str],
) -> None:
    """One service port's rules, in syncProxyRules' order."""
    p = port.proto
    spn = port_name(svc, port)
    cluster_eps, local_eps = _categorize(svc, node)
    has_endpoints = bool(cluster_eps)
    svc_c, svl_c, ext_c, fw_c = (
        svc_chain(svc, port),
        svl_chain(svc, port),
        ext_chain(svc, port),
        fw_chain(svc, port),
    )
    uses_cluster_chain = bool(cluster_eps)  # internalTrafficPolicy is always Cluster here
    uses_local_chain = bool(local_eps) and svc.external_local
    has_internal = has_endpoints
    has_external = has_endpoints and (not svc.external_local or bool(local_eps))
    external_policy_chain = svl_c if svc.external_local else svc_c
    uses_ext_chain = has_endpoints and svc.externally_accessible
    uses_fw = (
        has_endpoints and bool(svc.load_balancer_ips) and bool(svc.load_balancer_source_ranges)
    )
    lb_chain = fw_c if uses_fw else ext_c
    if not has_endpoints:
        int_target, int_comment = "REJECT", f'"{spn} has no endpoints"'
        ext_target, ext_comment = int_target, int_comment
    else:
        int_target, int_comment = "", ""
        ext_target, ext_comment = "DROP", f'"{spn} has no local endpoints"'
    match = f"-m {p} -p {p}"

    if has_internal:
        nat_rules.append(
            f'-A {KUBE_SERVICES} -m comment --comment "{spn} cluster IP" {match} '
            f"-d {svc.cluster_ip} --dport {port.port} -j {svc_c}"
        )
    else:
        filter_rules.append(
            f"-A {KUBE_SERVICES} -m comment --comment {int_comment} {match} "
            f"-d {svc.cluster_ip} --dport {port.port} -j {int_target}"
        )
    for eip in svc.external_ips:
        if has_endpoints:
            nat_rules.append(
                f'-A {KUBE_SERVICES} -m comment --comment "{spn} external IP" {match} '
                f"-d {eip} --dport {port.port} -j {ext_c}"
            )
        if not has_external:
            filter_rules.append(
                f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} {match} "
                f"-d {eip} --dport {port.port} -j {ext_target}"
            )
    for lbip in svc.load_balancer_ips:
        if has_endpoints:
            nat_rules.append(
                f'-A {KUBE_SERVICES} -m comment --comment "{spn} loadbalancer IP" {match} '
                f"-d {lbip} --dport {port.port} -j {lb_chain}"
            )
        if uses_fw:
            filter_rules.append(
                f"-A {KUBE_PROXY_FIREWALL} -m comment --comment "
                f'"{spn} traffic not accepted by {fw_c}" {match} '
                f"-d {lbip} --dport {port.port} -j DROP"
            )
    if not has_external:
        for lbip in svc.load_balancer_ips:
            filter_rules.append(
                f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} {match} "
                f"-d {lbip} --dport {port.port} -j {ext_target}"
            )
    if port.node_port:
        if has_endpoints:
            if opts.localhost_nodeports and opts.nfacct and not node.ipv6:
                nat_rules.append(
                    f"-A {KUBE_NODEPORTS} -m comment --comment {spn} {match} -d 127.0.0.0/8 "
                    f"--dport {port.node_port} -m nfacct --nfacct-name "
                    f"localhost_nodeport_accepted_packets -j {ext_c}"
                )
            nat_rules.append(
                f"-A {KUBE_NODEPORTS} -m comment --comment {spn} {match} "
                f"--dport {port.node_port} -j {ext_c}"
            )
        if not has_external:
            filter_rules.append(
                f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} "
                f"-m addrtype --dst-type LOCAL {match} --dport {port.node_port} -j {ext_target}"
            )

    cluster_cidr = node.cluster_cidr
    if has_internal:
        head = (
            f'-A {svc_c} -m comment --comment "{spn} cluster IP" {match} '
            f"-d {svc.cluster_ip} --dport {port.port}"
        )
        if opts.masquerade_all:
            nat_rules.append(f"{head} -j {KUBE_MARK_MASQ}")
        else:
            nat_rules.append(f"{head} ! -s {cluster_cidr} -j {KUBE_MARK_MASQ}")

    if uses_ext_chain:
        nat_chains.append(chain_line(ext_c))
        if not svc.external_local:
            nat_rules.append(
                f'-A {ext_c} -m comment --comment "masquerade traffic for {spn} external '
                f'destinations" -j {KUBE_MARK_MASQ}'
            )
        else:
            nat_rules.append(
                f'-A {ext_c} -m comment --comment "pod traffic for {spn} external destinations" '
                f"-s {cluster_cidr} -j {svc_c}"
            )
            nat_rules.append(
                f'-A {ext_c} -m comment --comment "masquerade LOCAL traffic for {spn} external '
                f'destinations" -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}'
            )
            nat_rules.append(
                f'-A {ext_c} -m comment --comment "route LOCAL traffic for {spn} external '
                f'destinations" -m addrtype --src-type LOCAL -j {svc_c}'
            )
        if has_external:
            nat_rules.append(f"-A {ext_c} -j {external_policy_chain}")

    if uses_fw:
        nat_chains.append(chain_line(fw_c))
        for cidr in svc.load_balancer_source_ranges:
            nat_rules.append(
                f'-A {fw_c} -m comment --comment "{spn} loadbalancer IP" -s {cidr} -j {ext_c}'
            )
        if any(
            ipaddress.ip_address(ip) in ipaddress.ip_network(c, strict=False)
            for ip in node.ips[:1]
            for c in svc.load_balancer_source_ranges
        ):
            for lbip in svc.load_balancer_ips:
                nat_rules.append(
                    f'-A {fw_c} -m comment --comment "{spn} loadbalancer IP" -s {lbip} -j {ext_c}'
                )
        nat_rules.append(
            f'-A {fw_c} -m comment --comment "other traffic to {spn} will be dropped by '
            f'KUBE-PROXY-FIREWALL"'
        )

    if uses_cluster_chain:
        nat_chains.append(chain_line(svc_c))
        _write_service_to_endpoints(nat_rules, svc, port, svc_c, cluster_eps)
    if uses_local_chain:
        nat_chains.append(chain_line(svl_c))
        _write_service_to_endpoints(nat_rules, svc, port, svl_c, local_eps)

    # allLocallyReachableEndpoints: the cluster endpoints (a superset of the local ones here).
    for ep in cluster_eps if uses_cluster_chain else local_eps:
        sep = sep_chain(svc, port, ep.ip)
        nat_chains.append(chain_line(sep))
        nat_rules.append(f"-A {sep} -m comment --comment {spn} -s {ep.ip} -j {KUBE_MARK_MASQ}")
        recent = f" -m recent --name {sep} --set" if svc.session_affinity == "ClientIP" else ""
        nat_rules.append(
            f"-A {sep} -m comment --comment {spn}{recent} {match} -j DNAT "
            f"--to-destination {endpoint_string(ep.ip, port.target_port)}"
        )


# ---------------------------------------------------------------------------------------------
# nftables


def nft_ruleset(
    services: Iterable[Service], node: NodeInfo, opts: ProxyOptions | None = None
) -> str:
    """An `nft -f` file creating kube-proxy's `table ip kube-proxy` as the nftables proxier does
    (`table ip6 kube-proxy`, `ipv6_addr` sets and `ip6` matches for an IPv6 node's proxier).

    Starts by creating and deleting the table so that the file replaces any earlier sync.
    """
    opts = opts or ProxyOptions()
    t = f"ip {NFT_TABLE}"
    mark = opts.mark
    out: list[str] = [
        f"add table {t}",
        f"delete table {t}",
        f'add table {t} {{ comment "rules for kube-proxy" ; }}',
        f"add chain {t} mark-for-masquerade",
        f"add rule {t} mark-for-masquerade mark set mark or {mark}",
        f"add chain {t} masquerading",
        f"add rule {t} masquerading mark and {mark} == 0 return",
        f"add rule {t} masquerading mark set mark xor {mark}",
        f"add rule {t} masquerading masquerade" + (" fully-random" if opts.random_fully else ""),
        f'add set {t} cluster-ips {{ type ipv4_addr ; comment "Active ClusterIPs" ; }}',
        f'add set {t} nodeport-ips {{ type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }}',
        f"add map {t} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; "
        'comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }',
        f"add map {t} service-nodeports {{ type inet_proto . inet_service : verdict ; "
        'comment "NodePort traffic" ; }',
        f"add map {t} firewall-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; "
        'comment "destinations that are subject to LoadBalancerSourceRanges" ; }',
        f"add map {t} no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict ; "
        'comment "vmap to drop or reject packets to services with no endpoints" ; }',
        f"add map {t} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict ; "
        'comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }',
        f'add chain {t} reject-chain {{ comment "helper for @no-endpoint-services / '
        '@no-endpoint-nodeports" ; }',
        f"add rule {t} reject-chain reject",
        f"add chain {t} services",
        f"add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips",
        f"add rule {t} services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
        f"add chain {t} firewall-check",
        f"add rule {t} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
        f"add chain {t} service-endpoints-check",
        f"add rule {t} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
        f"add chain {t} nodeport-endpoints-check",
        f"add rule {t} nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports",
        f"add chain {t} cluster-ips-check",
        f'add rule {t} cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"',
        f'add rule {t} cluster-ips-check ip daddr {{ {node.service_cidr} }} drop comment "Drop traffic to unallocated ClusterIPs"',
        f"add chain {t} filter-prerouting-pre-dnat {{ type filter hook prerouting priority -110 ; }}",
        f"add rule {t} filter-prerouting-pre-dnat ct state new jump firewall-check",
        f"add chain {t} filter-output-pre-dnat {{ type filter hook output priority -110 ; }}",
        f"add rule {t} filter-output-pre-dnat ct state new jump firewall-check",
        f"add chain {t} filter-input {{ type filter hook input priority 0 ; }}",
        f"add rule {t} filter-input ct state new jump nodeport-endpoints-check",
        f"add rule {t} filter-input ct state new jump service-endpoints-check",
        f"add chain {t} filter-forward {{ type filter hook forward priority 0 ; }}",
        f"add rule {t} filter-forward ct state new jump service-endpoints-check",
        f"add rule {t} filter-forward ct state new jump cluster-ips-check",
        f"add chain {t} filter-output {{ type filter hook output priority 0 ; }}",
        f"add rule {t} filter-output ct state new jump service-endpoints-check",
        f"add rule {t} filter-output ct state new jump cluster-ips-check",
        f"add chain {t} nat-prerouting {{ type nat hook prerouting priority -100 ; }}",
        f"add rule {t} nat-prerouting jump services",
        f"add chain {t} nat-output {{ type nat hook output priority -100 ; }}",
        f"add rule {t} nat-output jump services",
        f"add chain {t} nat-postrouting {{ type nat hook postrouting priority 100 ; }}",
        f"add rule {t} nat-postrouting jump masquerading",
    ]
    for ip in node.ips:
        out.append(f"add element {t} nodeport-ips {{ {ip} }}")
    ports = sorted(
        ((svc, p) for svc in services for p in svc.ports),
        key=lambda sp: port_name(sp[0], sp[1]) + sp[1].proto,
    )
    for svc, port in ports:
        out += _nft_service(t, svc, port, node)
    # Objects before anything that refers to them: nft resolves `goto CHAIN` and `@SET` when the
    # line is parsed, so every declaration comes first (as knftables writes a transaction).
    tables = [line for line in out if " table " in line.split("{")[0]]
    decls = [line for line in out if line.startswith(("add chain", "add set", "add map"))]
    rest = [line for line in out if line not in tables and line not in decls]
    lines = [*tables, *decls, *rest]
    if node.ipv6:
        lines = [_nft_ip6(line) for line in lines]
    return "\n".join(lines) + "\n"


# The nftables proxier writes the same objects for IPv6 with ipX = "ip6", ipvX_addr = "ipv6_addr".
_NFT_V6 = (
    (f" ip {NFT_TABLE}", f" ip6 {NFT_TABLE}"),
    ("ipv4_addr", "ipv6_addr"),
    (" ip daddr ", " ip6 daddr "),
    (" ip saddr ", " ip6 saddr "),
    ("{ ip saddr }", "{ ip6 saddr }"),
)


def _nft_ip6(line: str) -> str:
    for old, new in _NFT_V6:
        line = line.replace(old, new)
    return line


def _nft_dispatch(
    t: str, svc: Service, port: ServicePort, chain: str, eps: Sequence[Endpoint]
) -> list[str]:
    out = [f"add chain {t} {chain}"]
    if svc.session_affinity == "ClientIP":
        for ep in eps:
            aff = nft_affinity_set(svc, port, ep.ip)
            out.append(
                f"add rule {t} {chain} ip saddr @{aff} goto {nft_endpoint_chain(svc, port, ep.ip)}"
            )
    elements = " , ".join(
        f"{i} : goto {nft_endpoint_chain(svc, port, ep.ip)}" for i, ep in enumerate(eps)
    )
    out.append(f"add rule {t} {chain} numgen random mod {len(eps)} vmap {{ {elements} }}")
    return out


def _nft_service(t: str, svc: Service, port: ServicePort, node: NodeInfo) -> list[str]:
    spn = port_name(svc, port)
    p = port.proto
    cluster_eps, local_eps = _categorize(svc, node)
    out: list[str] = []
    service_c = nft_service_chain(svc, port)
    local_c = nft_local_chain(svc, port)
    external_c = nft_external_chain(svc, port)
    out.append(f"add element {t} cluster-ips {{ {svc.cluster_ip} }}")
    if not cluster_eps:
        out.append(
            f"add element {t} no-endpoint-services {{ {svc.cluster_ip} . {p} . {port.port} "
            f'comment "{spn}" : goto reject-chain }}'
        )
        if port.node_port:
            out.append(
                f"add element {t} no-endpoint-nodeports {{ {p} . {port.node_port} "
                f'comment "{spn}" : goto reject-chain }}'
            )
        return out
    out += _nft_dispatch(t, svc, port, service_c, cluster_eps)
    # The masquerade rule goes first in the service chain.
    out.insert(
        2,
        f"add rule {t} {service_c} ip daddr {svc.cluster_ip} ip saddr != {node.cluster_cidr} "
        "jump mark-for-masquerade",
    )
    out.append(
        f"add element {t} service-ips {{ {svc.cluster_ip} . {p} . {port.port} "
        f'comment "{spn}" : goto {service_c} }}'
    )
    if port.node_port:
        out.append(f"add chain {t} {external_c}")
        if not svc.external_local:
            out.append(f"add rule {t} {external_c} jump mark-for-masquerade")
            out.append(f"add rule {t} {external_c} goto {service_c}")
        else:
            out.append(
                f"add rule {t} {external_c} ip saddr {node.cluster_cidr} goto {service_c} "
                'comment "short-circuit pod traffic"'
            )
            out.append(
                f"add rule {t} {external_c} fib saddr type local jump mark-for-masquerade "
                'comment "masquerade local traffic"'
            )
            out.append(
                f"add rule {t} {external_c} fib saddr type local goto {service_c} "
                'comment "short-circuit local traffic"'
            )
            if local_eps:
                out.append(f"add rule {t} {external_c} goto {local_c}")
        out.append(
            f"add element {t} service-nodeports {{ {p} . {port.node_port} "
            f'comment "{spn}" : goto {external_c} }}'
        )
        if svc.external_local:
            if local_eps:
                out += _nft_dispatch(t, svc, port, local_c, local_eps)
            else:
                out.append(
                    f"add element {t} no-endpoint-nodeports {{ {p} . {port.node_port} "
                    f'comment "{spn}" : drop }}'
                )
    for ep in cluster_eps:
        chain = nft_endpoint_chain(svc, port, ep.ip)
        out.append(f"add chain {t} {chain}")
        out.append(f"add rule {t} {chain} ip saddr {ep.ip} jump mark-for-masquerade")
        if svc.session_affinity == "ClientIP":
            aff = nft_affinity_set(svc, port, ep.ip)
            out.insert(
                0,
                f"add set {t} {aff} {{ type ipv4_addr ; flags dynamic,timeout ; "
                f"timeout {svc.affinity_timeout}s ; }}",
            )
            out.append(f"add rule {t} {chain} update @{aff} {{ ip saddr }}")
        out.append(
            f"add rule {t} {chain} meta l4proto {p} dnat to "
            f"{endpoint_string(ep.ip, port.target_port)}"
        )
    return out
