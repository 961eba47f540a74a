"""Rewrite tests/golden/ from the renderer fixtures: `python -m tests.report.regen`."""

from __future__ import annotations

from tests.report.golden import CASES, GOLDEN


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for name, render in CASES.items():
        (GOLDEN / name).write_text(render(), encoding="utf-8")
        print(f"wrote {GOLDEN / name}")


if __name__ == "__main__":
    main()
