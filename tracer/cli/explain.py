"""`pathtrace explain RULES --packet …`: which kube-proxy rules a packet meets and what they do.

RULES is a file of `iptables-save`, `nft list ruleset` or `ipvsadm -Ln` output, recognised by its
content. A run directory (`pathtrace explain RUN`) will tell a whole request's story through
`explain_run`. Holds no logic: it reads the file, calls `tracer.rules`, prints.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from tracer.errors import InputError, UsageError
from tracer.rules import Node, load_rules, parse_packet, walk
from tracer.rules.explain_text import describe

_ENTRIES = {"pod": "from_pod", "node": "local", "external": "external"}


def explain_run(run: Path, fmt: str) -> str:
    """Explain the request recorded in a run directory (its node facts and captures)."""
    raise UsageError(
        f"{run} is a run directory; explaining a whole run is not available in this version",
        hint="give a rules file (iptables-save, nft list ruleset or ipvsadm -Ln) and --packet",
    )


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from e
    return data.decode("utf-8", "replace")


@click.command("explain")
@click.argument("rules", type=click.Path(path_type=Path))
@click.option("--packet", "packet_spec", metavar="SPEC", help="'tcp SRC[:PORT] > DST:PORT'")
@click.option(
    "--node-ip", "node_ips", multiple=True, metavar="IP", help="an address of the node (repeatable)"
)
@click.option("--pod-cidr", metavar="CIDR", help="the pod CIDR, for the narrative only")
@click.option(
    "--from",
    "entry",
    type=click.Choice(["pod", "node", "external"]),
    help="where the packet enters (default: node if SRC is a --node-ip, else pod)",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def command(
    rules: Path,
    packet_spec: str | None,
    node_ips: tuple[str, ...],
    pod_cidr: str | None,
    entry: str | None,
    fmt: str,
) -> None:
    """Walk one packet through a node's kube-proxy rules and say what happens to it.

    \b
    Example:
      pathtrace explain iptables-save.txt --packet 'tcp 10.244.1.7:53700 > 10.96.0.100:80'
      pathtrace explain nft.txt --packet 'tcp 203.0.113.5 > 192.168.49.2:30080' \\
          --node-ip 192.168.49.2 --from external --format json
    """
    if rules.is_dir():
        click.echo(explain_run(rules, fmt), nl=False)
        return
    if packet_spec is None:
        raise UsageError(
            "--packet is required with a rules file; e.g. --packet 'tcp 10.244.1.7:53700 > 10.96.0.100:80'"
        )
    node = Node(tuple(node_ips), pod_cidr)
    packet = parse_packet(packet_spec, entry=_ENTRIES[entry] if entry else None, node=node)  # type: ignore[arg-type]
    loaded = load_rules(_read(rules), source=str(rules))
    result = walk(loaded, packet, node)
    if fmt == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(describe(result, loaded, node), nl=False)
