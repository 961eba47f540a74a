"""Translated before the wire: a Service reached with no DNAT on any packet.

An eBPF socket load-balancer (Cilium's kube-proxy replacement, a cgroup connect4/sendmsg4
program) rewrites the Service's address in the client's connect() or sendmsg(): the socket is
connected straight to a backend, no packet ever carries the ClusterIP and no node shows a DNAT.
A tc program on the pod's host veth does it between the pod and the node instead, with no
iptables rule behind it. Either way the packets alone say "no translation".

This module recognises the case from what the run knows besides the packets: the request's wire
destination is an endpoint of a Service in the manifest, and the client asked for that Service
(a DNS answer in the run gave its ClusterIP, or the request that was run named it). It says
where the translation must have happened. Pure: data in, data out; nothing here reads or prints.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from tracer.model import Endpoint, Path, Request, Translation, Tuple5
from tracer.rundir import Service

CLIENT_SOCKET = "client-socket"  # the client pod's own capture already shows the backend
BEFORE_CAPTURE = "before-capture"  # no capture inside the client: its socket or its veth's tc
WHERE_WORDS = {
    CLIENT_SOCKET: "in the client's socket (its connect()/sendmsg() was rewritten by a socket-level"
    " load-balancer, e.g. Cilium's or a cgroup connect4 BPF program): no packet carries the"
    " Service's address",
    BEFORE_CAPTURE: "before the first capture point: in the client's socket (a socket-level"
    " load-balancer) or by a tc program on its host veth; no packet seen carries the Service's"
    " address",
}


@dataclass(frozen=True)
class BeforeWire:
    """The Service the client asked for and where its address became the backend's."""

    service: str  # namespace/name
    frontend: Endpoint  # ClusterIP:port the client asked for
    backend: Endpoint  # where its packets went
    where: str  # CLIENT_SOCKET | BEFORE_CAPTURE
    because: tuple[str, ...]  # how the run shows the client asked for the Service

    @property
    def words(self) -> str:
        return (
            f"Service {self.service} {self.frontend} → {self.backend}, translated "
            f"{WHERE_WORDS[self.where]}"
        )


def _services_behind(
    services: Sequence[Service], backend: Endpoint, proto: str
) -> list[tuple[Service, Endpoint]]:
    """(Service, frontend) for every Service port whose endpoints include `backend`."""
    out = []
    for s in services:
        if not any(e.address == backend.ip for e in s.endpoints):
            continue
        for p in s.ports:
            if p.protocol.lower() != proto or (p.target_port or p.port) != backend.port:
                continue
            for ip in s.cluster_ips:
                out.append((s, Endpoint(ip, p.port)))
    return out


def _named(command: Sequence[str], name: str, ip: str) -> bool:
    """Does the request that was run name the Service (as a host) or its ClusterIP?"""
    host = re.compile(rf"(^|[/@\s]){re.escape(name)}([.:/]|$)")
    return any(ip in arg or host.search(arg) for arg in command)


def before_wire(
    path: Path,
    services: Sequence[Service],
    answers: Mapping[str, str],
    command: Sequence[str] = (),
) -> BeforeWire | None:
    """The Service translation no packet shows, or None.

    `answers` maps each address a DNS answer in the run gave to the name asked; `command` is
    the request that was run (the manifest's). None when a hop already shows a DNAT, when the
    wire destination is no Service's endpoint, or when nothing shows the client asked for it.
    """
    if not path.forward or path.stitches:
        return None
    if any(h.translation is not None for h in path.forward):
        return None
    first = path.forward[0]
    wire = first.tuple5
    if wire.dst.port is None:
        return None
    seen = {h.tuple5.dst.ip for h in path.forward}
    for svc, frontend in _services_behind(services, wire.dst, wire.proto):
        if frontend.ip in seen:
            continue  # the ClusterIP is on the wire: whatever happened, not this
        name = f"{svc.namespace}/{svc.name}"
        because: list[str] = []
        asked = answers.get(frontend.ip)
        if asked is not None:
            because.append(f"the DNS answer for {asked} was {frontend.ip}")
        if _named(command, svc.name, frontend.ip):
            because.append(f"the request run was `{' '.join(command)}`")
        if not because:
            continue
        because.append(f"{wire.dst} is an endpoint of {name}; no packet carries {frontend.ip}")
        where = CLIENT_SOCKET if first.role == "client" else BEFORE_CAPTURE
        return BeforeWire(name, frontend, wire.dst, where, tuple(because))
    return None


def with_before_wire(path: Path, bw: BeforeWire) -> Path:
    """The path told as the client asked for it: the Service's address as the destination and
    the socket's translation on the first hop, with a note saying where it happened."""
    first = path.forward[0]
    asked = Tuple5(first.tuple5.proto, first.tuple5.src, bw.frontend)
    tr = Translation("DNAT", asked, first.tuple5)
    note = f"translated {WHERE_WORDS[bw.where]}"
    hop = replace(first, translation=tr, note=first.note or note)
    request: Request = replace(path.request, destination=str(bw.frontend), backend=str(bw.backend))
    return replace(
        path,
        forward=(hop, *path.forward[1:]),
        request=request,
        notes=(*path.notes, f"{bw.words} ({'; '.join(bw.because)})"),
    )
