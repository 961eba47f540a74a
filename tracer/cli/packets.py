"""`pathtrace packets FILE`: one line (or JSON object) per frame of a pcap/pcapng capture.

Shows what the reader decoded: time, interface, direction, the encapsulation around the innermost
IP packet, its addresses, ports, IP ID, TTL, TCP seq/ack/flags and payload length. Holds no
logic: reads the file with `tracer.pcap`, formats with `tracer.pcap.listing`, prints.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from tracer.errors import InputError
from tracer.pcap import read_frames
from tracer.pcap.columns import Frames
from tracer.pcap.links import parse_links
from tracer.pcap.listing import records, table_chunks


def _read_links(path: Path) -> dict[int, str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise InputError(f"{path}: cannot read links ({e.strerror or e})") from e
    try:
        return parse_links(text)
    except InputError as e:
        raise InputError(
            f"{path}: {e.message}", hint="give `ip -o link` or `ip -j link` output"
        ) from e


@click.command("packets")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "jsonl", "json"]),
    default="table",
    show_default=True,
    help="table, or one JSON object per line (json is an alias of jsonl)",
)
@click.option(
    "--links",
    "links_file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="`ip -o link` or `ip -j link` output of the capturing node: names SLL2 ifindexes",
)
@click.option(
    "--limit", type=click.IntRange(min=0), metavar="N", help="show only the first N frames"
)
def command(file: Path, fmt: str, links_file: Path | None, limit: int | None) -> None:
    """Decode every frame of FILE (pcap or pcapng) down to the innermost IP packet."""
    links = _read_links(links_file) if links_file else {}
    frames = read_frames(file)
    for warning in frames.warnings:
        click.echo(f"pathtrace: warning: {warning}", err=True)
    chunks = table_chunks(frames, links, limit) if fmt == "table" else _jsonl(frames, links, limit)
    try:
        for chunk in chunks:
            click.echo(chunk, nl=False)
    except BrokenPipeError:
        # `pathtrace packets big.pcap | head` is normal use: stop quietly, and point stdout at
        # /dev/null so that the interpreter's final flush does not fail on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _jsonl(frames: Frames, links: dict[int, str], limit: int | None) -> Iterator[str]:
    lines: list[str] = []
    for record in records(frames, links, limit):
        lines.append(json.dumps(record, separators=(",", ":")))
        if len(lines) >= 4096:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"
