"""Regenerate the rule dumps in tests/rules/data/ from real tools (run as root).

Writes kube-proxy's iptables-restore payload and nftables transaction for a small set of Services
(following kube-proxy's own rule templates; chain names come from the lab's generator,
tracer.lab.kubeproxy, whose hashes are checked against the reference), loads each into a scratch network
namespace with the real `iptables-restore` (nf_tables and legacy backends) and `nft -f`, and saves
what the kernel hands back (`iptables-save`, `iptables-legacy-save`, `nft list ruleset`). The golden
tests read only those dumps. The namespace is deleted on every exit path.

Needs: iproute2, iptables (nft + legacy), nftables, nfacct (the localhost NodePort rules use it).
Usage: python tests/rules/make_data.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script from anywhere: the repository root holds the tracer package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tracer.lab import kubeproxy as kp  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
NETNS = "pt-rules-data"

# The node the dumps belong to (node "a" of the lab cluster).
NODE_IP = "192.168.49.2"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
LOCAL_PREFIX = "10.244.1."  # pods on this node
MASQ = "0x4000"


@dataclass(frozen=True)
class Svc:
    ns: str
    name: str
    port_name: str
    cluster_ip: str
    port: int
    endpoints: tuple[str, ...] = ()  # "ip:port"
    proto: str = "tcp"
    node_port: int = 0
    local: bool = False  # externalTrafficPolicy: Local
    health_node_port: int = 0
    lb_ips: tuple[str, ...] = ()
    source_ranges: tuple[str, ...] = ()
    affinity: int = 0  # ClientIP timeout seconds; 0 = None
    external_ips: tuple[str, ...] = field(default=())

    @property
    def kube(self) -> tuple[kp.Service, kp.ServicePort]:
        """This Service and its one port in the lab generator's model."""
        targets = {int(ep.rsplit(":", 1)[1]) for ep in self.endpoints} or {self.port}
        assert len(targets) == 1, f"{self.name}: endpoints on different ports"
        port = kp.ServicePort(self.port, targets.pop(), self.proto.upper(), self.port_name)
        return kp.Service(self.ns, self.name, self.cluster_ip, (port,)), port

    @property
    def spn(self) -> str:
        return kp.port_name(*self.kube)

    @property
    def local_endpoints(self) -> tuple[str, ...]:
        return tuple(e for e in self.endpoints if e.startswith(LOCAL_PREFIX))


SERVICES: tuple[Svc, ...] = (
    Svc(
        "default",
        "web",
        "http",
        "10.96.0.100",
        80,
        ("10.244.1.10:8080", "10.244.2.11:8080", "10.244.3.12:8080"),
    ),
    Svc("default", "api", "", "10.96.0.101", 443, ("10.244.2.20:8443",)),
    Svc(
        "default",
        "np-cluster",
        "http",
        "10.96.0.102",
        80,
        ("10.244.1.30:80", "10.244.2.31:80"),
        node_port=30080,
    ),
    Svc(
        "default",
        "np-local",
        "http",
        "10.96.0.103",
        80,
        ("10.244.1.40:80", "10.244.2.41:80"),
        node_port=30081,
        local=True,
        health_node_port=32000,
    ),
    Svc(
        "default",
        "np-remote",
        "http",
        "10.96.0.104",
        80,
        ("10.244.2.50:80",),
        node_port=30082,
        local=True,
        health_node_port=32001,
    ),
    Svc(
        "default",
        "sticky",
        "http",
        "10.96.0.105",
        80,
        ("10.244.1.60:80", "10.244.2.61:80"),
        affinity=10800,
    ),
    Svc("default", "empty", "http", "10.96.0.106", 80, ()),
    Svc(
        "default",
        "lb",
        "http",
        "10.96.0.107",
        80,
        ("10.244.2.70:80", "10.244.1.71:80"),
        node_port=30083,
        lb_ips=("172.18.255.10",),
        source_ranges=("203.0.113.0/24",),
    ),
    Svc("kube-system", "kube-dns", "dns", "10.96.0.10", 53, ("10.244.1.2:53",), proto="udp"),
)


def ipt_hash(svc: Svc) -> str:
    return kp.svc_chain(*svc.kube).removeprefix("KUBE-SVC-")


def ipt_sep(svc: Svc, ep: str) -> str:
    service, port = svc.kube
    return kp.sep_chain(service, port, ep.rsplit(":", 1)[0])


