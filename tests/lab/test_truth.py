"""A run's ground truth from the kernel's and curl's words: conntrack entries and outcomes."""

from __future__ import annotations

from tracer.lab.truth import outcome_of, parse_conntrack_entry


def test_conntrack_parse() -> None:
    text = (
        "tcp 6 431997 ESTABLISHED src=203.0.113.2 dst=192.168.0.2 sport=45752 dport=3003 "
        "src=10.180.0.3 dst=10.180.0.254 sport=80 dport=16903 [ASSURED] mark=0 use=1\n"
    )
    e = parse_conntrack_entry(text, "192.168.0.2", 3003, "tcp")
    assert e is not None
    assert e["dnat_to"] == "10.180.0.3:80" and e["snat_to"] == "10.180.0.254:16903"
    assert parse_conntrack_entry(text, "192.168.0.2", 80, "tcp") is None


def test_outcomes() -> None:
    assert outcome_of(0, "hi\nHTTP 200 connect=0.1") == "http-200"
    assert outcome_of(7, "* connect to 10.96.0.104 port 80 failed: Connection refused") == "refused"
    assert outcome_of(28, "timed out") == "timeout"
    assert outcome_of(6, "Could not resolve host") == "nxdomain"
