"""`Frames` columns built directly from sightings, as a reader would produce them.

Correlator tests use these so they do not depend on the capture reader. Nothing here reads or
writes files.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tracer.pcap.columns import COLUMNS, OPT_MSS, OPT_TS, Frames, payload_hash
from tracer.pcap.decode import ICMP_ERROR_TYPES, quoted_fields
from tracer.testing.wire import ETHERNET, IPPROTO, Pkt, Sighting

_ENCAP_PLAIN = {4: ("eth", "ipv4"), 6: ("eth", "ipv6")}
_ENCAP_VXLAN = ("eth", "ipv4", "udp", "vxlan")


def _l4_header_len(pkt: Pkt) -> int:
    if pkt.proto == "tcp":
        opts = (4 if pkt.mss is not None else 0) + (12 if pkt.tsval is not None else 0)
        return 20 + opts
    return 8


def frames_from_specs(sightings: Sequence[Sighting], path: str = "<synthetic>") -> Frames:
    """The columns a reader would produce for these sightings (as an Ethernet pcapng).

    Interface ids follow first appearance (like pcapng IDBs); `phash` uses the shared
    `payload_hash`; `payload_off` is -1 (there is no file behind these rows).
    """
    n = len(sightings)
    cols = {name: np.full(n, sentinel, dtype=dtype) for name, dtype, sentinel in COLUMNS}
    addresses: dict[str, int] = {}
    encaps: dict[tuple[str, ...], int] = {}
    ifaces: dict[str, int] = {}
    rows: dict[str, list[int]] = {name: [0] * n for name, _, _ in COLUMNS}
    for i, s in enumerate(sightings):
        p = s.pkt
        fam = p.family
        inner = _ENCAP_PLAIN[fam] + (p.proto,)
        stack = (*_ENCAP_VXLAN, *inner) if s.vxlan else inner
        r = rows
        r["t_ns"][i] = s.t_ns
        r["iface"][i] = ifaces.setdefault(s.iface or "any", len(ifaces))
        r["direction"][i] = s.direction
        r["encap"][i] = encaps.setdefault(stack, len(encaps))
        r["family"][i] = fam
        r["proto"][i] = IPPROTO[p.proto]
        r["src"][i] = addresses.setdefault(p.src, len(addresses))
        r["dst"][i] = addresses.setdefault(p.dst, len(addresses))
        r["ip_id"][i] = p.ip_id if fam == 4 else -1
        r["ttl"][i] = p.ttl
        r["payload_len"][i] = len(p.payload)
        r["pcap_len"][i] = len(p.payload)
        r["phash"][i] = payload_hash(p.payload)
        r["payload_off"][i] = -1
        hdr = (20 if fam == 4 else 40) + _l4_header_len(p)
        r["origlen"][i] = 14 + hdr + len(p.payload) + (50 if s.vxlan else 0)
        r["sport"][i] = -1
        r["dport"][i] = -1
        r["icmp_type"][i] = -1
        r["icmp_code"][i] = -1
        r["icmp_id"][i] = -1
        r["icmp_seq"][i] = -1
        for name in ("quoted_proto", "quoted_sport", "quoted_dport", "quoted_seq"):
            r[name][i] = -1
        if p.proto in ("tcp", "udp"):
            r["sport"][i] = p.sport or 0
            r["dport"][i] = p.dport or 0
        if p.proto == "tcp":
            r["seq"][i] = p.seq
            r["ack"][i] = p.ack
            r["tcp_flags"][i] = p.flags
            opts = 0
            if p.tsval is not None:
                opts |= OPT_TS
                r["tsval"][i] = p.tsval
                r["tsecr"][i] = p.tsecr or 0
            if p.mss is not None:
                opts |= OPT_MSS
                r["mss"][i] = p.mss
            r["opts"][i] = opts
        elif p.proto in ("icmp", "icmpv6"):
            default_type = 8 if p.proto == "icmp" else 128
            icmp_type = default_type if p.icmp_type is None else p.icmp_type
            r["icmp_type"][i] = icmp_type
            r["icmp_code"][i] = p.icmp_code
            if icmp_type in ICMP_ERROR_TYPES[IPPROTO[p.proto]]:
                # As the reader does: an error has no id/sequence, it quotes a packet.
                quote = quoted_fields(p.payload)
                r["quoted_proto"][i], r["quoted_sport"][i] = quote[0], quote[1]
                r["quoted_dport"][i], r["quoted_seq"][i] = quote[2], quote[3]
            else:
                r["icmp_id"][i] = p.icmp_id or 0
                r["icmp_seq"][i] = p.icmp_seq or 0
    for name, dtype, _ in COLUMNS:
        if n:
            cols[name] = np.asarray(rows[name], dtype=dtype)
    return Frames(
        path=path,
        linktypes=(ETHERNET,),
        columns=dict(cols),
        encaps=tuple(encaps),
        addresses=tuple(addresses),
        interfaces={v: k for k, v in ifaces.items()},
    )
