"""kube-proxy's rules: parse node dumps and walk a packet through them.

Parsers for `iptables-save` (nf_tables and legacy), `nft list ruleset`, `ipvsadm -Ln` and
`conntrack -L`, and a walker that follows one packet through nat/filter like the kernel, collecting
every endpoint a random match can pick with its overall probability and the masquerade decision.
Everything here is pure: it reads text it is given and executes nothing.
"""

from __future__ import annotations

from tracer.rules.conntrack import (
    ConntrackEntry,
    ConntrackStats,
    ConntrackTable,
    parse_conntrack,
    parse_conntrack_stats,
    parse_sysctl_limits,
)
from tracer.rules.detect import detect_format
from tracer.rules.iptables import IptablesRuleset, parse_iptables_save
from tracer.rules.ipvs import IpvsTable, parse_ipvsadm
from tracer.rules.model import EndpointChoice, Node, Packet, RuleHit, WalkResult
from tracer.rules.nft import NftRuleset, parse_nft_ruleset
from tracer.rules.walk import PACKET_FORM, Rules, load_rules, parse_packet, walk

__all__ = [
    "PACKET_FORM",
    "ConntrackEntry",
    "ConntrackTable",
    "EndpointChoice",
    "IptablesRuleset",
    "IpvsTable",
    "NftRuleset",
    "Node",
    "Packet",
    "RuleHit",
    "Rules",
    "WalkResult",
    "detect_format",
    "load_rules",
    "parse_conntrack",
    "parse_conntrack_stats",
    "parse_sysctl_limits",
    "ConntrackStats",
    "parse_ipvsadm",
    "parse_iptables_save",
    "parse_nft_ruleset",
    "parse_packet",
    "walk",
]
