"""A job's runs and artifacts last as long as its record. DynamoDB's TTL (the twins' `expire`)
deletes each item of the job's partition at some moment past its own `expires_at`: it must
never take a run or an artifact of a job whose record is still shown, however long the job
lived between its first attempt and its end, and whatever retention it ended with. The clean-up
still deletes them all together, and parts whose record went first still expire."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Optional

import pytest
from pydantic import BaseModel

from chalicelib.defaults import RECORD_PART_EXPIRY_S, RECORD_PART_KEEP_S, RETENTION_DAYS, RETENTION_MAX_DAYS
from chalicelib.domain.job import JobErrorInfo, parse_time, utcnow
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.domain.status import JobStatus
from chalicelib.lifecycle import JobLifecycle
from chalicelib.lifecycle.claims import ClaimOutcome
from chalicelib.lifecycle.transitions import start_message
from tests.contract.conftest import expire

DAY = 86400
# How long a job may live at retention 0 before its end must move its parts' expiry.
LIVES_DAYS = (RECORD_PART_KEEP_S - RECORD_PART_EXPIRY_S) // DAY


class Empty(BaseModel):
    pass


class Clock:
    """The lifecycle's clock, from the real now (the adapters write their parts at theirs)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def a_job_that_lived(adapters: Any, days: int, retention_days: int, *, ended_with: Optional[int] = None):
    """A job whose attempt 1 wrote an inline and an S3 artifact and failed, and whose attempt 2
    (writing nothing) completed `days` later, under a retention of `ended_with` days when given
    (an operator raised it in between); the job as stored, and its end's time."""
    registry = JobTypeRegistry()
    registry.register("t.slow", Empty)(lambda ctx, payload: None)
    clock = Clock()
    lifecycle = JobLifecycle(adapters.store, adapters.queue, registry, clock=clock,
                             retention_s=retention_days * DAY)
    job = lifecycle.submit(tenant="acme", user="ann", type="t.slow", payload={})
    first = lifecycle.claim(start_message(job, 1))
    assert first.outcome == ClaimOutcome.RUN
    adapters.artifacts.put(job.id, "note.txt", b"first", "text/plain", attempt=1)
    adapters.artifacts.put(job.id, "image.png", b"\x89PNG", "image/png", attempt=1)
    lifecycle.fail_attempt(first.job, JobErrorInfo(code="busy", message="try later"), retryable=True)
    clock.advance(days * DAY)
    if ended_with is not None:
        lifecycle = JobLifecycle(adapters.store, adapters.queue, registry, clock=clock, retention_s=ended_with * DAY)
    second = lifecycle.claim(start_message(job, 2))
    assert second.outcome == ClaimOutcome.RUN
    lifecycle.complete(second.job, {"ok": True})
    stored = adapters.store.get(job.id, mark_gone=False)
    assert stored.status == JobStatus.COMPLETED
    return stored, int(parse_time(stored.finished_at).timestamp())


def parts_of(adapters: Any, job_id: str) -> tuple[list[int], list[str]]:
    return ([r.attempt for r in adapters.store.runs(job_id)],
            sorted(a.name for a in adapters.artifacts.list(job_id).artifacts))


@pytest.mark.parametrize("retention_days", [RETENTION_DAYS, RETENTION_MAX_DAYS])
def test_a_job_that_lived_five_days_keeps_its_first_attempts_run_and_artifacts_as_long_as_its_record(
        adapters, retention_days):
    job, ended = a_job_that_lived(adapters, 5, retention_days)
    everything = ([1, 2], ["image.png", "note.txt"])

    expire(adapters, ended + retention_days * DAY)  # read at the end of its retention
    assert adapters.store.get(job.id, mark_gone=False) is not None
    assert parts_of(adapters, job.id) == everything

    expire(adapters, job.expires_at)  # the record's last moment: no part expired before it
    assert adapters.store.get(job.id, mark_gone=False) is not None
    assert parts_of(adapters, job.id) == everything

    assert adapters.finished.purge(job.id) == 5  # the clean-up deletes them all together
    assert adapters.store.get(job.id, mark_gone=False) is None
    assert parts_of(adapters, job.id) == ([], [])


@pytest.mark.parametrize("days", [1, 5])
def test_a_retention_raised_before_a_jobs_end_keeps_its_first_attempts_run_and_artifacts(adapters, days):
    job, ended = a_job_that_lived(adapters, days, RETENTION_DAYS, ended_with=RETENTION_MAX_DAYS)
    expire(adapters, job.expires_at)
    assert adapters.store.get(job.id, mark_gone=False) is not None
    assert parts_of(adapters, job.id) == ([1, 2], ["image.png", "note.txt"])


@pytest.mark.parametrize("days", [1, 5, LIVES_DAYS + 10])
def test_the_parts_of_a_job_whose_record_expired_first_still_expire(adapters, days):
    """The clean-up never came: TTL takes the record, then, however long the job lived, its
    runs and artifacts."""
    job, ended = a_job_that_lived(adapters, days, RETENTION_DAYS)
    expire(adapters, job.expires_at + 1)
    assert adapters.store.get(job.id, mark_gone=False) is None

    expire(adapters, ended + RECORD_PART_KEEP_S + 1)
    assert parts_of(adapters, job.id) == ([], [])


@pytest.mark.parametrize("retention_days", [RETENTION_DAYS, RETENTION_MAX_DAYS])
@pytest.mark.parametrize("longer", [False, True])
def test_only_the_end_of_a_job_that_lived_longer_than_its_parts_allow_moves_them(
        adapters, monkeypatch, retention_days, longer):
    """Parts expire RECORD_PART_KEEP_S after their write: a job that ended sooner after its first
    start than that less its retention (and the record's days past it) sends no request for
    them at its end, at the longest retention too; one that lived longer moves each part
    written before its end (attempt 1's run and artifacts)."""
    moved: list[int] = []
    keep_parts = adapters.store.keep_parts
    monkeypatch.setattr(adapters.store, "keep_parts", lambda job_id, until: moved.append(keep_parts(job_id, until)))
    job, _ = a_job_that_lived(adapters, LIVES_DAYS - retention_days + (1 if longer else -1), retention_days)
    assert moved == ([3] if longer else [])

    expire(adapters, job.expires_at)  # either way, no part expired before the record
    assert parts_of(adapters, job.id) == ([1, 2], ["image.png", "note.txt"])


def test_an_artifact_expires_record_part_keep_s_after_its_write_and_not_before(adapters):
    """The moment the record's own expiry is measured against (RECORD_PART_KEEP_S, defaults.py):
    an artifact lasts through it, inline or in S3, and is gone the second past it."""
    job_id = "00000000-0000-4000-8000-000000000001"
    before = int(utcnow().timestamp())
    adapters.artifacts.put(job_id, "note.txt", b"first", "text/plain")
    adapters.artifacts.put(job_id, "image.png", b"\x89PNG", "image/png")
    after = int(utcnow().timestamp())

    expire(adapters, before + RECORD_PART_KEEP_S)
    assert parts_of(adapters, job_id) == ([], ["image.png", "note.txt"])
    expire(adapters, after + RECORD_PART_KEEP_S + 1)
    assert parts_of(adapters, job_id) == ([], [])
