from hypothesis import given
from hypothesis import strategies as st

from tracer.words import count


def test_count_picks_the_form_by_number() -> None:
    assert count(1, "query", "queries") == "1 query"
    assert count(2, "query", "queries") == "2 queries"
    assert count(0, "retransmission") == "0 retransmissions"


def test_printable_escapes_what_a_terminal_acts_on() -> None:
    from tracer.words import printable

    assert printable("eth0") == "eth0"
    assert printable("caf\u00e9 \u4e2d") == "caf\u00e9 \u4e2d"  # letters stay as they are
    assert printable("a\x1b]0;pwned\x07b") == "a\\x1b]0;pwned\\x07b"  # OSC title
    assert printable("a\x1b[2Jb") == "a\\x1b[2Jb"  # CSI clear screen
    assert printable("row\nfake row\r") == "row\\x0afake row\\x0d"
    assert printable("\x9b31m") == "\\x9b31m"  # C1 CSI
    assert printable("x\u202ey") == "x\\u202ey"  # right-to-left override
    assert printable("a\tb\nc\x1b", lines=True) == "a\tb\nc\\x1b"
    assert printable("a\tb") == "a\\x09b"


@given(st.text())
def test_printable_leaves_nothing_a_terminal_acts_on(text: str) -> None:
    from tracer.words import printable

    out = printable(text)
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in out)
    assert "\u2028" not in out and "\u202e" not in out
    assert printable(out) == out  # escaping twice changes nothing more
