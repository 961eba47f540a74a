"""Findings from conntrack's own counters (`conntrack -S` on each node, before and after).

A packet whose conntrack entry could not be made loses its NAT: `insert_failed` grows when two
packets race to create the same entry (the UDP race behind the well-known 5-second DNS delays)
or the table is full, `drop` and `early_drop` when the table is full. Growth during the capture
is evidence about this request; counters without a sample before it only say what happened
since boot. Pure: facts in, findings out.
"""

from __future__ import annotations

from tracer.diagnose.model import Finding, NodeInfo, RunFacts, Severity
from tracer.rules.conntrack import LOSS_COUNTERS

STEP = 4  # Service / kube-proxy: conntrack holds kube-proxy's NAT
NEARLY_FULL = 0.9

_NEXT_INSERT = (
    "insert_failed: two packets of one UDP socket (a lookup's A and AAAA queries sent at once) "
    "raced to create the same entry and one was dropped, so the client waits for its 5 s retry; "
    "set `options single-request-reopen` (or use-vc) in the pod's dnsConfig, run NodeLocal "
    "DNSCache, or move to a kernel with conntrack clash resolution (5.0+). If the table is also "
    "near its limit, see below."
)
_NEXT_FULL = (
    "drop/early_drop: the conntrack table is full and new connections lose their entry (and "
    "their NAT); raise net.netfilter.nf_conntrack_max (kube-proxy's --conntrack-max-per-core / "
    "--conntrack-min), and find what fills it: `conntrack -L | awk '{print $1, $4}' | sort | "
    "uniq -c | sort -rn | head`."
)


def _limits_line(info: NodeInfo) -> tuple[str, bool]:
    limits = dict(info.conntrack_limits)
    count, most = limits.get("nf_conntrack_count"), limits.get("nf_conntrack_max")
    if count is None or not most:
        return "", False
    share = count / most
    line = f"nf_conntrack_count {count} of nf_conntrack_max {most} ({share:.0%})"
    return line, share >= NEARLY_FULL


def _node_finding(node: str, info: NodeInfo) -> Finding | None:
    after = info.conntrack_stats
    if after is None:
        return None
    before = info.conntrack_stats_before
    src = f"nodes/{node}/conntrack-stats.txt"
    limits, full = _limits_line(info)
    evidence: list[str] = []
    grown: dict[str, int] = {}
    if before is not None:
        for name in LOSS_COUNTERS:
            a, b = after.get(name), before.get(name)
            if a is not None and b is not None and a > b:
                grown[name] = a - b
                evidence.append(
                    f"{name} {b} -> {a} (+{a - b}) during the capture "
                    f"(nodes/{node}/conntrack-stats-before.txt, {src}; {after.cpus} CPUs)"
                )
    if limits:
        evidence.append(limits)
    nexts = []
    if grown:
        if "insert_failed" in grown:
            nexts.append(_NEXT_INSERT)
        if {"drop", "early_drop"} & grown.keys() or full:
            nexts.append(_NEXT_FULL)
        what = ", ".join(f"{n} +{d}" for n, d in grown.items())
        severity: Severity = "error" if "drop" in grown or full else "warning"
        return Finding(
            severity,
            STEP,
            f"conntrack on {node} lost entries during the capture ({what})",
            tuple(evidence),
            " ".join(nexts),
            weight=40,
        )
    since_boot = {n: v for n in LOSS_COUNTERS if (v := after.get(n) or 0) > 0}
    if full:
        return Finding(
            "warning",
            STEP,
            f"conntrack table on {node} is nearly full",
            tuple(evidence),
            _NEXT_FULL,
            weight=30,
        )
    if since_boot and before is None:
        what = ", ".join(f"{n} {v}" for n, v in since_boot.items())
        return Finding(
            "info",
            STEP,
            f"conntrack on {node} has lost entries since boot ({what}); no sample before the "
            "capture tells whether any was this request's",
            (f"{src}: {what} over {after.cpus} CPUs", *evidence),
            (_NEXT_INSERT if "insert_failed" in since_boot else _NEXT_FULL),
        )
    return None


def step_conntrack_stats(f: RunFacts) -> list[Finding]:
    """One finding per node whose conntrack counters say entries were lost."""
    out = []
    for node, info in sorted(f.nodes.items()):
        finding = _node_finding(node, info)
        if finding is not None:
            out.append(finding)
    return out
