"""Every example in every `--help` and in the README, run as written.

Examples are collected from the text users read (each command's --help, README.md's code
blocks), not listed here by hand: a new example is tested the day it is written. They run in a
workspace holding files under the names the examples use (a run directory with twenty
connections as `runs/x` and `RUN`, its captures as `client.pcap` ..., a node's rules as
`iptables-save.txt`, the recorded lab runs as `pcaps/`). Examples that talk to a cluster
(capture, live diagnose) run against the API stand-in (`tracer.apiserver`, the real Kubernetes
client speaking HTTP to it) serving a small cluster with the objects the examples name, with
its kubeconfig for theirs and `--duration` cut to one second (the only change). Examples that
build network namespaces (lab, demo) run as written, in the order a user types them, on the
real lab (root and network namespaces; skipped with the reason elsewhere).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from tests.pcap import craft as c
from tracer.cli import COMMANDS, cli, main

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
RULES = REPO / "tests" / "rules" / "data"

# Commands that build namespaces or talk to a cluster.
LIVE = ("lab", "demo", "capture", "cleanup")
CLUSTER = ("capture", "diagnose", "cleanup")
# Exit codes an example may end with besides 0: diagnose says "a problem was found" with 4,
# capture --until "the condition never held" with 5 (nothing fails in the stand-in cluster).
ALSO_OK = {"diagnose": {4}, "capture": {5}}


def _help(path: list[str]) -> str:
    command: click.Command = cli
    ctx = click.Context(cli, info_name="pathtrace")
    for name in path:
        assert isinstance(command, click.Group)
        sub = command.get_command(ctx, name)
        assert sub is not None, path
        command = sub
        ctx = click.Context(command, info_name=name, parent=ctx)
    return command.get_help(ctx)


def _all_helps() -> Iterator[tuple[str, str]]:
    yield "pathtrace --help", _help([])
    for name in COMMANDS:
        text = _help([name])
        yield f"pathtrace {name} --help", text
        ctx = click.Context(cli, info_name="pathtrace")
        group = cli.get_command(ctx, name)
        if isinstance(group, click.Group):
            for sub in group.list_commands(ctx):
                yield f"pathtrace {name} {sub} --help", _help([name, sub])


def _examples(text: str) -> list[str]:
    """`pathtrace …` command lines of a text, continuation lines joined, explanations cut."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip().removeprefix("$ ")
        i += 1
        at = line.find("pathtrace ")
        if at < 0 or (at > 0 and not line[:at].rstrip().endswith("&&")):
            continue
        line = line[at:]
        while line.endswith("\\") and i < len(lines):
            line = line[:-1].rstrip() + " " + lines[i].strip()
            i += 1
        # What follows a run of two spaces (or a #) explains the example; it is not typed.
        line = re.split(r"\s{2,}|\s#\s", line, maxsplit=1)[0].strip()
        for form in _forms(line):
            words = shlex.split(form)
            if len(words) >= 2 and words[1] in COMMANDS and "…" not in form and "..." not in form:
                out.append(form)
    return out


def _forms(line: str) -> list[str]:
    """A synopsis `cmd [-n NS|-A]` as the commands it stands for: `cmd`, `cmd -n NS`, `cmd -A`."""
    m = re.search(r" \[(-[^\]]*)\]", line)
    if m is None:
        return [line]
    head, tail = line[: m.start()], line[m.end() :]
    return [f"{head}{tail}", *(f"{head} {alt.strip()}{tail}" for alt in m.group(1).split("|"))]


def _readme_blocks() -> str:
    blocks = re.findall(r"```[a-z]*\n(.*?)```", README.read_text(), flags=re.S)
    return "\n".join(blocks)


HELP_EXAMPLES = sorted({e for _, text in _all_helps() for e in _examples(text)})
README_EXAMPLES = sorted(set(_examples(_readme_blocks())))
EXAMPLES = sorted(set(HELP_EXAMPLES) | set(README_EXAMPLES))
OFFLINE = [
    e
    for e in EXAMPLES
    if shlex.split(e)[1] not in LIVE and not (shlex.split(e)[1] == "diagnose" and "--from" in e)
]
LIVE_EXAMPLES = [e for e in EXAMPLES if e not in OFFLINE]
CLUSTER_EXAMPLES = [e for e in LIVE_EXAMPLES if shlex.split(e)[1] in CLUSTER]
LAB_EXAMPLES = [e for e in LIVE_EXAMPLES if e not in CLUSTER_EXAMPLES]


