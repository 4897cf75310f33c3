"""answer_prefix: the longest start of a text whose answer bytes stay within a budget."""
import pytest

from chalicelib.domain.job import answer_bytes, answer_prefix


@pytest.mark.parametrize("text", ["plain ascii text", 'quotes " and \\ backslashes', "é ünïcödé", "🙂 astral",
                                  "\x00\x01 controls\n",
                                  "lone \ud800 surrogate"])
def test_the_start_is_the_longest_that_fits(text):
    for budget in range(answer_bytes(""), answer_bytes(text) + 2):
        start = answer_prefix(text, budget)
        assert text.startswith(start) and answer_bytes(start) <= budget
        if start != text:
            assert answer_bytes(text[:len(start) + 1]) > budget


def test_a_text_that_fits_is_whole_and_nothing_fits_below_the_quotes():
    assert answer_prefix("abc", 10_000) == "abc"
    assert answer_prefix("abc", 0) == "" and answer_prefix("abc", answer_bytes("")) == ""


def test_a_large_text_is_cut_in_a_few_measures_not_one_per_character(monkeypatch):
    """A dead-letter listing cuts up to a hundred bodies of 256 KiB: measured one character at
    a time (four json.dumps each) that took seconds of the API's 30 s. Counted, not timed."""
    from chalicelib.domain import job

    calls = []
    measure = job.answer_bytes
    monkeypatch.setattr(job, "answer_bytes", lambda value: calls.append(1) or measure(value))
    text = "é" * 250_000
    start = job.answer_prefix(text, 100_000)
    assert measure(start) <= 100_000 < measure(text[:len(start) + 1])
    assert len(calls) <= 2 + len(text).bit_length()
