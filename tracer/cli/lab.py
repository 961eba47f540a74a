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
    """Print the analysis of a run the way `pathtrace analyze RUN` does."""
    try:
        from tracer.cli import analyze

        return analyze.command.main(
            args=[str(run_dir)], prog_name="pathtrace analyze", standalone_mode=False
        )
    except PathtraceError:
        raise
    except Exception as e:  # the run is complete either way; say so instead of a traceback
        raise PathtraceError(
            f"the analysis of {run_dir} failed: {e!r}",
            hint=f"the run directory is complete; retry with `pathtrace --traceback analyze {run_dir}`",
        ) from e
    return None


API_HELP = """Serve the running lab as a Kubernetes API in the foreground, until Ctrl-C.

\b
It listens on 127.0.0.1 only, behind a random bearer token, and writes a kubeconfig (mode 0600,
context pathtrace-lab, namespace default). It serves the lab's nodes, namespaces, pods (IPs,
nodes, containers), Services, EndpointSlices and the Ingress; exec in a pod runs in that pod's
network namespace (pt-<node>-<pod>), in a node pod (hostNetwork) in the node's (pt-<node>), as
`ip netns exec NS ARGV`. Debug-container images are ignored: the host's tcpdump runs there.
`pathtrace lab up --api` starts the same API in the background; `lab down` stops either.

\b
Pod to Service (the request runs in the client pod):
  pathtrace capture --kubeconfig /run/pathtrace-lab/kubeconfig \\
      --from pod/client --to svc/web --request 'curl -s http://web/'
\b
From outside to a NodePort: with `--from external` the request runs on this machine, so
send it from the lab's external host:
  pathtrace capture --kubeconfig /run/pathtrace-lab/kubeconfig \\
      --from external --to svc/web-np \\
      --request 'ip netns exec pt-external curl -s http://192.168.50.11:30080/'
"""

# `lab up --api` and `lab api` write the same kubeconfig.
_KUBECONFIG_OUT = click.option(
    "--kubeconfig-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the API's kubeconfig (default /run/pathtrace-lab/kubeconfig).",
)


