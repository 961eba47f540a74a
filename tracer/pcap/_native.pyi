"""Type stubs for the compiled kernels in _native.c (see there for what each one does)."""

from typing_extensions import Buffer

def pcap_walk(
    buf: Buffer,
    pos: int,
    little: bool,
    nanos: bool,
    drop: bool,
    data_off: Buffer,
    caplen: Buffer,
    origlen: Buffer,
    t_ns: Buffer,
) -> tuple[int, int, int]: ...
def pcapng_walk(buf: Buffer, pos: int, little: bool, offsets: Buffer) -> tuple[int, int]: ...
def decode(
    buf: Buffer,
    data_off: Buffer,
    caplen: Buffer,
    linktype: Buffer,
    encap_ids: bytes,
    columns: tuple[Buffer, ...],
    start: int,
    stop: int,
    drop: bool,
) -> int: ...
def intern(
    src_keys: Buffer, dst_keys: Buffer, src_ids: Buffer, dst_ids: Buffer
) -> tuple[list[str], list[int], bytes]: ...
def intern6(buf: Buffer, src_keys: Buffer, dst_keys: Buffer, done: Buffer) -> bytes: ...
