"""The commands and specs a capture adds to the cluster."""

from __future__ import annotations

from tracer.capture.pods import tcpdump_argv


def test_tcpdump_argv_is_argv_not_a_shell_line() -> None:
    argv = tcpdump_argv("eth0", "host 10.0.0.1; rm -rf /", max_packets=5)
    assert argv == (
        "tcpdump",
        "-i",
        "eth0",
        "--immediate-mode",
        "-U",
        "--time-stamp-precision=nano",
        "-s",
        "256",
        "-w",
        "-",
        "-c",
        "5",
        "host 10.0.0.1; rm -rf /",
    )
