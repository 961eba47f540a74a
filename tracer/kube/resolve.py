"""Target resolution: `--from` and `--to` specs to the pods, Services, nodes and DNS involved.

Parsing the specs is pure; `resolve()` reads the cluster through a `KubeApi`-shaped object and
returns `tracer.capture.targets.Targets`. kubectl conventions: `svc/NAME[:PORT]`, `pod/NAME`,
`ingress/NAME`, a URL, `external`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlsplit

from tracer.capture.targets import NodeTarget, PodTarget, Targets
from tracer.errors import ClusterError, UsageError
from tracer.kube.client import IngressInfo, PodInfo
from tracer.rundir import Service

DNS_NAMESPACE = "kube-system"
DNS_SERVICE = "kube-dns"
DNS_POD_SELECTOR = "k8s-app=kube-dns"
# Cilium's agent (its kube-proxy replacement serves Services in eBPF): read, never changed.
LB_AGENT_NAMESPACE = "kube-system"
LB_AGENT_SELECTOR = "k8s-app=cilium"
INGRESS_CONTROLLER_SELECTOR = "app.kubernetes.io/name=ingress-nginx"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_KINDS = {
    "svc": "svc",
    "service": "svc",
    "services": "svc",
    "pod": "pod",
    "pods": "pod",
    "po": "pod",
    "ingress": "ingress",
    "ing": "ingress",
    "ingresses": "ingress",
}


@dataclass(frozen=True)
class FromSpec:
    kind: Literal["pod", "external"]
    name: str = ""


@dataclass(frozen=True)
class ToSpec:
    kind: Literal["svc", "pod", "ingress", "url"]
    name: str
    port: int | str | None = None
    namespace: str | None = None
    host: str = ""  # for URLs: the host as written (a name or an address)


def parse_from(spec: str) -> FromSpec:
    if spec == "external":
        return FromSpec("external")
    kind, _, name = spec.partition("/")
    if _KINDS.get(kind) != "pod" or not _NAME.match(name):
        raise UsageError(f"--from {spec!r}: expected pod/NAME or external")
    return FromSpec("pod", name)


def parse_to(spec: str) -> ToSpec:
    if "://" in spec:
        u = urlsplit(spec)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise UsageError(f"--to {spec!r}: expected an http:// or https:// URL with a host")
        try:
            url_port = u.port or (443 if u.scheme == "https" else 80)
        except ValueError:
            raise UsageError(f"--to {spec!r}: the port is not a number") from None
        host = u.hostname
        labels = host.split(".")
        # web, web.ns, web.ns.svc, web.ns.svc.cluster.local: a Service by its DNS name.
        ns = labels[1] if len(labels) >= 2 and not _is_ip(host) else None
        return ToSpec("url", labels[0] if not _is_ip(host) else host, url_port, ns, host)
    kind, sep, rest = spec.partition("/")
    k = _KINDS.get(kind)
    if not sep or k is None:
        raise UsageError(
            f"--to {spec!r}: expected svc/NAME[:PORT], pod/NAME, ingress/NAME or a URL"
        )
    name, _, port_s = rest.partition(":")
    if not _NAME.match(name):
        raise UsageError(f"--to {spec!r}: {name!r} is not a valid object name")
    port: int | str | None = None
    if port_s:
        if k != "svc":
            raise UsageError(f"--to {spec!r}: only a Service takes a :PORT")
        port = int(port_s) if port_s.isdigit() else port_s
    return ToSpec(k, name, port)  # type: ignore[arg-type]


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


class ClusterReader(Protocol):
    namespace: str

    def get_pod(self, namespace: str, name: str) -> PodInfo: ...
    def list_pods(self, namespace: str | None, selector: str = "") -> list[PodInfo]: ...
    def get_service(self, namespace: str, name: str) -> Service: ...
    def get_ingress(self, namespace: str, name: str) -> IngressInfo: ...
    def list_nodes(self) -> list[NodeTarget]: ...


def _select_port(svc: Service, port: int | str | None) -> Service:
    if port is None:
        return svc
    chosen = tuple(p for p in svc.ports if p.port == port or (p.name and p.name == port))
    if not chosen:
        have = ", ".join(f"{p.name or '-'}:{p.port}" for p in svc.ports) or "none"
        raise UsageError(f"service {svc.namespace}/{svc.name} has no port {port} (ports: {have})")
    return Service(
        svc.namespace,
        svc.name,
        svc.cluster_ips,
        chosen,
        svc.endpoints,
        svc.external_traffic_policy,
        svc.session_affinity,
    )


def _servers(api: ClusterReader, svc: Service, warnings: list[str]) -> list[PodTarget]:
    out = []
    for ep in svc.endpoints:
        if not ep.ready:
            warnings.append(f"endpoint {ep.address} of {svc.namespace}/{svc.name} is not ready")
        if ep.pod is None:
            continue
        try:
            out.append(api.get_pod(svc.namespace, ep.pod).target)
        except ClusterError as e:
            if getattr(e, "status", None) != 404:
                raise
            # The endpoint outlived its pod: kube-proxy still DNATs to it; its node is captured.
            warnings.append(
                f"endpoint {ep.address} of {svc.namespace}/{svc.name} names pod {ep.pod}, which"
                " does not exist (a stale endpoint: packets sent to it go nowhere)"
            )
    if not svc.endpoints:
        warnings.append(f"service {svc.namespace}/{svc.name} has no endpoints")
    return out


def resolve(
    api: ClusterReader,
    source: FromSpec,
    dest: ToSpec,
    *,
    uses_name: bool = False,
    ingress_selector: str = INGRESS_CONTROLLER_SELECTOR,
) -> tuple[Targets, list[str]]:
    """The targets of one request, plus warnings worth showing (no endpoints, not ready...)."""
    ns = api.namespace
    warnings: list[str] = []
    client = None
    if source.kind == "pod":
        info = api.get_pod(ns, source.name)
        if info.phase != "Running":
            raise ClusterError(f"pod {ns}/{source.name} is {info.phase}, not Running")
        client = info.target
    services: list[Service] = []
    servers: list[PodTarget] = []
    ingress_pods: list[PodTarget] = []
    extra_ips: list[str] = []
    extra_ports: list[int] = []
    if dest.kind == "svc":
        svc = _select_port(api.get_service(ns, dest.name), dest.port)
        services.append(svc)
        servers = _servers(api, svc, warnings)
    elif dest.kind == "pod":
        servers = [api.get_pod(ns, dest.name).target]
    elif dest.kind == "ingress":
        ing = api.get_ingress(ns, dest.name)
        for name, port in dict.fromkeys(ing.backends):
            svc = _select_port(api.get_service(ns, name), port)
            services.append(svc)
            servers += _servers(api, svc, warnings)
        ingress_pods = [p.target for p in api.list_pods(None, ingress_selector)]
        if not ingress_pods:
            warnings.append(
                f"no ingress controller pods match {ingress_selector!r}: the controller hop is "
                "captured only at the nodes"
            )
        extra_ips += ing.addresses
        extra_ports += [80, 443]
    else:  # url
        port = int(dest.port) if isinstance(dest.port, int) else 80
        if _is_ip(dest.host):
            extra_ips.append(dest.host)
            extra_ports.append(port)
        else:
            svc_ns = dest.namespace or ns
            svc = api.get_service(svc_ns, dest.name)
            matching = tuple(p for p in svc.ports if p.port == port)
            svc = _select_port(svc, port if matching else None)
            services.append(svc)
            servers = _servers(api, svc, warnings)
            uses_name = True
    dns = None
    dns_pods: list[PodTarget] = []
    if uses_name:
        try:
            dns = api.get_service(DNS_NAMESPACE, DNS_SERVICE)
            dns_pods = [p.target for p in api.list_pods(DNS_NAMESPACE, DNS_POD_SELECTOR)]
        except ClusterError as e:
            warnings.append(f"cluster DNS not resolved, its lookup is not traced: {e}")
    node_ips = {n.name: n for n in api.list_nodes()}
    wanted = [p.node for p in (client, *servers, *ingress_pods) if p is not None and p.node]
    wanted += [ep.node for svc in services for ep in svc.endpoints if ep.node]
    if uses_name:
        wanted += [p.node for p in dns_pods if p.node]
    nodes = tuple(node_ips[n] for n in dict.fromkeys(wanted) if n in node_ips)
    if source.kind == "external":
        # Any node may receive external traffic (NodePort, LB): capture them all.
        nodes = tuple(node_ips.values())
    on_path = {n.name for n in nodes}
    try:
        agents = tuple(
            p.target
            for p in api.list_pods(LB_AGENT_NAMESPACE, LB_AGENT_SELECTOR)
            if p.target.node in on_path
        )
    except ClusterError as e:
        agents = ()
        warnings.append(f"Cilium agents not listed, their load-balancer is not read: {e}")
    targets = Targets(
        destination=dest.host or f"{dest.kind}/{dest.name}",
        client=client,
        servers=tuple(servers),
        services=tuple(services),
        nodes=nodes,
        dns=dns,
        dns_pods=tuple(dns_pods),
        ingress_pods=tuple(ingress_pods),
        extra_ips=tuple(dict.fromkeys(extra_ips)),
        extra_ports=tuple(dict.fromkeys(extra_ports)),
        uses_name=uses_name,
        lb_agents=agents,
    )
    return targets, warnings


def request_uses_name(argv: list[str]) -> bool:
    """True when the request names its destination (so a DNS lookup precedes it)."""
    for a in argv:
        host = urlsplit(a).hostname if "://" in a else None
        if host:
            return not _is_ip(host)
    return False
