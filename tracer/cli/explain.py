"""`pathtrace explain RULES --packet …`: which kube-proxy rules a packet meets and what they do.

RULES is a file of `iptables-save`, `nft list ruleset` or `ipvsadm -Ln` output, recognised by its
content. Given a run directory instead (`pathtrace explain RUN`), it tells the recorded request's
story step by step with its evidence (`tracer.explain`). Holds no logic: it reads, calls, prints.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click

from tracer.cli.analyze import check_html_name
from tracer.errors import InputError, UsageError
from tracer.rules import Node, load_rules, parse_packet, walk
from tracer.rules.explain_text import describe, local_traffic_cidr
from tracer.rules.model import in_network, parse_ip, parse_network
from tracer.rules.walk import check_family
from tracer.rundir import read_fact

_ENTRIES = {"pod": "from_pod", "node": "local", "external": "external"}


def explain_run(run: Path, fmt: str) -> str:
    """Tell the request recorded in a run directory as a story, with its evidence."""
    from tracer.explain.story import tell_story
    from tracer.inputs import load_run
    from tracer.report.story import render_story, story_json
    from tracer.trace import open_run, story_input

    story = tell_story(story_input(open_run(load_run(run))))
    if fmt == "json":
        return json.dumps(story_json(story), indent=2, ensure_ascii=False) + "\n"
    return render_story(story, run=str(run))


def _read(path: Path) -> str:
    text = read_fact(path)
    if text is None:
        raise InputError(f"{path}: rules file not found")
    return text


def _address(text: str) -> str:
    ip = parse_ip(text)
    if ip is None:
        raise UsageError(
            f"--node-ip {text!r} is not an IP address", hint="e.g. --node-ip 192.168.49.2"
        )
    return str(ip)


def _network(text: str | None) -> str | None:
    if text is None:
        return None
    net = parse_network(text)
    if net is None or "/" not in text:
        raise UsageError(f"--pod-cidr {text!r} is not a CIDR", hint="e.g. --pod-cidr 10.244.0.0/16")
    return str(net)


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
    help="where the packet enters (default: node if SRC is a --node-ip, external if SRC is "
    "outside the pod CIDR (--pod-cidr, else kube-proxy's own), else pod)",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--html",
    "html_out",
    metavar="FILE.html",
    help="For a run: also write one self-contained HTML report (the story, the path, latency, "
    "rules and every connection).",
)
def command(
    rules: Path,
    packet_spec: str | None,
    node_ips: tuple[str, ...],
    pod_cidr: str | None,
    entry: str | None,
    fmt: str,
    html_out: str | None,
) -> None:
    """Walk one packet through a node's kube-proxy rules, or tell a run's request step by step.

    RULES is a rules file (with --packet) or a run directory (RUN): for a run, the request is
    told in the order it travels (DNS lookup, the Service address, the DNAT with the rule that
    did it, the overlay, the pod, the reply), each step with its evidence (point and frame,
    rule text, conntrack entry), and where it breaks when it does.

    \b
    Example:
      pathtrace explain pcaps/clusterip
      pathtrace explain pcaps/clusterip --html clusterip.html
      pathtrace explain iptables-save.txt --packet 'tcp 10.244.1.7:53700 > 10.96.0.100:80'
      pathtrace explain nft.txt --packet 'tcp 203.0.113.5 > 192.168.49.2:30080' \\
          --node-ip 192.168.49.2 --from external --format json
    """
    if not rules.exists():
        raise InputError(f"{rules}: no such file or directory")
    if rules.is_dir():
        if packet_spec is not None:
            raise UsageError(
                f"{rules} is a run directory: --packet is for a rules file",
                hint=f"use `pathtrace explain {rules}/nodes/NODE/iptables-save.txt --packet ...`",
            )
        if html_out is not None:
            check_html_name(html_out)
        click.echo(explain_run(rules, fmt), nl=False)
        if html_out is not None:
            from tracer.cli.analyze import html_for_run

            html_for_run(str(rules), html_out, story=explain_run(rules, "text"))
        return
    if html_out is not None:
        raise UsageError(
            "--html writes the report of a run directory",
            hint=f"use `pathtrace explain RUN --html {html_out}`",
        )
    if packet_spec is None:
        raise UsageError(
            "--packet is required with a rules file; e.g. --packet 'tcp 10.244.1.7:53700 > 10.96.0.100:80'"
        )
    node = Node(tuple(_address(ip) for ip in node_ips), _network(pod_cidr))
    packet = parse_packet(packet_spec, entry=_ENTRIES[entry] if entry else None, node=node)  # type: ignore[arg-type]
    loaded = load_rules(_read(rules), source=str(rules))
    check_family(loaded, packet, str(rules))
    if entry is None and packet.entry == "from_pod":
        # The walk is the same for a pod and an outside client (both enter PREROUTING); only the
        # narrative differs, so a source outside the pod CIDR is told as arriving from outside.
        cidr = pod_cidr or local_traffic_cidr(loaded)
        if cidr is not None and not in_network(packet.src.ip, cidr):
            packet = replace(packet, entry="external")
    result = walk(loaded, packet, node)
    if fmt == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(describe(result, loaded, node), nl=False)
