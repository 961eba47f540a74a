"""Small helpers for the words the reports print."""

from __future__ import annotations


def count(n: int, singular: str, plural: str | None = None) -> str:
    """'1 query', '2 queries': the number with the noun in the right form."""
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"
