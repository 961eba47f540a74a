"""Protocol bytes shown as text: printable ASCII only, cut to a length. Pure."""

from __future__ import annotations


def printable(raw: bytes, limit: int) -> str:
    """`raw` as ASCII with every unprintable character as "?", cut with "…" past `limit`."""
    text = raw.decode("ascii", "replace")
    text = "".join(c if c.isprintable() and c != "\ufffd" else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
