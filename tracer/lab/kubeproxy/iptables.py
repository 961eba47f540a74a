"""The iptables proxier's rules: the iptables-restore payload of a full sync, and the hook jump
rules kube-proxy inserts outside it. Pure: text out."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tracer.lab.kubeproxy.model import (
    Endpoint,
    NodeInfo,
    ProxyOptions,
    Service,
    ServicePort,
    categorize,
)
from tracer.lab.kubeproxy.names import (
    chain_line,
    endpoint_string,
    ext_chain,
    fw_chain,
    port_name,
    probability,
    sep_chain,
    svc_chain,
    svl_chain,
)

# Chain names from pkg/proxy/iptables/proxier.go.
KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_FIREWALL = "KUBE-FIREWALL"  # kubelet's; kube-proxy duplicates it for localhost NodePorts


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
    cluster_eps, local_eps = categorize(svc, node)
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
