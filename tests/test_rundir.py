"""The run directory's private, atomic writes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.errors import InputError
from tracer.model import CapturePoint
from tracer.rundir import (
    Manifest,
    load_manifest,
    manifest_from_json,
    node_fact,
    point_file,
    write_json_private,
    write_manifest,
    write_private,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_write_is_owner_only_even_over_a_readable_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "facts.txt"
    target.parent.mkdir()
    target.write_text("old")
    os.chmod(target, 0o644)
    leftover = target.with_name(".facts.txt.tmp")  # as a crash mid-write leaves it
    leftover.write_text("half")
    os.chmod(leftover, 0o666)
    write_private(target, b"new\x00bytes")
    assert target.read_bytes() == b"new\x00bytes"
    assert _mode(target) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["facts.txt"]


def test_json_and_manifest_round_trip(tmp_path: Path) -> None:
    path = write_json_private(tmp_path / "a" / "x.json", {"k": [1, 2]})
    assert json.loads(path.read_text()) == {"k": [1, 2]} and _mode(path) == 0o600
    m = Manifest(source="import", created="now", points=(CapturePoint("c", "client", "c.pcap"),))
    written = write_manifest(tmp_path / "run", m)
    assert _mode(written) == 0o600
    assert load_manifest(tmp_path / "run").points == m.points


# --- the manifest is input: checked against its schema, every failure names the field ----------

_POINT = {"name": "client", "role": "client", "file": "points/client.pcap", "node": "node-a"}


def _manifest(**fields: object) -> dict[str, object]:
    return {"schema": "pathtrace-run/v1", "points": [dict(_POINT)], **fields}


def _point(**fields: object) -> dict[str, object]:
    return _manifest(points=[{**_POINT, **fields}])


@pytest.mark.parametrize(
    ("data", "field", "why"),
    [
        (_point(file=None), "points[0].file", "must be string, not null"),
        (_point(file=7), "points[0].file", "must be string, not integer 7"),
        (_point(name=["a"]), "points[0].name", "must be string, not array"),
        (_point(name=3), "points[0].name", "must be string, not integer 3"),
        (_point(role="pod"), "points[0].role", "expected one of client, node"),
        (_point(started_ns="123"), "points[0].started_ns", 'not string "123"'),
        (_point(started_ns=1 << 64), "points[0].started_ns", "outside 0.."),
        (_point(packets="many"), "points[0].packets", "must be integer or null"),
        (_point(packets=-1), "points[0].packets", "outside 0.."),
        (_point(packets=True), "points[0].packets", "not boolean"),
        (_manifest(services="web"), "services", "must be array or null, not string"),
        (
            _manifest(services=[{"namespace": "d", "name": "w", "ports": "80"}]),
            "services[0].ports",
            "must be array or null, not string",
        ),
        (
            _manifest(services=[{"namespace": "d", "name": "w", "ports": [{"port": 1 << 20}]}]),
            "services[0].ports[0].port",
            "outside 0..65535",
        ),
        (_manifest(request="curl"), "request", "must be object or null, not string"),
        (_manifest(extra=[1]), "extra", "must be object or null, not array"),
        (_manifest(points=[]), "points", "must not be empty"),
        (_manifest(points=[{"name": "c", "role": "client"}]), "points[0]", "needs field 'file'"),
        (_manifest(schema="pathtrace-run/v9"), "schema", "expected 'pathtrace-run/v1'"),
    ],
)
def test_a_manifest_that_breaks_the_schema_names_the_field(
    tmp_path: Path, data: dict[str, object], field: str, why: str
) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        load_manifest(tmp_path)
    assert str(tmp_path / "manifest.json") in err.value.message
    assert f"field {field!r}" in err.value.message
    assert why in err.value.message


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not UTF-8 text"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"null", "the whole file must be object, not null"),
        (b"[1, 2]", "the whole file must be object, not array"),
        (b'{"schema": ', "not valid JSON"),
    ],
)
def test_a_manifest_that_is_not_one_is_named(tmp_path: Path, content: bytes, why: str) -> None:
    (tmp_path / "manifest.json").write_bytes(content)
    with pytest.raises(InputError) as err:
        load_manifest(tmp_path)
    assert err.value.message.startswith(str(tmp_path / "manifest.json"))
    assert why in err.value.message
    assert "no manifest.json" not in err.value.message


def test_a_fifo_manifest_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "manifest.json")
    with pytest.raises(InputError, match="a FIFO, not a regular file"):
        load_manifest(tmp_path)


def test_unknown_fields_are_ignored_and_known_ones_kept(tmp_path: Path) -> None:
    data = _point(started_ns=5, future="x")
    data["new_section"] = {"a": 1}
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    m = load_manifest(tmp_path)
    assert m.points[0].started_ns == 5
    assert m.points[0].file == "points/client.pcap"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
# Manifests near the real shape, with any field swapped for any JSON value.
_NEAR = st.fixed_dictionaries(
    {"schema": st.just("pathtrace-run/v1") | _JSON},
    optional={
        "points": st.lists(
            st.fixed_dictionaries(
                {},
                optional={k: st.just(v) | _JSON for k, v in {**_POINT, "started_ns": 1}.items()},
            ),
            max_size=3,
        )
        | _JSON,
        "services": st.lists(
            st.fixed_dictionaries(
                {"namespace": st.just("d") | _JSON, "name": st.just("w") | _JSON},
                optional={
                    "ports": st.lists(st.fixed_dictionaries({"port": st.just(80) | _JSON})) | _JSON,
                    "endpoints": st.lists(
                        st.fixed_dictionaries({"address": st.just("10.0.0.1") | _JSON})
                    )
                    | _JSON,
                    "cluster_ips": _JSON,
                },
            ),
            max_size=2,
        )
        | _JSON,
        "request": _JSON,
        "warnings": _JSON,
        "extra": _JSON,
    },
)


@settings(max_examples=400, deadline=None)
@given(data=_NEAR | _JSON)
def test_any_json_is_a_manifest_or_an_input_error(data: object) -> None:
    try:
        m = manifest_from_json(data, "RUN/manifest.json")
    except InputError as e:
        assert e.message.startswith("RUN/manifest.json: ")
        return
    # What was accepted is what the readers expect.
    for p in m.points:
        assert isinstance(p.name, str) and isinstance(p.file, str)
        assert p.started_ns is None or isinstance(p.started_ns, int)
    assert isinstance(m.request, dict) and isinstance(m.extra, dict)
    assert all(isinstance(w, str) for w in m.warnings)
    for s in m.services:
        assert all(isinstance(port.port, int) for port in s.ports)


# --- node facts: tolerant text, only regular files inside the run --------------------------------


@pytest.mark.parametrize("name", ["iptables-save.txt", "nft.txt", "conntrack.txt", "links.json"])
def test_a_latin1_byte_in_a_node_fact_is_read(tmp_path: Path, name: str) -> None:
    path = tmp_path / "nodes" / "n1" / name
    path.parent.mkdir(parents=True)
    path.write_bytes(b'-A KUBE-SVC -m comment --comment "caf\xe9" -j KUBE-SEP\n')
    text = node_fact(tmp_path, "n1", name)
    assert text is not None and "caf\ufffd" in text and "KUBE-SEP" in text


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=200))
def test_any_bytes_in_a_node_fact_read_as_text(
    tmp_path_factory: pytest.TempPathFactory, blob: bytes
) -> None:
    run = tmp_path_factory.mktemp("run")
    (run / "nodes" / "n1").mkdir(parents=True)
    (run / "nodes" / "n1" / "nft.txt").write_bytes(blob)
    text = node_fact(run, "n1", "nft.txt")
    assert text is not None
    assert all(ch in "\n\t" or ch.isprintable() or ch == "\ufffd" for ch in text if ord(ch) < 0xA0)


def test_a_node_name_that_leaves_the_run_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "links.json").write_text("[]")
    with pytest.raises(InputError, match="leads outside the run directory"):
        node_fact(tmp_path / "run", "../../secret", "links.json")


def test_a_fifo_node_fact_is_refused_without_blocking(tmp_path: Path) -> None:
    (tmp_path / "nodes" / "n1").mkdir(parents=True)
    os.mkfifo(tmp_path / "nodes" / "n1" / "conntrack.txt")
    with pytest.raises(InputError, match="a FIFO"):
        node_fact(tmp_path, "n1", "conntrack.txt")


@pytest.mark.parametrize("file", ["../../x.pcap", "/etc/passwd", "points/../../outside.pcap"])
def test_a_point_file_outside_the_run_is_refused(tmp_path: Path, file: str) -> None:
    run = tmp_path / "a" / "run"
    run.mkdir(parents=True)
    point = CapturePoint(name="c", role="client", file=file)
    with pytest.raises(InputError) as err:
        point_file(run, point)
    assert "point 'c' file" in err.value.message
    assert "absolute path" in err.value.message or "leads outside" in err.value.message


def test_a_symlink_out_of_the_run_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "points").mkdir(parents=True)
    (run / "points" / "c.pcap").symlink_to("/etc/passwd")
    with pytest.raises(InputError, match="leads outside"):
        point_file(run, CapturePoint(name="c", role="client", file="points/c.pcap"))
