"""The iptables rules istio's `istio-iptables` (the istio-init container) writes into a meshed
pod's own network namespace, as data.

Pure. The rules are the ones istio-iptables emits for a default sidecar (REDIRECT mode, every
outbound address and every inbound port captured, the proxy's own ports 15090, 15021 and 15020
excluded, the proxy running as UID/GID 1337), in iptables-save's order and spelling: the
app's outbound TCP goes to the sidecar on 15001, inbound TCP to 15006, and the proxy's own
connections (owner 1337, or from 127.0.0.6 on loopback) pass untouched.
"""

from __future__ import annotations

OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
PROXY_UID = 1337
EXCLUDED_INBOUND = (15090, 15021, 15020)  # Envoy's Prometheus, health and agent ports
ISTIO_CHAINS = ("ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT")


def istio_nat_rules(uid: int = PROXY_UID) -> list[str]:
    """The nat-table rules, as `iptables-save` prints them (without the table header)."""
    excluded = ",".join(str(p) for p in EXCLUDED_INBOUND)
    return [
        *(f"-N {c}" for c in ISTIO_CHAINS),
        "-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN",
        f"-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {OUTBOUND_PORT}",
        f"-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {INBOUND_PORT}",
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        f"-A ISTIO_INBOUND -p tcp -m multiport --dports {excluded} -j RETURN",
        "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
        "-A OUTPUT -j ISTIO_OUTPUT",
        "-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN",
        f"-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner {uid} -j ISTIO_IN_REDIRECT",
        f"-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner {uid} -j RETURN",
        f"-A ISTIO_OUTPUT -m owner --uid-owner {uid} -j RETURN",
        f"-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner {uid} -j ISTIO_IN_REDIRECT",
        f"-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner {uid} -j RETURN",
        f"-A ISTIO_OUTPUT -m owner --gid-owner {uid} -j RETURN",
        "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
    ]


def istio_iptables_restore(uid: int = PROXY_UID) -> str:
    """Input for `iptables-restore --noflush`: what istio-init applies."""
    return "*nat\n" + "\n".join(istio_nat_rules(uid)) + "\nCOMMIT\n"


def istio_cleanup() -> list[list[str]]:
    """`iptables` argv lists that remove the rules again (istio-iptables' own cleanup order)."""
    out = [
        ["-t", "nat", "-D", "PREROUTING", "-p", "tcp", "-j", "ISTIO_INBOUND"],
        ["-t", "nat", "-D", "OUTPUT", "-j", "ISTIO_OUTPUT"],
    ]
    for c in ("ISTIO_OUTPUT", "ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT"):
        out.append(["-t", "nat", "-F", c])
        out.append(["-t", "nat", "-X", c])
    return out
