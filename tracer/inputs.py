"""Turning what the user names (a run directory, or bare files with --point) into decoded points.

A run directory gives the capture points through its manifest and the interface names through
RUN/nodes/<node>/links.json; bare files are described on the command line:

    --point ROLE:NAME[@NODE]=FILE    e.g. --point client:web-client@node-a=client.pcap
    --links NODE=FILE                `ip -o link` text or `ip -j link` JSON for NODE

NODE names the clock domain (points on the same node share one clock); a point given without one
has node None and is a clock domain of its own. A capture that names no interface (a plain pcap
taken on a pod's eth0) takes the manifest point's `interface` for its hops. This module reads
files and nothing else: the capture reader and the links parser are passed in (the real ones by
default), it never correlates or prints. Several captures are read at once in threads (the
compiled reader kernels release the GIL while they decode); any trouble there and the file is
simply read again in order, where its error is reported like any other. Errors are `UsageError`
for a spec that does not parse and `InputError` / `CaptureFormatError` naming the file for one
that cannot be read.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from tracer.correlate import PointFrames
from tracer.errors import InputError, PathtraceError, UsageError
from tracer.model import ROLES, CapturePoint
from tracer.pcap.columns import Frames
from tracer.rundir import Manifest, load_manifest, node_fact, point_file, read_text

POINT_FORM = "ROLE:NAME[@NODE]=FILE"
POINT_EXAMPLE = "client:web-client@node-a=client.pcap"
LINKS_FORM = "NODE=FILE"  # or POINT=FILE: an `any` capture inside a pod has its own ifindexes
LINKTYPE_LINUX_SLL2 = 276  # `tcpdump -i any`: the frame carries an ifindex, not a name

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")

Reader = Callable[[str], Frames]
LinksParser = Callable[[str], dict[int, str]]
Progress = Callable[[str, str, int], None]  # point name, file, size in bytes


@dataclass(frozen=True)
class LoadedRun:
    """Every point that could be read, and what the user should know about the rest."""

    points: tuple[PointFrames, ...]
    run_dir: str | None = None
    manifest: Manifest | None = None
    warnings: tuple[str, ...] = ()

    @property
    def frames(self) -> dict[str, Frames]:
        """Frames by point name (what summaries and packet views look up)."""
        return {p.point.name: p.frames for p in self.points}


def _default_reader(path: str) -> Frames:
    from tracer.pcap import read_frames

    frames: Frames = read_frames(path)
    return frames


def _default_links_parser(text: str) -> dict[int, str]:
    from tracer.pcap.links import parse_links

    links: dict[int, str] = parse_links(text)
    return links


# --- parallel reading ----------------------------------------------------------------------------

# Below this many capture bytes in all, starting threads is not worth it.
PARALLEL_MIN_BYTES = 1 << 20


def _read_parallel(paths: Sequence[str]) -> dict[str, Frames]:
    """Decode several files at once in threads, the largest first.

    Returns what was read; a file missing from the result (its reader failed) is to be read the
    ordinary way, which reports its error as usual.
    """
    if len(paths) < 2:
        return {}
    sizes = {p: _size(p) for p in paths}
    if sum(sizes.values()) < PARALLEL_MIN_BYTES:
        return {}
    order = sorted(paths, key=sizes.__getitem__, reverse=True)
    out: dict[str, Frames] = {}
    workers = min(len(order), max(2, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pathtrace-read") as pool:
        futures = {p: pool.submit(_default_reader, p) for p in order}
        for p, fut in futures.items():
            try:
                out[p] = fut.result()
            except Exception:  # noqa: BLE001 - any reader trouble: read it again in order
                continue
    return out


# --- command-line specs ------------------------------------------------------------------------


def parse_point_spec(spec: str) -> CapturePoint:
    """`ROLE:NAME[@NODE]=FILE` -> CapturePoint; UsageError quoting the spec when it does not parse."""

    def bad(why: str) -> UsageError:
        return UsageError(
            f"--point {spec!r}: {why}; expected {POINT_FORM}, e.g. --point {POINT_EXAMPLE}"
        )

    left, sep, file = spec.partition("=")
    if not sep or not file:
        raise bad("no '=FILE'")
    role, sep, rest = left.partition(":")
    if not sep:
        raise bad("no 'ROLE:' before the name")
    role = role.strip().lower()
    if role not in ROLES:
        raise bad(f"role {role!r} is not one of {', '.join(ROLES)}")
    name, at, node = rest.partition("@")
    if not _NAME.match(name):
        raise bad(f"point name {name!r} must be letters, digits, '.', '_' or '-'")
    if at and not _NAME.match(node):
        raise bad(f"node {node!r} must be letters, digits, '.', '_' or '-'")
    # Without @NODE, node stays None: the correlator then gives the point a clock domain of its
    # own (named after the point), and the report does not invent a node name.
    return CapturePoint(name=name, role=role, file=os.path.expanduser(file), node=node or None)


def parse_links_spec(spec: str) -> tuple[str, str]:
    """`NODE=FILE` -> (node, file)."""
    node, sep, file = spec.partition("=")
    if not sep or not file or not _NAME.match(node):
        raise UsageError(
            f"--links {spec!r}: expected {LINKS_FORM}, e.g. --links node-a=node-a-links.json"
            " (the output of `ip -j link` or `ip -o link` on that node)"
        )
    return node, os.path.expanduser(file)


# --- reading -------------------------------------------------------------------------------------


def run_links(capture: str) -> tuple[dict[int, str], str | None]:
    """The interface names for a capture inside a run directory (RUN/points/X.pcap): its point's
    node's RUN/nodes/<node>/links.json; ({}, None) for a file that is not in a run, and a warning
    instead of names when the run's files cannot say them."""
    points_dir = os.path.dirname(os.path.abspath(capture))
    run = os.path.dirname(points_dir)
    if os.path.basename(points_dir) != "points" or not os.path.isfile(
        os.path.join(run, "manifest.json")
    ):
        return {}, None
    try:
        manifest = load_manifest(run)
        target = os.path.realpath(capture)
        point = next(
            (
                p
                for p in manifest.points
                if os.path.realpath(os.path.join(run, p.file)) == target and p.node
            ),
            None,
        )
        if point is None or point.node is None:
            return {}, None
        text = node_fact(run, point.node, "links.json")
        return ({}, None) if text is None else (_default_links_parser(text), None)
    except PathtraceError as e:
        return {}, f"interface names from the run not used: {e.message}"


