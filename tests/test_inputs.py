from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tracer.errors import CaptureFormatError, InputError, UsageError
from tracer.inputs import (
    LINKTYPE_LINUX_SLL2,
    load_points,
    load_run,
    parse_links_spec,
    parse_point_spec,
)
from tracer.pcap.columns import Frames, empty_columns


class FakeReader:
    """Stands in for the capture reader: one frame per file, or the error a bad file raises."""

    def __init__(self, *, linktype: int = 1, interfaces: dict[int, str] | None = None) -> None:
        self.linktype = linktype
        self.interfaces = interfaces or {}
        self.read: list[str] = []

    def __call__(self, path: str) -> Frames:
        self.read.append(path)
        data = Path(path).read_bytes()  # raises FileNotFoundError like a real reader would
        if data.startswith(b"BAD"):
            raise CaptureFormatError(path, "not a pcap or pcapng file (magic 0x42414420)")
        return Frames(path, (self.linktype,), empty_columns(1), (), (), dict(self.interfaces))


def fake_links(text: str) -> dict[int, str]:
    return {int(k): v for k, v in json.loads(text).items()}


def test_point_spec_forms() -> None:
    p = parse_point_spec("client:web-client@node-a=caps/client.pcap")
    assert (p.role, p.name, p.node, p.file) == (
        "client",
        "web-client",
        "node-a",
        "caps/client.pcap",
    )
    q = parse_point_spec("server:web-0=/tmp/a=b.pcap")  # only the first '=' separates
    assert (q.name, q.file) == ("web-0", "/tmp/a=b.pcap")
    assert q.node is None  # no node named: a clock domain of its own


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("client.pcap", "no '=FILE'"),
        ("client=client.pcap", "no 'ROLE:'"),
        ("pod:web=client.pcap", "role 'pod' is not one of client, node, server"),
        ("client:=c.pcap", "point name ''"),
        ("client:a@=c.pcap", "node ''"),
        ("client:a b=c.pcap", "point name 'a b'"),
        ("client:a=", "no '=FILE'"),
    ],
)
def test_bad_point_spec_names_the_spec_and_the_form(spec: str, why: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_point_spec(spec)
    assert repr(spec) in e.value.message
    assert why in e.value.message
    assert "ROLE:NAME[@NODE]=FILE" in e.value.message


def test_links_spec() -> None:
    assert parse_links_spec("node-a=links.json") == ("node-a", "links.json")
    with pytest.raises(UsageError, match="NODE=FILE"):
        parse_links_spec("links.json")


def _write(path: Path, data: bytes = b"\xd4\xc3\xb2\xa1") -> str:
    path.write_bytes(data)
    return str(path)


def test_load_points_reads_each_file_in_order(tmp_path: Path) -> None:
    a, b = _write(tmp_path / "a.pcap"), _write(tmp_path / "b.pcap")
    reader = FakeReader(interfaces={0: "eth0"})
    run = load_points([f"client:c@n1={a}", f"node:n1@n1={b}"], reader=reader)
    assert reader.read == [a, b]
    assert [(p.point.name, p.point.node) for p in run.points] == [("c", "n1"), ("n1", "n1")]
    assert run.points[0].ifnames == {0: "eth0"}  # pcapng interface names
    assert set(run.frames) == {"c", "n1"}
    assert run.warnings == ()


def test_missing_point_file_is_an_input_error_naming_it(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.pcap")
    with pytest.raises(InputError, match="nope.pcap: capture file not found"):
        load_points([f"client:c={a}", f"server:s={tmp_path / 'nope.pcap'}"], reader=FakeReader())


def test_duplicate_point_name(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.pcap")
    with pytest.raises(UsageError, match="'c' is given twice"):
        load_points([f"client:c={a}", f"server:c={a}"], reader=FakeReader())


def test_unreadable_point_is_left_out_with_a_warning(tmp_path: Path) -> None:
    good, bad = _write(tmp_path / "a.pcap"), _write(tmp_path / "b.pcap", b"BAD!")
    run = load_points([f"client:c={good}", f"server:s={bad}"], reader=FakeReader())
    assert [p.point.name for p in run.points] == ["c"]
    assert any("point s left out" in w and "b.pcap" in w for w in run.warnings)


def test_only_unreadable_points_is_the_error(tmp_path: Path) -> None:
    bad = _write(tmp_path / "b.pcap", b"BAD!")
    with pytest.raises(CaptureFormatError, match="b.pcap"):
        load_points([f"server:s={bad}"], reader=FakeReader())


def test_sll2_capture_takes_names_from_links(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.pcap")
    links = tmp_path / "links.json"
    links.write_text('{"2": "eth0", "7": "cni0"}')
    reader = FakeReader(linktype=LINKTYPE_LINUX_SLL2, interfaces={0: "any"})
    run = load_points(
        [f"node:n1@node-a={a}"], [f"node-a={links}"], reader=reader, links_parser=fake_links
    )
    assert run.points[0].ifnames == {2: "eth0", 7: "cni0"}
    without = load_points([f"node:n1@node-a={a}"], reader=reader)
    assert any("ifindex numbers" in w for w in without.warnings)


def test_links_for_an_unknown_node_or_missing_file(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.pcap")
    with pytest.raises(UsageError, match="no capture point is on node 'node-z'"):
        load_points([f"node:n1@node-a={a}"], ["node-z=x.json"], reader=FakeReader())
    with pytest.raises(InputError, match="x.json: links file not found"):
        load_points([f"node:n1@node-a={a}"], [f"node-a={tmp_path / 'x.json'}"], reader=FakeReader())


def _run_dir(tmp_path: Path, points: list[dict[str, Any]], files: dict[str, bytes]) -> Path:
    run = tmp_path / "run"
    (run / "points").mkdir(parents=True)
    for name, data in files.items():
        (run / "points" / name).write_bytes(data)
    manifest = {
        "schema": "pathtrace-run/v1",
        "source": "import",
        "created": "2024-05-01T12:00:00Z",
        "points": points,
        "warnings": ["node-b: 3 packets dropped by the kernel"],
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def test_load_run_reads_manifest_captures_and_links(tmp_path: Path) -> None:
    run = _run_dir(
        tmp_path,
        [
            {"name": "client", "role": "client", "node": "node-a", "file": "points/client.pcap"},
            {"name": "node-a", "role": "node", "node": "node-a", "file": "points/node-a.pcap"},
        ],
        {"client.pcap": b"x", "node-a.pcap": b"y"},
    )
    (run / "nodes" / "node-a").mkdir(parents=True)
    (run / "nodes" / "node-a" / "links.json").write_text('{"3": "veth1"}')
    reader = FakeReader(linktype=LINKTYPE_LINUX_SLL2)
    loaded = load_run(run, reader=reader, links_parser=fake_links)
    assert reader.read == [str(run / "points/client.pcap"), str(run / "points/node-a.pcap")]
    assert loaded.points[1].ifnames == {3: "veth1"}
    assert loaded.manifest is not None and loaded.run_dir == str(run)
    assert "node-b: 3 packets dropped by the kernel" in loaded.warnings


def test_load_run_keeps_going_without_a_missing_capture(tmp_path: Path) -> None:
    run = _run_dir(
        tmp_path,
        [
            {"name": "client", "role": "client", "file": "points/client.pcap"},
            {"name": "server", "role": "server", "file": "points/server.pcap"},
        ],
        {"client.pcap": b"x"},
    )
    loaded = load_run(run, reader=FakeReader())
    assert [p.point.name for p in loaded.points] == ["client"]
    assert any("point server left out" in w and "server.pcap" in w for w in loaded.warnings)


def test_load_run_errors_name_the_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_run(tmp_path / "nope")
    with pytest.raises(InputError, match="no manifest.json"):
        load_run(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="manifest.json: not valid JSON"):
        load_run(tmp_path)


def test_bad_links_json_in_a_run_is_a_warning(tmp_path: Path) -> None:
    run = _run_dir(
        tmp_path,
        [{"name": "n", "role": "node", "node": "node-a", "file": "points/n.pcap"}],
        {"n.pcap": b"x"},
    )
    (run / "nodes" / "node-a").mkdir(parents=True)
    (run / "nodes" / "node-a" / "links.json").write_text("garbage")
    loaded = load_run(run, reader=FakeReader(), links_parser=fake_links)
    assert len(loaded.points) == 1
    assert any("links.json: not readable as links" in w for w in loaded.warnings)


def test_progress_is_called_per_file_with_its_size(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.pcap", b"12345")
    seen: list[tuple[str, str, int]] = []
    load_points([f"client:c={a}"], reader=FakeReader(), progress=lambda *x: seen.append(x))
    assert seen == [("c", a, 5)]


def test_links_file_read_with_the_real_parser(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.pcap")
    links = tmp_path / "node-a-links.txt"
    links.write_text(
        "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT\\"
        "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n"
        "5: cni0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UP mode DEFAULT\\"
        "    link/ether 0a:58:0a:f4:01:01 brd ff:ff:ff:ff:ff:ff\n"
    )
    reader = FakeReader(linktype=LINKTYPE_LINUX_SLL2)
    run = load_points([f"node:n@node-a={a}"], [f"node-a={links}"], reader=reader)
    assert run.points[0].ifnames == {1: "lo", 5: "cni0"}
    links.write_text("nothing like ip output")
    with pytest.raises(InputError, match="node-a-links.txt"):
        load_points([f"node:n@node-a={a}"], [f"node-a={links}"], reader=reader)


def _plain_pcap(path: Path) -> None:
    """A pod-side capture as `tcpdump -i eth0 -w` writes it: plain pcap, no interface name."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    wrpcap(str(path), [Ether() / IP(src="10.244.1.2", dst="10.96.0.10") / UDP(dport=53)] * 2)


@pytest.mark.parametrize(("interface", "expected"), [("eth0", "eth0"), ("any", None), (None, None)])
def test_plain_pcap_hops_take_the_manifest_interface(
    tmp_path: Path, interface: str | None, expected: str | None
) -> None:
    run = _run_dir(
        tmp_path,
        [
            {
                "name": "client",
                "role": "client",
                "node": "node-a",
                "file": "points/client.pcap",
                "interface": interface,
            }
        ],
        {},
    )
    _plain_pcap(run / "points" / "client.pcap")
    (loaded,) = load_run(run).points
    names = {loaded.ifnames.get(int(i)) for i in loaded.frames.columns["iface"]}
    assert names == {expected}


def test_a_capture_that_names_its_interface_keeps_that_name(tmp_path: Path) -> None:
    run = _run_dir(
        tmp_path,
        [
            {
                "name": "client",
                "role": "client",
                "file": "points/client.pcap",
                "interface": "eth0",
            }
        ],
        {"client.pcap": b"x"},
    )

    def named(path: str) -> Frames:
        cols = empty_columns(1)
        cols["iface"][:] = 0
        return Frames(path, (1,), cols, (), (), {0: "veth-web"})

    (loaded,) = load_run(run, reader=named).points
    assert loaded.ifnames == {0: "veth-web"}


def test_large_captures_read_in_parallel_equal_a_plain_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import numpy as np

    import tracer.inputs as inputs
    import tracer.pcap
    from tracer.pcap import read_frames
    from tracer.testing.synth import bulk_dnat_pcaps

    monkeypatch.setattr(inputs, "PARALLEL_MIN_BYTES", 0)
    points, files = bulk_dnat_pcaps(tmp_path, 40, any_capture=True)
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"BAD!" * 8)
    readers: dict[str, list[str]] = {}

    def recording(path: str, **kw: Any) -> Frames:
        readers.setdefault(path, []).append(threading.current_thread().name)
        return read_frames(path, **kw)

    monkeypatch.setattr(tracer.pcap, "read_frames", recording)
    specs = [f"{p.role}:{p.name}@{p.node}={files[p.name]}" for p in points]
    run = load_points([*specs, f"external:broken={bad}"])
    # The damaged file is reported as a serial read reports it; the others are all there.
    assert [p.point.name for p in run.points] == [p.name for p in points]
    assert any("broken" in w and str(bad) in w for w in run.warnings)
    for lp in run.points:
        plain = read_frames(files[lp.point.name])
        assert lp.frames.addresses == plain.addresses
        assert lp.frames.encaps == plain.encaps
        for name, col in plain.columns.items():
            got = lp.frames.columns[name]
            assert got.dtype == col.dtype and np.array_equal(got, col), (lp.point.name, name)
    # Every good file was read once, in a reader thread; the broken one again in order.
    for p in points:
        (thread,) = readers[str(files[p.name])]
        assert thread.startswith("pathtrace-read")
    assert len(readers[str(bad)]) == 2


def test_a_folder_of_runs_names_them(tmp_path: Path) -> None:
    for name in ("b-run", "a-run"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text("{}")
    with pytest.raises(InputError) as e:
        load_run(tmp_path)
    assert "a-run, b-run" in str(e.value)
    assert e.value.hint is not None and str(tmp_path / "a-run") in e.value.hint


def test_a_capture_file_given_as_run_points_to_point(tmp_path: Path) -> None:
    f = tmp_path / "client.pcap"
    f.write_bytes(b"")
    with pytest.raises(InputError) as e:
        load_run(f)
    assert "is not a directory" in str(e.value)
    assert e.value.hint is not None and f"--point client:NAME={f}" in e.value.hint


# --- only regular files, inside the run --------------------------------------------------------


@pytest.mark.parametrize("file", ["../../secret.pcap", "/etc/passwd", "points/../../secret.pcap"])
def test_a_point_outside_the_run_is_left_out_unread(tmp_path: Path, file: str) -> None:
    (tmp_path / "secret.pcap").write_bytes(b"root:x:0:0:SECRET")
    run = _run_dir(
        tmp_path,
        [
            {"name": "client", "role": "client", "file": "points/client.pcap"},
            {"name": "evil", "role": "server", "file": file},
        ],
        {"client.pcap": b"x"},
    )
    reader = FakeReader()
    loaded = load_run(run, reader=reader)
    assert [p.point.name for p in loaded.points] == ["client"]
    assert reader.read == [str(run / "points" / "client.pcap")]  # the outside file never opened
    (warning,) = [w for w in loaded.warnings if "point evil left out" in w]
    assert "point 'evil' file" in warning and "SECRET" not in warning


def test_only_points_outside_the_run_is_the_error(tmp_path: Path) -> None:
    run = _run_dir(tmp_path, [{"name": "e", "role": "client", "file": "/etc/passwd"}], {})
    with pytest.raises(InputError, match="'/etc/passwd' is an absolute path"):
        load_run(run, reader=FakeReader())


def _special(tmp_path: Path, kind: str) -> tuple[Path, str]:
    path = tmp_path / f"{kind}.pcap"
    if kind == "fifo":
        os.mkfifo(path)
        return path, "not a regular file"
    if kind == "loop":
        path.symlink_to(tmp_path / "loop.pcap")
        return path, "a loop of symbolic links"
    path.mkdir()
    return path, "is a directory"


@pytest.mark.parametrize("kind", ["fifo", "loop", "directory"])
def test_a_run_point_that_is_no_regular_file_is_named_without_blocking(
    tmp_path: Path, kind: str
) -> None:
    run = _run_dir(
        tmp_path,
        [
            {"name": "client", "role": "client", "file": "points/client.pcap"},
            {"name": "odd", "role": "server", "file": f"points/{kind}.pcap"},
        ],
        {"client.pcap": b"x"},
    )
    _, why = _special(run / "points", kind)
    loaded = load_run(run, reader=FakeReader())
    assert [p.point.name for p in loaded.points] == ["client"]
    assert any("point odd left out" in w and why in w for w in loaded.warnings)


@pytest.mark.parametrize("kind", ["fifo", "loop", "directory"])
def test_a_named_file_that_is_no_regular_file_is_an_input_error(tmp_path: Path, kind: str) -> None:
    path, why = _special(tmp_path, kind)
    with pytest.raises(InputError, match=why):
        load_points([f"client:c={path}"], reader=FakeReader())


def test_a_latin1_links_json_in_a_run_is_read(tmp_path: Path) -> None:
    run = _run_dir(
        tmp_path,
        [{"name": "n", "role": "node", "file": "points/n.pcap", "node": "n1"}],
        {"n.pcap": b"x"},
    )
    (run / "nodes" / "n1").mkdir(parents=True)
    (run / "nodes" / "n1" / "links.json").write_bytes(b'{"3": "eth\xe9"}')
    loaded = load_run(run, reader=FakeReader(linktype=LINKTYPE_LINUX_SLL2), links_parser=fake_links)
    assert loaded.points[0].ifnames == {3: "eth\ufffd"}


def test_a_run_directory_that_is_a_symlink_loop_is_not_called_missing(tmp_path: Path) -> None:
    loop = tmp_path / "run"
    loop.symlink_to(loop)
    with pytest.raises(InputError) as err:
        load_run(loop)
    assert "symbolic link" in err.value.message and "does not exist" not in err.value.message
