"""How a dead-letter listing fits one answer (chalicelib/dead_letters.py `_fit_bodies`): every
body whole while the letters fit LETTERS_BYTES together, a total equal to it included; past it
each letter gets an equal share, a letter at exactly its share stays whole, and a larger one's
body is shown as the longest start of its JSON text that keeps the letter within its share."""
from __future__ import annotations

import json

import pytest

from chalicelib import dead_letters
from chalicelib.domain.job import answer_bytes


def _letter(n: int, pad: int) -> dict:
    return {"queue": "jobs-dlq", "message_id": f"m-{n}", "receive_count": 3, "body": {"pad": "x" * pad}}


def _measured(letter: dict) -> int:
    """A letter's bytes as a listing that fits shows it (body whole, not cut)."""
    return answer_bytes({**letter, "body_cut": False, "body_bytes": None})


def _fit(monkeypatch, letters: list[dict], budget: int) -> list[dict]:
    monkeypatch.setattr(dead_letters, "LETTERS_BYTES", budget)
    dead_letters._fit_bodies(letters)
    return letters


def test_letters_that_take_exactly_the_budget_are_all_whole_and_one_byte_less_cuts(monkeypatch):
    letters = [_letter(1, 300), _letter(2, 500)]
    total = sum(_measured(letter) for letter in letters)
    assert [letter["body_cut"] for letter in _fit(monkeypatch, [dict(x) for x in letters], total)] == [False, False]
    assert [letter["body_cut"] for letter in _fit(monkeypatch, [dict(x) for x in letters], total - 1)] == [False, True]


def test_a_letter_at_exactly_its_share_stays_whole_and_a_larger_one_is_cut_to_fit_its_share(monkeypatch):
    small, large = _letter(1, 300), _letter(2, 5_000)
    share = _measured(small)
    whole_text = json.dumps(large["body"], separators=(",", ":"))
    small_shown, large_shown = _fit(monkeypatch, [small, large], 2 * share)
    assert small_shown["body"] == {"pad": "x" * 300} and not small_shown["body_cut"]
    assert large_shown["body_cut"] and large_shown["body_bytes"] == len(whole_text)
    raw = large_shown["body"]["raw"]
    assert whole_text.startswith(raw) and answer_bytes(large_shown) <= share
    one_more = {**large_shown, "body": {"raw": whole_text[:len(raw) + 1]}}
    assert answer_bytes(one_more) > share, "the longest start that fits, not a shorter one"


@pytest.mark.parametrize("budget", [0, 10])
def test_a_share_smaller_than_a_letters_own_fields_shows_an_empty_start(monkeypatch, budget):
    (shown,) = _fit(monkeypatch, [_letter(1, 1_000)], budget)
    assert shown["body"] == {"raw": ""} and shown["body_cut"]
