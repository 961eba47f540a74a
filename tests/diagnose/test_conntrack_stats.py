"""Findings from `conntrack -S` before and after a capture: the texts are what the kernel's
conntrack-tools print (1.4.7, and the 8-digit hex of older versions)."""

from __future__ import annotations

from pathlib import Path

from tracer.diagnose import diagnose
from tracer.diagnose.conntrack_stats import step_conntrack_stats
from tracer.diagnose.model import RunFacts
from tracer.explain.facts import node_facts_from_text, read_node_facts
from tracer.model import CapturePoint
from tracer.rules.conntrack import parse_conntrack_stats
from tracer.rundir import Manifest

_ZEROS = "found=0 invalid=0 insert=0 insert_failed=0 drop=0 early_drop=0 error=0 search_restart=0"


def _stats(*cpus: dict[str, int]) -> str:
    lines = []
    for i, counters in enumerate(cpus):
        words = []
        for w in _ZEROS.split():
            k = w.split("=")[0]
            words.append(f"{k}={counters.get(k, 0)}")
        lines.append(f"cpu={i}   \t" + " ".join(words) + " clash_resolve=0 chaintoolong=0 ")
    return "\n".join(lines) + "\n"


def _facts(**nodes: dict[str, str]) -> RunFacts:
    manifest = Manifest(
        source="lab",
        created="",
        points=tuple(
            CapturePoint(f"node-{n}", "node", f"points/node-{n}.pcap", node=n) for n in nodes
        ),
    )
    infos = {n: node_facts_from_text(n, texts) for n, texts in nodes.items()}
    return RunFacts(run="RUN", manifest=manifest, connections=(), nodes=infos)


def test_parse_sums_every_cpu() -> None:
    s = parse_conntrack_stats(_stats({"insert_failed": 2, "drop": 1}, {"insert_failed": 5}))
    assert s.cpus == 2
    assert (s.get("insert_failed"), s.get("drop"), s.get("early_drop")) == (7, 1, 0)
    assert s.warnings == ()


def test_parse_old_hex_format_and_names_bad_lines() -> None:
    old = (
        "cpu=0 entries=0000001a searched=00000000 found=00000010 new=00000003 invalid=00000000 "
        "ignore=00000000 delete=00000000 delete_list=00000000 insert=00000003 "
        "insert_failed=0000000b drop=00000000 early_drop=00000000 error=00000000 "
        "search_restart=00000000\nconntrack v1.4.4: garbage\n"
    )
    s = parse_conntrack_stats(old, source="nodes/n1/conntrack-stats.txt")
    assert (s.get("insert_failed"), s.get("found")) == (11, 16)
    assert s.warnings and s.warnings[0].startswith("nodes/n1/conntrack-stats.txt:2:")


def test_insert_failed_growth_during_the_capture_is_a_finding() -> None:
    f = _facts(
        node1={
            "conntrack-stats-before.txt": _stats({"insert_failed": 3}, {}),
            "conntrack-stats.txt": _stats({"insert_failed": 5}, {"insert_failed": 1}),
        },
        node2={
            "conntrack-stats-before.txt": _stats({"insert_failed": 9}),
            "conntrack-stats.txt": _stats({"insert_failed": 9}),
        },
    )
    (finding,) = step_conntrack_stats(f)
    assert finding.severity == "warning" and finding.step == 4
    assert finding.title == "conntrack on node1 lost entries during the capture (insert_failed +3)"
    assert any("insert_failed 3 -> 6 (+3)" in e for e in finding.evidence)
    assert "single-request-reopen" in finding.next
    # It reaches the diagnosis as a whole.
    assert finding in diagnose(f).findings


def test_drop_and_early_drop_growth_say_the_table_is_full() -> None:
    f = _facts(
        node1={
            "conntrack-stats-before.txt": _stats({"drop": 10, "early_drop": 4}),
            "conntrack-stats.txt": _stats({"drop": 25, "early_drop": 9}),
            "conntrack-limits.txt": "net.netfilter.nf_conntrack_count = 262100\n"
            "net.netfilter.nf_conntrack_max = 262144\n",
        }
    )
    (finding,) = step_conntrack_stats(f)
    assert finding.severity == "error"
    assert "drop +15, early_drop +5" in finding.title
    assert "nf_conntrack_count 262100 of nf_conntrack_max 262144 (100%)" in finding.evidence
    assert "nf_conntrack_max" in finding.next


def test_no_growth_no_finding_and_counters_since_boot_are_only_information() -> None:
    quiet = _facts(
        node1={
            "conntrack-stats-before.txt": _stats({"insert_failed": 4}),
            "conntrack-stats.txt": _stats({"insert_failed": 4}),
        }
    )
    assert step_conntrack_stats(quiet) == []
    boot = _facts(node1={"conntrack-stats.txt": _stats({"early_drop": 2})})
    (finding,) = step_conntrack_stats(boot)
    assert finding.severity == "info" and "since boot (early_drop 2)" in finding.title


def test_read_from_the_run_directory(tmp_path: Path) -> None:
    d = tmp_path / "nodes" / "node1"
    d.mkdir(parents=True)
    (d / "conntrack-stats-before.txt").write_text(_stats({}))
    (d / "conntrack-stats.txt").write_text(_stats({"insert_failed": 1}))
    info = read_node_facts(tmp_path, ["node1"])["node1"]
    assert info.conntrack_stats is not None and info.conntrack_stats_before is not None
    assert info.conntrack_stats.get("insert_failed") == 1
