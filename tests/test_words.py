from tracer.words import count


def test_count_picks_the_form_by_number() -> None:
    assert count(1, "query", "queries") == "1 query"
    assert count(2, "query", "queries") == "2 queries"
    assert count(0, "retransmission") == "0 retransmissions"
