"""The stand-in's objects, versioned as etcd versions them, with the watch log and Events.

Every change goes through `put`/`update`/`delete`: each takes the next resourceVersion (one
counter for the whole store, as etcd's revision) and appends a watch event (ADDED, MODIFIED,
DELETED) that `watch` hands to waiting watchers. `record_event` writes a core/v1 Event about an
object, as the kubelet and the scheduler do. No HTTP here.
"""

from __future__ import annotations

import copy
import datetime
import platform
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tracer.apiserver import objects
from tracer.apiserver.state import ClusterState

JSON = dict[str, Any]
Key = tuple[str, str]
# Watch events kept for watchers that resume from a resourceVersion; older ones get 410 Gone.
WATCH_LOG = 4096
# Events kept, the oldest dropped first (a real API server expires them after an hour).
EVENT_LIMIT = 1000


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    type: str  # ADDED MODIFIED DELETED
    resource: str
    object: JSON


class GoneError(Exception):
    """The resourceVersion asked for is older than the watch log."""


class Store:
    def __init__(self, state: ClusterState) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.closed = False
        self.created = now_rfc3339()
        self.kinds: dict[str, dict[Key, JSON]] = objects.initial_objects(state, self.created)
        self.kinds["events"] = {}
        # The lab's nodes are namespaces on this host: they run its kernel.
        for node in self.kinds["nodes"].values():
            node["status"]["nodeInfo"]["kernelVersion"] = platform.release()
        self.netns: dict[Key, str | None] = {(p.namespace, p.name): p.netns for p in state.pods}
        self.node_netns = {n.name: n.netns for n in state.nodes}
        self.node_ip = {n.name: n.internal_ip for n in state.nodes}
        self.log_files = {(p.namespace, p.name): p.log_files for p in state.pods}
        self.rv = 1
        self._log: deque[WatchEvent] = deque(maxlen=WATCH_LOG)
        for kind in self.kinds.values():
            for o in kind.values():
                o["metadata"]["resourceVersion"] = "1"

    # -- reading ------------------------------------------------------------------------------

    def get(self, resource: str, key: Key) -> JSON | None:
        with self.lock:
            o = self.kinds[resource].get(key)
            return copy.deepcopy(o) if o is not None else None

    def items(self, resource: str, namespace: str = "") -> tuple[list[JSON], str]:
        """A consistent copy of every object of `resource` (in `namespace`), and the list's rv."""
        with self.lock:
            out = [
                copy.deepcopy(o)
                for (ns, _), o in sorted(self.kinds[resource].items())
                if not namespace or ns == namespace
            ]
            return out, str(self.rv)

    # -- writing ------------------------------------------------------------------------------

    def _append(self, kind: str, resource: str, obj: JSON) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self._log.append(WatchEvent(self.rv, kind, resource, copy.deepcopy(obj)))
        self.changed.notify_all()

    def put(self, resource: str, key: Key, obj: JSON) -> JSON:
        with self.lock:
            kind = "MODIFIED" if key in self.kinds[resource] else "ADDED"
            self.kinds[resource][key] = obj
            self._append(kind, resource, obj)
            return copy.deepcopy(obj)

    def update(self, resource: str, key: Key, change: Callable[[JSON], None]) -> JSON | None:
        """Apply `change` to the stored object in place (under the lock); None when it is gone."""
        with self.lock:
            o = self.kinds[resource].get(key)
            if o is None:
                return None
            change(o)
            self._append("MODIFIED", resource, o)
            return copy.deepcopy(o)

    def delete(self, resource: str, key: Key) -> JSON | None:
        with self.lock:
            o = self.kinds[resource].pop(key, None)
            if o is not None:
                self._append("DELETED", resource, o)
            return copy.deepcopy(o) if o is not None else None

    def record_event(
        self,
        obj: JSON,
        reason: str,
        message: str,
        *,
        type_: str = "Normal",
        component: str = "kubelet",
        host: str = "",
        field_path: str = "",
    ) -> None:
        """A core/v1 Event about `obj` (what the kubelet or the scheduler would report)."""
        md = obj["metadata"]
        ns = md.get("namespace") or "default"
        name = f"{md['name']}.{secrets.token_hex(8)}"
        ts = now_rfc3339()
        involved: JSON = {
            "kind": obj.get("kind", ""),
            "namespace": md.get("namespace", ""),
            "name": md["name"],
            "uid": md.get("uid", ""),
            "apiVersion": obj.get("apiVersion", "v1"),
            "resourceVersion": md.get("resourceVersion", ""),
        }
        if field_path:
            involved["fieldPath"] = field_path
        source: JSON = {"component": component}
        if host:
            source["host"] = host
        event: JSON = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {**objects.meta(name, ns, None, ts)},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
            "type": type_,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": host,
        }
        with self.lock:
            self.put("events", (ns, name), event)
            events = self.kinds["events"]
            while len(events) > EVENT_LIMIT:
                self.delete("events", next(iter(events)))

    # -- watching -----------------------------------------------------------------------------

    def check_version(self, since: int) -> None:
        """Raise GoneError when the watch log no longer reaches back to `since`."""
        with self.lock:
            if self._log and since < self._log[0].rv - 1 and since < self.rv:
                raise GoneError(f"too old resource version: {since} ({self._log[0].rv - 1})")

    def watch(
        self, resource: str, since: int, deadline: float, stop: Callable[[], bool]
    ) -> Iterator[WatchEvent]:
        """Events of `resource` after resourceVersion `since`, as they happen, until `deadline`
        (time.monotonic), `stop()` or the store closes."""
        import time

        last = since
        while True:
            with self.lock:
                pending = [e for e in self._log if e.rv > last and e.resource == resource]
                if not pending:
                    left = deadline - time.monotonic()
                    if left <= 0 or self.closed or stop():
                        return
                    self.changed.wait(min(left, 1.0))
                    continue
            for e in pending:
                last = e.rv
                yield e

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.changed.notify_all()
