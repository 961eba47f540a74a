"""The lab's long-running workloads: the web servers, the cluster and outside DNS servers, and the
nginx ingress (in a pod, and on a node's own network), each started in its namespace.

`workloads` says what runs where (pure but for writing nginx's configuration); `start_workload`
starts one and waits until it serves. Stopping them is the teardown's job (by namespace).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tracer.errors import LabError
from tracer.lab.incident import fault_file
from tracer.lab.runner import Runner
from tracer.lab.services import (
    INGRESS_HOST,
    SLOW_DELAY_S,
    WEB_PORT,
    dns_records,
    external_dns_records,
)
from tracer.lab.topology import UNDERLAY_NS, Topology


@dataclass(frozen=True)
class Workload:
    name: str
    netns: str
    argv: tuple[str, ...]
    ready: str  # a file that exists, or a log line that appears, once it serves
    ready_kind: str = "log"  # log | file


def nginx_conf(prefix: Path, listen: str, upstream: str) -> str:
    p = str(prefix)
    return f"""worker_processes 1;
error_log {p}/error.log warn;
pid {p}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log {p}/access.log;
  client_body_temp_path {p}/tmp/body;
  proxy_temp_path {p}/tmp/proxy;
  fastcgi_temp_path {p}/tmp/fastcgi;
  uwsgi_temp_path {p}/tmp/uwsgi;
  scgi_temp_path {p}/tmp/scgi;
  server {{
    listen {listen};
    server_name {INGRESS_HOST} _;
    location / {{
      proxy_pass http://{upstream};
      proxy_http_version 1.1;
      proxy_set_header Host $host;
    }}
  }}
}}
"""


def workloads(topo: Topology, state_dir: Path) -> list[Workload]:
    py = sys.executable
    out: list[Workload] = []
    for pod, delay in (("web-a", 0.0), ("web-b", 0.0), ("slow", SLOW_DELAY_S)):
        p = topo.pod(pod)
        argv = [py, "-m", "tracer.lab.httpd", "--port", str(WEB_PORT), "--name", pod]
        # Off until `pathtrace lab fault` writes the file (the intermittent fault).
        argv += ["--fault-file", str(fault_file(state_dir, pod))]
        if topo.dual_stack:
            argv += ["--bind", "::"]  # both families (net.ipv6.bindv6only is 0)
        if delay:
            argv += ["--delay", str(delay)]
        out.append(Workload(pod, p.netns, tuple(argv), "listening on"))
    cluster = [f"--record={k}={v}" for k, v in dns_records(topo).items()]
    out.append(
        Workload(
            "coredns",
            topo.pod("coredns").netns,
            (py, "-m", "tracer.lab.dns", "--port", "53", *cluster),
            "listening on",
        )
    )
    ext = [f"--record={k}={v}" for k, v in external_dns_records(topo).items()]
    out.append(
        Workload(
            "extdns",
            UNDERLAY_NS,
            (py, "-m", "tracer.lab.dns", "--bind", topo.router_ip, "--port", "53", *ext),
            "listening on",
        )
    )
    upstream = "10.96.0.101:80"  # Service web-remote's ClusterIP: the request crosses kube-proxy
    for name, netns, listen in (
        ("ingress", topo.pod("ingress").netns, "80"),
        ("ingress-hostnet", topo.nodes[0].netns, f"{topo.nodes[0].underlay_ip}:80"),
    ):
        d = state_dir / f"nginx-{name}"
        (d / "tmp").mkdir(parents=True, exist_ok=True)
        (d / "nginx.conf").write_text(nginx_conf(d, listen, upstream))
        out.append(
            Workload(
                name,
                netns,
                ("nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"),
                str(d / "nginx.pid"),
                "file",
            )
        )
    return out


def start_workload(runner: Runner, w: Workload, log_dir: Path, timeout: float = 10.0) -> int:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{w.name}.log"
    with open(log_path, "wb") as logf:
        proc = runner.spawn(["ip", "netns", "exec", w.netns, *w.argv], stdout=logf, stderr=logf)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(
                f"{w.name} exited at start (exit {proc.returncode}): "
                f"{log_path.read_text(errors='replace')[-400:]}"
            )
        if w.ready_kind == "file" and Path(w.ready).exists():
            return proc.pid
        if w.ready_kind == "log" and w.ready in log_path.read_text(errors="replace"):
            return proc.pid
        time.sleep(0.05)
    raise LabError(f"{w.name} did not become ready within {timeout:g} s (log: {log_path})")
