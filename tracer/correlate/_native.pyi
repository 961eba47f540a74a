# The compiled correlator kernels (_native.c); kernels.py wraps each one with its numpy twin.
from collections.abc import Sequence
from typing import Any

def packet_key(
    proto: Any,
    seq: Any,
    ack: Any,
    tsval: Any,
    tsecr: Any,
    flags: Any,
    opts: Any,
    payload_len: Any,
    ip_id: Any,
    phash: Any,
    icmp_type: Any,
    icmp_code: Any,
    icmp_seq: Any,
    tcp_phash: bool,
    out: Any,
    /,
) -> None: ...
def group_reduce(groups: Any, values: Any, out: Any, op: int, /) -> bool: ...
def mix_rows(seed: int, columns: Sequence[Any], out: Any, /) -> None: ...
def counting_order(groups: Any, k: int, out: Any, /) -> bool: ...
def dense_few(keys: Any, limit: int, ordered: bool, out: Any, /) -> int: ...
def first_seen(ids: Any, out: Any, mapping: Any, /) -> bool: ...
def sends(
    skey: Any,
    order: Any,
    bounds: Any,
    t: Any,
    vantage: Any,
    window: int,
    jid: Any,
    jamb: Any,
    lone: Any,
    rep: Any,
    /,
) -> tuple[int, int]: ...
def flow_keys(
    point: int,
    proto: Any,
    src: Any,
    dst: Any,
    sport: Any,
    dport: Any,
    icmp_id: Any,
    lut: Any,
    ep_s: Any,
    fkey: Any,
    /,
) -> bool: ...