@click.group("lab")
def command() -> None:
    """A local Kubernetes data plane in network namespaces: kube-proxy's real rules (iptables or
    nftables), a bridge CNI with flannel-style VXLAN between nodes, CoreDNS-like DNS, nginx
    ingress, and scenarios that capture one request everywhere at once.

    \b
    Typical use (as root):
      pathtrace lab up                    build it (2 nodes, iptables mode)
      pathtrace lab scenarios             list what can be run
      pathtrace lab run clusterip-remote  capture one request, write a run directory, trace it
      pathtrace lab down                  remove everything (also after a crash)
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
@click.option(
    "--ipv6",
    is_flag=True,
    help="Dual-stack: pods, nodes and the external client also get IPv6 addresses, IPv6 "
    "Services (fd00:10:96::/112) get kube-proxy's IPv6 rules, and the IPv6 scenarios "
    "(clusterip6, clusterip6-remote, nodeport6, no-endpoints6) can run.",
)
@click.option(
    "--api",
    "with_api",
    is_flag=True,
    help="Also start the lab's Kubernetes API (127.0.0.1) for `pathtrace capture`.",
)
@click.option(
    "--api-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port of the API (0: a free one).",
)
@_KUBECONFIG_OUT
def up_cmd(
    mode: str, nodes: int, ipv6: bool, with_api: bool, api_port: int, kubeconfig_out: Path | None
) -> None:
    """Build the lab (with --api, also serve it as a Kubernetes API)."""
    from tracer.lab import lab

    if not with_api and (api_port or kubeconfig_out):
        raise UsageError("--api-port and --kubeconfig-out need --api")
    state = lab.up(mode=mode, nodes=nodes, log=progress, ipv6=ipv6)
    click.echo(
        f"lab up: {len(state['nodes'])} nodes, {mode} mode"
        f"{', dual-stack' if ipv6 else ''}, {state['up_seconds']:.2f} s; "
        "next: pathtrace lab run clusterip"
    )
    if with_api:
        from tracer.errors import LabError
        from tracer.lab.api import start_api

        try:
            info = start_api(api_port, kubeconfig_out, log=progress)
        except LabError as e:
            raise LabError(
                f"the lab is up, but its API did not start: {e.message}",
                hint="retry with `pathtrace lab api`, or `pathtrace lab down`",
            ) from None
        _show_api(info.url, info.kubeconfig, info.pid)


def _show_api(url: str, kubeconfig: str, pid: int) -> None:
    click.echo(f"lab API: {url} (pid {pid})")
    click.echo(f"kubeconfig: {kubeconfig}")
    click.echo(
        f"next: pathtrace capture --kubeconfig {kubeconfig} --from pod/client --to svc/web "
        "--request 'curl -s http://web/'"
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
    from tracer.lab.api import api_status

    st = lab.status()
    api = api_status()
    if as_json:
        st = {**st, "api": api}
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
    if api["running"]:
        click.echo(f"api: running, pid {api['pid']}, {api['url']}, kubeconfig {api['kubeconfig']}")
    elif api.get("pid"):
        click.echo(f"api: DEAD (pid {api['pid']} recorded); kubeconfig {api['kubeconfig']}")
    elif st["status"] != "down":
        click.echo("api: not running (start it with `pathtrace lab api` or `lab up --api`)")
    if api["stray_pids"]:
        click.echo(f"api: unrecorded API processes: {api['stray_pids']} (`pathtrace lab down`)")
    if st["status"] == "half-built":
        click.echo("hint: run `pathtrace lab down` to clean up", err=True)


@command.command("down")
def down_cmd() -> None:
    """Remove every pt- namespace, link, process and the state (works after a crash)."""
    from tracer.lab import lab
    from tracer.lab.api import api_status
    from tracer.words import count

    # Looked at before removing: "removed 0" would not tell the user that there was no lab.
    before = lab.status()
    api = api_status()
    api_left = bool(api.get("running") or api.get("pid") or api.get("stray_pids"))
    removed = lab.down(log=progress)
    if not removed and before["status"] == "down" and not api_left:
        click.echo("lab down: nothing to remove: no lab is up")
        return
    what = [count(len(removed), "namespace/link", "namespaces/links")] if removed else []
    if api_left:
        what.append("the lab API")
    # A lab that crashed before creating anything leaves only its state file behind.
    click.echo(f"lab down: removed {' and '.join(what) or 'the lab state file'}")


@command.command("api", help=API_HELP)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port on 127.0.0.1 (0: a free one).",
)
@_KUBECONFIG_OUT
def api_cmd(port: int, kubeconfig_out: Path | None) -> None:
    from tracer.lab.api import ApiInfo, run_api
    from tracer.lab.topology import require_up

    require_up()

    def ready(info: ApiInfo) -> None:
        _show_api(info.url, info.kubeconfig, info.pid)
        click.echo("serving until Ctrl-C", err=True)

    run_api(port, kubeconfig_out, ready=ready)
    click.echo("lab API stopped; kubeconfig removed", err=True)


@command.command("scenarios")
def scenarios_cmd() -> None:
    """List the scenarios with a one-line description."""
    from tracer.lab.scenarios import describe

    rows = describe()
    width = max(len(n) for n, _ in rows)
    for name, desc in rows:
        click.echo(f"{name:{width}s}  {desc}")


@command.command("fault")
@click.argument("pod", type=click.Choice(["web-a", "web-b", "slow"]))
@click.option(
    "--reset-every",
    type=click.IntRange(1),
    default=None,
    metavar="N",
    help="Answer every Nth request with a TCP RST instead of the page.",
)
@click.option("--clear", is_flag=True, help="Remove the fault: answer every request.")
def fault_cmd(pod: str, reset_every: int | None, clear: bool) -> None:
    """An intermittent fault at one of the lab's HTTP pods, changed while the lab runs.

    \b
    Example, for `pathtrace capture --until failed`:
      pathtrace lab fault web-a --reset-every 20    one request in 20 to web-a is reset
      pathtrace lab traffic start --to web          background requests that meet it
      pathtrace lab fault web-a --clear
    The pod's log (/run/pathtrace-lab/logs/POD.log) names every connection it reset.
    """
    from tracer.lab.incident import set_fault
    from tracer.lab.topology import require_up

    if clear == (reset_every is not None):
        raise UsageError("give either --reset-every N or --clear")
    require_up()
    set_fault(pod, reset_every)
    if reset_every is None:
        click.echo(f"lab fault: {pod} answers every request")
    else:
        click.echo(f"lab fault: {pod} resets one request in {reset_every}")


@command.group("traffic")
def traffic_cmd() -> None:
    """Background traffic: a pod sends one HTTP request on a new connection every --interval."""


@traffic_cmd.command("start")
@click.option(
    "--from", "from_pod", default="client", show_default=True, help="Lab pod to send from."
)
@click.option(
    "--to",
    "to",
    default="web",
    show_default=True,
    metavar="SERVICE|URL",
    help="A Service of the lab's default namespace (its ClusterIP, port 80), or a URL.",
)
@click.option("--interval", type=click.FloatRange(0.01), default=0.2, show_default=True)
def traffic_start_cmd(from_pod: str, to: str, interval: float) -> None:
    """Start sending in the background until `lab traffic stop` or `lab down`.

    \b
    Each request's outcome as the client saw it (ok, reset, timeout, ...) and its local port go
    to /run/pathtrace-lab/logs/traffic.log.
    """
    from tracer.lab.incident import start_traffic
    from tracer.lab.services import cluster_services
    from tracer.lab.topology import require_up

    _, topo = require_up()
    try:
        pod = topo.pod(from_pod)
    except (KeyError, ValueError, StopIteration):
        raise UsageError(
            f"--from {from_pod!r}: no such lab pod",
            hint=f"lab pods: {', '.join(p.name for p in topo.pods)}",
        ) from None
    if "://" in to:
        url = to
    else:
        svc = {s.name: s for s in cluster_services(topo) if s.namespace == "default"}
        if to not in svc:
            raise UsageError(
                f"--to {to!r}: no such Service in the lab's default namespace",
                hint=f"Services: {', '.join(sorted(svc))}",
            )
        url = f"http://{svc[to].cluster_ip}/"
    info = start_traffic(pod.netns, url, interval)
    click.echo(
        f"lab traffic: {from_pod} -> {url} every {interval:g} s (pid {info['pid']}); "
        f"log {info['log']}; stop with `pathtrace lab traffic stop`"
    )


@traffic_cmd.command("stop")
def traffic_stop_cmd() -> None:
    """Stop the background traffic and summarise what it met."""
    from collections import Counter

    from tracer.lab.incident import stop_traffic, traffic_log

    info = stop_traffic()
    if info is None:
        click.echo("lab traffic: none running")
        return
    seen = Counter(outcome for _, _, outcome, _ in traffic_log(info["log"]))
    summary = ", ".join(f"{n} {o}" for o, n in seen.most_common()) or "no request"
    click.echo(f"lab traffic: stopped (pid {info['pid']}): {summary}")
