"""ifindex -> name from the `ip` outputs a node gives."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.errors import InputError
from tracer.pcap.links import parse_links

IP_O_LINK = """\
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
2: eth0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default \\    link/ether 02:42:ac:11:00:02 brd ff:ff:ff:ff:ff:ff link-netnsid 0
5: vethab12cd@if4: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue master cni0 state UP
"""

IP_LINK = """\
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000
    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
3: flannel.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN
    link/ether 6e:1d:7a:00:00:01 brd ff:ff:ff:ff:ff:ff
"""

IP_O_ADDR = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
4: cni0    inet 10.244.0.1/24 brd 10.244.0.255 scope global cni0\\       valid_lft forever preferred_lft forever
"""


def test_ip_o_link_text_strips_the_peer_suffix() -> None:
    assert parse_links(IP_O_LINK) == {1: "lo", 2: "eth0", 5: "vethab12cd"}


def test_multi_line_ip_link_and_ip_o_addr() -> None:
    assert parse_links(IP_LINK) == {1: "lo", 3: "flannel.1"}
    assert parse_links(IP_O_ADDR) == {1: "lo", 4: "cni0"}


def test_ip_j_link_and_addr_json() -> None:
    doc = [
        {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK"], "addr_info": []},
        {"ifindex": 26, "ifname": "eth0", "link_index": 27, "addr_info": [{"local": "10.0.0.5"}]},
    ]
    assert parse_links(json.dumps(doc, indent=2)) == {1: "lo", 26: "eth0"}


def test_json_object_keyed_by_ifindex() -> None:
    assert parse_links('{"3": "eth0", "4": {"ifname": "cni0"}}') == {3: "eth0", 4: "cni0"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n",
        "not ip output at all",
        "[1, 2]",
        '[{"ifname": "lo"}]',
        '{"x": "lo"}',
        "[{",
        '{"3": 4}',
    ],
)
def test_unreadable_links_raise_input_error(text: str) -> None:
    with pytest.raises(InputError):
        parse_links(text)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.recursive(
            st.none() | st.integers() | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=4), inner, max_size=4)
            ),
            max_leaves=10,
        ).map(json.dumps),
    )
)
def test_fuzz_only_input_error_escapes(text: str) -> None:
    try:
        links = parse_links(text)
    except InputError:
        return
    assert all(isinstance(k, int) and isinstance(v, str) and v for k, v in links.items())


def test_an_empty_name_or_a_non_ascii_digit_key_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no interface name for index 0"):
        parse_links('{"0": ""}')
    with pytest.raises(InputError, match="is not an interface index"):
        parse_links('{"\u00b2": "eth0"}')  # "²" is a digit to str.isdigit, not to int()


def test_terminal_controls_in_names_are_escaped() -> None:
    assert parse_links('{"3": "eth0\\u001b]0;x\\u0007"}') == {3: "eth0\\x1b]0;x\\x07"}
    assert parse_links("3: veth\x1b[2J@if2: <UP> mtu 1500\n") == {3: "veth\\x1b[2J"}
