"""Gathering the points' rows: one address table for all points, by number or by text."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

from tracer.correlate.gather import _address_luts
from tracer.inputs import load_run
from tracer.pcap import read_frames


def test_address_tables_merge_the_same_by_number_and_by_text() -> None:
    """The reader's numeric IPv4 keys merge the points' address tables to the same addresses
    as merging their texts (IPv6 addresses, which have no numeric key, by text in both)."""
    run = Path(__file__).resolve().parents[2] / "pcaps" / "ingress"
    points = load_run(run).points
    assert all(p.frames.address_keys is not None for p in points)
    by_number = _address_luts(points)
    by_text = _address_luts(
        [
            dataclasses.replace(p, frames=dataclasses.replace(p.frames, address_keys=None))
            for p in points
        ]
    )
    for merged, luts in (by_number, by_text):
        for p, lut in zip(points, luts, strict=True):
            assert [merged[i] for i in lut[:-1]] == list(p.frames.addresses)
            assert lut[-1] == -1
    assert sorted(by_number[0]) == sorted(by_text[0])


def test_address_keys_hold_each_ipv4_address_as_its_number() -> None:
    cap = next((Path(__file__).resolve().parents[2] / "pcaps" / "clusterip").glob("**/*.pcap*"))
    frames = read_frames(cap)
    assert frames.address_keys is not None
    for text, key in zip(frames.addresses, frames.address_keys.tolist(), strict=True):
        ip = ipaddress.ip_address(text)
        assert key == (int(ip) if ip.version == 4 else -1)
