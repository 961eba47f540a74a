"""The nftables proxier's `table ip kube-proxy` (or `ip6` for an IPv6 node's proxier), as an
`nft -f` file. Pure: text out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tracer.lab.kubeproxy.model import (
    Endpoint,
    NodeInfo,
    ProxyOptions,
    Service,
    ServicePort,
    categorize,
)
from tracer.lab.kubeproxy.names import (
    endpoint_string,
    nft_affinity_set,
    nft_endpoint_chain,
    nft_external_chain,
    nft_local_chain,
    nft_service_chain,
    port_name,
)

NFT_TABLE = "kube-proxy"


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
    cluster_eps, local_eps = categorize(svc, node)
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
