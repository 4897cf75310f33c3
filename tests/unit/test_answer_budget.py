"""Where a listing's page ends: before the job that would take its answer past the budget, a
page's first job taken whatever its size (chalicelib.domain.job.answer_spent, the one rule
both stores and the client's fake API end a page by)."""
from chalicelib.domain.job import answer_bytes, answer_spent

JOB = {"id": "j-1", "payload": {"pad": "é" * 30}}
ONE = answer_bytes(JOB)


def test_a_job_within_the_budget_adds_its_bytes():
    assert answer_spent(0, JOB, 2 * ONE, first=True) == ONE
    assert answer_spent(ONE, JOB, 2 * ONE, first=False) == 2 * ONE


def test_the_page_ends_before_the_job_that_would_pass_the_budget():
    assert answer_spent(ONE, JOB, 2 * ONE - 1, first=False) is None


def test_a_page_takes_its_first_job_whatever_its_size():
    assert answer_spent(0, JOB, 1, first=True) == ONE
    assert answer_spent(0, JOB, 1, first=False) is None
