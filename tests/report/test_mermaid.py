"""Mermaid sequence diagrams of fixed paths (tests/report/sample.py) against golden files."""

from __future__ import annotations

import pytest

from tests.golden_files import GOLDEN, assert_matches_golden
from tests.report import sample
from tracer.report.mermaid import participants, render_mermaid


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("mermaid_clusterip.mmd", sample.clusterip_path),
        ("mermaid_nodeport.mmd", sample.nodeport_path),
    ],
)
def test_mermaid_matches_golden(name: str, make: object) -> None:
    text = render_mermaid(make())  # type: ignore[operator]
    assert_matches_golden(GOLDEN / name, text)


def test_one_participant_per_point_in_path_order() -> None:
    assert participants(sample.clusterip_path()) == ["client", "node-a", "node-b", "server"]


def test_arrows_and_rewrite_notes() -> None:
    path = sample.clusterip_path()
    text = render_mermaid(path)
    lines = text.splitlines()
    assert lines[0] == "sequenceDiagram"
    arrows = [x for x in lines if "->>" in x and "Note" not in x]
    # One arrow per hop after the first of each direction: the first sighting has no sender.
    assert len(arrows) == len(path.forward) - 1 + len(path.reverse) - 1
    assert sum("-->>" in x for x in arrows) == len(path.reverse) - 1
    # Neither first sighting is drawn as the point sending to itself.
    assert "p_client->>p_client" not in text and "p_server-->>p_server" not in text
    assert "Note over p_node_a: DNAT 10.96.0.100:80 → 10.244.2.9:8080" in text
    assert "Note over p_node_a: un-DNAT 10.244.2.9:8080 → 10.96.0.100:80" in text
    # The corrected time of the DNAT hop (58 µs after the first) is on its arrow.
    assert "+0.058 ms eth0: tcp 10.244.1.7:53700 > 10.244.2.9:8080" in text


def test_first_sighting_is_a_note_on_the_client_not_a_self_arrow() -> None:
    path = sample.clusterip_path()
    lines = render_mermaid(path).splitlines()
    first = next(x for x in lines if "Note" in x or "->>" in x)
    assert first.strip().startswith("Note over p_client: request first seen +0.000 ms")
    assert str(path.forward[0].tuple5) in first


def test_nodeport_note_names_both_rewrites() -> None:
    text = render_mermaid(sample.nodeport_path())
    note = next(x for x in text.splitlines() if "Note" in x and "DNAT" in x and "un-" not in x)
    assert "SNAT 192.168.56.1:60000 → 192.168.56.11:41234" in note
