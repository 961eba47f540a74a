"""A hand-written check of the `pathtrace/v1` JSON contract (names and types, as documented)."""

from __future__ import annotations

import re
from typing import Any

ENDPOINT = re.compile(r"(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\])(:\d{1,5})?\Z|[0-9a-fA-F:]+\Z")
KINDS = {"DNAT", "SNAT", "DNAT+SNAT", "un-DNAT", "un-SNAT", "un-DNAT+un-SNAT"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _opt(v: Any, kind: type) -> bool:
    return v is None or isinstance(v, kind)


def check_hop(h: Any, where: str) -> None:
    assert isinstance(h, dict), where
    for key in ("point", "role"):
        assert isinstance(h[key], str), f"{where}.{key}"
    for key in ("node", "interface"):
        assert _opt(h[key], str), f"{where}.{key}"
    assert h["direction"] in ("in", "out", None), f"{where}.direction"
    assert _is_int(h["t_ns"]), f"{where}.t_ns"
    for key in ("src", "dst"):
        assert isinstance(h[key], str) and ENDPOINT.match(h[key]), f"{where}.{key}={h[key]!r}"
    assert h["ttl"] is None or _is_int(h["ttl"]), f"{where}.ttl"
    assert h.get("kind", "packet") in ("packet", "proxy"), f"{where}.kind"
    tr = h["translation"]
    if tr is not None:
        assert tr["kind"] in KINDS, f"{where}.translation.kind"
        for side in ("before", "after"):
            assert set(tr[side]) >= {"src", "dst"}, f"{where}.translation.{side}"
            assert all(isinstance(tr[side][k], str) for k in ("src", "dst"))


def check_path_document(doc: Any) -> None:
    """Raise AssertionError naming the first field that breaks the contract."""
    assert isinstance(doc, dict)
    assert doc["schema"] == "pathtrace/v1"
    r = doc["request"]
    assert _is_int(r["index"]) and r["index"] >= 0
    assert r["protocol"] in ("tcp", "udp", "icmp", "icmpv6")
    for key in ("client", "destination", "summary"):
        assert isinstance(r[key], str), f"request.{key}"
    assert _opt(r["backend"], str), "request.backend"
    assert _is_int(r["start_ns"]), "request.start_ns"
    for side in ("forward", "reverse"):
        assert isinstance(doc[side], list), side
        for i, h in enumerate(doc[side]):
            check_hop(h, f"{side}[{i}]")
    lat = doc["latency"]
    for key in ("total_ns", "connect_ns", "server_ns"):
        assert lat[key] is None or _is_int(lat[key]), f"latency.{key}"
    for i, s in enumerate(lat["segments"]):
        assert isinstance(s["from"], str) and isinstance(s["to"], str), f"segments[{i}]"
        for key in ("first_ns", "median_ns", "packets"):
            assert _is_int(s[key]), f"segments[{i}].{key}"
    for i, c in enumerate(doc["clocks"]):
        assert isinstance(c["node"], str) and isinstance(c["reference"], str), f"clocks[{i}]"
        for key in ("offset_ns", "error_bound_ns", "samples"):
            assert _is_int(c[key]), f"clocks[{i}].{key}"
    assert lat.get("proxy_ns") is None or _is_int(lat["proxy_ns"]), "latency.proxy_ns"
    for i, st in enumerate(doc.get("stitches", [])):
        check_stitch(st, doc, f"stitches[{i}]")
    assert isinstance(doc["warnings"], list)
    assert all(isinstance(w, str) for w in doc["warnings"])


def check_stitch(st: Any, doc: Any, where: str) -> None:
    """One L7 proxy stitch: the two connections, the proxy, how sure, and its own time."""
    assert _is_int(st["client_leg"]) and _is_int(st["server_leg"]), where
    assert st["client_leg"] != st["server_leg"], where
    assert isinstance(st["proxy"], str), f"{where}.proxy"
    assert st["confidence"] in ("high", "medium", "low"), f"{where}.confidence"
    assert st["reasons"] and all(isinstance(r, str) for r in st["reasons"]), f"{where}.reasons"
    assert st["proxy_ns"] is None or (_is_int(st["proxy_ns"]) and st["proxy_ns"] >= 0), where
    for side, key in (("forward", "forward_hop"), ("reverse", "reverse_hop")):
        i = st[key]
        if i is not None:
            assert doc[side][i]["kind"] == "proxy", f"{where}.{key}"
            assert doc[side][i]["point"] == st["proxy"], f"{where}.{key}"
