"""Small helpers for the words the reports print."""

from __future__ import annotations


def count(n: int, singular: str, plural: str | None = None) -> str:
    """'1 query', '2 queries': the number with the noun in the right form."""
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


# Characters a terminal acts on rather than shows: C0 and C1 controls (ESC starts CSI and OSC
# sequences, CR and BS overwrite, a newline fakes a row), DEL, and the Unicode line separators
# and bidirectional overrides that reorder what is shown.
_UNSAFE = frozenset(
    [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F)]
    + [*range(0x2066, 0x206A), 0xFEFF]
)
_ESCAPES = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _UNSAFE}
_ESCAPES_KEEP_LINES = {c: e for c, e in _ESCAPES.items() if c not in (0x09, 0x0A)}


def printable(text: str, *, lines: bool = False) -> str:
    """`text` with every character a terminal would act on written as a visible escape (ESC as
    \\x1b, a newline as \\x0a); `lines=True` keeps newlines and tabs (for multi-line dumps whose
    lines are parsed afterwards).

    The one escaping of text that comes from input: capture interface names and comments, links
    and node-fact files, manifest names, error messages. Applied where such text enters (so that
    every renderer, table, SVG or Mermaid, gets safe text) and where messages are printed.
    """
    if text.isprintable() and (lines or "\t" not in text):
        return text  # the common case costs one C-level scan
    return text.translate(_ESCAPES_KEEP_LINES if lines else _ESCAPES)
