"""`pathtrace lab`: build kube-proxy's data plane in network namespaces, run scenarios, tear down.

Wiring only: the lab's logic lives in tracer.lab; this module parses options, shows progress on
stderr and prints results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from tracer.errors import PathtraceError, UsageError


def progress(message: str) -> None:
    click.echo(f"lab: {message}", err=True)


def analyze_run(run_dir: Path) -> Any:
    """Print the analysis of a run the way `pathtrace analyze RUN` does (when it is installed)."""
    try:
        from tracer.cli import analyze

        return analyze.command.main(
            args=[str(run_dir)], prog_name="pathtrace analyze", standalone_mode=False
        )
    except PathtraceError:
        raise
    except ImportError as e:
        click.echo(
            f"(the analyzer is not available here ({e}); run `pathtrace analyze {run_dir}` later)",
            err=True,
        )
    except Exception as e:  # the run is complete either way; say so instead of a traceback
        raise PathtraceError(
            f"the analysis of {run_dir} failed: {e!r}",
            hint=f"the run directory is complete; retry with `pathtrace --traceback analyze {run_dir}`",
        ) from e
    return None


@click.group("lab")
def command() -> None:
    """A local Kubernetes data plane in network namespaces: kube-proxy's real rules (iptables or
    nftables), a bridge CNI with flannel-style VXLAN between nodes, CoreDNS-like DNS, nginx
    ingress, and scenarios that capture one request everywhere at once.

    \b
    Typical use (as root):
      pathtrace lab up                   build it (2 nodes, iptables mode)
      pathtrace lab scenarios            list what can be run
      pathtrace lab run clusterip-remote capture one request, write a run directory, trace it
      pathtrace lab down                 remove everything (also after a crash)
    """


@command.command("up")
@click.option(
    "--mode",
    type=click.Choice(["iptables", "nftables"]),
    default="iptables",
    show_default=True,
    help="kube-proxy mode whose rules are installed on every node.",
)
@click.option("--nodes", type=click.IntRange(2, 9), default=2, show_default=True)
def up_cmd(mode: str, nodes: int) -> None:
    """Build the lab."""
    from tracer.lab import lab

    state = lab.up(mode=mode, nodes=nodes, log=progress)
    click.echo(
        f"lab up: {len(state['nodes'])} nodes, {mode} mode, {state['up_seconds']:.2f} s; "
        "next: pathtrace lab run clusterip"
    )


@command.command("run")
@click.argument("scenario")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run directory to write (default: ./pathtrace-lab-SCENARIO-TIME).",
)
@click.option("--no-analyze", is_flag=True, help="Only capture; do not print the analysis.")
def run_cmd(scenario: str, out: Path | None, no_analyze: bool) -> None:
    """Run SCENARIO with captures at every point, then trace the request."""
    from tracer.lab import lab
    from tracer.lab.scenarios import scenario_names

    if scenario not in scenario_names():
        raise UsageError(
            f"unknown scenario {scenario!r}",
            hint=f"known scenarios: {', '.join(scenario_names())} (see `pathtrace lab scenarios`)",
        )
    run_dir = lab.run_scenario(scenario, out_dir=out, log=progress)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    truth = manifest["extra"]["lab"]
    click.echo(f"run directory: {run_dir}")
    click.echo(f"outcome: {truth['outcome']} (expected {truth['expected_outcome']})")
    ct = truth.get("conntrack")
    if ct:
        click.echo(f"conntrack: {ct['line']}")
    if not no_analyze:
        analyze_run(run_dir)


@command.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(as_json: bool) -> None:
    """Say whether the lab is up, down or half-built."""
    from tracer.lab import lab

    st = lab.status()
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    click.echo(f"lab: {st['status']}")
    if st["mode"]:
        click.echo(f"mode: {st['mode']}, nodes: {', '.join(st['nodes'])}, since {st['created']}")
    if st["namespaces"]:
        click.echo(f"namespaces: {' '.join(sorted(st['namespaces']))}")
    for p in st["processes"]:
        click.echo(
            f"  {p['name']:16s} pid {p['pid']:<7} {'running' if p['alive'] else 'DEAD'}  ({p['netns']})"
        )
    if st["status"] == "half-built":
        click.echo("hint: run `pathtrace lab down` to clean up", err=True)


@command.command("down")
def down_cmd() -> None:
    """Remove every pt- namespace, link, process and the state (works after a crash)."""
    from tracer.lab import lab

    removed = lab.down(log=progress)
    click.echo(f"lab down: removed {len(removed)} namespaces/links")


@command.command("scenarios")
def scenarios_cmd() -> None:
    """List the scenarios with a one-line description."""
    from tracer.lab.lab import describe

    rows = describe()
    width = max(len(n) for n, _ in rows)
    for name, desc in rows:
        click.echo(f"{name:{width}s}  {desc}")
