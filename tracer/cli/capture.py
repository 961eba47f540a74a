"""`pathtrace capture`: capture one request on a live cluster at every point at once, then trace it.

Only wiring: kube (resolve, preflight) -> capture.plan -> capture.lifecycle -> analyze.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from tracer.capture.ring import MIN_RING_BYTES
from tracer.errors import UsageError

HELP = """Capture ONE request at the client pod, the nodes and the server pods at once, or wait
for a failure at all of them (incident mode, --until).

\b
pathtrace adds an ephemeral debug container (tcpdump, NET_RAW/NET_ADMIN) to the client and server
pods and starts a host-network pod on every node on the path, runs the request (or waits while
you reproduce it), stops every capture together, collects the nodes' kube-proxy rules and
conntrack, deletes its node pods and prints the path as `pathtrace analyze RUN` would.
It touches no other pod: a DNS lookup is captured at the client pod and the nodes, and a point
inside the cluster DNS pods is only added with --capture-dns-pods.

\b
Examples:
  pathtrace capture --from pod/client --to svc/web --request 'curl -s http://web/'
  pathtrace capture --from external --to svc/web:80 --duration 30
  pathtrace capture --from external --to svc/web-np \\
      --request 'curl -s http://192.168.50.11:30080/'
  pathtrace capture --from pod/client --to ingress/shop --request 'curl -s http://shop.local/'
  pathtrace capture --from pod/client --to svc/web --request 'curl -s http://web/' \\
      --html web.html                                              # also one file to share
  pathtrace capture --from pod/client --to svc/web --dry-run     # print the plan, create nothing

\b
Incident mode: arm every point, keep a rolling window (a ring of --ring-bytes) at each, watch the
client pod's traffic live and, when CONDITION holds, keep --keep-after more and stop them all:
the run keeps [trigger - --keep-before, trigger + --keep-after] from every point.
  pathtrace capture --from pod/client --to svc/web --until failed --duration 600
  pathtrace capture --from pod/client --to svc/web --until reset,slower:2s \\
      --request 'curl -s http://web/' --repeat 200 --interval 0.5 --duration 120
CONDITION, several joined by commas: reset (a TCP RST answered it), rejected (an ICMP error
answered it), unanswered[:DURATION] (a SYN or UDP query with no answer, default 3s),
slower:DURATION (the response started later), http5xx, dns-error (NXDOMAIN, SERVFAIL...), failed
(reset, rejected or unanswered). Failed, reset, rejected and unanswered follow the same rules as
`pathtrace analyze RUN --list`. Exit code 5: the condition never held within --duration (the run
keeps the last window, or nothing with --discard-if-quiet).

\b
--request CMD is split like a shell command line (quotes, no expansion) and run without a shell:
in the client pod's debug container for --from pod/NAME, and on this machine for --from external
(this machine is the outside client; in the lab, prefix it with `ip netns exec pt-external`).

