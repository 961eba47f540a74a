"""The edge of diagnosis: read a run directory into `RunFacts`.

Reads the run through the trace pipeline (tracer.trace: the captures, their correlation, the
node facts, a proxied request's stitched path), decodes the few payload bytes that matter (HTTP messages, the header an ICMP error quotes; DNS lookups through
tracer.dnslookup, as `pathtrace analyze` reads them) and the cluster health facts
(RUN/cluster/health.json). Everything after this is pure (`tracer.diagnose.steps`). Bad input
surfaces as tracer.errors types from the modules it calls; a bad node fact file is a warning.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Literal

from tracer.correlate.path import local_redirect
from tracer.diagnose.model import HttpEvent, IcmpError, RunFacts
from tracer.dnslookup import (
    DnsLookup,
    answered_names,
    find_lookup,
    is_dns,
    lookups,
    read_dns_packets,
    run_names,
)
from tracer.errors import InputError
from tracer.explain.beforewire import before_wire, with_before_wire
from tracer.health import load_health
from tracer.inputs import LoadedRun, load_run
from tracer.model import Connection, Journey, Observation, Path
from tracer.pcap.columns import Frames
from tracer.pcap.payload import PayloadReader
from tracer.protocols.dns import DNS_PORTS
from tracer.protocols.http import http_request, http_status
from tracer.protocols.icmp import icmp_name, quoted_tuple
from tracer.rundir import Manifest
from tracer.trace import open_run, request_command, request_path

MAX_PATHS = 64  # latency paths built for at most this many application connections


def _is_dns(conn: Connection) -> bool:
    ports = {t.dst.port for _, t in conn.tuples} | {conn.client.dst.port}
    return bool(DNS_PORTS.intersection(p for p in ports if p is not None))


def _timed(
    journey: Journey, offsets: Mapping[str, int]
) -> tuple[Observation, int] | tuple[None, None]:
    """The observation that dates a message: the first sighting of a request, the last of a reply."""
    obs = [(o.t_ns - offsets.get(o.point, 0), o) for o in journey.observations]
    if not obs:
        return None, None
    t, o = (
        min(obs, key=lambda x: x[0])
        if journey.direction == "forward"
        else max(obs, key=lambda x: x[0])
    )
    return o, t


def _best_payload(
    journey: Journey, frames: Mapping[str, Frames], reader: PayloadReader
) -> tuple[bytes, Observation | None]:
    best, where = b"", None
    for o in journey.observations:
        fr = frames.get(o.point)
        if fr is None:
            continue
        data = reader.read(fr, o.frame)
        if len(data) > len(best):  # some points capture with a short snaplen
            best, where = data, o
    return best, where


def decode_events(
    connections: Sequence[Connection],
    frames: Mapping[str, Frames],
    offsets: Mapping[str, int],
) -> tuple[tuple[HttpEvent, ...], tuple[IcmpError, ...]]:
    """Every HTTP message and every ICMP error in the connections (DNS: `gather_lookups`)."""
    http: list[HttpEvent] = []
    icmp: list[IcmpError] = []
    with PayloadReader() as reader:
        for conn in connections:
            proto = conn.protocol.lower()
            if proto in ("udp", "tcp") and _is_dns(conn):
                continue  # DNS is read by tracer.dnslookup (gather_lookups)
            for j in conn.journeys:
                first, t = _timed(j, offsets)
                if first is None or t is None:
                    continue
                direction: Literal["forward", "reverse"] = j.direction
                if proto in ("icmp", "icmpv6"):
                    fr = frames.get(first.point)
                    if fr is None:
                        continue
                    ty = int(fr.columns["icmp_type"][first.frame])
                    code = int(fr.columns["icmp_code"][first.frame])
                    v6 = proto == "icmpv6"
                    if ty < 0 or ty in ((128, 129, 133, 134, 135, 136) if v6 else (0, 8)):
                        continue  # echo and neighbour discovery are not errors
                    data, _ = _best_payload(j, frames, reader)
                    icmp.append(
                        IcmpError(
                            point=first.point,
                            frame=first.frame,
                            t_ns=t,
                            src=first.tuple5.src.ip,
                            dst=first.tuple5.dst.ip,
                            icmp_type=ty,
                            code=code,
                            name=icmp_name(ty, code, v6=v6),
                            quoted=quoted_tuple(data),
                            seen=tuple((o.point, o.frame) for o in j.observations),
                        )
                    )
                    continue
                if not any(o.payload_len > 0 for o in j.observations):
                    continue
                data, where = _best_payload(j, frames, reader)
                if not data or where is None:
                    continue
                if proto != "tcp":
                    continue
                if direction == "forward":
                    req = http_request(data)
                    if req is not None:
                        http.append(
                            HttpEvent(
                                conn.index,
                                direction,
                                first.point,
                                first.frame,
                                t,
                                method=req.method,
                                target=req.target,
                                host=req.host,
                            )
                        )
                else:
                    status = http_status(data)
                    if status is not None:
                        http.append(
                            HttpEvent(
                                conn.index, direction, first.point, first.frame, t, status=status
                            )
                        )
    return tuple(http), tuple(icmp)


# --- choosing the request --------------------------------------------------------------------------


def choose_main(connections: Sequence[Connection], roles: Mapping[str, str]) -> int | None:
    """The request a user most likely means: the first application connection from a client.

    DNS lookups and ICMP errors serve the request; they are the request only when nothing else
    was sent (a name that never resolved).
    """
    app = [c for c in connections if c.protocol in ("tcp", "udp", "sctp") and not _is_dns(c)]
    from_client = [c for c in app if roles.get(c.points[0] if c.points else "") == "client"]
    for group in (from_client, app):
        if group:
            return min(group, key=lambda c: (c.start_ns, c.index)).index
    dns = [c for c in connections if c.protocol in ("udp", "tcp") and _is_dns(c)]
    if dns:
        return min(dns, key=lambda c: (c.start_ns, c.index)).index
    return connections[0].index if connections else None


def app_connections(connections: Sequence[Connection]) -> list[Connection]:
    return [c for c in connections if c.protocol in ("tcp", "udp", "sctp") and not _is_dns(c)]


def gather_lookups(
    connections: Sequence[Connection],
    main: Connection | None,
    frames: Mapping[str, Frames],
    manifest: Manifest,
) -> tuple[DnsLookup, ...]:
    """The run's DNS lookups as `pathtrace analyze` pairs them (tracer.dnslookup), the main
    request's own lookup (the one whose answer it connected to) first."""
    dns_conns = [c for c in connections if is_dns(c)]
    if not dns_conns:
        return ()
    with PayloadReader() as reader:
        packets = read_dns_packets(dns_conns, frames, reader)
    names = run_names(manifest.services)
    found = lookups(dns_conns, packets, names)
    own = find_lookup(main, dns_conns, packets, names) if main is not None else None
    if own is None:
        return tuple(found)
    mine = {(q.connection, q.start_ns) for q in own.queries}
    rest = [lk for lk in found if not mine & {(q.connection, q.start_ns) for q in lk.queries}]
    return (own, *rest)