def read_links(path: str, parser: LinksParser | None = None) -> dict[int, str]:
    """A links file the user named (`ip -j link` or `ip -o link` output) as ifindex -> name."""
    return _read_links(path, parser or _default_links_parser)


def _read_links(path: str, parser: LinksParser) -> dict[int, str]:
    text = read_text(path, tolerant=True)
    if text is None:
        raise InputError(f"{path}: links file not found")
    try:
        return parser(text)
    except PathtraceError as e:
        if path in e.message:
            raise
        raise InputError(f"{path}: {e.message}", hint=e.hint) from e
    except ValueError as e:
        raise InputError(f"{path}: not `ip -o link` text nor `ip -j link` JSON: {e}") from e


def check_capture_file(path: str, what: str = "capture file") -> None:
    """Raise InputError unless `path` is a regular file this process may read: the same message
    (and exit code) wherever a capture is named. Never opens a FIFO or device (they would block
    or never end)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"{path}: a loop of symbolic links, not a {what}") from None
        raise InputError(f"{path}: {(e.strerror or str(e)).lower()}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a directory, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file (a FIFO, socket or device), not a {what}")
    if not os.access(path, os.R_OK):
        raise InputError(
            f"{path}: permission denied", hint="captures are written owner-readable only"
        )


def _read_capture(path: str, reader: Reader) -> Frames:
    check_capture_file(path)
    try:
        return reader(path)
    except FileNotFoundError:
        raise InputError(f"{path}: capture file not found") from None
    except OSError as e:
        raise InputError(f"{path}: {e.strerror or e}") from e


def _named_by_point(point: CapturePoint, frames: Frames) -> dict[int, str] | None:
    """The manifest's interface for a one-interface capture that names none (a plain pcap from
    a pod's eth0 carries no interface name); None when the capture names its own or has several.
    """
    name = point.interface
    if not name or name == "any" or len(frames) == 0:
        return None
    ids = np.asarray(frames.columns["iface"])
    iface = int(ids.min())
    if iface != int(ids.max()) or iface in frames.interfaces:
        return None
    return {**frames.interfaces, iface: name}


def _ifnames(
    point: CapturePoint, frames: Frames, links: Mapping[int, str] | None
) -> tuple[dict[int, str], str | None]:
    """Interface names for a point and, when they cannot be known, a warning saying so."""
    sll2 = LINKTYPE_LINUX_SLL2 in frames.linktypes
    named = _named_by_point(point, frames) if not sll2 else None
    if named is not None:
        return named, None
    if frames.interfaces and not sll2:
        return dict(frames.interfaces), None
    if links:
        return dict(links), None
    if sll2:
        where = f"node {point.node!r}" if point.node else "its node"
        return dict(frames.interfaces), (
            f"point {point.name}: an 'any' capture (SLL2) with no links for {where};"
            " interfaces show as ifindex numbers"
        )
    return dict(frames.interfaces), None


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _load(
    points: Sequence[tuple[CapturePoint, str]],
    node_links: Mapping[str, dict[int, str]],
    *,
    reader: Reader,
    progress: Progress | None,
    strict: bool,
) -> tuple[list[PointFrames], list[str]]:
    """Read each (point, path) in order; with strict=False a failed point becomes a warning."""
    loaded: list[PointFrames] = []
    warnings: list[str] = []
    failures: list[PathtraceError] = []
    done: dict[str, Frames] = {}
    if reader is _default_reader:
        if progress is not None:
            for point, path in points:
                progress(point.name, path, _size(path))
        done = _read_parallel(list(dict.fromkeys(path for _, path in points)))
    for point, path in points:
        if progress is not None and reader is not _default_reader:
            progress(point.name, path, _size(path))
        try:
            frames = done[path] if path in done else _read_capture(path, reader)
        except PathtraceError as e:
            if strict:
                raise
            failures.append(e)
            warnings.append(f"point {point.name} left out: {e.message}")
            continue
        # A point's own links (a pod's `any` capture: its namespace numbers its interfaces)
        # before its node's.
        own = node_links.get(_POINT_KEY + point.name)
        names, why = _ifnames(point, frames, own or node_links.get(point.node or ""))
        if why:
            warnings.append(why)
        warnings.extend(f"point {point.name}: {w}" for w in frames.warnings)
        if len(frames) == 0:
            warnings.append(f"point {point.name}: {path} holds no frames")
        loaded.append(PointFrames(point, frames, names))
    if not loaded and failures:
        # Nothing left to correlate: the first failure is the error, not a warning.
        raise failures[0]
    return loaded, warnings


# Key prefix of a point's own links in the node_links mapping (node names never hold "/").
_POINT_KEY = "point/"


def _links_by_node(
    specs: Sequence[str], nodes: set[str], parser: LinksParser, points: Sequence[str] = ()
) -> dict[str, dict[int, str]]:
    out: dict[str, dict[int, str]] = {}
    for spec in specs:
        node, file = parse_links_spec(spec)
        if node in nodes:
            out[node] = _read_links(file, parser)
        elif node in points:
            out[_POINT_KEY + node] = _read_links(file, parser)
        else:
            known = ", ".join(sorted(nodes)) or "none"
            raise UsageError(
                f"--links {spec!r}: no capture point is on node {node!r} ({known}),"
                " nor is a point named so"
            )
    return out


def load_points(
    specs: Sequence[str],
    links: Sequence[str] = (),
    *,
    reader: Reader | None = None,
    links_parser: LinksParser | None = None,
    progress: Progress | None = None,
) -> LoadedRun:
    """Read bare capture files named by `--point` specs (and `--links` for SLL2 ifindexes)."""
    if not specs:
        raise UsageError(f"no capture point given; use --point {POINT_FORM} (or a RUN directory)")
    points = [parse_point_spec(s) for s in specs]
    seen: set[str] = set()
    for p in points:
        if p.name in seen:
            raise UsageError(f"--point: the point name {p.name!r} is given twice")
        seen.add(p.name)
    node_links = _links_by_node(
        links,
        {p.node for p in points if p.node},
        links_parser or _default_links_parser,
        [p.name for p in points],
    )
    for p in points:
        # The user typed these paths: a missing one is an error, not something to skip.
        try:
            check_capture_file(p.file)
        except InputError as e:
            raise InputError(f"{e.message} (--point {p.name})", hint=e.hint) from None
    loaded, warnings = _load(
        [(p, p.file) for p in points],
        node_links,
        reader=reader or _default_reader,
        progress=progress,
        strict=False,
    )
    return LoadedRun(points=tuple(loaded), warnings=tuple(warnings))


def load_run(
    run_dir: str | os.PathLike[str],
    links: Sequence[str] = (),
    *,
    reader: Reader | None = None,
    links_parser: LinksParser | None = None,
    progress: Progress | None = None,
) -> LoadedRun:
    """Read a run directory: its manifest, every point's capture and each node's links.json.

    `links` (`NODE=FILE`) overrides a node's links.json. A point whose capture cannot be read is
    left out with a warning as long as another point remains.
    """
    run = os.fspath(run_dir)
    if not os.path.isdir(run):
        exists = os.path.exists(run)
        why = "is not a directory" if exists else "does not exist"
        if not exists and os.path.islink(run):
            why = "is a symbolic link to nothing (or a loop of them)"
        raise InputError(
            f"{run}: {why}; expected a run directory (with manifest.json)",
            # A capture file given as RUN is the likeliest slip: say how to read one.
            hint=f"for capture files, `pathtrace analyze --point client:NAME={run} --point …` "
            f"(one per capture point); `pathtrace packets {run}` lists one file's frames"
            if exists
            else None,
        )
    if not os.path.exists(os.path.join(run, "manifest.json")):
        runs = sorted(
            d for d in os.listdir(run) if os.path.isfile(os.path.join(run, d, "manifest.json"))
        )
        if runs:
            raise InputError(
                f"{run}: no manifest.json; it holds run directories: {', '.join(runs)}",
                hint=f"name one of them, e.g. {os.path.join(run, runs[0])}",
            )
        raise InputError(
            f"{run}: no manifest.json; not a run directory",
            hint="for capture files without a manifest, "
            "`pathtrace analyze --point ROLE:NAME[@NODE]=FILE …` (one per capture point)",
        )
    manifest = load_manifest(run)
    parser = links_parser or _default_links_parser
    nodes = {p.node for p in manifest.points if p.node}
    node_links: dict[str, dict[int, str]] = {}
    warnings: list[str] = list(manifest.warnings)
    for node in sorted(nodes):
        where = os.path.join(run, "nodes", node, "links.json")
        try:
            text = node_fact(run, node, "links.json")
            if text is None:
                continue
            node_links[node] = parser(text)
        except InputError as e:
            warnings.append(f"{e.message}; interfaces show as numbers")
        except (PathtraceError, ValueError) as e:
            # Interface names are a convenience: a bad links.json must not hide the path.
            warnings.append(f"{where}: not readable as links ({e}); interfaces show as numbers")
    for p in manifest.points:
        if not p.pod:
            continue
        try:
            text = node_fact(run, p.name, "links.json", "pods")
        except InputError as e:
            warnings.append(f"point {p.name}: {e.message}; interfaces show as numbers")
            continue
        if text is None:
            continue
        try:
            node_links[_POINT_KEY + p.name] = parser(text)
        except (PathtraceError, ValueError) as e:
            where = os.path.join(run, "pods", p.name, "links.json")
            warnings.append(f"{where}: not readable as links ({e}); interfaces show as numbers")
    node_links.update(_links_by_node(links, nodes, parser, [p.name for p in manifest.points]))
    points: list[tuple[CapturePoint, str]] = []
    outside: list[InputError] = []
    for p in manifest.points:
        try:
            points.append((p, str(point_file(run, p))))
        except InputError as e:
            outside.append(e)
            warnings.append(f"point {p.name} left out: {e.message}")
    if not points:
        raise outside[0]
    loaded, more = _load(
        points,
        node_links,
        reader=reader or _default_reader,
        progress=progress,
        strict=False,
    )
    return LoadedRun(
        points=tuple(loaded), run_dir=run, manifest=manifest, warnings=tuple(warnings + more)
    )
