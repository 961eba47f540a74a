"""Capture reading: pcap and pcapng into numpy columns (see `columns`).

Python over bytes/mmap plus numpy, with optional compiled kernels for the hot loops (`_native.c`,
same results); never scapy, pyshark or tshark (they are 100-1000x too slow for this path).
Decodes link layers, VLANs and overlays down to the innermost IP packet.
"""

from tracer.pcap.reader import read_frames

__all__ = ["read_frames"]
