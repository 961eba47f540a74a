"""Connections: flows (a tuple at a point, split at each SYN) joined into connections by the
packets they share, each packet's direction, and retransmissions.

Confident matches (SYNs; unambiguous UDP/ICMP) define connections first; later matches must
agree with them: one that would join two learned connections is split, not merged. Whole-array
passes (numpy and the compiled kernels); no Python loop per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracer.correlate import kernels
from tracer.correlate.gather import Columns, Rows
from tracer.correlate.kernels import packed_order
from tracer.correlate.scope import ambiguous_keys, repeated_rows, same_points, split_by_domain
from tracer.correlate.state import NO_BOOLS, NO_ROWS, Domains, Packets
from tracer.correlate.table import I64, Bools, Col
from tracer.memory import give_back
from tracer.pcap.columns import TH_ACK, TH_FIN, TH_RST, TH_SYN


def components(n: int, a: I64, b: I64) -> I64:
    """Connected components of n nodes under edges (a[i], b[i]): the smallest node of each."""
    lab = np.arange(n, dtype=np.int64)
    if a.size == 0:
        return lab
    while True:
        la, lb = lab[a], lab[b]
        diff = la != lb
        if not diff.any():
            return lab
        la, lb = la[diff], lb[diff]
        np.minimum.at(lab, np.maximum(la, lb), np.minimum(la, lb))
        while True:
            nxt = lab[lab]
            if np.array_equal(nxt, lab):
                break
            lab = nxt


def distinct_count(group: I64, value: I64, n_groups: int, n_values: int) -> I64:
    """How many distinct values (0..n_values-1) each group has."""
    if n_values <= 62:
        # A bit per value, OR-ed per group: linear, no sort.
        mask = kernels.group_or(group, np.left_shift(1, value.astype(np.int64)), n_groups)
        bits = np.zeros(n_groups, dtype=np.int64)
        for b in range(n_values):
            bits += (mask >> b) & 1
        return bits
    pairs = _distinct(group * n_values + value)
    return np.bincount(pairs // n_values, minlength=n_groups).astype(np.int64)


def _distinct(values: I64) -> I64:
    """The distinct values, sorted."""
    sv = np.sort(values)
    if sv.shape[0] < 2:
        return sv
    return sv[np.r_[True, sv[1:] != sv[:-1]]]


def join_local_redirects(
    fid: I64, n_fid: int, syn: Bools, synack: Bools, pidx: Col, cols: Columns
) -> I64:
    """One flow per connection where a NAT inside the capturing host itself split it in two.

    A REDIRECT (istio's sidecar capture) or a DNAT in the OUTPUT chain of the namespace being
    captured rewrites the request after the capture point's socket and un-rewrites the reply
    before it: on the pod's loopback the SYN reads app -> 127.0.0.1:15001 while the SYN-ACK
    reads ClusterIP -> app. Such a pair is two flows, one with a SYN and no SYN-ACK, one with a
    SYN-ACK and no SYN, at the same point, the SYN-ACK acknowledging the SYN's sequence number:
    the reply flow joins the request's. Nothing else is merged.
    """
    if not syn.any() or not synack.any():
        return fid
    has_syn = np.zeros(n_fid, dtype=bool)
    has_syn[fid[syn]] = True
    has_synack = np.zeros(n_fid, dtype=bool)
    has_synack[fid[synack]] = True
    lone_syn = syn & ~has_synack[fid]
    lone_synack = synack & ~has_syn[fid]
    if not lone_syn.any() or not lone_synack.any():
        return fid
    s_rows, a_rows = np.flatnonzero(lone_syn), np.flatnonzero(lone_synack)
    (seq,) = cols.at(s_rows, "seq")
    (ack,) = cols.at(a_rows, "ack")
    pidx64 = np.asarray(pidx, dtype=np.int64)
    want: dict[tuple[int, int], int] = {}
    for p, q, f in zip(pidx64[s_rows].tolist(), seq.tolist(), fid[s_rows].tolist(), strict=True):
        key = (p, (int(q) + 1) & 0xFFFFFFFF)
        want[key] = -1 if key in want and want[key] != f else f  # ambiguous: leave it alone
    target = np.arange(n_fid, dtype=np.int64)
    for p, a, f in zip(pidx64[a_rows].tolist(), ack.tolist(), fid[a_rows].tolist(), strict=True):
        g = want.get((p, int(a) & 0xFFFFFFFF), -1)
        if g >= 0 and g != f:
            target[f] = g
    return target[fid] if (target != np.arange(n_fid)).any() else fid


def split_at_syns(fid: I64, n_fid: int, syn: Bools, syn_seq: Col, t: I64) -> tuple[I64, int]:
    """Split each flow where a connection starts (its SYN) and where a new one reuses the tuple.

    `syn_seq` is the sequence number of each SYN row (in row order). Returns new flow ids (not
    dense: flow f becomes f * epochs + epoch) and their range.
    """
    if not syn.any():
        return fid, n_fid
    ef, es, et = fid[syn], np.asarray(syn_seq, dtype=np.int64), t[syn]
    first_t = kernels.group_min(ef, et, n_fid)
    per_fid = np.bincount(_distinct(ef * (1 << 32) + es) >> 32, minlength=n_fid)
    later = t >= first_t[fid]
    multi = np.flatnonzero(per_fid > 1)
    if not multi.shape[0]:
        # One SYN per flow (the usual case): rows before it are epoch 0, the rest epoch 1.
        out = fid * 2
        out += later
        return out, n_fid * 2
    epoch = later.astype(np.int64)
    del later
    # Rare (a port reused within the capture): count the distinct SYNs before each row.
    for f in multi.tolist():
        mine = ef == f
        first_by_isn: dict[int, int] = {}
        for isn, when in zip(es[mine].tolist(), et[mine].tolist(), strict=True):
            first_by_isn[isn] = min(when, first_by_isn.get(isn, when))
        times = np.sort(np.array(list(first_by_isn.values()), dtype=np.int64))
        sel = np.flatnonzero(fid == f)
        epoch[sel] = np.searchsorted(times, t[sel], side="right")
    epochs = int(epoch.max()) + 1
    return fid * epochs + epoch, n_fid * epochs


def learn_connections(jid: I64, n_j: int, fid: I64, n_fid: int, jconf: Bools) -> tuple[I64, int]:
    """Label every row with its connection; returns (label per row, journeys split)."""
    n = jid.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), 0
    # Each journey's anchor: the flow of its first row.
    anchor_j = fid[kernels.first_index(jid, n_j)]
    conf_row = jconf[jid]
    # Phase 1: confident matches define connections.
    lab = components(n_fid, fid[conf_row], anchor_j[jid[conf_row]])
    learned = np.zeros(n_fid, dtype=bool)
    learned[fid[conf_row]] = True
    # Phase 2: other matches may attach a flow to one learned connection, never join two.
    other = ~conf_row
    if other.any():
        rl = np.where(learned[fid], lab[fid], -1)
        # Per journey, the one learned connection its other rows name (-1: none, or several).
        unlearned = rl < 0
        rl[conf_row] = -1
        single = kernels.group_single(jid, rl, n_j)
        del rl
        vote = other & unlearned & (single[jid] >= 0)
        del unlearned
        if vote.any():
            vk, vc = np.unique(fid[vote] * (n_fid + 1) + single[jid[vote]], return_counts=True)
            vf, vl = vk // (n_fid + 1), vk % (n_fid + 1)
            best = np.lexsort((-vc, vf))
            vf, vl = vf[best], vl[best]
            head = np.r_[True, vf[1:] != vf[:-1]]
            lab[vf[head]] = vl[head]
            learned[vf[head]] = True
        # Phase 3: flows no confident match reached form connections among themselves.
        rest = other & ~learned[fid] & ~learned[anchor_j][jid]
        if rest.any():
            sub = components(n_fid, fid[rest], anchor_j[jid[rest]])
            free = ~learned
            lab = np.where(free, sub, lab)
            lab = lab[lab]
    label = lab[fid]
    # Journeys whose rows ended up in more than one connection.
    split = int((kernels.group_min(jid, label, n_j) < kernels.group_max(jid, label, n_j)).sum())
    return label, split


def journey_forward(jid: I64, n_j: int, is_fwd: Bools) -> Bools:
    votes = np.bincount(jid, weights=is_fwd.astype(np.float64), minlength=n_j)
    count = np.bincount(jid, minlength=n_j)
    return votes * 2 >= count


def retransmissions(conn: I64, fwd: Bools, seq: I64, plen: I64, flags: I64, tcp: Bools) -> I64:
    """For journeys in time order: how many earlier sends of the same segment there were."""
    n = conn.shape[0]
    out = np.zeros(n, dtype=np.int64)
    counts = tcp & ((plen > 0) | ((flags & (TH_SYN | TH_FIN)) != 0))
    if not counts.any():
        return out
    idx = np.flatnonzero(counts)
    k = kernels.mix_rows(
        7, (conn[idx] * 2 + fwd[idx], seq[idx], plen[idx], flags[idx] & (TH_SYN | TH_FIN | TH_RST))
    )
    o = packed_order(k)
    ks = k[o]
    new = np.r_[True, ks[1:] != ks[:-1]]
    starts = np.flatnonzero(new)
    grp = np.cumsum(new) - 1
    ordinal = np.arange(o.shape[0]) - starts[grp]
    out[idx[o]] = ordinal
    return out


# ----------------------------------------------------------------------------- phases


@dataclass(frozen=True)
class Flows:
    """Per row: its flow (a tuple at a point, split at each new SYN), its sender, its SYNs."""

    fid: I64
    n: int
    ep_s: I64
    syn: Bools


def row_flows(rows: Rows, doms: Domains, pk: Packets) -> Flows:
    """Every row's flow. A key two flows show at one vantage names different packets (identical
    probes from several senders): its sends are matched within a node only and never become
    clock samples."""
    cols = rows.cols
    n = int(rows.pidx.shape[0])
    if cols.sources:  # any point
        ep_s, fkey = cols.per_point(lambda p, c, lut: kernels.flow_keys(p, c, lut))
    else:
        ep_s, fkey = np.zeros(0, np.int64), np.zeros(0, np.uint64)
    # Flows numbered as rows first show them (see kernels.first_seen).
    fid, n_fid = kernels.dense(fkey, ordered=False)
    del fkey
    kid, pk.kid = pk.kid, NO_ROWS
    amb_row = ambiguous_keys(kid, pk.n_kid, rows.pidx, cols["iface"], cols["direction"], fid)[kid]
    # Which journeys may be clock samples: a key sent several times is paired k-th with k-th,
    # which is only sure where every send of it shows at the same points.
    pk.noclock = amb_row | (
        pk.jambiguous[pk.jid]
        & ~(repeated_rows(n, pk.repeats) & same_points(kid, pk.n_kid, pk.jid, pk.n_j, rows.pidx))
    )
    del kid
    cols.forget("src", "dst", "iface", "direction", "payload_len", "seq")
    give_back()
    if amb_row.any():
        old_jid = pk.jid
        pk.jid, pk.n_j = split_by_domain(old_jid, amb_row, doms.of_point[rows.pidx], doms.n)
        amb = np.zeros(pk.n_j, dtype=bool)
        amb[pk.jid] = pk.jambiguous[old_jid] | amb_row
        pk.jambiguous = amb
        del old_jid, amb
        keep = ~amb_row[pk.repeats]
        pk.repeats, pk.repeat_key = pk.repeats[keep], pk.repeat_key[keep]
        del keep
    del amb_row
    tcp = cols["proto"] == 6
    flags = cols["tcp_flags"]
    syn = tcp & ((flags & (TH_SYN | TH_ACK)) == TH_SYN)
    fid = join_local_redirects(
        fid, n_fid, syn, tcp & ((flags & (TH_SYN | TH_ACK)) == (TH_SYN | TH_ACK)), rows.pidx, cols
    )
    del tcp
    (syn_seq,) = cols.at(np.flatnonzero(syn), "seq")
    fid, n_fid = split_at_syns(fid, n_fid, syn, syn_seq, rows.t)
    del syn_seq
    # The capture times are not read again until the clocks: gathered anew there rather than
    # held through the connection stages (the memory peak).
    rows.t = np.zeros(0, np.int64)
    fid, new_of = kernels.first_seen(fid, n_fid)
    n_fid = int(new_of.max()) + 1 if n else 0
    del new_of
    return Flows(fid, n_fid, ep_s, syn)


def connect(rows: Rows, pk: Packets, fl: Flows, warnings: list[str]) -> None:
    """Every row's connection: flows linked by confident matches first (SYNs; unambiguous
    UDP/ICMP), a send that straddles two connections split into one journey per connection."""
    jconf = np.zeros(pk.n_j, dtype=bool)
    jconf[pk.jid[fl.syn]] = True
    nontcp = rows.cols["proto"] != 6
    jconf[pk.jid[nontcp]] = ~pk.jambiguous[pk.jid[nontcp]]
    label, split = learn_connections(pk.jid, pk.n_j, fl.fid, fl.n, jconf)
    del jconf, nontcp
    pk.jambiguous = NO_BOOLS
    if split:
        warnings.append(
            f"{split} matches contradicted the tuples learned for their connections "
            f"and were split instead of merged"
        )
        pk.jid, pk.n_j = kernels.dense(pk.jid * (fl.n + 1) + label)
    used = np.zeros(fl.n + 1, dtype=bool)
    used[label] = True
    renumber = np.cumsum(used) - 1
    pk.conn, pk.n_c = renumber[label], int(used.sum())


# ICMP and ICMPv6 echo requests: their sender is the client.
_ICMP_ECHO_REQUEST = (8, 128)


def orient(rows: Rows, pk: Packets, fl: Flows) -> None:
    """Forward = from the client: the SYN's sender (or an echo request's), else the first
    sender of the flow."""
    cols = rows.cols
    proto = cols["proto"]
    fid, n_fid, ep_s = fl.fid, fl.n, fl.ep_s
    echo_req = (proto != 6) & np.isin(cols["icmp_type"], _ICMP_ECHO_REQUEST) & (proto != 17)
    anchor = fl.syn | echo_req
    del echo_req
    fwd_src = np.full(n_fid, -1, dtype=np.int64)
    first = kernels.first_index(fid, n_fid)
    fwd_src[first >= 0] = ep_s[first[first >= 0]]
    anchored = np.zeros(n_fid, dtype=bool)
    fwd_src[fid[anchor]] = ep_s[anchor]
    anchored[fid[anchor]] = True
    is_fwd = ep_s == fwd_src[fid]
    jfwd = journey_forward(pk.jid, pk.n_j, is_fwd)
    # A flow seen only mid-connection may have been oriented by a reply: flip it where its rows
    # mostly disagree with the packets they belong to.
    agree = np.bincount(fid[is_fwd == jfwd[pk.jid]], minlength=n_fid)
    total = np.bincount(fid, minlength=n_fid)
    flip = (~anchored) & (agree * 2 < total)
    if flip.any():
        is_fwd = np.where(flip[fid], ~is_fwd, is_fwd)
        jfwd = journey_forward(pk.jid, pk.n_j, is_fwd)
    pk.is_fwd, pk.jfwd = is_fwd, jfwd
