"""kube-proxy's rules, generated the way kube-proxy writes them, from a small model of Services.

Pure: functions take frozen Services and a node description and return text (an iptables-restore
payload, the hook jump rules, an `nft -f` file). Nothing here runs a command or reads a file; the
lab applies the text inside its own namespaces.

The iptables output (.iptables) follows the iptables proxier's `syncProxyRules` line for line
(chain declarations, then rules, in the order the proxier writes them; comments quoted exactly
where the proxier quotes them); the nftables output (.nftables) follows the nftables proxier's
base rules and per-service chains. Services are processed in the order of their port names, where
kube-proxy iterates a map. The model is in .model, the chain, set and rule names in .names.
"""

from tracer.lab.kubeproxy.iptables import (
    JUMP_RULES,
    KUBE_EXTERNAL_SERVICES,
    KUBE_FIREWALL,
    KUBE_FORWARD,
    KUBE_MARK_MASQ,
    KUBE_NODEPORTS,
    KUBE_POSTROUTING,
    KUBE_PROXY_FIREWALL,
    KUBE_SERVICES,
    JumpRule,
    iptables_restore,
    jump_rules,
)
from tracer.lab.kubeproxy.model import Endpoint, NodeInfo, ProxyOptions, Service, ServicePort
from tracer.lab.kubeproxy.names import (
    chain_line,
    endpoint_string,
    ext_chain,
    fw_chain,
    nft_affinity_set,
    nft_endpoint_base,
    nft_endpoint_chain,
    nft_external_chain,
    nft_hashed,
    nft_local_chain,
    nft_port_base,
    nft_service_chain,
    port_name,
    probability,
    sep_chain,
    svc_chain,
    svl_chain,
)
from tracer.lab.kubeproxy.nftables import NFT_TABLE, nft_ruleset

__all__ = [
    "JUMP_RULES",
    "KUBE_EXTERNAL_SERVICES",
    "KUBE_FIREWALL",
    "KUBE_FORWARD",
    "KUBE_MARK_MASQ",
    "KUBE_NODEPORTS",
    "KUBE_POSTROUTING",
    "KUBE_PROXY_FIREWALL",
    "KUBE_SERVICES",
    "NFT_TABLE",
    "Endpoint",
    "JumpRule",
    "NodeInfo",
    "ProxyOptions",
    "Service",
    "ServicePort",
    "chain_line",
    "endpoint_string",
    "ext_chain",
    "fw_chain",
    "iptables_restore",
    "jump_rules",
    "nft_affinity_set",
    "nft_endpoint_base",
    "nft_endpoint_chain",
    "nft_external_chain",
    "nft_hashed",
    "nft_local_chain",
    "nft_port_base",
    "nft_ruleset",
    "nft_service_chain",
    "port_name",
    "probability",
    "sep_chain",
    "svc_chain",
    "svl_chain",
]