def _c(text: str) -> str:
    """Quote a comment the way kube-proxy does: only when it has spaces."""
    return f'"{text}"' if " " in text else text


def iptables_payload(large_cluster: bool = False) -> str:
    """kube-proxy's restore payload (plus the jump rules it installs with EnsureRule)."""
    f_chains = [
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FIREWALL",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
        "KUBE-SERVICES",
        "KUBE-PROXY-CANARY",
    ]
    f: list[str] = [
        "-A INPUT -m conntrack --ctstate NEW -m comment --comment "
        '"kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
        '-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
        "-A INPUT -m conntrack --ctstate NEW -m comment --comment "
        '"kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
        "-A INPUT -j KUBE-FIREWALL",
        "-A FORWARD -m conntrack --ctstate NEW -m comment --comment "
        '"kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
        '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        "-A FORWARD -m conntrack --ctstate NEW -m comment --comment "
        '"kubernetes service portals" -j KUBE-SERVICES',
        "-A FORWARD -m conntrack --ctstate NEW -m comment --comment "
        '"kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
        "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "
        '"kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
        "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "
        '"kubernetes service portals" -j KUBE-SERVICES',
        "-A OUTPUT -j KUBE-FIREWALL",
        "-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "
        '"block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name  "
        "ct_state_invalid_dropped_pkts -j DROP",
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" '
        f"-m mark --mark {MASQ}/{MASQ} -j ACCEPT",
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    n_chains = [
        "KUBE-MARK-MASQ",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-SERVICES",
        "KUBE-PROXY-CANARY",
    ]
    n: list[str] = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ}",
        f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ}/{MASQ} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ}",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
    ]
    tail: list[str] = []
    for s in SERVICES:
        h = ipt_hash(s)
        p = s.proto
        svc, svl, ext, fw = (f"KUBE-{k}-{h}" for k in ("SVC", "SVL", "EXT", "FW"))
        spn = s.spn
        local_eps = s.local_endpoints
        ext_eps = local_eps if s.local else s.endpoints
        externally = bool(s.node_port or s.lb_ips or s.external_ips)
        if not s.endpoints:
            f.append(
                f'-A KUBE-SERVICES -m comment --comment "{spn} has no endpoints" '
                f"-m {p} -p {p} -d {s.cluster_ip} --dport {s.port} -j REJECT"
            )
            continue
        n_chains.append(svc)
        n.append(
            f'-A KUBE-SERVICES -m comment --comment "{spn} cluster IP" -m {p} -p {p} '
            f"-d {s.cluster_ip} --dport {s.port} -j {svc}"
        )
        for lb in s.lb_ips:
            target = fw if s.source_ranges else ext
            n.append(
                f'-A KUBE-SERVICES -m comment --comment "{spn} loadbalancer IP" -m {p} -p {p} '
                f"-d {lb} --dport {s.port} -j {target}"
            )
            if s.source_ranges:
                f.append(
                    f'-A KUBE-PROXY-FIREWALL -m comment --comment "{spn} traffic not accepted by {fw}" '
                    f"-m {p} -p {p} -d {lb} --dport {s.port} -j DROP"
                )
        if s.node_port:
            n.append(
                f"-A KUBE-NODEPORTS -m comment --comment {_c(spn)} -m {p} -p {p} -d 127.0.0.0/8 "
                f"--dport {s.node_port} -m nfacct --nfacct-name  localhost_nps_accepted_pkts -j {ext}"
            )
            n.append(
                f"-A KUBE-NODEPORTS -m comment --comment {_c(spn)} -m {p} -p {p} "
                f"--dport {s.node_port} -j {ext}"
            )
        if s.health_node_port:
            f.append(
                f'-A KUBE-NODEPORTS -m comment --comment "{spn} health check node port" '
                f"-m tcp -p tcp --dport {s.health_node_port} -j ACCEPT"
            )
        if externally and s.local and not local_eps:
            if s.node_port:
                f.append(
                    f'-A KUBE-EXTERNAL-SERVICES -m comment --comment "{spn} has no local endpoints" '
                    f"-m addrtype --dst-type LOCAL -m {p} -p {p} --dport {s.node_port} -j DROP"
                )
        if externally:
            n_chains.append(ext)
            if not s.local:
                n.append(
                    f'-A {ext} -m comment --comment "masquerade traffic for {spn} external destinations" '
                    "-j KUBE-MARK-MASQ"
                )
            else:
                n.append(
                    f'-A {ext} -m comment --comment "pod traffic for {spn} external destinations" '
                    f"-s {CLUSTER_CIDR} -j {svc}"
                )
                n.append(
                    f'-A {ext} -m comment --comment "masquerade LOCAL traffic for {spn} external destinations" '
                    "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"
                )
                n.append(
                    f'-A {ext} -m comment --comment "route LOCAL traffic for {spn} external destinations" '
                    f"-m addrtype --src-type LOCAL -j {svc}"
                )
            if ext_eps:
                n.append(f"-A {ext} -j {svl if s.local else svc}")
        if s.source_ranges:
            n_chains.append(fw)
            for src in s.source_ranges:
                n.append(f'-A {fw} -m comment --comment "{spn} loadbalancer IP" -s {src} -j {ext}')
            n.append(
                f'-A {fw} -m comment --comment "other traffic to {spn} will be dropped by KUBE-PROXY-FIREWALL"'
            )

        def dispatch(chain: str, eps: tuple[str, ...], s: Svc = s, spn: str = spn) -> None:
            if s.affinity:
                for ep in eps:
                    sep = ipt_sep(s, ep)
                    n.append(
                        f'-A {chain} -m comment --comment "{spn} -> {ep}" -m recent --name {sep} '
                        f"--rcheck --seconds {s.affinity} --reap -j {sep}"
                    )
            for i, ep in enumerate(eps):
                sep = ipt_sep(s, ep)
                args = f"-A {chain}"
                if not large_cluster:
                    args += f' -m comment --comment "{spn} -> {ep}"'
                if i < len(eps) - 1:
                    args += (
                        f" -m statistic --mode random --probability {kp.probability(len(eps) - i)}"
                    )
                n.append(f"{args} -j {sep}")

        n.append(
            f'-A {svc} -m comment --comment "{spn} cluster IP" -m {p} -p {p} -d {s.cluster_ip} '
            f"--dport {s.port} ! -s {CLUSTER_CIDR} -j KUBE-MARK-MASQ"
        )
        dispatch(svc, s.endpoints)
        if s.local and local_eps:
            n_chains.append(svl)
            dispatch(svl, local_eps)
        for ep in s.endpoints:
            sep = ipt_sep(s, ep)
            n_chains.append(sep)
            cm = "" if large_cluster else f" -m comment --comment {_c(spn)}"
            tail.append(f"-A {sep}{cm} -s {ep.split(':')[0]} -j KUBE-MARK-MASQ")
            rec = f" -m recent --name {sep} --set" if s.affinity else ""
            tail.append(f"-A {sep}{cm}{rec} -m {p} -p {p} -j DNAT --to-destination {ep}")
    n.append(
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be '
        'the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS'
    )
    out = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    out += [f":{c} - [0:0]" for c in f_chains] + f + ["COMMIT", "*nat"]
    out += [f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")]
    out += [f":{c} - [0:0]" for c in dict.fromkeys(n_chains)] + n + tail + ["COMMIT", ""]
    return "\n".join(out)


def nft_ep(s: Svc, ep: str) -> str:
    service, port = s.kube
    return kp.nft_endpoint_chain(service, port, ep.rsplit(":", 1)[0])


def nft_payload() -> str:
    """kube-proxy's nftables transaction (baseRules + per-service chains and elements)."""
    t = "ip kube-proxy"
    out = [
        f'add table {t} {{ comment "rules for kube-proxy" ; }}',
        f'add set {t} cluster-ips {{ type ipv4_addr ; comment "Active ClusterIPs" ; }}',
        f'add set {t} nodeport-ips {{ type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }}',
        f"add map {t} firewall-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; "
        'comment "destinations that are subject to LoadBalancerSourceRanges" ; }',
        f"add map {t} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict ; "
        'comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }',
        f"add map {t} no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict ; "
        'comment "vmap to drop or reject packets to services with no endpoints" ; }',
        f"add map {t} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; "
        'comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }',
        f"add map {t} service-nodeports {{ type inet_proto . inet_service : verdict ; "
        'comment "NodePort traffic" ; }',
        f"add chain {t} cluster-ips-check",
        f"add chain {t} filter-prerouting-pre-dnat {{ type filter hook prerouting priority -110 ; }}",
        f"add chain {t} filter-output-pre-dnat {{ type filter hook output priority -110 ; }}",
        f"add chain {t} filter-forward {{ type filter hook forward priority 0 ; }}",
        f"add chain {t} filter-input {{ type filter hook input priority 0 ; }}",
        f"add chain {t} filter-output {{ type filter hook output priority 0 ; }}",
        f"add chain {t} firewall-check",
        f"add chain {t} mark-for-masquerade",
        f"add chain {t} masquerading",
        f"add chain {t} nat-output {{ type nat hook output priority -100 ; }}",
        f"add chain {t} nat-postrouting {{ type nat hook postrouting priority 100 ; }}",
        f"add chain {t} nat-prerouting {{ type nat hook prerouting priority -100 ; }}",
        f"add chain {t} nodeport-endpoints-check",
        f'add chain {t} reject-chain {{ comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }}',
        f"add chain {t} services",
        f"add chain {t} service-endpoints-check",
        f'add rule {t} cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"',
        f'add rule {t} cluster-ips-check ip daddr {{ {SERVICE_CIDR} }} drop comment "Drop traffic to unallocated ClusterIPs"',
        f"add rule {t} filter-prerouting-pre-dnat ct state new jump firewall-check",
        f"add rule {t} filter-forward ct state new jump service-endpoints-check",
        f"add rule {t} filter-forward ct state new jump cluster-ips-check",
        f"add rule {t} filter-input ct state new jump nodeport-endpoints-check",
        f"add rule {t} filter-input ct state new jump service-endpoints-check",
        f"add rule {t} filter-output ct state new jump service-endpoints-check",
        f"add rule {t} filter-output-pre-dnat ct state new jump firewall-check",
        f"add rule {t} filter-output ct state new jump cluster-ips-check",
        f"add rule {t} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
        f"add rule {t} mark-for-masquerade mark set mark or {MASQ}",
        f"add rule {t} masquerading mark and {MASQ} == 0 return",
        f"add rule {t} masquerading mark set mark xor {MASQ}",
        f"add rule {t} masquerading masquerade fully-random",
        f"add rule {t} nat-output jump services",
        f"add rule {t} nat-postrouting jump masquerading",
        f"add rule {t} nat-prerouting jump services",
        f"add rule {t} nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports",
        f"add rule {t} reject-chain reject",
        f"add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips",
        f"add rule {t} services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
        f"add element {t} nodeport-ips {{ {NODE_IP} }}",
        f"add rule {t} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
    ]
    decls: list[str] = []
    body: list[str] = []
    for s in SERVICES:
        base = kp.nft_port_base(*s.kube)
        p = s.proto
        svc, ext, loc, fw = (
            kp.nft_hashed(k, base) for k in ("service", "external", "local", "firewall")
        )
        spn = s.spn
        body.append(f"add element {t} cluster-ips {{ {s.cluster_ip} }}")
        externally = bool(s.node_port or s.lb_ips or s.external_ips)
        if not s.endpoints:
            body.append(
                f"add element {t} no-endpoint-services {{ {s.cluster_ip} . {p} . {s.port} "
                f'comment "{spn}" : goto reject-chain }}'
            )
            continue

        def dispatch(chain: str, eps: tuple[str, ...], s: Svc = s, svc: str = svc) -> None:
            decls.append(f"add chain {t} {chain}")
            if chain == svc:
                body.append(
                    f"add rule {t} {chain} ip daddr {s.cluster_ip} ip saddr != {CLUSTER_CIDR} "
                    "jump mark-for-masquerade"
                )
            if s.affinity:
                for ep in eps:
                    epc = nft_ep(s, ep)
                    aff = "affinity-" + epc.removeprefix("endpoint-")
                    body.append(f"add rule {t} {chain} ip saddr @{aff} goto {epc}")
            vm = " , ".join(f"{i} : goto {nft_ep(s, ep)}" for i, ep in enumerate(eps))
            body.append(f"add rule {t} {chain} numgen random mod {len(eps)} vmap {{ {vm} }}")

        dispatch(svc, s.endpoints)
        if s.local and s.local_endpoints:
            dispatch(loc, s.local_endpoints)
        if externally:
            decls.append(f"add chain {t} {ext}")
            if not s.local:
                body.append(f"add rule {t} {ext} jump mark-for-masquerade")
                body.append(f"add rule {t} {ext} goto {svc}")
            else:
                body.append(
                    f'add rule {t} {ext} ip saddr {CLUSTER_CIDR} goto {svc} comment "short-circuit pod traffic"'
                )
                body.append(
                    f'add rule {t} {ext} fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"'
                )
                body.append(
                    f'add rule {t} {ext} fib saddr type local goto {svc} comment "short-circuit local traffic"'
                )
                if s.local_endpoints:
                    body.append(f"add rule {t} {ext} goto {loc}")
        for ep in s.endpoints:
            epc = nft_ep(s, ep)
            ip, port = ep.split(":")
            if s.affinity:
                aff = "affinity-" + epc.removeprefix("endpoint-")
                decls.append(
                    f"add set {t} {aff} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {s.affinity}s ; }}"
                )
            decls.append(f"add chain {t} {epc}")
            body.append(f"add rule {t} {epc} ip saddr {ip} jump mark-for-masquerade")
            if s.affinity:
                aff = "affinity-" + epc.removeprefix("endpoint-")
                body.append(f"add rule {t} {epc} update @{aff} {{ ip saddr }}")
            body.append(f"add rule {t} {epc} meta l4proto {p} dnat to {ip}:{port}")
        body.append(
            f"add element {t} service-ips {{ {s.cluster_ip} . {p} . {s.port} : goto {svc} }}"
        )
        for lb in s.lb_ips:
            body.append(f"add element {t} service-ips {{ {lb} . {p} . {s.port} : goto {ext} }}")
            if s.source_ranges:
                decls.append(f"add chain {t} {fw}")
                ranges = ", ".join(s.source_ranges)
                body.append(f"add rule {t} {fw} ip saddr != {{ {ranges} }} drop")
                body.append(f"add element {t} firewall-ips {{ {lb} . {p} . {s.port} : goto {fw} }}")
        if s.node_port:
            body.append(f"add element {t} service-nodeports {{ {p} . {s.node_port} : goto {ext} }}")
            if s.local and not s.local_endpoints:
                body.append(
                    f"add element {t} no-endpoint-nodeports {{ {p} . {s.node_port} "
                    f'comment "{spn}" : drop }}'
                )
    return "\n".join(out + decls + body) + "\n"


def sh(*argv: str, stdin: str | None = None) -> str:
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def strip_dates(text: str) -> str:
    """Drop the '# Generated by … on <date>' lines' dates so regenerating does not churn."""
    lines = []
    for line in text.splitlines():
        if line.startswith("# ") and " on " in line:
            line = line.split(" on ")[0]
        lines.append(line)
    return "\n".join(lines) + "\n"


def main() -> int:
    if os.geteuid() != 0:
        raise SystemExit("make_data.py must run as root (it loads rules into a scratch netns)")
    DATA.mkdir(exist_ok=True)
    ns = ["ip", "netns", "exec", NETNS]
    payload = iptables_payload()
    large = iptables_payload(large_cluster=True)
    nft = nft_payload()
    (DATA / "kube-proxy.restore").write_text(payload)
    (DATA / "kube-proxy.nft").write_text(nft)
    sh("ip", "netns", "add", NETNS)
    try:
        for acct in ("ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts"):
            sh(*ns, "nfacct", "add", acct)
        sh(*ns, "iptables-restore", stdin=payload)
        (DATA / "iptables-nft-save.txt").write_text(strip_dates(sh(*ns, "iptables-save")))
        sh(*ns, "iptables-legacy-restore", stdin=payload)
        (DATA / "iptables-legacy-save.txt").write_text(strip_dates(sh(*ns, "iptables-legacy-save")))
        sh(*ns, "iptables-legacy-restore", stdin="*filter\nCOMMIT\n*nat\nCOMMIT\n")
        sh(*ns, "iptables-restore", stdin=large)
        (DATA / "iptables-large-save.txt").write_text(strip_dates(sh(*ns, "iptables-save")))
        sh(*ns, "iptables-restore", stdin="*filter\nCOMMIT\n*nat\nCOMMIT\n")
        sh(*ns, "nft", "flush", "ruleset")
        sh(*ns, "nft", "-f", "-", stdin=nft)
        (DATA / "nft-ruleset.txt").write_text(sh(*ns, "nft", "list", "ruleset"))
    finally:
        for pid in subprocess.run(
            ["ip", "netns", "pids", NETNS], capture_output=True, text=True, check=False
        ).stdout.split():
            subprocess.run(["kill", pid], check=False)
        subprocess.run(["ip", "netns", "del", NETNS], check=False)
    print(f"wrote dumps to {DATA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
