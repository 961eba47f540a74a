"""What a run directory says about each node: its kube-proxy rules, conntrack table and addresses.

`node_facts_from_text` is pure (texts in, `NodeFacts` out); `read_node_facts` is the edge that
reads RUN/nodes/<node>/{iptables-save.txt,nft.txt,ipvsadm.txt,conntrack.txt,links.json}. A file
that is missing or unreadable becomes a warning, never an error: the path can still be told
without the rules, only with less evidence. Nothing here walks a packet or correlates.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from tracer.errors import PathtraceError
from tracer.rules import (
    ConntrackStats,
    ConntrackTable,
    Rules,
    load_rules,
    parse_conntrack,
    parse_conntrack_stats,
    parse_sysctl_limits,
)
from tracer.rules.cilium import (
    CiliumCtEntry,
    CiliumLB,
    parse_bpf_ct_list,
    parse_bpf_lb_list,
    parse_service_list,
)
from tracer.rules.explain_text import local_traffic_cidr
from tracer.rundir import node_fact

# Which dump holds kube-proxy's rules, in the order they are tried: an iptables-mode node's
# nft.txt is the nf_tables view of the same rules, so iptables-save wins when it has KUBE- chains.
RULE_FILES = ("iptables-save.txt", "nft.txt", "ipvsadm.txt")
# `conntrack -S` after and before the capture.
STATS_FILES = ("conntrack-stats.txt", "conntrack-stats-before.txt")
# An eBPF load-balancer's own view (Cilium's agent): the Services it serves, in the agent and in
# the BPF maps, and its own conntrack.
CILIUM_FILES = ("cilium-service-list.txt", "cilium-bpf-lb-list.txt", "cilium-bpf-ct-list.txt")


@dataclass(frozen=True)
class NodeFacts:
    """One node's facts as captured right after the request."""

    node: str
    rules: Rules | None = None
    rules_source: str | None = None  # e.g. "nodes/node1/iptables-save.txt"
    conntrack: ConntrackTable | None = None
    addresses: tuple[str, ...] = ()
    pod_cidr: str | None = None  # kube-proxy's local-traffic CIDR, when the rules show it
    warnings: tuple[str, ...] = ()
    subnets: tuple[tuple[str, str], ...] = ()  # (interface, CIDR), e.g. ("cni0", "10.244.2.1/24")
    # conntrack's own counters (`conntrack -S`) after the capture and, when sampled, before it
    conntrack_stats: ConntrackStats | None = None
    conntrack_stats_before: ConntrackStats | None = None
    # nf_conntrack_count / nf_conntrack_max as sampled after the capture
    conntrack_limits: tuple[tuple[str, int], ...] = ()
    # Cilium's load-balancer (bpf lb list when captured, else service list) and conntrack.
    cilium: CiliumLB | None = None
    cilium_ct: tuple[CiliumCtEntry, ...] = ()
    # "node", or "pod": a pod's own namespace (RUN/pods/<point>/), where a sidecar's capture
    # rules live; `node` then holds the point's name.
    scope: str = "node"
    # A dual-stack node's IPv6 rules (ip6tables-save.txt, or nft.txt's ip6 table), when `rules`
    # are IPv4's
    rules6: Rules | None = None
    rules6_source: str | None = None

    def for_family(self, version: int) -> NodeFacts:
        """These facts as a walk of an IPv`version` packet sees them: the node's rules of that
        family, or none (a packet is never walked through the other family's rules)."""
        if version == 6 and self.rules6 is not None:
            cidr = local_traffic_cidr(self.rules6)
            return replace(
                self,
                rules=self.rules6,
                rules_source=self.rules6_source,
                pod_cidr=cidr if cidr is not None and ":" in cidr else None,
            )
        if self.rules is not None and self.rules.families and version not in self.rules.families:
            return replace(self, rules=None, rules_source=None, pod_cidr=None)
        return self


