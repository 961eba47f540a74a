"""Which packets may be matched across nodes and used as clock samples. Pure.

Two kinds of packets repeat with identical bytes, so that their NAT-invariant key names many
different packets:
- link-scope chatter, sent on every link of every node: IPv6 router and neighbour
  solicitations, MLD reports, IGMP, DHCP, mDNS; anything to or from a link-local, multicast,
  broadcast or unspecified address. It never crosses a router, so it is never the same packet at
  two nodes: its key is refined by the clock domain (`scoped_keys`).
- identical probes from several senders (the same UDP datagram to many pods): one key shows
  more than one flow at the same interface and direction of one point (`ambiguous_keys`). Such
  a key says nothing about which copy is which, so it is matched within a node only and never
  feeds a clock estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tracer.correlate import kernels
from tracer.correlate.keys import mix
from tracer.pcap.columns import DIR_IN, DIR_OUT
from tracer.pcap.decode import IPPROTO_ESP, IPSEC_NAT_T_PORT, WIREGUARD_PORTS

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
Bools = npt.NDArray[np.bool_]

# Text prefixes of the addresses a router never forwards (RFC 4291 2.5.2/2.5.6/2.7, RFC 3927,
# RFC 5771, RFC 919): the reader writes addresses in their canonical, lower-case text form.
_V6_LINK = ("fe8", "fe9", "fea", "feb", "ff")
_V4_LINK = ("169.254.", "255.255.255.255", "0.0.0.0", *(f"{b}." for b in range(224, 240)))
_LINK_PREFIXES = _V6_LINK + _V4_LINK


def _link_scope(address: str) -> bool:
    return address == "::" or address.startswith(_LINK_PREFIXES)


def link_scope_addresses(addresses: Sequence[str]) -> Bools:
    """Per address: True where it is link-local, multicast, broadcast or unspecified."""
    return np.fromiter(map(_link_scope, addresses), dtype=bool, count=len(addresses))


# ICMPv6 messages that never leave their link whatever their addresses (RFC 4861 neighbour
# discovery, RFC 2710/3810 MLD, RFC 4286 multicast router discovery): a neighbour solicitation
# to a node's global address is still only the link's business.
LINK_ICMP6_TYPES = (130, 131, 132, 133, 134, 135, 136, 137, 143, 151, 152, 153)
_LINK_ICMP6 = np.isin(np.arange(256), LINK_ICMP6_TYPES)


def link_scope_rows(
    addresses: Sequence[str],
    src: npt.NDArray[Any],
    dst: npt.NDArray[Any],
    proto: npt.NDArray[Any] | None = None,
    icmp_type: npt.NDArray[Any] | None = None,
) -> Bools:
    """Per row (`src`/`dst` are ids into `addresses`, -1 for none): link-scope traffic, by its
    addresses or (given `proto` and `icmp_type`) by being neighbour discovery or MLD."""
    scoped = np.r_[link_scope_addresses(addresses), False]  # -1 indexes the trailing False
    out = scoped[np.asarray(src)] | scoped[np.asarray(dst)]
    if proto is not None and icmp_type is not None:
        t = np.asarray(icmp_type).astype(np.int64)
        out |= (np.asarray(proto) == 58) & _LINK_ICMP6[np.clip(t, 0, 255)] & (t >= 0)
    return out


def encrypted_tunnel_rows(
    proto: npt.NDArray[Any], sport: npt.NDArray[Any], dport: npt.NDArray[Any]
) -> Bools:
    """Per row: a packet of an encrypted tunnel (WireGuard, ESP, ESP in UDP)."""
    p = np.asarray(proto)
    ports = (*WIREGUARD_PORTS, IPSEC_NAT_T_PORT)
    udp = (p == 17) & (np.isin(np.asarray(sport), ports) | np.isin(np.asarray(dport), ports))
    return udp | (p == IPPROTO_ESP)


def scoped_keys(key: U64, scoped: Bools, domain: npt.NDArray[Any]) -> U64:
    """The keys with each link-scope row's refined by its clock domain (in place)."""
    if scoped.any():
        key[scoped] = mix(key[scoped], np.asarray(domain)[scoped])
    return key


def ambiguous_keys(
    kid: I64,
    n_kid: int,
    pidx: npt.NDArray[Any],
    iface: npt.NDArray[Any],
    direction: npt.NDArray[Any],
    flow: I64,
) -> Bools:
    """Per key: True where some interface and direction of one point shows it in two flows.

    Only rows whose interface and direction are known count: a capture that does not record
    them (a plain pcap) may show the same send before and after NAT on one vantage.
    """
    out = np.zeros(n_kid, dtype=bool)
    ifc = np.asarray(iface).astype(np.int64)
    d = np.asarray(direction)
    known = (ifc >= 0) & ((d == DIR_IN) | (d == DIR_OUT))
    if not known.any():
        return out
    rows = np.flatnonzero(known)
    cell_key = kernels.mix_rows(
        0x5C0, (kid[rows], np.asarray(pidx)[rows], ifc[rows] * 4 + d[rows].astype(np.int64))
    )
    cell, n_cell = kernels.dense(cell_key)
    f = flow[rows]
    multi = kernels.group_min(cell, f, n_cell) != kernels.group_max(cell, f, n_cell)
    out[kid[rows][multi[cell]]] = True
    return out


def split_by_domain(
    jid: I64, split: Bools, domain: npt.NDArray[Any], n_dom: int
) -> tuple[I64, int]:
    """Journey ids with the rows of `split` journeys kept apart per clock domain (numbered in
    the order rows first show them)."""
    out = np.where(split, jid.max(initial=0) + 1 + jid * n_dom + np.asarray(domain), jid)
    ids, n = kernels.dense(out, ordered=False)
    return ids, n


def repeated_rows(n: int, repeats: I64) -> Bools:
    """Per row: True for the rows of keys sent more than once (`repeats` lists them)."""
    out = np.zeros(n, dtype=bool)
    out[repeats] = True
    return out


def same_points(kid: I64, n_kid: int, jid: I64, n_j: int, pidx: npt.NDArray[Any]) -> Bools:
    """Per row: True where every send of its key shows at the same set of points.

    Then pairing the k-th send at one point with the k-th at another is forced; where one point
    missed a send (or its capture started a period later) the order pairs the wrong copies.
    """
    p = np.asarray(pidx).astype(np.int64)
    if p.shape[0] == 0 or int(p.max()) > 62:
        return np.zeros(p.shape[0], dtype=bool)
    where = kernels.group_or(jid, np.left_shift(1, p), n_j)[jid]
    return (kernels.group_min(kid, where, n_kid) == kernels.group_max(kid, where, n_kid))[kid]
