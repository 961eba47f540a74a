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


def test_svg_has_a_column_per_point_and_an_arrow_per_hop() -> None:
    path = sample.clusterip_path()
    root = ET.fromstring(render_svg(path))
    texts = [t.text for t in root.iter(f"{NS}text")]
    for name in ("client", "node-a", "node-b", "server"):
        assert name in texts
    dots = list(root.iter(f"{NS}circle"))
    assert len(dots) == len(path.forward) + len(path.reverse)
    arrows = [e for e in root.iter() if e.get("marker-end")]
    assert len(arrows) == len(path.forward) + len(path.reverse) - 2  # first sighting each way
    assert "DNAT 10.96.0.100:80 → 10.244.2.9:8080" in texts
    assert "tcp 10.244.1.7:53700 > 10.244.2.9:8080" in texts


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