def links_from_json(text: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The node's own addresses and (interface, CIDR) subnets from `ip -j addr` JSON (links.json);
    empty when unreadable. Host routes (/32, /128) are addresses, not subnets."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return (), ()
    addrs: list[str] = []
    subnets: list[tuple[str, str]] = []
    for item in data if isinstance(data, list) else ():
        if not isinstance(item, dict):
            continue
        name = str(item.get("ifname", ""))
        for info in item.get("addr_info") or ():
            if not isinstance(info, dict) or not isinstance(info.get("local"), str):
                continue
            addrs.append(info["local"])
            try:
                net = ipaddress.ip_network(f"{info['local']}/{info.get('prefixlen')}", strict=False)
            except ValueError:
                continue
            if net.prefixlen < net.max_prefixlen:
                subnets.append((name, f"{info['local']}/{net.prefixlen}"))
    return tuple(dict.fromkeys(addrs)), tuple(subnets)


def addresses_from_links(text: str) -> tuple[str, ...]:
    """The node's own addresses from `ip -j addr` JSON (links.json); () when there are none."""
    return links_from_json(text)[0]


def _is_kube(name: str, text: str) -> bool:
    if name == "ipvsadm.txt":
        return "->" in text
    return "KUBE-" in text or "kube-proxy" in text or "ISTIO_" in text


def node_facts_from_text(node: str, texts: Mapping[str, str], scope: str = "node") -> NodeFacts:
    """Parse one node's fact files, given as {file name: text}; bad files become warnings.
    With scope="pod", `node` is a capture point and the files are its pod's own."""
    warnings: list[str] = []
    rules: Rules | None = None
    source: str | None = None
    for name in RULE_FILES:
        text = texts.get(name)
        if not text or not _is_kube(name, text):
            continue
        where = f"{scope}s/{node}/{name}"
        try:
            rules = load_rules(text, source=where)
        except PathtraceError as e:
            warnings.append(f"{where}: not readable as rules ({e.message})")
            continue
        source = where
        break
    rules6: Rules | None = None
    source6: str | None = None
    text6 = texts.get("ip6tables-save.txt")
    if text6 and _is_kube("ip6tables-save.txt", text6):
        where = f"{scope}s/{node}/ip6tables-save.txt"
        try:
            rules6, source6 = load_rules(text6, source=where), where
        except PathtraceError as e:
            warnings.append(f"{where}: not readable as rules ({e.message})")
    elif rules is not None and rules.nft is not None and 6 in rules.families:
        rules6, source6 = rules, source  # one nft ruleset holds both families' tables
    conntrack: ConntrackTable | None = None
    ct_text = texts.get("conntrack.txt")
    if ct_text is not None:
        conntrack = parse_conntrack(ct_text, source=f"{scope}s/{node}/conntrack.txt")
        warnings.extend(conntrack.warnings)
    addresses, subnets = links_from_json(texts.get("links.json") or "")
    stats: dict[str, ConntrackStats] = {}
    for name in STATS_FILES:
        if texts.get(name):
            stats[name] = parse_conntrack_stats(texts[name], source=f"{scope}s/{node}/{name}")
            warnings.extend(stats[name].warnings)
    limits = parse_sysctl_limits(texts.get("conntrack-limits.txt") or "")
    cilium: CiliumLB | None = None
    for name, parse in (
        ("cilium-bpf-lb-list.txt", parse_bpf_lb_list),
        ("cilium-service-list.txt", parse_service_list),
    ):
        text = texts.get(name)
        if text and text.strip() and cilium is None:
            where = f"{scope}s/{node}/{name}"
            try:
                cilium = parse(text, source=where)
            except PathtraceError as e:
                warnings.append(f"{where}: not readable ({e.message})")
                continue
            warnings.extend(cilium.warnings)
    cilium_ct = parse_bpf_ct_list(texts.get("cilium-bpf-ct-list.txt") or "")
    return NodeFacts(
        node=node,
        rules=rules,
        rules_source=source,
        conntrack=conntrack,
        addresses=addresses,
        pod_cidr=local_traffic_cidr(rules) if rules is not None and scope == "node" else None,
        warnings=tuple(warnings),
        subnets=subnets,
        conntrack_stats=stats.get(STATS_FILES[0]),
        conntrack_stats_before=stats.get(STATS_FILES[1]),
        conntrack_limits=tuple(limits.items()),
        scope=scope,
        rules6=rules6,
        rules6_source=source6,
        cilium=cilium,
        cilium_ct=cilium_ct,
    )


def read_node_facts(
    run: str | os.PathLike[str], nodes: Iterable[str], pods: Iterable[str] = ()
) -> dict[str, NodeFacts]:
    """Read RUN/nodes/<node>/* for each node that has any facts, and RUN/pods/<point>/* for
    each pod point in `pods` (keyed by the point's name, scope "pod"; a point named like a
    node is left out)."""
    out = _read_facts(run, nodes, "node")
    out.update(_read_facts(run, [p for p in pods if p not in out], "pod"))
    return out


def _read_facts(
    run: str | os.PathLike[str], keys: Iterable[str], scope: str
) -> dict[str, NodeFacts]:
    out: dict[str, NodeFacts] = {}
    for node in sorted(set(keys)):
        texts: dict[str, str] = {}
        unread: list[str] = []
        for name in (
            *RULE_FILES,
            "ip6tables-save.txt",
            "conntrack.txt",
            "links.json",
            *STATS_FILES,
            "conntrack-limits.txt",
            *CILIUM_FILES,
        ):
            try:
                text = node_fact(run, node, name, f"{scope}s")
            except PathtraceError as e:
                unread.append(e.message)
                continue
            if text is not None:
                texts[name] = text
        if not texts and not unread:
            continue
        facts = node_facts_from_text(node, texts, scope)
        if unread:
            facts = replace(facts, warnings=(*facts.warnings, *unread))
        out[node] = facts
    return out
