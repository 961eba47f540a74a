"""Reading a node's fact files: any bytes in any of them is a warning at worst, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer.explain.facts import STATS_FILES, read_node_facts

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / "pcaps" / "clusterip" / "nodes" / "node1"
FILES = (
    "iptables-save.txt",
    "nft.txt",
    "ipvsadm.txt",
    "conntrack.txt",
    "links.json",
    *STATS_FILES,
    "conntrack-limits.txt",
)
_SEED = {name: (REAL / name).read_bytes() if (REAL / name).exists() else b"" for name in FILES}


@st.composite
def _mutated(draw: st.DrawFn, name: str) -> bytes:
    """A real dump with bytes inserted, replaced or cut, or plain random bytes."""
    data = bytearray(_SEED[name])
    if not data or draw(st.booleans()):
        return draw(st.binary(max_size=400))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "replace", "cut"]))
        chunk = draw(st.binary(min_size=1, max_size=8))
        if kind == "insert":
            data[at:at] = chunk
        elif kind == "replace":
            data[at : at + len(chunk)] = chunk
        else:
            del data[at : at + draw(st.integers(1, 200))]
    return bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), which=st.sets(st.sampled_from(FILES), min_size=1))
def test_any_bytes_in_any_fact_file_read_without_a_crash(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, which: set[str]
) -> None:
    run = tmp_path_factory.mktemp("run")
    node = run / "nodes" / "node1"
    node.mkdir(parents=True)
    for name in FILES:
        blob = data.draw(_mutated(name)) if name in which else _SEED[name]
        if blob:
            (node / name).write_bytes(blob)
    facts = read_node_facts(run, ["node1"])
    for f in facts.values():
        # What is printed from them holds no terminal control: comments, rule and entry texts.
        for text in (*f.warnings, f.rules_source or ""):
            assert "\x1b" not in text and "\x07" not in text
        if f.conntrack is not None:
            assert all("\x1b" not in e.text for e in f.conntrack.entries)


def test_latin1_and_escapes_in_real_dumps(tmp_path: Path) -> None:
    node = tmp_path / "nodes" / "node1"
    node.mkdir(parents=True)
    rules = _SEED["iptables-save.txt"].replace(
        b'--comment "', b'--comment "caf\xe9 \x1b]0;x\x07 ', 1
    )
    (node / "iptables-save.txt").write_bytes(rules)
    conntrack = _SEED["conntrack.txt"].replace(b"use=1", b"use=1 \x1b[2J\xff", 1)
    (node / "conntrack.txt").write_bytes(conntrack)
    (node / "links.json").write_bytes(_SEED["links.json"].replace(b'"cni0"', b'"cni\xe90"', 1))
    facts = read_node_facts(tmp_path, ["node1"])["node1"]
    assert facts.rules is not None and facts.rules.iptables is not None
    assert facts.conntrack is not None and facts.conntrack.entries
    texts = [e.text for e in facts.conntrack.entries]
    assert any("\\x1b[2J\ufffd" in t for t in texts)
    tables = facts.rules.iptables.tables.values()
    comments = [
        r.comment for t in tables for ch in t.chains.values() for r in ch.rules if r.comment
    ]
    assert any("caf\ufffd \\x1b]0;x\\x07" in c for c in comments)
    assert facts.addresses  # the links file with a Latin-1 byte still gives the node's addresses
