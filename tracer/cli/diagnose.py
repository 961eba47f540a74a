"""`pathtrace diagnose`: the six troubleshooting steps over one run, the likely cause first.

Only wiring: offline it reads RUN (tracer.diagnose.gather), live it first runs `pathtrace
capture` with the same options and then reads the run directory that wrote; then
tracer.diagnose.diagnose and a renderer. Exit code 4 says "a problem was found".
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import click

from tracer.cli import capture as capture_cli
from tracer.cli.analyze import check_html_name
from tracer.errors import InputError, UsageError

EXIT_PROBLEM = 4

HELP = """Diagnose one request: nodes & pods, backend, DNS, Service, Ingress, path.

\b
Offline, from any run directory (pathtrace capture, lab, demo, or saved):
  pathtrace diagnose RUN
  pathtrace diagnose RUN --format json
  pathtrace diagnose RUN --connection 3          the request numbered 3 in `analyze --list`
  pathtrace diagnose RUN --html diagnosis.html   also one HTML file to share
\b
Live: capture first (every `pathtrace capture` option applies), then diagnose that run:
  pathtrace diagnose --from pod/client --to svc/web --request 'curl -s http://web/'
  pathtrace diagnose --from external --to svc/web:80 --duration 30

Each finding has a severity (error, warning, info), the troubleshooting step it belongs to
(1 nodes & pods, 2 backend service, 3 DNS, 4 Service/kube-proxy, 5 Ingress, 6 path), a title,
its evidence (point and Wireshark frame number, tuple, rule text, conntrack line, API object)
and the next thing to try. The most likely cause is listed first. Without --connection/--match
the request is the first application connection sent by the client (DNS lookups and ICMP errors
are read as part of it).

\b
--format json emits {"schema": "pathtrace-diagnose/v1", "findings": [{"severity", "step",
"title", "evidence": [...], "next"}], "request": {...}}.

\b
Exit codes: 0 no problem found, 4 a problem found (an error or warning finding),
            1 error (unreadable run, cluster failure), 2 usage, 3 no request found,
            130 interrupted.
"""

# `pathtrace capture`'s own switches that make no sense here (--html is diagnose's own).
_NOT_COPIED = {"dry_run", "no_analyze", "html_out"}


def _capture_params() -> list[click.Parameter]:
    params = []
    for p in capture_cli.command.params:
        if p.name in _NOT_COPIED:
            continue
        p = copy.copy(p)
        p.required = False  # --from/--to are required only for a live diagnosis
        if isinstance(p, click.Option) and p.name == "output":
            p.help = "Run directory of the live capture (default ./pathtrace-<run id>)."
        params.append(p)
    return params


def _finite_ms(value: float) -> float:
    # FloatRange lets nan and inf through (every comparison with nan is false).
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of milliseconds, e.g. --slow 250")
    return value


@click.command("diagnose", help=HELP)
@click.argument("run", required=False, metavar="[RUN]")
@click.option(
    "--connection",
    "index",
    type=click.IntRange(min=0),
    metavar="N",
    help="Diagnose connection N (its number in `pathtrace analyze RUN --list`).",
)
@click.option(
    "--match", "match_text", metavar="SPEC", help="Diagnose the connection matching SPEC."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json (schema pathtrace-diagnose/v1) for programs.",
)
@click.option(
    "--slow",
    "slow_ms",
    type=click.FloatRange(min=0),
    callback=lambda _ctx, _param, value: _finite_ms(value),
    default=100.0,
    show_default=True,
    metavar="MS",
    help="A server time or segment above MS milliseconds is a finding.",
)
@click.option(
    "--html",
    "html_out",
    metavar="FILE.html",
    help="Also write one self-contained HTML report: the findings, then the request's path, "
    "latency and rules, and every connection of the run.",
)
@click.option("-v", "--verbose", is_flag=True, help="Show the evidence of info findings too.")
@click.pass_context
def command(
    ctx: click.Context,
    run: str | None,
    index: int | None,
    match_text: str | None,
    fmt: str,
    slow_ms: float,
    html_out: str | None,
    verbose: bool,
    **live: object,
) -> int:
    if index is not None and match_text is not None:
        raise UsageError("give --connection N or --match SPEC, not both")
    if html_out is not None:
        check_html_name(html_out)
    live_given = live.get("from_") is not None or live.get("to") is not None
    if run is not None and live_given:
        raise UsageError(
            "give either a RUN directory or --from/--to for a live capture, not both",
            hint="a run directory is diagnosed offline; --from/--to capture a new one first",
        )
    if run is None and not live_given:
        raise UsageError(
            "nothing to diagnose: give a RUN directory, or --from and --to to capture one",
            hint="see `pathtrace diagnose --help`",
        )
    if run is None:
        if live.get("from_") is None or live.get("to") is None:
            raise UsageError("a live diagnosis needs both --from and --to")
        run = _capture(ctx, live)
    from tracer.diagnose import diagnose, gather, render_json, render_text

    facts = gather(run, index=index, match=match_text)
    result = diagnose(facts, slow_ms=slow_ms)
    text = render_json(result, run) if fmt == "json" else render_text(result, run, verbose=verbose)
    click.echo(text, nl=False)
    if html_out is not None:
        from tracer.cli.analyze import html_for_run
        from tracer.diagnose.render import finding_json

        findings = [finding_json(f) for f in result.findings]
        html_for_run(run, html_out, index=facts.main, findings=findings)
    return EXIT_PROBLEM if result.problem else 0


def _capture(ctx: click.Context, live: dict[str, object]) -> str:
    """Run `pathtrace capture` with the same options; return the run directory it wrote."""
    from tracer.capture import plan as planmod

    output = live.get("output") or f"pathtrace-{planmod.new_run_id()}"
    args = {**live, "output": str(output), "dry_run": False, "no_analyze": True}
    ctx.invoke(capture_cli.command, **args)
    if not (Path(str(output)) / "manifest.json").is_file():
        raise InputError(f"{output}: the capture wrote no manifest.json")
    return str(output)


command.params.extend(_capture_params())