# --- putting it together ---------------------------------------------------------------------------


def gather(
    run_dir: str | os.PathLike[str],
    *,
    index: int | None = None,
    match: str | None = None,
    loaded: LoadedRun | None = None,
) -> RunFacts:
    """Read RUN into RunFacts; `index`/`match` choose the request as `pathtrace analyze` does."""
    from tracer.correlate import build_path, parse_match, select
    from tracer.correlate.listing import connection_table
    from tracer.correlate.triage import failures
    from tracer.summary import summarize_all

    spec = parse_match(match) if match is not None else None
    run = os.fspath(run_dir)
    loaded = loaded or load_run(run)
    manifest = loaded.manifest
    if manifest is None:  # a bare --point load has none; diagnosis needs the run's manifest
        raise InputError(f"{run}: diagnosis needs a run directory with manifest.json")
    traced = open_run(loaded)
    correlation = traced.correlation
    connections = correlation.connections
    roles = {p.name: p.role for p in manifest.points}
    if index is not None or spec is not None:
        main: int | None = select(correlation, index=index, match=spec).index
    else:
        main = choose_main(connections, roles)
    frames = loaded.frames
    offsets = dict(correlation.offsets)
    http, icmp = decode_events(connections, frames, offsets)
    main_conn = correlation.connection(main) if main is not None else None
    dns_lookups = gather_lookups(connections, main_conn, frames, manifest)
    paths: dict[int, Path] = {}
    wanted = [c for c in app_connections(connections)][:MAX_PATHS]
    if main is not None and all(c.index != main for c in wanted):
        wanted.append(correlation.connection(main))
    for c in wanted:
        paths[c.index] = build_path(correlation, c)
    nodes = dict(traced.facts)
    bw = None
    if main_conn is not None and local_redirect(main_conn) is not None:
        # A meshed app's request: told through its sidecars, as one request.
        paths[main_conn.index] = request_path(traced, main_conn)
    elif main_conn is not None and main_conn.index in paths:
        answers = answered_names(dns_lookups)
        command = request_command(manifest)
        bw = before_wire(paths[main_conn.index], manifest.services, answers, command)
        if bw is not None:
            paths[main_conn.index] = with_before_wire(paths[main_conn.index], bw)
    import numpy as np

    table = connection_table(correlation)
    listed = np.flatnonzero(~table.folded & ~table.noise)
    ended = failures(table, listed, [p.node for p in correlation.points])
    return RunFacts(
        run=run,
        manifest=manifest,
        connections=connections,
        main=main,
        offsets=offsets,
        summaries=summarize_all(connections, frames),
        http=http,
        icmp=icmp,
        nodes=nodes,
        paths=paths,
        health=load_health(run),
        warnings=traced.warnings,
        lookups=dns_lookups,
        outcomes=ended.sentence() if ended.connections else None,
        before_wire=bw,
    )
