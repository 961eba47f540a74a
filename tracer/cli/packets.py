"""`pathtrace packets FILE`: one line (or JSON object) per frame of a pcap/pcapng capture.

Shows what the reader decoded: time, interface, direction, the encapsulation around the innermost
IP packet, its addresses, ports, IP ID, TTL, TCP seq/ack/flags and payload length. Holds no
logic: reads the file with `tracer.pcap`, formats with `tracer.pcap.listing`, prints.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import click

from tracer.cli import say
from tracer.inputs import check_capture_file, read_links, run_links
from tracer.pcap.listing import jsonl_chunks, table_chunks
from tracer.pcap.reader import iter_frames

# Frames decoded per piece: the first line waits for this many, and memory holds about this many.
PIECE_ROWS = 1 << 16


@click.command("packets")
@click.argument("file", type=click.Path(path_type=Path))
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
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="`ip -o link` or `ip -j link` output of the capturing node: names SLL2 ifindexes",
)
@click.option(
    "--limit", type=click.IntRange(min=0), metavar="N", help="show only the first N frames"
)
def command(file: Path, fmt: str, links_file: Path | None, limit: int | None) -> None:
    """Decode every frame of FILE (pcap or pcapng) down to the innermost IP packet.

    Frames are decoded and printed a piece at a time (after one quick pass over the record
    headers): the first lines come at once, and `| head` stops the decoding. A FILE inside a run directory (RUN/points/X.pcap)
    takes its interface names from the run (RUN/nodes/<node>/links.json) unless --links is given.

    \b
    Examples:
      pathtrace packets RUN/points/node1.pcap | head
      pathtrace packets any.pcap --links node1-links.json --format jsonl
      pathtrace packets client.pcapng --limit 20
    """
    check_capture_file(str(file))
    if links_file is not None:
        links = read_links(str(links_file))
    else:
        links, why = run_links(str(file))
        if why:
            say("warning", why)
    pieces = iter_frames(file, rows=PIECE_ROWS)
    first = next(pieces)  # a file that cannot be read fails here, before any output
    for warning in first.warnings:
        say("warning", warning)
    every = itertools.chain([first], pieces)
    chunks = (table_chunks if fmt == "table" else jsonl_chunks)(every, links, limit)
    try:
        for chunk in chunks:
            click.echo(chunk, nl=False)
    except BrokenPipeError:
        # `pathtrace packets big.pcap | head` is normal use: stop quietly, and point stdout at
        # /dev/null so that the interpreter's final flush does not fail on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