\b
Ephemeral containers cannot be removed from a pod (Kubernetes forbids it): the plan names every
pod that gets one before anything is created (and --dry-run prints it), and the run's manifest
lists them. Every pod created carries app.kubernetes.io/managed-by=pathtrace and
pathtrace.io/run=<run id>; `pathtrace cleanup RUN` deletes what a run left, from its record.
The run directory is ./pathtrace-<run id> unless -o says otherwise; its path is printed first.
"""


def _progress_printer() -> Any:
    if not sys.stderr.isatty():
        return None

    def show(points: Mapping[str, tuple[int, int]]) -> None:
        parts = [f"{name}: {pk} pkts {by / 1024:.0f} KiB" for name, (pk, by) in points.items()]
        click.echo("\r" + " | ".join(parts) + "\033[K", err=True, nl=False)

    return show


def _seconds_option(flag: str, default: float, text: str) -> Any:
    """A duration in seconds, zero or more, its default shown in --help."""
    return click.option(
        flag, type=click.FloatRange(0), default=default, show_default=True, help=text
    )


@click.command("capture", help=HELP)
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Path to the kubeconfig file.")
@click.option("--context", "kube_context", help="The kubeconfig context to use.")
@click.option("-n", "--namespace", help="Namespace of --from and --to (default: the context's).")
@click.option(
    "--from", "from_", required=True, metavar="pod/NAME|external", help="Where the request starts."
)
@click.option(
    "--to",
    "to",
    required=True,
    metavar="svc/NAME[:PORT]|pod/NAME|ingress/NAME|URL",
    help="Where the request goes.",
)
@click.option(
    "--request",
    "request",
    metavar="'CMD ARGS'",
    help="Command that makes the request: run in the client pod's debug container, or on this "
    "machine for --from external.",
)
@click.option(
    "--duration",
    type=float,
    default=None,
    help="Seconds to capture while you reproduce (instead of --request); with --until, the "
    "longest wait (default 300).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False),
    help="Run directory (default: pathtrace-<run id> in the current directory).",
)
@click.option(
    "--image", default=None, help="Image with tcpdump for the debug containers and node pods."
)
@click.option("--snaplen", type=click.IntRange(64, 262144), default=256, show_default=True)
@click.option(
    "--max-packets", type=click.IntRange(1), default=None, help="Stop each point after N packets."
)
@click.option(
    "--max-bytes",
    type=click.IntRange(1024),
    default=None,
    help="Keep at most N bytes per point (whole packets; later ones are dropped and reported).",
)
@click.option(
    "--node-namespace", default=None, help="Namespace for the node pods (default: --namespace)."
)
@click.option(
    "--privileged",
    is_flag=True,
    help="Run node pods privileged (only when NET_RAW/NET_ADMIN are not enough).",
)
@click.option("--no-node-capture", is_flag=True, help="Capture in the pods only.")
@click.option(
    "--capture-dns-pods",
    is_flag=True,
    help="Also capture inside the cluster DNS pods (kube-system): adds a PERMANENT ephemeral "
    "container to each of them. Without it the lookup is captured at the client and the nodes.",
)
@click.option(
    "--no-pod-capture", is_flag=True, help="Capture on the nodes only (no ephemeral containers)."
)
@click.option(
    "--timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds allowed for setup and the request.",
)
@click.option(
    "--until",
    "until_text",
    metavar="CONDITION",
    help="Incident mode: keep a rolling window at every point and stop all of them once "
    "CONDITION holds (failed, reset, rejected, unanswered[:DUR], slower:DUR, http5xx, dns-error).",
)
@click.option(
    "--ring-bytes",
    metavar="SIZE",
    default="64M",
    show_default=True,
    help="With --until: the rolling window kept per point, in bytes (K, M, G suffixes).",
)
@_seconds_option("--keep-before", 10.0, "With --until: seconds kept before the trigger.")
@_seconds_option(
    "--keep-after", 2.0, "With --until: seconds every point keeps capturing after the trigger."
)
@click.option(
    "--discard-if-quiet",
    is_flag=True,
    help="With --until: if the condition never holds, keep nothing (no run directory).",
)
@click.option(
    "--repeat",
    type=click.IntRange(1),
    default=None,
    help="With --until and --request: run the request up to N times, until the condition holds.",
)
@_seconds_option("--interval", 1.0, "With --repeat: seconds between two runs of the request.")
@click.option("--dry-run", is_flag=True, help="Print the plan as JSON and create nothing.")
@click.option("--no-analyze", is_flag=True, help="Write the run directory only.")
@click.option(
    "--html",
    "html_out",
    metavar="FILE.html",
    help="Also write the analysis as one self-contained HTML report, to share.",
)
def command(
    kubeconfig: str | None,
    kube_context: str | None,
    namespace: str | None,
    from_: str,
    to: str,
    request: str | None,
    duration: float | None,
    output: str | None,
    image: str | None,
    snaplen: int,
    max_packets: int | None,
    max_bytes: int | None,
    node_namespace: str | None,
    privileged: bool,
    no_node_capture: bool,
    capture_dns_pods: bool,
    no_pod_capture: bool,
    timeout: float,
    until_text: str | None,
    ring_bytes: str,
    keep_before: float,
    keep_after: float,
    discard_if_quiet: bool,
    repeat: int | None,
    interval: float,
    dry_run: bool,
    no_analyze: bool,
    html_out: str | None,
) -> int:
    from tracer.capture import plan as planmod
    from tracer.capture.backend import KubernetesBackend
    from tracer.capture.lifecycle import run_capture
    from tracer.capture.pods import DEFAULT_IMAGE
    from tracer.capture.session import CaptureSettings
    from tracer.kube.client import KubeApi
    from tracer.kube.preflight import preflight
    from tracer.kube.resolve import parse_from, parse_to, request_uses_name, resolve

    until = _incident_options(
        until_text, request, duration, ring_bytes, discard_if_quiet, repeat, max_bytes
    )
    if until is not None and duration is None:
        duration = DEFAULT_WAIT_S
    if until is None and request is not None and duration is not None:
        raise UsageError("give either --request or --duration, not both")
    if html_out is not None:
        from tracer.cli.analyze import check_html_name

        check_html_name(html_out)
        if no_analyze:
            raise UsageError("--html writes the analysis; it cannot go with --no-analyze")
    if request is None and duration is None and not dry_run:
        # --dry-run only prints the plan: what would run matters less than where it would run.
        raise UsageError(
            "nothing to capture: give --request 'CMD' to run in the client pod, --duration "
            "SECONDS to reproduce it yourself, or --until CONDITION to wait for a failure"
        )
    source, dest = parse_from(from_), parse_to(to)
    try:
        argv = planmod.request_argv(request) if request is not None else None
    except ValueError as e:
        raise UsageError(str(e)) from None

    api = KubeApi(kubeconfig, kube_context, namespace)
    try:
        # An external client asks its own resolver, not the cluster DNS: nothing to capture there.
        in_cluster = source.kind != "external"
        uses_name = bool(argv and in_cluster and request_uses_name(argv))
        targets, notes = resolve(api, source, dest, uses_name=uses_name)
        run_id = planmod.new_run_id()
        pod_ns = {p.namespace for p in (targets.client, *targets.servers) if p is not None}
        node_ns = node_namespace or api.namespace
        options = planmod.CaptureOptions(
            run_id=run_id,
            image=image or DEFAULT_IMAGE,
            snaplen=snaplen,
            max_packets=max_packets,
            duration=duration or 0.0,
            timeout=timeout,
            privileged=privileged,
            pod_capture=not no_pod_capture,
            node_capture=not no_node_capture,
            node_namespace=node_ns,
            dns_pod_capture=capture_dns_pods,
        )
        if dry_run:
            plan = planmod.make_plan(targets, options)
            for line in planmod.describe_changes(plan):
                click.echo(f"pathtrace: dry run: the capture {line}", err=True)
            click.echo(json.dumps(planmod.plan_to_json(plan), indent=2))
            return 0
        pf = preflight(
            api,
            pod_namespaces=pod_ns,
            node_namespace=node_ns,
            want_pods=options.pod_capture,
            want_nodes=options.node_capture,
            privileged=privileged,
        )
        for w in pf.warnings:
            click.echo(f"pathtrace: warning: {w}", err=True)
        options = planmod.CaptureOptions(
            **{
                **options.__dict__,
                "pod_capture": pf.pod_capture,
                "node_capture": pf.node_capture,
            }
        )
        plan = planmod.make_plan(targets, options)
        run_dir = Path(output or f"pathtrace-{run_id}").absolute()
        click.echo(f"pathtrace: run {run_id}: writing {run_dir}", err=True)
        click.echo(
            f"pathtrace: {len(plan.points)} points: {', '.join(p.name for p in plan.points)}",
            err=True,
        )
        for line in planmod.describe_changes(plan):
            click.echo(f"pathtrace: the capture {line}", err=True)
        settings = CaptureSettings(
            request=tuple(argv) if argv is not None else None,
            request_here=source.kind == "external",
            duration=duration or 0.0,
            request_timeout=timeout,
            max_bytes=max_bytes,
            until=until,
            ring_bytes=_size(ring_bytes),
            keep_before=keep_before,
            keep_after=keep_after,
            repeat=repeat or 1,
            interval=interval,
            discard_if_quiet=discard_if_quiet,
        )
        progress = _progress_printer() if until is None else None
        watching = _watch_printer(sys.stderr.isatty()) if until is not None else None
        try:
            manifest = run_capture(
                plan,
                KubernetesBackend(api, ready_timeout=timeout),
                run_dir,
                settings,
                # The cluster DNS Service names the lookup's addresses, as in lab runs.
                services=_with_dns(targets),
                warnings=[*notes, *pf.warnings],
                progress=progress,
                watch_progress=watching,
                extra={"server": api.server, "namespace": api.namespace},
            )
        finally:
            if progress is not None or (watching is not None and sys.stderr.isatty()):
                click.echo("", err=True)
        quiet = manifest.extra.get("outcome") == "quiet"
        if quiet and discard_if_quiet:
            shutil.rmtree(run_dir, ignore_errors=True)
            click.echo(
                f"pathtrace: --until {until_text}: the condition did not hold in {duration:g} s; "
                "nothing kept (--discard-if-quiet)",
                err=True,
            )
            return EXIT_QUIET
        _save_health(api, run_dir, {*pod_ns, node_ns})
        for p in manifest.points:
            dropped = f", {p.dropped} dropped by the kernel" if p.dropped else ""
            click.echo(
                f"pathtrace: {p.name}: {p.packets} packets{dropped} -> {run_dir / p.file}",
                err=True,
            )
        if until is not None:
            _say_incident(manifest.extra, run_dir)
            if quiet:
                return EXIT_QUIET
        elif manifest.request.get("exit_code") not in (None, 0):
            click.echo(
                f"pathtrace: warning: the request exited with {manifest.request['exit_code']}",
                err=True,
            )
    finally:
        api.close()
    click.echo(f"pathtrace: run directory: {run_dir}", err=True)
    if not no_analyze:
        trigger = manifest.extra.get("trigger")
        _analyze(run_dir, html_out, trigger["match"] if trigger else None)
        if trigger:
            click.echo("")
            _analyze_list(run_dir)
    return 0


def _with_dns(targets: Any) -> tuple[Any, ...]:
    services = tuple(targets.services)
    if targets.uses_name and targets.dns is not None and targets.dns not in services:
        services += (targets.dns,)
    return services


def _save_health(api: Any, run_dir: Path, namespaces: set[str]) -> None:
    """Save RUN/cluster/health.json for `pathtrace diagnose`; a refusal must not cost the run."""
    from tracer.errors import PathtraceError
    from tracer.health import save_health
    from tracer.kube.health import collect_health

    try:
        save_health(run_dir, collect_health(api, namespaces))
    except PathtraceError as e:
        click.echo(f"pathtrace: warning: health facts not saved: {e.message}", err=True)
    except OSError as e:
        click.echo(f"pathtrace: warning: health facts not saved: {e.strerror or e}", err=True)


def _analyze(run_dir: Path, html_out: str | None = None, match: str | None = None) -> None:
    try:
        from tracer.cli import analyze
    except ImportError:
        click.echo(f"pathtrace: captured; trace it with: pathtrace analyze {run_dir}", err=True)
        return
    ctx = click.get_current_context()
    ctx.invoke(analyze.command, run=str(run_dir), html_out=html_out, match_text=match)


def _analyze_list(run_dir: Path) -> None:
    """Below the request that fired: every connection of the window."""
    from tracer.cli import analyze

    ctx = click.get_current_context()
    ctx.invoke(analyze.command, run=str(run_dir), list_only=True)


# -- incident mode (--until) -------------------------------------------------------------------

# Exit code when --until's condition never held within --duration (0 ok, 1 error, 2 usage,
# 3 nothing matched, 4 diagnose found a problem, 130 interrupted: see tracer.cli).
EXIT_QUIET = 5
DEFAULT_WAIT_S = 300.0
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)


def _size(text: str) -> int:
    m = _SIZE.match(text)
    if not m:
        raise UsageError(f"--ring-bytes {text!r}: expected a size such as 65536, 512K, 64M or 1G")
    unit = (m.group(2) or "b")[0].lower()
    n = int(float(m.group(1)) * {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit])
    if n < MIN_RING_BYTES:
        raise UsageError(f"--ring-bytes {text!r}: at least {MIN_RING_BYTES // 1024}K per point")
    return n


def _human(n: int) -> str:
    for unit, size in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n} bytes"


def _incident_options(
    until_text: str | None,
    request: str | None,
    duration: float | None,
    ring_bytes: str,
    discard_if_quiet: bool,
    repeat: int | None,
    max_bytes: int | None,
) -> Any:
    """The parsed --until condition (None without it); options that need it are refused alone."""
    from tracer.capture.watch import parse_until

    if until_text is None:
        for flag, given in (("--discard-if-quiet", discard_if_quiet), ("--repeat", repeat)):
            if given:
                raise UsageError(f"{flag} needs --until CONDITION")
        return None
    if repeat is not None and request is None:
        raise UsageError("--repeat re-runs --request: give --request 'CMD' too")
    if max_bytes is not None:
        raise UsageError(
            "--until keeps a rolling window of --ring-bytes; --max-bytes is for plain captures"
        )
    if duration is not None and duration <= 0:
        raise UsageError("--duration must be more than 0 seconds")
    _size(ring_bytes)
    try:
        return parse_until(until_text)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _watch_printer(tty: bool) -> Any:
    """Progress while armed: one refreshed line on a terminal, else a line when armed and fired."""
    said: set[str] = set()

    def show(status: Mapping[str, Any]) -> None:
        trigger = status["trigger"]
        if not tty:
            key = "fired" if trigger is not None else "armed"
            if key in said:
                return
            said.add(key)
        if trigger is not None:
            line = (
                f"pathtrace: {trigger.condition} at {status['watched_point']}: {trigger.detail} "
                f"({trigger.client} -> {trigger.server}); keeping the next seconds at every point"
            )
        else:
            pts = " | ".join(
                f"{name} {pk} pkts {by / 1024:.0f} KiB"
                for name, (pk, by) in status["points"].items()
            )
            line = (
                f"pathtrace: armed {status['armed']} points, {status['elapsed_s']:.0f}/"
                f"{status['duration_s']:g} s, watching {status['watched_point']} for "
                f"{status['watching']}: {status['connections']} connections"
                + (f", {status['requests']} requests" if status["requests"] else "")
                + f" | {pts}"
            )
        if tty:
            click.echo("\r" + line + "\033[K", err=True, nl=trigger is not None)
        else:
            click.echo(line, err=True)

    return show


def _say_incident(extra: Mapping[str, Any], run_dir: Path) -> None:
    until = extra.get("until") or {}
    ring = until.get("ring") or {}
    seen = sum(r["seen_bytes"] for r in ring.values())
    kept = sum(r["kept_bytes"] for r in ring.values())
    trigger = extra.get("trigger")
    if trigger is not None:
        conn = trigger["connection"]
        click.echo(
            f"pathtrace: fired on {trigger['condition']}: {trigger['detail']} "
            f"({conn['proto']} {conn['client']} -> {conn['server']}); every point stopped "
            f"{trigger['stop_latency_ms']:.0f} ms after --keep-after",
            err=True,
        )
    else:
        click.echo(
            f"pathtrace: --until {until.get('condition')}: the condition did not hold in "
            f"{until.get('duration_s', 0):g} s ({until.get('connections_seen', 0)} connections "
            f"watched at {until.get('watched_point')}); kept the last "
            f"{until.get('keep_before_s', 0) + until.get('keep_after_s', 0):g} s in {run_dir}",
            err=True,
        )
    click.echo(
        f"pathtrace: kept {kept / 1024:.0f} KiB of the {seen / 1024:.0f} KiB seen at "
        f"{len(ring)} points (ring {_human(until.get('ring_bytes', 0))} per point)",
        err=True,
    )
