"""`pathtrace demo`: build the lab, run clusterip-remote, trace it, always tear down.

Wiring only (tracer.lab does the work); without root it says how to look at the saved runs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from tracer.errors import MissingPrerequisiteError

SCENARIO = "clusterip-remote"


def _saved_run() -> str:
    """Where the recorded example run is: beside the package in a source checkout."""
    import tracer

    shipped = Path(tracer.__file__).resolve().parent.parent / "pcaps" / SCENARIO
    return str(shipped) if shipped.is_dir() else f"pcaps/{SCENARIO} (in the source tree)"


@click.command("demo")
@click.option(
    "--mode", type=click.Choice(["iptables", "nftables"]), default="iptables", show_default=True
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the run directory here (default: a temporary directory, removed afterwards).",
)
def command(mode: str, keep: Path | None) -> None:
    """Build the namespace lab, send one request pod -> Service -> other node, trace it, tear down."""
    from tracer.cli.lab import analyze_run, progress
    from tracer.lab import lab

    if os.geteuid() != 0:
        raise MissingPrerequisiteError(
            "the demo builds network namespaces and needs root",
            hint=f"run it with sudo, or trace a saved run: pathtrace analyze {_saved_run()}",
        )
    lab.check_prerequisites()
    if lab.status()["status"] != "down":
        raise MissingPrerequisiteError(
            "a lab is already present; the demo builds and removes its own",
            hint="use `pathtrace lab run clusterip-remote`, or `pathtrace lab down` first",
        )
    with tempfile.TemporaryDirectory(prefix="pathtrace-demo-") as tmp:
        out = keep or Path(tmp) / SCENARIO
        try:
            lab.up(mode=mode, log=progress)
            run_dir = lab.run_scenario(SCENARIO, out_dir=out, log=progress)
            click.echo(
                f"run directory: {run_dir}"
                + ("" if keep else " (removed at exit; --keep DIR keeps it)")
            )
            analyze_run(run_dir)
        finally:
            lab.down(log=lambda _m: None)
            progress("lab removed")