def test_examples_are_found_where_users_read_them() -> None:
    # The collection itself must not silently come back empty or miss a command's examples.
    assert len(HELP_EXAMPLES) >= 25 and len(README_EXAMPLES) >= 8
    for command in ("analyze", "packets", "explain", "diagnose", "capture", "lab"):
        assert any(shlex.split(e)[1] == command for e in EXAMPLES), command


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding every file the examples name, under the names they use."""
    from tracer.model import CapturePoint
    from tracer.rundir import Manifest, write_manifest
    from tracer.testing import synth

    ws = tmp_path_factory.mktemp("examples")
    run = ws / "runs" / "x"
    (run / "points").mkdir(parents=True)
    points, files = synth.bulk_dnat_pcaps(run / "points", 20, any_capture=True)
    for p in points:
        links = run / "points" / f"{p.name}.links.json"
        if links.exists():
            (run / "nodes" / (p.node or p.name)).mkdir(parents=True, exist_ok=True)
            links.rename(run / "nodes" / (p.node or p.name) / "links.json")
    manifest = Manifest(
        source="import",
        created="2024-05-01T12:00:00Z",
        points=tuple(
            CapturePoint(
                name=p.name,
                role=p.role,
                file=f"points/{p.name}.pcap",
                node=p.node,
                interface=p.interface,
            )
            for p in points
        ),
    )
    write_manifest(run, manifest)
    # The same run under the other names the examples give a run directory.
    shutil.copytree(run, ws / "runs" / "2024-05-01T12-00-00")
    shutil.copytree(run, ws / "RUN")
    shutil.copy(run / "points" / "node-a.pcap", ws / "RUN" / "points" / "node1.pcap")
    for name, path in files.items():
        shutil.copy(path, ws / f"{name}.pcap")
    shutil.copy(files["node-a"], ws / "node.pcap")
    shutil.copy(files["client"], ws / "FILE")
    shutil.copy(run / "points" / "node-a.pcap", ws / "any.pcap")
    shutil.copy(run / "nodes" / "node-a" / "links.json", ws / "node1-links.json")
    (ws / "client.pcapng").write_bytes(
        c.shb()
        + c.idb(1, name="eth0", tsresol=9)
        + b"".join(
            c.epb(c.eth(c.ipv4(c.udp(b"x" * k, 40000 + k, 53), 17)), 0, 10**18 + k)
            for k in range(30)
        )
    )
    shutil.copy(REPO / "pcaps" / "clusterip" / "nodes" / "node1" / "iptables-save.txt", ws)
    shutil.copy(RULES / "nft-ruleset.txt", ws / "nft.txt")
    (ws / "pcaps").symlink_to(REPO / "pcaps")
    return ws


@pytest.mark.parametrize("example", OFFLINE)
def test_offline_example_runs_as_written(
    example: str,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(workspace)
    words = shlex.split(example.split(" | ")[0])
    with pytest.raises(SystemExit) as e:
        main(words[1:])
    code = e.value.code if isinstance(e.value.code, int) else 0
    out, err = capsys.readouterr()
    assert code == 0 or code in ALSO_OK.get(words[1], set()), f"{example}\n{err}"
    assert "Traceback" not in err
    assert out or " -o " in example or "pathtrace: error" not in err


@pytest.fixture(scope="module")
def cluster() -> Iterator[Path]:
    """The API stand-in serving the sample cluster and what the examples name besides: the
    NodePort Service web-np, the Ingress shop and its controller; yields its kubeconfig."""
    import dataclasses

    from tracer.apiserver import serve
    from tracer.apiserver.fakes import fake_exec_backend, sample_state
    from tracer.apiserver.state import IngressSpec, PodSpec, ServicePortSpec, ServiceSpec

    state = sample_state()
    controller = PodSpec(
        "ingress-nginx",
        "ingress-nginx-controller-1",
        "n1",
        "10.244.1.10",
        labels={"app.kubernetes.io/name": "ingress-nginx"},
    )
    web_np = ServiceSpec(
        "default",
        "web-np",
        "10.96.0.21",
        (ServicePortSpec(80, 8080, name="http", node_port=30080),),
        ("web-1",),
        type="NodePort",
        selector={"app": "web"},
    )
    state = dataclasses.replace(
        state,
        pods=(*state.pods, controller),
        services=(*state.services, web_np),
        ingresses=(IngressSpec("default", "shop", "shop.local", "web", 80),),
    )
    with serve(state, fake_exec_backend()) as server:
        yield Path(server.kubeconfig_path)


@pytest.mark.slow
@pytest.mark.parametrize("example", CLUSTER_EXAMPLES)
def test_cluster_example_runs_against_the_api(
    example: str,
    cluster: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(cluster))
    # The Kubernetes client reads $KUBECONFIG when first imported (maybe by an earlier test).
    from kubernetes.config import kube_config

    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(cluster))
    words = shlex.split(example)[1:]
    for option, value in (("--kubeconfig", str(cluster)), ("--duration", "1")):
        if option in words:
            words[words.index(option) + 1] = value
    if words[0] == "cleanup":
        # What cleanup removes is what a capture made: record one first, as RUN (its id is ID).
        record = ["capture", "--from", "pod/client", "--to", "svc/web", "--duration", "0.5"]
        with pytest.raises(SystemExit) as made:
            main([*record, "--no-analyze", "-o", str(tmp_path / "RUN")])
        assert made.value.code in (0, None), capsys.readouterr().err
        capsys.readouterr()
        run_id = json.loads((tmp_path / "RUN" / "manifest.json").read_text())["extra"]["run_id"]
        words = [{"ID": run_id, "NS": "default"}.get(w, w) for w in words]
    with pytest.raises(SystemExit) as e:
        main(words)
    code = e.value.code if isinstance(e.value.code, int) else 0
    out, err = capsys.readouterr()
    assert code == 0 or code in ALSO_OK.get(words[0], set()), f"{example}\n{err}"
    assert "Traceback" not in err
    if "--dry-run" in words:
        assert '"points"' in out and not list(tmp_path.iterdir())  # a plan, and nothing made
    elif words[0] == "cleanup":
        assert "Traceback" not in out
    elif words[0] in ("capture", "diagnose"):
        runs = list(tmp_path.glob("pathtrace-*"))
        assert len(runs) == 1 and (runs[0] / "manifest.json").is_file()


def _lab_session(examples: list[str]) -> list[str]:
    """The lab examples in the order a user types them: demo (it builds and removes its own
    lab), then each `lab up` variant followed by what runs on a lab, and `lab down`."""
    words = {e: shlex.split(e)[1:] for e in examples}
    demo = [e for e in examples if words[e][0] == "demo"]
    ups = [e for e in examples if words[e][:2] == ["lab", "up"]]
    downs = [e for e in examples if words[e][:2] == ["lab", "down"]]
    middle: list[str] = []
    for e in examples:
        if e not in (*demo, *ups, *downs):
            middle.append(e)
            # One background traffic at a time: a user stops it before starting another.
            if words[e][:3] == ["lab", "traffic", "start"]:
                middle.append("pathtrace lab traffic stop")
    session = list(demo)
    for k, up in enumerate(ups):
        session += [up, *(middle if k == 0 else []), *downs]
    return session


@pytest.mark.netns
@pytest.mark.slow
def test_lab_examples_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.lab.conftest import netns_unavailable
    from tracer.lab import lab

    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    if lab.status()["status"] != "down":
        pytest.skip("a lab is up here already (run the lab tests one at a time, or isolated)")
    monkeypatch.chdir(tmp_path)
    ran: list[str] = []
    try:
        for example in _lab_session(LAB_EXAMPLES):
            with pytest.raises(SystemExit) as e:
                main(shlex.split(example)[1:])
            out, err = capsys.readouterr()
            assert e.value.code in (0, None), f"{example}\n{err}"
            assert "Traceback" not in err
            ran.append(example)
    finally:
        if lab.status()["status"] != "down":
            lab.down()
    assert set(LAB_EXAMPLES) <= set(ran)
    assert list(tmp_path.glob("pathtrace-lab-clusterip-remote-*/manifest.json"))


@pytest.mark.parametrize("example", LAB_EXAMPLES)
def test_lab_example_parses(example: str) -> None:
    """The command and every option exist and take the values written (nothing is run)."""
    words = shlex.split(example.split(" | ")[0])[1:]
    ctx = click.Context(cli, info_name="pathtrace")
    command = cli.get_command(ctx, words[0])
    args = words[1:]
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        ctx = click.Context(command, info_name=args[0], parent=ctx)
        command = command.get_command(ctx, args.pop(0))
    assert command is not None, example
    # make_context parses every option and argument, and calls no callback.
    command.make_context(words[0], list(args), parent=ctx, resilient_parsing=False)
