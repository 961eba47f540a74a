"""Interface index -> name maps, from what `ip` prints on the capturing node.

SLL2 captures (`tcpdump -i any`) store only the node-local ifindex; the node's `ip` output turns it
back into a name. Accepts `ip -j link` / `ip -j addr` JSON and `ip -o link` / `ip -o addr` /
plain `ip link` text. Pure: text in, dict out; raises InputError on text it cannot read.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tracer.errors import InputError
from tracer.words import printable

# "5: veth1@if4: <BROADCAST,...>" (ip link), "5: veth1    inet 10.0.0.1/24 ..." (ip -o addr).
_TEXT_LINE = re.compile(r"^(\d+):\s+([^\s:@]+)(?:@[^\s:]+)?:?\s")


def parse_links(text: str) -> dict[int, str]:
    """Map ifindex -> interface name from `ip -j link|addr` JSON or `ip [-o] link|addr` text."""
    stripped = text.strip()
    if not stripped:
        raise InputError("links: the text is empty (expected `ip -j link` or `ip -o link` output)")
    if stripped[0] in "[{":
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise InputError(
                f"links: not valid JSON at line {e.lineno} column {e.colno}: {e.msg}"
            ) from e
        return _from_json(data)
    links: dict[int, str] = {}
    for line in stripped.splitlines():
        m = _TEXT_LINE.match(line + " ")
        if m:
            links.setdefault(int(m.group(1)), printable(m.group(2)))
    if not links:
        raise InputError(
            "links: no line looks like `N: NAME: ...` (expected `ip -o link` or `ip -j link` output)"
        )
    return links


def _from_json(data: Any) -> dict[int, str]:
    links: dict[int, str] = {}
    if isinstance(data, dict):
        # {"3": "eth0"} or {"3": {"ifname": "eth0", ...}}: a map already keyed by ifindex.
        for key, value in data.items():
            if not (str(key).isascii() and str(key).isdigit()):
                raise InputError(f"links: key {key!r} is not an interface index")
            name = (value or None) if isinstance(value, str) else _name(value)
            if name is None:
                raise InputError(f"links: no interface name for index {key}")
            links[int(key)] = printable(name)
        return links
    if not isinstance(data, list):
        raise InputError("links: JSON must be a list of interfaces (ip -j link) or an object")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise InputError(f"links: item {i} is not an object")
        index = item.get("ifindex")
        name = _name(item)
        if not isinstance(index, int) or isinstance(index, bool) or name is None:
            raise InputError(f"links: item {i} has no integer 'ifindex' and string 'ifname'")
        links[index] = printable(name)
    return links


def _name(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    for key in ("ifname", "name"):
        value = item.get(key)
        if isinstance(value, str) and value:
            return value
    return None
