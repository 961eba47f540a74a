"""`nft list ruleset` parsing on a real dump: sets, maps, base chains, statements, fuzzing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer.errors import PathtraceError
from tracer.rules.nft import (
    ActionStmt,
    MatchStmt,
    VmapStmt,
    parse_nft_ruleset,
    parse_rule,
    tokenize,
)

DATA = Path(__file__).parent / "data"
DUMP = (DATA / "nft-ruleset.txt").read_text()


def test_table_sets_and_maps() -> None:
    rs = parse_nft_ruleset(DUMP)
    assert rs.warnings == ()
    t = rs.table("ip", "kube-proxy")
    assert t is not None
    assert len(t.sets["cluster-ips"].elements) == 9
    svc = t.sets["service-ips"]
    assert svc.is_map and svc.type == "ipv4_addr . inet_proto . inet_service : verdict"
    el = next(e for e in svc.elements if e.key[0] == "10.96.0.100")
    assert el.key == ("10.96.0.100", "tcp", "80")
    assert el.verdict == ("goto", "service-SUSTUHLJ-default/web/tcp/http")
    noep = t.sets["no-endpoint-services"].elements[0]
    assert noep.comment == "default/empty:http" and noep.verdict == ("goto", "reject-chain")
    aff = t.sets["affinity-BTX7NO4O-default/sticky/tcp/http__10.244.1.60/80"]
    assert "dynamic" in aff.flags


def test_base_chains_with_named_priorities() -> None:
    t = parse_nft_ruleset(DUMP).table("ip", "kube-proxy")
    assert t is not None
    pre = t.chains["nat-prerouting"]
    assert (pre.type, pre.hook, pre.priority, pre.policy) == ("nat", "prerouting", -100, "accept")
    assert t.chains["filter-prerouting-pre-dnat"].priority == -110  # "dstnat - 10"
    assert t.chains["nat-postrouting"].priority == 100
    assert t.chains["services"].hook is None


def test_statements() -> None:
    r = parse_rule("numgen random mod 3 vmap { 0 : goto a, 1 : goto b, 2 : goto c }")
    v = r.statements[0]
    assert isinstance(v, VmapStmt) and v.lhs.numgen_mod == 3 and v.anon is not None
    assert [e.verdict for e in v.anon] == [("goto", "a"), ("goto", "b"), ("goto", "c")]
    r = parse_rule("ip daddr 10.96.0.100 ip saddr != 10.244.0.0/16 jump mark-for-masquerade")
    assert isinstance(r.statements[1], MatchStmt) and r.statements[1].op == "!="
    assert r.statements[2] == ActionStmt("jump", ("mark-for-masquerade",))
    r = parse_rule("meta mark set meta mark | 0x00004000")
    assert r.statements[0] == ActionStmt("mark-set", ("|", "0x00004000"))
    r = parse_rule("meta l4proto tcp dnat to 10.244.1.10:8080")
    assert r.statements[-1] == ActionStmt("dnat", ("10.244.1.10:8080",))
    r = parse_rule('ip daddr @cluster-ips reject comment "Reject traffic"')
    assert r.comment == "Reject traffic" and r.statements[-1] == ActionStmt("reject")
    assert parse_rule("masquerade fully-random").statements[0] == ActionStmt(
        "masquerade", ("fully-random",)
    )


def test_unknown_statement_keeps_the_rule_and_warns() -> None:
    text = DUMP.replace(
        "\t\tjump services\n", "\t\tjump services\n\t\tquota over 10 mbytes drop\n", 1
    )
    rs = parse_nft_ruleset(text, source="nft.txt")
    t = rs.table("ip", "kube-proxy")
    assert t is not None
    assert any(r.unknown for c in t.chains.values() for r in c.rules)
    assert any("nft.txt:" in w and "quota" in w for w in rs.warnings)


def test_truncated_ruleset_warns() -> None:
    rs = parse_nft_ruleset(DUMP[: len(DUMP) // 2])
    assert any("not closed" in w for w in rs.warnings)


def test_nothing_readable_is_an_input_error() -> None:
    with pytest.raises(PathtraceError):
        parse_nft_ruleset("chain x\n")


def test_tokenize_keeps_quoted_strings() -> None:
    assert tokenize('a "b c" {d,e}') == ["a", '"b c"', "{", "d", ",", "e", "}"]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_random_text_raises_only_pathtrace_errors(text: str) -> None:
    try:
        parse_nft_ruleset(text)
    except PathtraceError:
        pass


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_dumps_raise_only_pathtrace_errors(data: st.DataObject) -> None:
    lines = DUMP.splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    j = data.draw(st.integers(0, len(lines[i])))
    junk = data.draw(st.text(alphabet=' {}",.:;@!=-/abc019\t', max_size=12))
    lines[i] = lines[i][:j] + junk + lines[i][j:]
    cut = data.draw(st.integers(0, len(lines)))
    try:
        parse_nft_ruleset("\n".join(lines[:cut]))
    except PathtraceError:
        pass
