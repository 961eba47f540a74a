"""The lab's intermittent fault and its traffic generator, on 127.0.0.1 (no namespaces needed).

The ground truth is the kernel's: a reset is what the real client socket reports.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from tracer.errors import UsageError
from tracer.lab.httpd import Fault, make_handler
from tracer.lab.incident import fault_file, resets_logged, set_fault, traffic_log
from tracer.lab.traffic import one_request


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    path = fault_file(tmp_path, "web-a")
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler("web-a", 0.0, Fault(str(path))))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server.server_address[1], tmp_path
    finally:
        server.shutdown()
        server.server_close()


def test_every_nth_request_is_reset_once_the_fault_is_set(web: tuple[int, Path]) -> None:
    port, state = web
    before = [one_request("127.0.0.1", port, "/", 2.0)[1:] for _ in range(4)]
    assert before == [("ok", "200")] * 4  # no fault file: every request answered
    set_fault("web-a", 3, state_dir=state)
    after = [one_request("127.0.0.1", port, "/", 2.0) for _ in range(9)]
    # Counted from when the fault was set: the 3rd, 6th and 9th requests after it.
    assert [o for _, o, _ in after] == ["ok", "ok", "reset"] * 3
    assert all(local > 0 for local, _, _ in after)
    set_fault("web-a", None, state_dir=state)
    assert not fault_file(state, "web-a").exists()
    assert one_request("127.0.0.1", port, "/", 2.0)[1] == "ok"


def test_fault_pods_are_checked(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no fault for 'coredns'"):
        set_fault("coredns", 2, state_dir=tmp_path)


def test_logs_are_read_back(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "web-a.log").write_text(
        "listening on 0.0.0.0:8080\nreset 10.244.1.2:41000 request 5\n10.244.1.2 GET /\n"
    )
    assert resets_logged("web-a", tmp_path) == [("10.244.1.2", 41000)]
    log = tmp_path / "traffic.log"
    log.write_text("1700000000000000000 41000 reset connection reset by peer\n17 40999 ok 200\n")
    assert traffic_log(log) == [
        (1700000000000000000, 41000, "reset", "connection reset by peer"),
        (17, 40999, "ok", "200"),
    ]


def test_refused_and_timeout_are_told_apart() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    assert one_request("127.0.0.1", port, "/", 1.0)[1] == "refused"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    try:
        assert one_request("127.0.0.1", listener.getsockname()[1], "/", 0.3)[1] == "timeout"
    finally:
        listener.close()
