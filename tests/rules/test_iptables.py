"""iptables-save parsing on real dumps: structure, normalisation, unknown lines, fuzzing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer.errors import PathtraceError
from tracer.rules.iptables import canonical_rule, parse_iptables_save

DATA = Path(__file__).parent / "data"
NFT = (DATA / "iptables-nft-save.txt").read_text()
LEGACY = (DATA / "iptables-legacy-save.txt").read_text()
PAYLOAD = (DATA / "kube-proxy.restore").read_text()


def _canon(text: str) -> dict[str, list[tuple[str, ...]]]:
    rs = parse_iptables_save(text)
    return {
        f"{t.name}/{c.name}": [canonical_rule(r) for r in c.rules]
        for t in rs.tables.values()
        for c in t.chains.values()
    }


def test_tables_chains_and_policies() -> None:
    rs = parse_iptables_save(NFT)
    assert rs.backend == "nf_tables"
    assert set(rs.tables) == {"filter", "nat"}
    assert rs.tables["nat"].chains["PREROUTING"].policy == "ACCEPT"
    assert rs.tables["nat"].chains["KUBE-SERVICES"].policy is None
    assert rs.unknown == () and rs.warnings == ()


def test_legacy_backend_is_recognised_and_reads_the_same() -> None:
    assert parse_iptables_save(LEGACY).backend == "legacy"
    assert _canon(LEGACY) == _canon(NFT)


def test_payload_and_saved_dump_read_the_same() -> None:
    """kube-proxy's payload and what the kernel hands back differ only in rendering."""
    assert _canon(PAYLOAD) == _canon(NFT)


def test_rendering_details_of_iptables_save() -> None:
    rs = parse_iptables_save(NFT)
    nat = rs.tables["nat"].chains
    svc = nat["KUBE-SERVICES"].rules[0]
    assert svc.comment == "default/web:http cluster IP"
    assert svc.matches[0].get("-d") is not None and svc.matches[0].get("-d").arg == "10.96.0.100/32"  # type: ignore[union-attr]
    mark = nat["KUBE-MARK-MASQ"].rules[0]
    assert mark.target == "MARK" and mark.target_option("--set-xmark").arg == "0x4000/0x4000"  # type: ignore[union-attr]
    post = nat["KUBE-POSTROUTING"].rules[0]
    opt = post.match_options("mark")[0]
    assert opt.negated and opt.arg == "0x4000/0x4000"
    web = [r for r in nat.values() for r in r.rules if "0.33333333349" in r.text][0]
    assert web.match_options("statistic")[-1].arg == "0.33333333349"
    fwd = rs.tables["filter"].chains["KUBE-FORWARD"].rules[0]
    assert fwd.match_options("nfacct")[0].arg == "ct_state_invalid_dropped_pkts"
    masq = rs.tables["nat"].chains["KUBE-SVC-CDGGSHYLG3RE2FKL"].rules[0]
    neg = [o for m in masq.matches for o in m.options if o.name == "-s"][0]
    assert neg.negated and neg.arg == "10.244.0.0/16"


def test_large_cluster_rules_have_no_comments() -> None:
    rs = parse_iptables_save((DATA / "iptables-large-save.txt").read_text())
    seps = [c for c in rs.tables["nat"].chains.values() if c.name.startswith("KUBE-SEP-")]
    assert seps and all(r.comment is None for c in seps for r in c.rules)


def test_unknown_lines_are_kept_and_warned() -> None:
    text = NFT.replace(
        "COMMIT\n", 'COMMIT\nthis is not iptables\n-A KUBE-X -m comment --comment "unclosed\n', 1
    )
    rs = parse_iptables_save(text, source="dump.txt")
    assert len(rs.unknown) == 2
    assert any("dump.txt:" in w and "this is not iptables" in w for w in rs.warnings)
    assert "nat" in rs.tables  # the rest is still read


def test_truncated_dump_warns() -> None:
    cut = NFT[: NFT.index("-A KUBE-SVC-")]
    rs = parse_iptables_save(cut)
    assert any("no COMMIT" in w for w in rs.warnings)


def test_iptables_dash_s_listing_without_table_header() -> None:
    rs = parse_iptables_save(
        '-N KUBE-SVC-X\n-A KUBE-SVC-X -m comment --comment "a -> b" -j KUBE-SEP-Y\n'
    )
    assert rs.tables["nat"].chains["KUBE-SVC-X"].rules[0].comment == "a -> b"


def test_nothing_readable_is_an_input_error() -> None:
    with pytest.raises(PathtraceError):
        parse_iptables_save("hello\nworld\n")


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_random_text_raises_only_pathtrace_errors(text: str) -> None:
    try:
        parse_iptables_save(text)
    except PathtraceError:
        pass


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_dumps_raise_only_pathtrace_errors(data: st.DataObject) -> None:
    lines = NFT.splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    j = data.draw(st.integers(0, max(0, len(lines[i]))))
    junk = data.draw(st.text(alphabet=" !-\"'*:#ABCjmsd0123./\\\t", max_size=12))
    lines[i] = lines[i][:j] + junk + lines[i][j:]
    cut = data.draw(st.integers(0, len(lines)))
    try:
        rs = parse_iptables_save("\n".join(lines[:cut]))
    except PathtraceError:
        return
    for u in rs.unknown:
        assert any(str(u.line) in w for w in rs.warnings)
