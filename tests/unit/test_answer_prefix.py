"""answer_prefix: the longest start of a text whose answer bytes stay within a budget."""
import pytest

from chalicelib.domain.job import answer_bytes, answer_prefix


@pytest.mark.parametrize("text", ["plain ascii text", 'quotes " and \\ backslashes', "é ünïcödé", "🙂 astral",
                                  "\x00\x01 controls\n"])
def test_the_start_is_the_longest_that_fits(text):
    for budget in range(answer_bytes(""), answer_bytes(text) + 2):
        start = answer_prefix(text, budget)
        assert text.startswith(start) and answer_bytes(start) <= budget
        if start != text:
            assert answer_bytes(text[:len(start) + 1]) > budget


def test_a_text_that_fits_is_whole_and_nothing_fits_below_the_quotes():
    assert answer_prefix("abc", 10_000) == "abc"
    assert answer_prefix("abc", 0) == "" and answer_prefix("abc", answer_bytes("")) == ""
