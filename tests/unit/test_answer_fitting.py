"""Which jobs of a batch answer are shown whole (chalicelib/api/polling.py `fitted`): every job
while the jobs, in the order and as often as they appear, fit the budget together, the same rule
a listing's page ends by (`answer_spent`: a total equal to the budget fits); past it, short."""
from __future__ import annotations

import json

import pytest

from chalicelib.api.polling import claim_check_placeholder, fitted, short
from chalicelib.domain.job import Job, answer_bytes


def _job(n: int) -> Job:
    return Job(id=f"00000000-0000-4000-8000-{n:012d}", type="demo.outputs", tenant="acme", user="ann",
               payload={"pad": "x" * 200}, result={"pad": "y" * 200}, created_at="2026-01-01T00:00:00.000Z")


def _size(job: Job) -> int:
    return answer_bytes(job.public())


def test_jobs_that_take_exactly_the_budget_are_all_whole():
    jobs = [_job(1), _job(2), _job(3)]
    shown = fitted(jobs, budget=sum(_size(j) for j in jobs))
    assert [shown[j.id] for j in jobs] == jobs


def test_one_byte_less_shows_the_last_job_short_and_the_others_whole():
    jobs = [_job(1), _job(2), _job(3)]
    shown = fitted(jobs, budget=sum(_size(j) for j in jobs) - 1)
    assert [shown[j.id] for j in jobs] == [jobs[0], jobs[1], short(jobs[2])]
    assert shown[jobs[2].id].payload == {"claim_check": {"bytes": len('{"pad":"' + "x" * 200 + '"}')}}


def test_a_job_shown_twice_counts_twice():
    """An id asked for twice is shown twice (a batch echoes it), so it takes its bytes twice."""
    first, second = _job(1), _job(2)
    budget = 2 * _size(first) + _size(second)
    assert fitted([first, first, second], budget=budget)[second.id] == second
    assert fitted([first, first, second], budget=budget - 1)[second.id] == short(second)


def test_a_value_already_a_placeholder_or_none_is_shown_as_it_is():
    placeholder = {"claim_check": {"bytes": 70000}}
    assert claim_check_placeholder(placeholder) == placeholder
    assert claim_check_placeholder(None) is None


@pytest.mark.parametrize("value", [{"claim_check": 1, "other": 2}, {"pad": "x"}, ["claim_check"], "text", 0])
def test_any_other_value_is_shown_as_the_size_of_its_compact_json(value):
    assert claim_check_placeholder(value) == {"claim_check": {"bytes": len(json.dumps(value, separators=(",", ":")))}}
