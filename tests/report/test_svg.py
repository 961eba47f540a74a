"""The SVG ladder: golden output for a fixed path, well-formed, self-contained, and a PNG."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.golden_files import GOLDEN, assert_matches_golden
from tests.report import sample
from tracer.errors import MissingPrerequisiteError
from tracer.report.svg import render_svg, svg_to_png

NS = "{http://www.w3.org/2000/svg}"


def test_svg_matches_golden() -> None:
    text = render_svg(sample.clusterip_path())
    assert_matches_golden(GOLDEN / "svg_clusterip.svg", text)


def test_svg_is_deterministic_and_self_contained() -> None:
    a = render_svg(sample.nodeport_path())
    assert a == render_svg(sample.nodeport_path())
    root = ET.fromstring(a)
    assert root.tag == f"{NS}svg"
    assert list(root.iter(f"{NS}script")) == []
    assert "<script" not in a and "href" not in a and "@import" not in a and "url(http" not in a


def _texts(root: ET.Element) -> list[tuple[float, float, str]]:
    """(x, y, text) of every <text>, its <tspan>s joined."""
    return [
        (float(t.get("x", 0)), float(t.get("y", 0)), "".join(t.itertext()))
        for t in root.iter(f"{NS}text")
    ]


def _lane_xs(root: ET.Element) -> list[float]:
    return [
        float(line.get("x1", 0))
        for line in root.iter(f"{NS}line")
        if line.get("stroke-dasharray") and line.get("x1") == line.get("x2")
    ]


def test_svg_has_a_lane_per_point_and_an_arrow_per_hop() -> None:
    path = sample.clusterip_path()
    root = ET.fromstring(render_svg(path))
    texts = [t for _, _, t in _texts(root)]
    for name in ("client", "node-a", "node-b", "server"):
        assert name in texts
    assert len(_lane_xs(root)) == 4
    dots = [c for c in root.iter(f"{NS}circle") if c.get("r") in ("4", "2.5")]
    assert len(dots) == len(path.forward) + len(path.reverse)
    arrows = [e for e in root.iter(f"{NS}line") if e.get("marker-end")]
    # One arrow per hop but the first of each way, and two in the legend.
    assert len(arrows) == len(path.forward) + len(path.reverse) - 2 + 2
    assert any("DNAT 10.96.0.100:80 → 10.244.2.9:8080" in t for t in texts)
    assert any("10.244.1.7:53700 → 10.244.2.9:8080" in t for t in texts)


def test_no_label_in_the_lanes_and_compact_rows() -> None:
    """Labels sit left of the lanes (times) or right of them (where, tuple, rewrite), never on
    an arrow; rows are a fixed small step apart, with one short gap before the reply."""
    for path in (sample.clusterip_path(), sample.nodeport_path()):
        root = ET.fromstring(render_svg(path))
        lanes = _lane_xs(root)
        lo, hi = min(lanes), max(lanes)
        rows_top = 90
        for x, y, text in _texts(root):
            if y < rows_top or not text.strip():
                continue  # the title and the lane headers above the rows
            inside = lo - 40 < x < hi + 40
            legend = y > float(root.get("height", 0)) - 60
            assert not inside or legend, f"label {text!r} at x={x} lies among the lanes"
        rows = len(path.forward) + len(path.reverse)
        assert float(root.get("height", 0)) <= 100 + rows * 22 + 16 + 90


def test_legend_names_what_is_drawn() -> None:
    texts = [t for _, _, t in _texts(ET.fromstring(render_svg(sample.clusterip_path())))]
    for item in ("request", "reply", "rewritten here (NAT)"):
        assert item in texts
    assert "last seen here" not in texts  # this request was answered


def test_a_request_without_reply_is_marked_where_it_was_last_seen() -> None:
    root = ET.fromstring(render_svg(sample.udp_path_no_reply()))
    texts = [t for _, _, t in _texts(root)]
    assert any(t.startswith("seen no further than client") for t in texts)
    assert "last seen here" in texts


@pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="rsvg-convert not installed")
def test_png_is_written(tmp_path: Path) -> None:
    out = tmp_path / "ladder.png"
    svg_to_png(render_svg(sample.nodeport_path()), out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(data[16:20], "big")
    assert width > 600


def test_png_without_rsvg_convert_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(MissingPrerequisiteError) as e:
        svg_to_png("<svg/>", tmp_path / "x.png")
    assert "librsvg2-bin" in (e.value.hint or "")
