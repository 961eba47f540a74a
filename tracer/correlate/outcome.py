"""The outcome rules: how a connection ended, decided from what the captures saw of it.

One definition, used wherever an outcome is decided: the listing of every connection (`analyze
--list`, `diagnose`) applies it to the whole correlated table at once, and a live trigger can
apply it to the packets seen so far (at one point or several), asking again as packets arrive.
Pure and columnar: arrays in, arrays out; no I/O, no per-connection Python.

Two steps:

1. `packet_facts` folds packets into per-connection `Facts`. A packet here is one send of one
   packet (a journey of the correlator, or a frame seen at a single point), given by its
   connection, its direction (forward = client to server), IP protocol, TCP flags, payload
   length and time. ICMP/ICMPv6 errors are not packets of their own: pass, for each error, the
   connection of the packet it quotes (and when it was seen).
2. `classify` turns `Facts` into one outcome code per connection, at a moment `now_ns` (the end
   of the capture, or the current time of a live capture): a request younger than
   `patience_ns` that has no answer yet is `incomplete` (it may still be answered), not
   `unanswered`.

The outcomes (`OUTCOMES`, codes in that order):

    ok          answered, and completed as the protocol expects: TCP with a SYN-ACK and a FIN
                from both sides (or closed by the client's RST); UDP and ICMP echo with a reply
    reset       a TCP RST came back (from the server side) before both sides had closed
    rejected    an ICMP/ICMPv6 error answered it (kube-proxy's REJECT: port unreachable;
                host/net unreachable from a node) and nothing else did
    unanswered  the first packet never got an answer at any point
    incomplete  the capture began inside it (no SYN seen), or ended inside it (answered but
                not closed, or unanswered for less than `patience_ns`)

Asked again as packets arrive (in time order), `ok` and `reset` never change once given (a
property test holds them to it); `rejected` and `unanswered` can still become `ok` when a
retransmitted SYN gets through after an ICMP error or a long silence, so a live trigger that
stops at the first of them acts on the state at that moment.

Who answered (`answer_kind`): the RST for `reset`, the ICMP error for `rejected`, the first
reply otherwise (`ANSWER_NONE` for an unanswered request); callers name that packet's source
address and the point where it was first seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]
Bools = npt.NDArray[np.bool_]

OK, RESET, REJECTED, UNANSWERED, INCOMPLETE = 0, 1, 2, 3, 4
OUTCOMES: tuple[str, ...] = ("ok", "reset", "rejected", "unanswered", "incomplete")

ANSWER_NONE, ANSWER_REPLY, ANSWER_RST, ANSWER_ICMP = 0, 1, 2, 3

# How long a request may wait for its answer before it counts as unanswered: Linux's initial
# RTO is 1 s, so a SYN that got no SYN-ACK within a second has already been sent again.
DEFAULT_PATIENCE_NS = 1_000_000_000

# TCP flag bits (RFC 9293).
_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10
# "Never" for the per-connection first-time columns.
NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Facts:
    """What was seen of each connection (one entry per connection in every array).

    Times are on one clock (the reference clock of a correlation, or one point's); `NEVER`
    where the event was not seen.
    """

    tcp: Bools
    opened: Bools  # the client's opening packet was seen (TCP: its SYN; else its first packet)
    first_ns: I64  # the first packet of the connection
    answer_ns: I64  # the first answer from the server side (SYN-ACK; any reply if not TCP)
    rst_ns: I64  # the first RST from the server side
    close_ns: I64  # when the connection was closed (TCP: both FINs, or the client's RST)
    icmp_ns: I64  # the first ICMP error quoting one of its packets

    def __len__(self) -> int:
        return int(self.tcp.shape[0])


def _first_at(conn: I64, when: I64, where: Bools, n: int) -> I64:
    """Per connection, the earliest `when` among rows `where` (NEVER if none)."""
    out = np.full(n, NEVER, dtype=np.int64)
    if where.any():
        np.minimum.at(out, conn[where], when[where])
    return out


def packet_facts(
    n: int,
    conn: I64,
    forward: Bools,
    proto: npt.NDArray[np.integer],
    flags: npt.NDArray[np.integer],
    t_ns: I64,
    *,
    error_conn: I64 | None = None,
    error_ns: I64 | None = None,
) -> Facts:
    """Per-connection `Facts` of `n` connections from their packets (one row per packet send).

    `conn` is each packet's connection (0..n-1), `forward` its direction, `proto` the IP
    protocol of the connection, `flags` the TCP flags (0 otherwise), `t_ns` its time.
    `error_conn`/`error_ns` give, per ICMP error, the connection it quotes and its time.
    """
    conn = np.asarray(conn, dtype=np.int64)
    forward = np.asarray(forward, dtype=bool)
    t = np.asarray(t_ns, dtype=np.int64)
    fl = np.asarray(flags).astype(np.int64)
    is_tcp = np.asarray(proto) == 6
    tcp = np.zeros(n, dtype=bool)
    tcp[conn[is_tcp]] = True
    syn = is_tcp & ((fl & (_SYN | _ACK)) == _SYN)
    synack = is_tcp & ((fl & (_SYN | _ACK)) == (_SYN | _ACK))
    rst = is_tcp & ((fl & _RST) != 0)
    fin = is_tcp & ((fl & _FIN) != 0)
    reverse = ~forward
    first_ns = _first_at(conn, t, np.ones(conn.shape[0], dtype=bool), n)
    first_fwd = _first_at(conn, t, forward, n)
    syn_ns = _first_at(conn, t, syn & forward, n)
    # A TCP connection whose SYN was seen is answered by the SYN-ACK; one seen only from the
    # middle (no SYN) by anything the server side sent other than a RST. UDP/ICMP: any reply.
    reply = _first_at(conn, t, reverse & ~rst & ~is_tcp, n)
    synack_ns = _first_at(conn, t, synack & reverse, n)
    mid_reply = _first_at(conn, t, reverse & is_tcp & ~rst, n)
    opened_tcp = syn_ns != NEVER
    answer_ns = np.where(tcp, np.where(opened_tcp, synack_ns, mid_reply), reply)
    rst_ns = _first_at(conn, t, rst & reverse, n)
    fin_fwd = _first_at(conn, t, fin & forward, n)
    fin_rev = _first_at(conn, t, fin & reverse, n)
    rst_fwd = _first_at(conn, t, rst & forward, n)
    both_fins = np.where(
        (fin_fwd != NEVER) & (fin_rev != NEVER), np.maximum(fin_fwd, fin_rev), NEVER
    )
    close_tcp = np.minimum(both_fins, rst_fwd)
    close_ns = np.where(tcp, close_tcp, answer_ns)
    # Not TCP: opened when the client's packet came first (a reply alone began before the capture).
    opened = np.where(tcp, opened_tcp, (first_fwd != NEVER) & (first_fwd <= first_ns))
    icmp_ns = np.full(n, NEVER, dtype=np.int64)
    if error_conn is not None and error_ns is not None and len(error_conn):
        np.minimum.at(icmp_ns, np.asarray(error_conn, np.int64), np.asarray(error_ns, np.int64))
    return Facts(
        tcp=tcp,
        opened=opened,
        first_ns=first_ns,
        answer_ns=answer_ns,
        rst_ns=rst_ns,
        close_ns=close_ns,
        icmp_ns=icmp_ns,
    )


def classify(facts: Facts, now_ns: int | I64, *, patience_ns: int = DEFAULT_PATIENCE_NS) -> I8:
    """One outcome code per connection (an index into `OUTCOMES`), as of `now_ns`."""
    answered = facts.answer_ns != NEVER
    # A RST after both sides closed is the old connection's echo, not an answer.
    reset = (facts.rst_ns != NEVER) & (facts.rst_ns < facts.close_ns)
    rejected = ~answered & (facts.icmp_ns != NEVER)
    ok = answered & (facts.close_ns != NEVER)
    waiting = (np.asarray(now_ns, dtype=np.int64) - facts.first_ns) < patience_ns
    out = np.full(len(facts), INCOMPLETE, dtype=np.int8)
    # Assigned from the weakest rule to the strongest: a later one overrides an earlier one.
    out[facts.opened & ~answered & ~waiting] = UNANSWERED
    out[facts.opened & ok] = OK
    out[rejected] = REJECTED
    out[reset] = RESET
    return out


def answer_kind(codes: I8, facts: Facts) -> I8:
    """Which packet answered each connection: `ANSWER_RST`, `ANSWER_ICMP`, `ANSWER_REPLY` or
    `ANSWER_NONE` (its source is the connection's `outcome_by`)."""
    out = np.where(facts.answer_ns != NEVER, ANSWER_REPLY, ANSWER_NONE).astype(np.int8)
    out[codes == REJECTED] = ANSWER_ICMP
    out[codes == RESET] = ANSWER_RST
    out[codes == UNANSWERED] = ANSWER_NONE
    return out


def outcome_names(codes: I8) -> npt.NDArray[np.object_]:
    """The outcome names of codes."""
    return np.asarray(OUTCOMES, dtype=object)[np.asarray(codes, dtype=np.int64)]


def outcome_code(name: str) -> int:
    """The code of an outcome name (ValueError naming the known ones otherwise)."""
    try:
        return OUTCOMES.index(name)
    except ValueError:
        raise ValueError(f"unknown outcome {name!r}; known: {', '.join(OUTCOMES)}") from None


def failed(codes: I8) -> Bools:
    """Connections that did not end well (`--failed`, `--until failed`): any outcome but ok."""
    return np.asarray(codes) != OK


def http_error(status: npt.NDArray[np.integer]) -> Bools:
    """HTTP responses that report a server error (5xx); status -1 where there is none."""
    s = np.asarray(status)
    return (s >= 500) & (s <= 599)


def dns_error(rcode: npt.NDArray[np.integer]) -> Bools:
    """DNS answers with an error rcode (NXDOMAIN, SERVFAIL, REFUSED, ...); -1 where none."""
    r = np.asarray(rcode)
    return r > 0


def slower(latency_ns: I64, limit_ns: int) -> Bools:
    """Connections whose latency (-1 where unknown) is above `limit_ns`."""
    v = np.asarray(latency_ns, dtype=np.int64)
    return v > limit_ns
