"""The names kube-proxy gives its chains, sets and rules: hashes of the service port's name
(and of the endpoint), exactly as both proxiers compute them. Pure."""

from __future__ import annotations

import base64
import hashlib

from tracer.lab.kubeproxy.model import Service, ServicePort


def _b32(s: str) -> str:
    return base64.b32encode(hashlib.sha256(s.encode()).digest()).decode()


def port_name(svc: Service, port: ServicePort) -> str:
    """`ns/name:port`, or `ns/name` for an unnamed port (ServicePortName.String())."""
    base = f"{svc.namespace}/{svc.name}"
    return f"{base}:{port.name}" if port.name else base


def endpoint_string(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _port_hash(svc: Service, port: ServicePort) -> str:
    return _b32(port_name(svc, port) + port.proto)[:16]


def svc_chain(svc: Service, port: ServicePort) -> str:
    return "KUBE-SVC-" + _port_hash(svc, port)


def svl_chain(svc: Service, port: ServicePort) -> str:
    return "KUBE-SVL-" + _port_hash(svc, port)


def ext_chain(svc: Service, port: ServicePort) -> str:
    return "KUBE-EXT-" + _port_hash(svc, port)


def fw_chain(svc: Service, port: ServicePort) -> str:
    return "KUBE-FW-" + _port_hash(svc, port)


def sep_chain(svc: Service, port: ServicePort, ep_ip: str) -> str:
    ep = endpoint_string(ep_ip, port.target_port)
    return "KUBE-SEP-" + _b32(port_name(svc, port) + port.proto + ep)[:16]


def nft_port_base(svc: Service, port: ServicePort) -> str:
    """`ns/name/proto/portname`: the nftables proxier's per-port name."""
    return f"{svc.namespace}/{svc.name}/{port.proto}/{port.name}"


def nft_hashed(prefix: str, base: str) -> str:
    return f"{prefix}-{_b32(base)[:8]}-{base}"


def nft_service_chain(svc: Service, port: ServicePort) -> str:
    return nft_hashed("service", nft_port_base(svc, port))


def nft_local_chain(svc: Service, port: ServicePort) -> str:
    return nft_hashed("local", nft_port_base(svc, port))


def nft_external_chain(svc: Service, port: ServicePort) -> str:
    return nft_hashed("external", nft_port_base(svc, port))


def nft_endpoint_base(svc: Service, port: ServicePort, ep_ip: str) -> str:
    # servicePortEndpointChainNameBase: an IPv6 address's colons (not allowed in a chain name)
    # become dots.
    return f"{nft_port_base(svc, port)}__{ep_ip.replace(':', '.')}/{port.target_port}"


def nft_endpoint_chain(svc: Service, port: ServicePort, ep_ip: str) -> str:
    return nft_hashed("endpoint", nft_endpoint_base(svc, port, ep_ip))


def nft_affinity_set(svc: Service, port: ServicePort, ep_ip: str) -> str:
    return nft_hashed("affinity", nft_endpoint_base(svc, port, ep_ip))


def probability(n: int) -> str:
    """computeProbability: the conditional probability for the first of `n` remaining rules."""
    return f"{1.0 / n:0.10f}"


def chain_line(chain: str) -> str:
    return f":{chain} - [0:0]"
