"""Find the frames of a pcap or pcapng file: where each one's bytes are and its record metadata.

Records form a chain (each header gives the next one's offset), so finding them is sequential.
With the compiled kernels (`fast.native`) the chain is walked in C: a pcap file's whole walk,
and each stretch of well-formed pcapng packet blocks (anything else, damage included, is left to
the Python loop, which handles it exactly as without them). Without them, a Python loop walks the
chain, but jumps along "runs" of records that numpy found beforehand by following many chains at
once from start points spread over the file; the loop only enters a run at an offset it reached
itself, so the result is exactly the plain walk's. Per-frame fields (timestamps, lengths,
interface ids) are gathered with numpy (by the C walk, for pcap). Nothing here looks inside a
frame. Damage after the first frame becomes a warning naming the file and byte offset; damage
before it is a CaptureFormatError.

This module tells the two formats apart; each is indexed by its own module (`pcapfile`,
`pcapngfile`), the parallel chains are `chains`', and the formats' numbers and `FrameIndex` are
`records`'.
"""

from __future__ import annotations

import struct

from tracer.errors import CaptureFormatError
from tracer.pcap.decode import Buffer
from tracer.pcap.pcapfile import index_pcap
from tracer.pcap.pcapngfile import index_pcapng
from tracer.pcap.records import PCAP_MAGIC_NS, PCAP_MAGIC_US, FrameIndex


def index_capture(buf: Buffer, path: str, *, drop: bool = False) -> FrameIndex:
    """Index the frames of a whole capture file held in `buf` (bytes or an mmap).

    `drop=True` (for a read-only mmap of the file) hands the pages the walk has read back to the
    kernel as it goes, so that they do not pile up in RSS; they are read again on the next touch.
    """
    if len(buf) == 0:
        raise CaptureFormatError(path, "the file is empty", offset=0)
    if len(buf) < 4:
        raise CaptureFormatError(path, "too short to be a capture file", offset=0)
    head = bytes(buf[:4])
    if head == b"\x0a\x0d\x0d\x0a":
        return index_pcapng(buf, path)
    for order in ("<", ">"):
        magic = struct.unpack(order + "I", head)[0]
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            return index_pcap(buf, path, order, magic == PCAP_MAGIC_NS, drop)
    raise CaptureFormatError(
        path,
        f"not a pcap or pcapng file (magic {head.hex()})",
        offset=0,
        hint="pathtrace reads libpcap (.pcap) and pcapng files, as tcpdump -w writes them",
    )
