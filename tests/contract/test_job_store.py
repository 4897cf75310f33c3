"""JobStore: conditional writes, progress, runs, children, listings and the claim-check."""
from __future__ import annotations

import base64
import inspect
import json
import typing
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from chalicelib.defaults import BATCH_GET_MAX, FILTERED_LISTING_READS, MAX_PROGRESS_DETAILS_BYTES, RECORD_PART_KEEP_S
from chalicelib.domain.errors import (
    AttemptEndedError,
    BlobNotFoundError,
    InvalidRequestError,
    JobCancelledError,
    JobNotFoundError,
    ProgressRejectedError,
    RecordTooLargeError,
    StaleJobError,
)
from chalicelib.domain.job import Job, JobErrorInfo, Progress, Run, answer_bytes, parse_time
from chalicelib.domain.status import JobStatus
from chalicelib.ports import REMOVE, ChangeSet, Expectation, ExpectedWrite, JobQuery
from tests.contract.conftest import INLINE_LIMIT, expire


def make_job(i: int = 0, *, tenant: str = "acme", type: str = "demo.steps", status: JobStatus = JobStatus.QUEUED,
             payload=None, **fields) -> Job:
    return Job(id=f"00000000-0000-4000-8000-{i:012d}", type=type, tenant=tenant, user="ann", status=status,
               payload=payload if payload is not None else {"n": i},
               created_at=f"2026-01-01T00:00:{i % 60:02d}.{i // 60:03d}Z", **fields)


def running(store, job: Job) -> Job:
    store.create(job)
    return start(store, job)


def start(store, job: Job) -> Job:
    # As a claim starts an attempt: its running transition carries 0 %.
    changes = {"status": JobStatus.RUNNING, "attempts": 1, "event_percent": 0.0}
    return store.apply(job, JobStatus.QUEUED, ChangeSet(changes,
                                                        run=Run(job_id=job.id, attempt=1, status=JobStatus.RUNNING,
                                                                started_at="2026-01-01T00:01:00.000Z")))


def big(n: int = INLINE_LIMIT) -> dict:
    return {"text": "x" * n}


def test_create_then_get_returns_the_job_and_a_second_create_is_refused(adapters):
    job = make_job(1, scope="proj", payload={"nested": {"a": [1, 2.5, "three"]}})
    adapters.store.create(job)
    assert adapters.store.get(job.id, mark_gone=False) == job
    assert adapters.store.get(job.id, consistent=False, mark_gone=False) == job
    with pytest.raises(StaleJobError):
        adapters.store.create(job.model_copy(update={"payload": {"other": True}}))
    assert adapters.store.get(job.id, mark_gone=False) == job
    assert adapters.store.get("00000000-0000-4000-8000-999999999999", mark_gone=False) is None


def test_a_field_written_null_reads_back_null(adapters):
    """Most of a job's fields are null until something sets them (a scope, a parent, a start, an
    end, a mark of the worker's): a DynamoDB item keeps no attribute for them, so each is read
    back as the model's own when absent, which must be null too, as the API answers a job that
    has none; never some value no write gave it."""
    nullable = sorted(name for name, field in Job.model_fields.items() if type(None) in typing.get_args(field.annotation))
    assert {"scope", "parent_id", "started_at", "finished_at", "due_at", "expires_at"} <= set(nullable)
    job = make_job(2, **dict.fromkeys(nullable))
    adapters.store.create(job)
    read = adapters.store.get(job.id, mark_gone=False)
    assert {name: getattr(read, name) for name in nullable} == dict.fromkeys(nullable)


@pytest.mark.parametrize("payload", [{"n": 1}, big(INLINE_LIMIT + 1)], ids=["inline", "claim-checked"])
def test_creating_the_very_same_job_again_is_the_write_landing_once(adapters, payload):
    """A retried write whose first try landed (its answer lost) writes the job it wrote: the store
    takes it as written, so the caller does not refuse the job it stored. A job that differs under
    the same id is still refused."""
    job = make_job(1, payload=payload)
    adapters.store.create(job)
    adapters.store.create(job.model_copy())
    assert adapters.store.get(job.id, mark_gone=False) == job
    with pytest.raises(StaleJobError):
        adapters.store.create(job.model_copy(update={"created_at": "2026-01-01T00:00:02.000Z"}))
    assert adapters.store.get(job.id, mark_gone=False) == job


def test_get_for_a_tenant_answers_another_tenants_job_as_missing_without_reading_its_payload(adapters):
    job = make_job(1, payload=big(INLINE_LIMIT + 1))  # claim-checked
    adapters.store.create(job)
    reads = adapters.blobs.get
    adapters.blobs.get = lambda key: pytest.fail(f"read {key} for another tenant")
    try:
        assert adapters.store.get(job.id, tenant="globex", mark_gone=False) is None
        assert adapters.store.get(job.id, tenant="globex", consistent=False, mark_gone=False) is None
    finally:
        adapters.blobs.get = reads
    assert adapters.store.get(job.id, tenant="acme", mark_gone=False) == job


def test_get_many_returns_the_jobs_that_exist(adapters):
    jobs = [make_job(i) for i in range(3)]
    for job in jobs:
        adapters.store.create(job)
    found = adapters.store.get_many([jobs[0].id, "missing", jobs[2].id, jobs[0].id])
    assert found == {jobs[0].id: jobs[0], jobs[2].id: jobs[2]}
    assert adapters.store.get_many([]) == {}


def test_get_many_past_one_batch_returns_every_job(adapters):
    """More ids than one BatchGetItem takes are read batch after batch: the job at each batch's
    edge is found like the others (a batch poll or the reconciler's page asks for that many)."""
    jobs = [make_job(i) for i in range(BATCH_GET_MAX + 2)]
    for job in jobs:
        adapters.store.create(job)
    assert adapters.store.get_many([job.id for job in jobs]) == {job.id: job for job in jobs}


def test_get_many_for_a_tenant_leaves_out_another_tenants_jobs(adapters):
    own, foreign = make_job(0), make_job(1, tenant="globex")
    for job in (own, foreign):
        adapters.store.create(job)
    for consistent in (False, True):
        assert adapters.store.get_many([own.id, foreign.id, "missing"], consistent=consistent,
                                       tenant=own.tenant) == {own.id: own}
    assert set(adapters.store.get_many([own.id, foreign.id])) == {own.id, foreign.id}


def test_a_claim_refused_only_by_its_own_earlier_try_is_taken_as_written(adapters):
    """botocore sends a write again when its answer was lost (a timeout, a 5xx after DynamoDB
    applied it); the retry's condition is then refused by the write itself. A claim (a write
    carrying its `claim_id`) refused on a stored job that holds every change it makes (and, after
    a read, at the version it produced) is that claim, made once: taken as written, with or
    without a read. Another claim's refusal, another tenant's, or any other write's is refused."""
    start = {"status": JobStatus.RUNNING, "attempts": 1, "attempt_started_at": "2026-01-01T00:03:00.000Z",
             "lease_expires_at": "2026-01-01T00:04:00.000Z", "due_at": "2026-01-01T00:04:00.000Z",
             "error": REMOVE, "claim_id": "a" * 32}
    job = make_job(1, due_at="2026-01-01T00:02:00.000Z", dispatches=1)
    adapters.store.create(job)
    first = adapters.store.apply(job, JobStatus.QUEUED, ChangeSet(start))
    again = adapters.store.apply(job, JobStatus.QUEUED, ChangeSet(start))
    assert (again.version, again.status, again.claim_id) == (first.version, JobStatus.RUNNING, "a" * 32)
    with pytest.raises(StaleJobError):
        adapters.store.apply(job, JobStatus.QUEUED, ChangeSet({**start, "claim_id": "b" * 32}))
    with pytest.raises(StaleJobError):  # no claim: a refusal is a refusal
        adapters.store.apply(job, JobStatus.QUEUED, ChangeSet({"status": JobStatus.RUNNING}))
    adapters.store.apply(first, JobStatus.RUNNING, ChangeSet({"cancel_requested": True}))
    with pytest.raises(StaleJobError):  # its changes, but at a later version: written on since
        adapters.store.apply(job, JobStatus.QUEUED, ChangeSet(start))

    other = make_job(2)
    adapters.store.create(other)
    expected = Expectation(equal={"attempts": 0, "cancel_requested": False}, one_of={"status": (JobStatus.QUEUED,)})
    claimed = adapters.store.apply_expected(other.id, "acme", expected, ChangeSet(start), mark_gone=False)
    retried = adapters.store.apply_expected(other.id, "acme", expected, ChangeSet(start), mark_gone=False)
    assert claimed.applied and retried.applied and retried.job.version == claimed.job.version
    another = adapters.store.apply_expected(other.id, "acme", expected, ChangeSet({**start, "claim_id": "b" * 32}),
                                            mark_gone=False)
    assert not another.applied and another.job.claim_id == "a" * 32
    assert not adapters.store.apply_expected(other.id, "globex", expected, ChangeSet(start), mark_gone=False).applied


def test_apply_writes_only_against_the_expected_status_and_version(adapters):
    job = make_job(1, lease_expires_at="2026-01-01T00:05:00.000Z")
    adapters.store.create(job)
    written = adapters.store.apply(job, JobStatus.QUEUED, ChangeSet({
        "status": JobStatus.RUNNING, "attempts": 1, "lease_expires_at": REMOVE,
        "progress": Progress(percent=5, step="start"),
    }))
    assert written.version == job.version + 1 and written.status == JobStatus.RUNNING
    assert adapters.store.get(job.id, mark_gone=False) == written
    assert written.lease_expires_at is None and written.progress.step == "start"
    with pytest.raises(StaleJobError):  # the version moved on
        adapters.store.apply(job, JobStatus.QUEUED, ChangeSet({"status": JobStatus.CANCELED}))
    with pytest.raises(StaleJobError):  # right version, wrong status
        adapters.store.apply(written, JobStatus.QUEUED, ChangeSet({"status": JobStatus.CANCELED}))
    with pytest.raises(StaleJobError):  # no such job
        adapters.store.apply(make_job(2), JobStatus.QUEUED, ChangeSet({"status": JobStatus.RUNNING}))
    assert adapters.store.get(job.id, mark_gone=False) == written
    moved = adapters.store.apply(written, JobStatus.RUNNING, ChangeSet({"progress": Progress(percent=50)}))
    with pytest.raises(StaleJobError):  # right status, the version moved on: a writer that read before
        adapters.store.apply(written, JobStatus.RUNNING, ChangeSet({"progress": Progress(percent=40)}))
    assert adapters.store.get(job.id, mark_gone=False) == moved and moved.version == written.version + 1


def test_apply_answers_the_job_it_was_given_with_the_changes_whatever_became_of_its_objects(adapters):
    """`apply` reads nothing back: its answer is the job the caller read plus the changes. A
    claim-checked field shows as that read showed it (whole, its placeholder, or gone and named
    in `gone`), one the write sets as written: a claim decides on the payload it read, and a
    reconciler that read the record alone gets no object fetched or found gone."""
    job = make_job(1, payload=big())
    adapters.store.create(job)
    placeholder = adapters.store.get(job.id, fetch=(), mark_gone=False).payload
    assert placeholder == {"claim_check": {"bytes": len(json.dumps(big(), separators=(",", ":")))}}
    start = {"status": JobStatus.RUNNING, "attempts": 1, "claim_id": "a" * 32}
    record = adapters.store.get(job.id, fetch=(), mark_gone=False)
    written = adapters.store.apply(record, JobStatus.QUEUED, ChangeSet(start))
    assert (written.payload, written.status, written.version) == (placeholder, JobStatus.RUNNING, job.version + 1)
    again = adapters.store.apply(record, JobStatus.QUEUED, ChangeSet(start))  # its earlier try's answer lost
    assert again == written

    adapters.blobs.delete([f"jobs/{job.id}/payload.json"])
    read = adapters.store.get(job.id, mark_gone=True)
    progressed = adapters.store.apply(read, JobStatus.RUNNING, ChangeSet({"progress": Progress(percent=5)}))
    assert (progressed.payload, progressed.gone, progressed.progress.percent) == ({}, ["payload"], 5)
    done = adapters.store.apply(progressed, JobStatus.RUNNING, ChangeSet({"status": JobStatus.COMPLETED,
                                                                        "result": big(500)}))
    assert (done.payload, done.result, done.gone) == ({}, big(500), ["payload"])
    assert adapters.store.get(job.id, mark_gone=True) == done
    cleared = adapters.store.apply(adapters.store.get(job.id, fetch=("result",), mark_gone=False), JobStatus.COMPLETED,
                                   ChangeSet({"result": REMOVE}))
    assert (cleared.payload, cleared.result, cleared.gone) == (placeholder, None, [])


def test_a_failed_jobs_owed_dead_letter_is_kept_until_removed(adapters):
    job = make_job(1, status=JobStatus.FAILED, error=JobErrorInfo(code="boom", message="it broke"), attempts=3)
    adapters.store.create(job)
    owed = adapters.store.apply(job, JobStatus.FAILED, ChangeSet({"dead_letter_owed": 3}))
    assert adapters.store.get(job.id, mark_gone=False) == owed and owed.dead_letter_owed == 3
    assert "dead_letter_owed" not in owed.public()
    paid = adapters.store.apply(owed, JobStatus.FAILED, ChangeSet({"dead_letter_owed": REMOVE}))
    assert adapters.store.get(job.id, mark_gone=False) == paid and paid.dead_letter_owed is None


def test_apply_with_a_run_writes_both_and_a_later_run_write_keeps_the_start_time(adapters):
    job = running(adapters.store, make_job(1))
    (run,) = adapters.store.runs(job.id)
    assert run == Run(job_id=job.id, attempt=1, status=JobStatus.RUNNING, started_at="2026-01-01T00:01:00.000Z")
    error = JobErrorInfo(code="boom", message="it broke")
    failed = adapters.store.apply(job, JobStatus.RUNNING, ChangeSet(
        {"status": JobStatus.RETRYING, "error": error},
        run=Run(job_id=job.id, attempt=1, status=JobStatus.FAILED, finished_at="2026-01-01T00:02:00.000Z", error=error),
    ))
    again = adapters.store.apply(failed, JobStatus.RETRYING, ChangeSet(
        {"status": JobStatus.RUNNING, "attempts": 2},
        run=Run(job_id=job.id, attempt=2, status=JobStatus.RUNNING, started_at="2026-01-01T00:03:00.000Z"),
    ))
    assert again.version == job.version + 2
    runs = adapters.store.runs(job.id)
    assert [(r.attempt, r.status, r.started_at, r.finished_at) for r in runs] == [
        (1, JobStatus.FAILED, "2026-01-01T00:01:00.000Z", "2026-01-01T00:02:00.000Z"),
        (2, JobStatus.RUNNING, "2026-01-01T00:03:00.000Z", None),
    ]
    assert runs[0].error == error
    assert adapters.store.runs("00000000-0000-4000-8000-999999999999") == []


def test_a_jobs_runs_past_one_query_page_are_read_whole(adapters):
    """A job of hundreds of failed attempts keeps more runs than one Query returns (1 MB): its
    runs are read page after page, every attempt once, in order."""
    from tests.contract.test_finished_jobs import _SmallQueryPages

    job = running(adapters.store, make_job(1))
    for attempt in range(2, 8):
        job = adapters.store.apply(job, JobStatus.RUNNING, ChangeSet({"attempts": attempt}, run=Run(
            job_id=job.id, attempt=attempt, status=JobStatus.RUNNING, started_at=f"2026-01-01T00:0{attempt}:00.000Z")))
    if adapters.kind == "aws":
        adapters.store._ddb = _SmallQueryPages(adapters.store._ddb)
    assert [run.attempt for run in adapters.store.runs(job.id)] == list(range(1, 8))


def _start(attempt: int, **extra) -> ChangeSet:
    return ChangeSet({"status": JobStatus.RUNNING, "attempts": attempt, "lease_expires_at": "2026-01-01T00:11:00.000Z",
                      "due_at": "2026-01-01T00:11:00.000Z", "progress": Progress(percent=0, step="started"), **extra})


def _may_start(attempts: int, **overrides) -> Expectation:
    fields = {"equal": {"attempts": attempts, "timeout_s": 60, "cancel_requested": False},
              "one_of": {"status": (JobStatus.QUEUED, JobStatus.RETRYING)},
              "absent_or_at_most": {"not_before": "2026-01-01T00:01:00.000Z"}}
    fields.update(overrides)
    return Expectation(**fields)


def test_apply_expected_writes_without_a_read_and_returns_the_job_as_written(adapters):
    job = make_job(1, scope="proj", not_before="2026-01-01T00:00:30.000Z")
    adapters.store.create(job)
    written = adapters.store.apply_expected(job.id, "acme", _may_start(0), _start(1, started_at="2026-01-01T00:01:00.000Z"),
                                            mark_gone=False)
    assert written.applied
    assert written.job == adapters.store.get(job.id, mark_gone=False)
    assert (written.job.status, written.job.attempts, written.job.version) == (JobStatus.RUNNING, 1, job.version + 1)
    assert written.job.payload == job.payload and written.job.scope == "proj"
    assert written.job.lease_expires_at == written.job.due_at == "2026-01-01T00:11:00.000Z"
    # the by_status index moved with it
    assert [j.id for j in adapters.store.list_jobs(JobQuery(tenant="acme", status=JobStatus.RUNNING)).jobs] == [job.id]
    assert adapters.store.list_jobs(JobQuery(tenant="acme", status=JobStatus.QUEUED)).jobs == []
    assert [j.id for j in adapters.store.due("2026-01-01T00:12:00.000Z", 10).jobs] == [job.id]
    assert adapters.store.due("2026-01-01T00:10:00.000Z", 10).jobs == []


def test_apply_expected_with_a_claim_checked_payload_returns_it_whole(adapters):
    job = make_job(1, payload=big())
    adapters.store.create(job)
    written = adapters.store.apply_expected(job.id, "acme", _may_start(0), _start(1), mark_gone=False)
    assert written.applied and written.job.payload == big()


@pytest.mark.parametrize("stored, expected, tenant", [
    ({"status": JobStatus.RUNNING}, {}, "acme"),  # not a status in one_of
    ({"attempts": 1, "status": JobStatus.RETRYING}, {}, "acme"),  # another attempt
    ({"timeout_s": 120}, {}, "acme"),  # equal
    ({"cancel_requested": True}, {}, "acme"),
    ({"not_before": "2026-01-01T00:01:00.001Z"}, {}, "acme"),  # absent_or_at_most: later
    ({}, {"equal": {"attempts": 0, "scope": None}}, "acme"),  # None: the field must be absent
    ({}, {}, "other"),  # the tenant is part of what is expected
])
def test_apply_expected_refused_writes_nothing_and_returns_the_stored_job(adapters, stored, expected, tenant):
    job = make_job(1, scope="proj", **stored)
    adapters.store.create(job)
    refused = adapters.store.apply_expected(job.id, tenant, _may_start(0, **expected), _start(1), mark_gone=False)
    assert not refused.applied
    assert refused.job == job == adapters.store.get(job.id, mark_gone=False)


def test_a_field_written_as_none_is_absent_to_a_later_check(adapters):
    """A change to None removes the field as REMOVE does, not keeps it as a null: a later write
    expecting it absent lands."""
    job = make_job(1, scope="proj", not_before="2026-01-01T00:02:00.000Z")
    adapters.store.create(job)
    adapters.store.apply(job, JobStatus.QUEUED, ChangeSet({"scope": None, "not_before": None}))
    assert adapters.store.apply_expected(job.id, "acme", _may_start(0, equal={"attempts": 0, "scope": None}),
                                         _start(1), mark_gone=False).applied


def test_a_due_time_written_as_none_takes_the_job_off_the_due_listing(adapters):
    """As REMOVE does: the job is no longer due, at its old time or any other."""
    now = "2026-01-01T12:00:00.000Z"
    job = make_job(1, due_at="2026-01-01T11:00:00.000Z")
    adapters.store.create(job)
    adapters.store.apply(job, JobStatus.QUEUED, ChangeSet({"due_at": None}))
    assert adapters.store.due(now, 10).jobs == []
    assert adapters.store.get(job.id, mark_gone=False).due_at is None


def test_apply_expected_of_a_missing_job_returns_none_and_creates_nothing(adapters):
    missing = make_job(9)
    refused = adapters.store.apply_expected(missing.id, "acme", _may_start(0), _start(1), mark_gone=False)
    assert refused == ExpectedWrite(False, None)
    assert adapters.store.get(missing.id, mark_gone=False) is None


def test_apply_expected_at_the_bounds_of_each_check(adapters):
    at_bound = make_job(1, not_before="2026-01-01T00:01:00.000Z", status=JobStatus.RETRYING, attempts=2, timeout_s=60)
    absent = make_job(2, scope=None)
    for job in (at_bound, absent):
        adapters.store.create(job)
    assert adapters.store.apply_expected(at_bound.id, "acme", _may_start(2), _start(3), mark_gone=False).applied
    assert adapters.store.apply_expected(absent.id, "acme", _may_start(0, equal={"scope": None}), _start(1),
                                         mark_gone=False).applied
    with pytest.raises(ValueError):  # a run needs a transaction, a result the attempt: not without a read
        adapters.store.apply_expected(absent.id, "acme", _may_start(1), ChangeSet(
            {"status": JobStatus.COMPLETED}, run=Run(job_id=absent.id, attempt=1, status=JobStatus.COMPLETED)),
            mark_gone=False)
    with pytest.raises(ValueError):
        adapters.store.apply_expected(absent.id, "acme", _may_start(1), ChangeSet({"result": {"a": 1}}),
                                      mark_gone=False)


def test_a_run_written_whole_when_its_attempt_ends(adapters):
    job = make_job(1)
    adapters.store.create(job)
    started = adapters.store.apply_expected(job.id, "acme", _may_start(0), _start(1), mark_gone=False).job
    assert adapters.store.runs(job.id) == []
    run = Run(job_id=job.id, attempt=1, status=JobStatus.COMPLETED, started_at="2026-01-01T00:01:00.000Z",
              finished_at="2026-01-01T00:02:00.000Z")
    adapters.store.apply(started, JobStatus.RUNNING, ChangeSet({"status": JobStatus.COMPLETED}, run=run))
    assert adapters.store.runs(job.id) == [run]


def test_a_run_is_kept_from_its_attempts_end_on_the_clock_that_ended_it(adapters):
    """RECORD_PART_KEEP_S from the run's `finished_at`, not from when the store wrote it."""
    job = make_job(1)
    adapters.store.create(job)
    started = adapters.store.apply_expected(job.id, "acme", _may_start(0), _start(1), mark_gone=False).job
    run = Run(job_id=job.id, attempt=1, status=JobStatus.COMPLETED, started_at="2026-01-01T00:01:00.000Z",
              finished_at="2026-01-01T00:02:00.000Z")
    adapters.store.apply(started, JobStatus.RUNNING, ChangeSet({"status": JobStatus.COMPLETED}, run=run))
    kept_until = int(parse_time(run.finished_at).timestamp()) + RECORD_PART_KEEP_S
    expire(adapters, kept_until)
    assert adapters.store.runs(job.id) == [run]
    expire(adapters, kept_until + 1)
    assert adapters.store.runs(job.id) == []


def test_a_run_updated_at_its_attempts_end_is_kept_from_that_end(adapters):
    """Written at the attempt's start, then at its end without a start time: its time is counted
    again, from the end."""
    job = running(adapters.store, make_job(1))
    ended = Run(job_id=job.id, attempt=1, status=JobStatus.COMPLETED, finished_at="2026-01-01T00:02:00.000Z")
    adapters.store.apply(job, JobStatus.RUNNING, ChangeSet({"status": JobStatus.COMPLETED}, run=ended))
    kept_until = int(parse_time(ended.finished_at).timestamp()) + RECORD_PART_KEEP_S
    expire(adapters, kept_until)
    assert [r.finished_at for r in adapters.store.runs(job.id)] == [ended.finished_at]
    expire(adapters, kept_until + 1)
    assert adapters.store.runs(job.id) == []


def test_a_run_of_an_attempt_still_running_is_kept_from_when_it_was_written(adapters):
    """No end yet: its time is counted from the write, so it is there while the attempt runs."""
    import time

    job = running(adapters.store, make_job(1))
    expire(adapters, int(time.time()))
    assert [(r.attempt, r.status) for r in adapters.store.runs(job.id)] == [(1, JobStatus.RUNNING)]


@contextmanager
def reading_no_job(store):
    """Within the block, a read of a job by `store` fails the test: a write answers the job it
    wrote (or was refused on) from its own answer."""
    reads = store.get
    store.get = lambda *args, **kwargs: pytest.fail("read a job its write was answered with")
    try:
        yield
    finally:
        store.get = reads


def test_progress_is_written_for_the_running_attempt_and_never_goes_back(adapters):
    """And the job as written is the write's own answer: no read of the record per report."""
    job = running(adapters.store, make_job(1))
    with reading_no_job(adapters.store):
        stored = adapters.store.record_progress(job.id, 1, Progress(percent=40, step="a"))
    assert stored.version == job.version + 1 and stored.progress.percent == 40
    assert adapters.store.get(job.id, mark_gone=False).progress == Progress(percent=40, step="a")
    assert adapters.store.record_progress(job.id, 1, Progress(percent=40, step="b")).progress.step == "b"
    with pytest.raises(ProgressRejectedError, match="cannot decrease"):
        adapters.store.record_progress(job.id, 1, Progress(percent=10, step="stale writer"))
    with pytest.raises(ProgressRejectedError):  # another attempt
        adapters.store.record_progress(job.id, 2, Progress(percent=90))
    with pytest.raises(ProgressRejectedError):  # no such job
        adapters.store.record_progress("00000000-0000-4000-8000-999999999999", 1, Progress(percent=90))
    assert adapters.store.get(job.id, mark_gone=False).progress == Progress(percent=40, step="b")
    taken_over = adapters.store.apply(adapters.store.get(job.id, mark_gone=False), JobStatus.RUNNING,
                                      ChangeSet({"attempts": 2}))
    with pytest.raises(ProgressRejectedError):  # an earlier attempt, its lease taken over
        adapters.store.record_progress(job.id, 1, Progress(percent=90))
    assert adapters.store.get(job.id, mark_gone=False) == taken_over
    queued = make_job(2)
    adapters.store.create(queued)
    with pytest.raises(ProgressRejectedError):  # not running
        adapters.store.record_progress(queued.id, 0, Progress(percent=1))


def test_a_refused_progress_write_says_why_from_the_job_as_stored(adapters):
    """The worker and the API hand a refusal on as it is worded: the job is gone, the attempt
    is over (with the job's status and attempt), or the percent would go back (with both
    percents). Each store words it alike."""
    job = running(adapters.store, make_job(1))
    adapters.store.record_progress(job.id, 1, Progress(percent=40))
    refusals = []
    for job_id, attempt, percent in ((job.id, 1, 10), (job.id, 2, 90), ("00000000-0000-4000-8000-999999999999", 1, 90)):
        with pytest.raises(ProgressRejectedError) as raised:
            adapters.store.record_progress(job_id, attempt, Progress(percent=percent))
        refusals.append((raised.value.code, raised.value.message, raised.value.details))
    assert refusals == [
        ("progress_rejected", "progress cannot decrease from 40 to 10", {"current": 40, "requested": 10}),
        ("progress_rejected", f"attempt 2 of job {job.id} is not running (job is running)",
         {"status": "running", "attempt": 1}),
        ("progress_rejected", "job 00000000-0000-4000-8000-999999999999 does not exist", None),
    ]


def test_progress_details_read_back_as_reported(adapters):
    """Details are any JSON object a handler reports: nulls stay, numbers past DynamoDB's 38
    digits or its exponent range are kept, text is text."""
    details = {"skipped": None, "rows": [None, {"note": None}], "bytes": 10**40, "ratio": 1 / 3,
               "huge": 1e300, "tiny": 5e-324, "empty": {"s": "", "l": [], "m": {}}, "name": "ünï 🚀"}
    job = running(adapters.store, make_job(1))
    written = adapters.store.record_progress(job.id, 1, Progress(percent=100 / 3, details=details))
    assert written.progress.details == details and written.progress.percent == 100 / 3
    assert adapters.store.get(job.id, mark_gone=False).progress.details == details
    assert adapters.store.get_many([job.id])[job.id].progress.details == details
    done = adapters.store.apply(written, JobStatus.RUNNING, ChangeSet(
        {"status": JobStatus.COMPLETED, "progress": Progress(percent=100, details={**details, "final": True})}))
    assert adapters.store.get(job.id, mark_gone=False).progress == done.progress
    made = make_job(2, status=JobStatus.RUNNING, progress=Progress(percent=5, details=details))
    adapters.store.create(made)  # a job written whole keeps its details as they were reported too
    assert adapters.store.get(made.id, mark_gone=False).progress == made.progress


def test_after_a_cancel_request_progress_is_not_written_and_the_job_says_why(adapters):
    """A report of a job asked to cancel is not written; its answer is the job as the refused
    write returned it, cancel requested, with no read of the record more per report."""
    job = running(adapters.store, make_job(1))
    job = adapters.store.record_progress(job.id, 1, Progress(percent=30))
    requested = adapters.store.apply(job, JobStatus.RUNNING, ChangeSet({"cancel_requested": True}))
    with reading_no_job(adapters.store):
        answer = adapters.store.record_progress(job.id, 1, Progress(percent=60, step="s2"), announce=True, mark=0)
    assert answer.cancel_requested and answer.progress.percent == 30 and answer.version == requested.version
    stored = adapters.store.get(job.id, mark_gone=False)
    assert stored.progress.percent == 30 and stored.version == requested.version


@pytest.mark.parametrize("ended", ["canceled", "next_attempt"])
def test_progress_of_an_attempt_that_ended_after_a_cancel_request_is_refused(adapters, ended):
    """A cancel request answers only the attempt it was made of, while it runs: the attempt
    canceled since, or followed by another, is refused as over, not answered as canceled."""
    job = running(adapters.store, make_job(1))
    requested = adapters.store.apply(job, JobStatus.RUNNING, ChangeSet({"cancel_requested": True}))
    if ended == "canceled":
        adapters.store.apply(requested, JobStatus.RUNNING, ChangeSet({"status": JobStatus.CANCELED}))
    else:
        adapters.store.apply(requested, JobStatus.RUNNING, ChangeSet({"attempts": 2}))
    with pytest.raises(ProgressRejectedError, match="attempt 1 of job .* is not running"):
        adapters.store.record_progress(job.id, 1, Progress(percent=60))


def test_a_progress_write_answers_a_claim_checked_payload_as_its_placeholder(adapters):
    """Progress is the hot write: its answer reads no object back, written or refused on a cancel
    request; the claim-checked payload shows as a listing shows it (the caller has it whole)."""
    job = running(adapters.store, make_job(1, payload=big(INLINE_LIMIT + 1)))
    placeholder = adapters.store.get_many([job.id])[job.id].payload
    assert placeholder == {"claim_check": {"bytes": len(json.dumps(big(INLINE_LIMIT + 1), separators=(",", ":")))}}
    assert adapters.store.record_progress(job.id, 1, Progress(percent=10)).payload == placeholder
    adapters.store.apply(adapters.store.get(job.id, mark_gone=False), JobStatus.RUNNING,
                         ChangeSet({"cancel_requested": True}))
    refused = adapters.store.record_progress(job.id, 1, Progress(percent=20))
    assert refused.cancel_requested and refused.payload == placeholder
    assert adapters.store.get(job.id, mark_gone=False).payload == big(INLINE_LIMIT + 1)


def test_an_announced_progress_write_moves_the_event_percent_with_it(adapters):
    job = running(adapters.store, make_job(1))
    quiet = adapters.store.record_progress(job.id, 1, Progress(percent=8))
    assert quiet.event_percent == job.event_percent == 0 and quiet.progress.percent == 8
    loud = adapters.store.record_progress(job.id, 1, Progress(percent=12), announce=True, mark=0)
    assert loud.event_percent == 12 and loud.version == quiet.version + 1
    assert adapters.store.get(job.id, mark_gone=False).event_percent == 12
    assert "event_percent" not in adapters.store.get(job.id, mark_gone=False).public()  # bookkeeping, not shown


def test_an_announced_progress_write_lands_only_on_the_mark_it_was_decided_from(adapters):
    """A worker whose announcing write landed unanswered still holds the mark before it: its next
    announcement, decided from that mark, is refused (StaleJobError, nothing written) instead of
    announcing a move measured from an event that is no longer the attempt's last."""
    job = running(adapters.store, make_job(1))
    adapters.store.record_progress(job.id, 1, Progress(percent=45), announce=True, mark=0)
    before = adapters.store.get(job.id, mark_gone=False)
    with pytest.raises(StaleJobError):
        adapters.store.record_progress(job.id, 1, Progress(percent=48), announce=True, mark=0)
    after = adapters.store.get(job.id, mark_gone=False)
    assert (after.version, after.progress.percent, after.event_percent) == (before.version, 45, 45)
    quiet = adapters.store.record_progress(job.id, 1, Progress(percent=48), mark=0)  # no announcement: no mark asked
    assert (quiet.progress.percent, quiet.event_percent) == (48, 45)
    assert adapters.store.record_progress(job.id, 1, Progress(percent=60), announce=True, mark=45).event_percent == 60
    # An attempt started by a version that kept no mark: its announcement is decided from none.
    adapters.store.create(make_job(2))
    unmarked = adapters.store.apply(make_job(2), JobStatus.QUEUED, ChangeSet({"status": JobStatus.RUNNING, "attempts": 1}))
    with pytest.raises(StaleJobError):
        adapters.store.record_progress(unmarked.id, 1, Progress(percent=30), announce=True, mark=0)
    assert adapters.store.record_progress(unmarked.id, 1, Progress(percent=30), announce=True).event_percent == 30


def test_an_announcement_on_a_moved_mark_is_refused_for_what_else_is_wrong_first(adapters):
    """StaleJobError says the mark alone moved (the caller reads the job again and decides
    anew); an announcement that is wrong in another way too is refused as any write would be:
    the percent going back, the attempt over, the job gone."""
    job = running(adapters.store, make_job(1))
    adapters.store.record_progress(job.id, 1, Progress(percent=45), announce=True, mark=0)
    with pytest.raises(StaleJobError):  # the same percent again: only the mark is wrong
        adapters.store.record_progress(job.id, 1, Progress(percent=45), announce=True, mark=0)
    with pytest.raises(ProgressRejectedError, match="cannot decrease from 45 to 40"):
        adapters.store.record_progress(job.id, 1, Progress(percent=40), announce=True, mark=0)
    with pytest.raises(ProgressRejectedError, match="attempt 2 of job .* is not running"):
        adapters.store.record_progress(job.id, 2, Progress(percent=50), announce=True, mark=0)
    with pytest.raises(ProgressRejectedError, match="does not exist"):
        adapters.store.record_progress("00000000-0000-4000-8000-999999999999", 1, Progress(percent=50),
                                       announce=True, mark=0)
    adapters.store.apply(adapters.store.get(job.id, mark_gone=False), JobStatus.RUNNING,
                         ChangeSet({"status": JobStatus.COMPLETED}))
    with pytest.raises(ProgressRejectedError, match=r"attempt 1 of job .* is not running \(job is completed\)"):
        adapters.store.record_progress(job.id, 1, Progress(percent=50), announce=True, mark=0)


def test_an_earlier_attempts_mark_is_no_mark_of_the_running_one(adapters):
    """An attempt claimed by a version that keeps no mark finds the earlier attempt's on the
    record: the running attempt has none (Job.event_mark), and an announcement decided from none
    lands, marking this attempt; one decided from the earlier attempt's is refused."""
    job = running(adapters.store, make_job(1))
    adapters.store.record_progress(job.id, 1, Progress(percent=80), announce=True, mark=0)
    first = adapters.store.get(job.id, mark_gone=False)
    assert (first.event_percent, first.event_attempt, first.event_mark) == (80, 1, 80)
    second = adapters.store.apply(first, JobStatus.RUNNING, ChangeSet(
        {"attempts": 2, "progress": Progress(percent=0, step="started")}))  # as that version claims
    assert (second.event_percent, second.event_mark) == (80, None)
    with pytest.raises(StaleJobError):
        adapters.store.record_progress(job.id, 2, Progress(percent=85), announce=True, mark=80)
    marked = adapters.store.record_progress(job.id, 2, Progress(percent=30), announce=True)
    assert (marked.event_percent, marked.event_attempt, marked.event_mark) == (30, 2, 30)


def test_a_mark_kept_without_its_attempt_is_the_running_attempts(adapters):
    """A version that marked every attempt it started kept no `event_attempt`: the mark on such
    a record is the running attempt's (Job.event_mark). An announcement decided from no mark, or
    from another (even one above it), is refused (StaleJobError, nothing written); one decided
    from that mark lands, naming its attempt."""
    job = make_job(1, status=JobStatus.RUNNING, attempts=1, event_percent=20.0)
    adapters.store.create(job)
    assert job.event_mark == 20
    for mark in (None, 25):
        with pytest.raises(StaleJobError):
            adapters.store.record_progress(job.id, 1, Progress(percent=30), announce=True, mark=mark)
    assert adapters.store.get(job.id, mark_gone=False) == job
    marked = adapters.store.record_progress(job.id, 1, Progress(percent=30), announce=True, mark=20)
    assert (marked.event_percent, marked.event_attempt, marked.event_mark) == (30, 1, 30)


def test_a_record_filled_by_progress_refuses_what_does_not_fit_until_its_message_is_cut(adapters):
    """A progress report that would pass the record's 400 KB is refused as the report's fault;
    a write that adds to a record the progress left full is refused as RecordTooLargeError,
    and lands once the message is cut (a nested write that never grows the record)."""
    store = adapters.store
    with pytest.raises(ProgressRejectedError, match="does not fit its record"):
        store.record_progress(running(store, make_job(1)).id, 1, Progress(percent=5, message="m" * 420_000))
    job = _filled_by_progress(store, make_job(2))
    error = JobErrorInfo(code="worker_lost", message="attempt 1 outlived its lease " + "x" * 200)
    # as the lifecycle ends an attempt: with its run record, in one transaction
    lost = ChangeSet({"status": JobStatus.RETRYING, "error": error},
                     run=Run(job_id=job.id, attempt=1, status=JobStatus.FAILED, error=error))
    with pytest.raises(RecordTooLargeError):
        store.apply(job, JobStatus.RUNNING, lost)
    stored = store.get(job.id, mark_gone=False)
    assert stored.status == JobStatus.RUNNING and stored.version == job.version
    # a write of the job alone (one UpdateItem: the reconciler failing a retrying job) is refused whole too
    with pytest.raises(RecordTooLargeError):
        store.apply(job, JobStatus.RUNNING, ChangeSet({"status": JobStatus.FAILED, "error": error,
                                                      "finished_at": "2026-01-01T00:02:00.000Z"}))
    assert store.get(job.id, mark_gone=False) == stored, "nothing of a refused write is stored"
    with pytest.raises(StaleJobError):
        store.cut_progress_message(job.model_copy(update={"version": job.version - 1}), JobStatus.RUNNING, 10)
    cut = store.cut_progress_message(job, JobStatus.RUNNING, 10)
    assert cut.version == job.version + 1 and cut.progress.message == "m" * 9 + "…" and cut.progress.percent == 5
    assert store.get(job.id, mark_gone=False) == cut
    ended = store.apply(cut, JobStatus.RUNNING, lost)
    assert store.get(job.id, mark_gone=False).status == JobStatus.RETRYING and ended.version == cut.version + 1


def test_cutting_the_progress_message_answers_the_job_it_was_given_reading_no_object(adapters):
    """Like `apply`: the caller's job with the message cut (version + 1), a claim-checked field
    as that caller read it, so an attempt whose payload object went meanwhile can still end."""
    store = adapters.store
    job = running(store, make_job(1, payload=big()))
    store.record_progress(job.id, 1, Progress(percent=5, message="m" * 50))
    adapters.blobs.delete([f"jobs/{job.id}/payload.json"])
    read = store.get(job.id, mark_gone=True)
    cut = store.cut_progress_message(read, JobStatus.RUNNING, 10)
    assert (cut.payload, cut.gone, cut.progress.message, cut.version) == ({}, ["payload"], "m" * 9 + "…",
                                                                          read.version + 1)
    assert store.get(job.id, mark_gone=True) == cut


def _filled_by_progress(store, job: Job) -> Job:
    """`job` running with the longest progress message its record takes (binary search, as a
    handler growing its message would find it)."""
    fits, too_long = 0, 420_000
    while too_long - fits > 1:
        length = (fits + too_long) // 2
        try:
            store.record_progress(running(store, make_job(100 + length % 1000 + (length // 1000) * 1000)).id, 1,
                                  Progress(percent=5, message="m" * length))
            fits = length
        except ProgressRejectedError:
            too_long = length
    return store.record_progress(running(store, job).id, 1, Progress(percent=5, message="m" * fits))


def test_progress_details_count_toward_the_record_as_stored_non_ascii_as_its_escapes(adapters):
    """The record keeps progress details (and an inline payload or result) as JSON text with
    every non-ASCII character as its \\uXXXX escape: details of 5,300 "é" take 31,800 bytes of
    the 400 KB, not the 10,600 of their UTF-8. The in-memory twin counted the UTF-8 and kept
    a report DynamoDB refuses."""
    store = adapters.store
    text = "é" * 2_650
    details = {text: text}
    assert len(json.dumps(details, separators=(",", ":"))) < MAX_PROGRESS_DETAILS_BYTES  # a report the worker sends
    job = running(store, make_job(1))
    with pytest.raises(ProgressRejectedError, match="does not fit its record"):
        store.record_progress(job.id, 1, Progress(percent=5, details=details, message="m" * (400 * 1024 - 20_000)))
    fits = store.record_progress(job.id, 1, Progress(percent=5, details=details, message="m" * (400 * 1024 - 45_000)))
    assert store.get(job.id, mark_gone=False) == fits


def test_a_full_record_refuses_a_write_without_a_read_and_a_child_it_would_list(adapters):
    """Past the record's 400 KB a write is refused as RecordTooLargeError, whichever write it is:
    nothing is written, no child made, listed, nor its payload's object kept."""
    store = adapters.store
    parent = _filled_by_progress(store, make_job(1))
    with pytest.raises(RecordTooLargeError):
        store.apply_expected(parent.id, parent.tenant, Expectation(equal={"attempts": 1}),
                             ChangeSet({"claim_id": "c" * 400}), mark_gone=False)
    child = make_job(2, parent_id=parent.id, payload={"pad": "x" * INLINE_LIMIT})
    with pytest.raises(RecordTooLargeError):
        store.create_child(child, 1)
    assert store.get(parent.id, mark_gone=False) == parent
    assert [k for page in adapters.blobs.keys_older_than("jobs/", datetime(9999, 1, 1, tzinfo=timezone.utc))
            for k in page if child.id in k] == []


def test_a_child_is_listed_once_and_a_missing_parent_is_an_error(adapters):
    parent = running(adapters.store, make_job(1))
    adapters.store.add_child(parent.id, "child-a", 1)
    adapters.store.add_child(parent.id, "child-b", 1)
    adapters.store.add_child(parent.id, "child-a", 1)  # a redelivered spawn
    stored = adapters.store.get(parent.id, mark_gone=False)
    assert stored.children == ["child-a", "child-b"] and stored.version == parent.version + 2
    with pytest.raises(JobNotFoundError):
        adapters.store.add_child("00000000-0000-4000-8000-999999999999", "child-c", 1)


def test_a_child_is_made_and_listed_in_one_write_while_its_parents_attempt_runs(adapters):
    store = adapters.store
    parent = running(store, make_job(1))
    child = make_job(2, parent_id=parent.id, payload={"pad": "x" * INLINE_LIMIT})  # its payload claim-checked
    store.create_child(child, 1)
    assert store.get(child.id, mark_gone=False) == child
    assert store.get(parent.id, mark_gone=False).children == [child.id]
    with pytest.raises(StaleJobError):  # made already: nothing written
        store.create_child(child.model_copy(update={"payload": {"n": 0}}), 1)
    assert store.get(child.id, mark_gone=False).payload == child.payload
    listed = store.get(parent.id, mark_gone=False)
    assert listed.children == [child.id] and listed.version == parent.version + 1


@pytest.mark.parametrize("parent_is", ["on its next attempt", "finished", "missing"])
def test_an_attempt_no_longer_running_makes_and_lists_no_child(adapters, parent_is):
    """A worker that lost its lease (its attempt taken over, or the job ended) spawns nothing:
    the child is not written, nor listed, nor its payload's object kept."""
    store = adapters.store
    parent = running(store, make_job(1))
    if parent_is == "on its next attempt":
        parent = store.apply(parent, JobStatus.RUNNING, ChangeSet({"attempts": 2}))
    elif parent_is == "finished":
        parent = store.apply(parent, JobStatus.RUNNING, ChangeSet({"status": JobStatus.COMPLETED}))
    child = make_job(2, parent_id=parent.id if parent_is != "missing" else make_job(9).id,
                     payload={"pad": "x" * INLINE_LIMIT})
    error = JobNotFoundError if parent_is == "missing" else AttemptEndedError
    said = (f"attempt 1 of job {parent.id} is no longer running: child {child.id} is not spawned"
            if error is AttemptEndedError else None)
    with pytest.raises(error, match=said):
        store.create_child(child, 1)
    with pytest.raises(error):
        store.add_child(child.parent_id, "child-a", 1)
    assert store.get(child.id, mark_gone=False) is None
    assert [k for page in adapters.blobs.keys_older_than(f"jobs/{child.id}/", datetime(9999, 1, 1, tzinfo=timezone.utc))
            for k in page] == []
    if parent_is != "missing":
        assert store.get(parent.id, mark_gone=False) == parent


def test_a_refused_child_is_told_from_the_parents_record_whatever_became_of_its_objects(adapters):
    """Why a parent refused to list a child rests on its record (status, attempt, cancel
    request): its payload object gone (deleted by hand, or by a bucket rule) is not read, and
    not an error in place of the refusal."""
    store = adapters.store
    parent = running(store, make_job(1, payload=big()))
    store.apply(parent, JobStatus.RUNNING, ChangeSet({"status": JobStatus.COMPLETED}))
    adapters.blobs.delete([f"jobs/{parent.id}/payload.json"])
    with pytest.raises(AttemptEndedError, match=f"attempt 1 of job {parent.id}"):
        store.create_child(make_job(2, parent_id=parent.id), 1)
    with pytest.raises(AttemptEndedError, match=f"attempt 1 of job {parent.id}"):
        store.add_child(parent.id, "child-a", 1)


def test_a_spawn_of_an_attempt_canceled_since_its_request_is_refused_as_over(adapters):
    """A cancel request refuses the spawns of the attempt it was made of while it runs; once
    that attempt has ended (canceled), a spawn is refused because the attempt is over."""
    from chalicelib.domain.errors import AttemptEndedError

    store = adapters.store
    parent = running(store, make_job(1))
    parent = store.apply(parent, JobStatus.RUNNING, ChangeSet({"cancel_requested": True}))
    store.apply(parent, JobStatus.RUNNING, ChangeSet({"status": JobStatus.CANCELED}))
    with pytest.raises(AttemptEndedError):
        store.create_child(make_job(2, parent_id=parent.id), 1)
    with pytest.raises(AttemptEndedError):
        store.add_child(parent.id, make_job(3).id, 1)


def test_a_spawn_of_an_earlier_attempt_is_refused_as_over_though_the_next_was_canceled(adapters):
    """A spawn from an attempt that has ended (its handler still running on a lost worker) is
    refused because that attempt is over, even when the attempt after it has a cancel request:
    the cancel is the later attempt's, which that handler never saw."""
    store = adapters.store
    parent = running(store, make_job(1))
    store.apply(parent, JobStatus.RUNNING, ChangeSet({"attempts": 2, "cancel_requested": True}))
    with pytest.raises(AttemptEndedError, match=f"attempt 1 of job {parent.id}"):
        store.create_child(make_job(2, parent_id=parent.id), 1)
    with pytest.raises(AttemptEndedError, match=f"attempt 1 of job {parent.id}"):
        store.add_child(parent.id, make_job(3).id, 1)


def test_a_parent_whose_cancel_was_requested_makes_and_lists_no_child(adapters):
    """A user who cancels a fan-out expects no new children: the spawn's one write is
    conditioned on no cancel request too, and refused it raises JobCancelledError, writing
    nothing (not the child, not its payload's object). A child made before stays listed."""
    store = adapters.store
    parent = running(store, make_job(1))
    before = make_job(3, parent_id=parent.id)
    store.create_child(before, 1)
    parent = store.apply(store.get(parent.id, mark_gone=False), JobStatus.RUNNING,
                         ChangeSet({"cancel_requested": True}))
    child = make_job(2, parent_id=parent.id, payload={"pad": "x" * INLINE_LIMIT})
    with pytest.raises(JobCancelledError, match=f"job {parent.id}"):
        store.create_child(child, 1)
    assert store.get(child.id, mark_gone=False) is None
    assert [k for page in adapters.blobs.keys_older_than(f"jobs/{child.id}/", datetime(9999, 1, 1, tzinfo=timezone.utc))
            for k in page] == []
    assert store.get(parent.id, mark_gone=False) == parent and parent.children == [before.id]


def _all_pages(store, query: JobQuery) -> tuple[list[str], list[int]]:
    ids, sizes = [], []
    while True:
        page = store.list_jobs(query)
        assert len(page.jobs) <= query.limit
        ids += [j.id for j in page.jobs]
        sizes.append(len(page.jobs))
        if page.cursor is None:
            return ids, sizes
        query = JobQuery(query.tenant, query.status, query.type, query.limit, page.cursor)


def test_listing_is_the_tenants_jobs_newest_first_page_by_page(adapters):
    jobs = [make_job(i) for i in range(7)]
    for job in jobs:
        adapters.store.create(job)
    adapters.store.create(make_job(50, tenant="globex"))
    first = adapters.store.list_jobs(JobQuery("acme", limit=3))
    assert [j.id for j in first.jobs] == [jobs[6].id, jobs[5].id, jobs[4].id] and first.cursor
    assert first.jobs[0] == jobs[6]
    ids, _ = _all_pages(adapters.store, JobQuery("acme", limit=3))
    assert ids == [j.id for j in reversed(jobs)]
    assert adapters.store.list_jobs(JobQuery("initech")).jobs == []


@pytest.mark.parametrize("query", [JobQuery("acme", limit=2), JobQuery("acme", status=JobStatus.QUEUED, limit=2),
                                   JobQuery("acme", type="demo.steps", limit=2),
                                   JobQuery("acme", status=JobStatus.QUEUED, type="demo.steps", limit=2),
                                   JobQuery("acme", status=JobStatus.QUEUED, type="demo.steps", limit=1)])
def test_the_last_page_has_no_cursor_when_it_ends_the_listing_exactly(adapters, query):
    """A listing whose length is a multiple of the page size ends on a full page without a
    cursor: no empty page to fetch behind it."""
    for i in range(4):
        adapters.store.create(make_job(i))
    ids, sizes = _all_pages(adapters.store, query)
    assert len(ids) == 4 and 0 not in sizes


def test_a_cursor_only_continues_the_listing_it_came_from(adapters):
    for i in range(4):
        adapters.store.create(make_job(i))
        adapters.store.create(make_job(10 + i, tenant="globex"))
    cursor = adapters.store.list_jobs(JobQuery("acme", limit=2)).cursor
    with pytest.raises(InvalidRequestError):
        adapters.store.list_jobs(JobQuery("globex", limit=2, cursor=cursor))
    with pytest.raises(InvalidRequestError):
        adapters.store.list_jobs(JobQuery("acme", status=JobStatus.QUEUED, limit=2, cursor=cursor))
    for garbage in ("not-base64!", "bm90IGpzb24", "W10=", _cursor("[" * 1500), "A" * 5000, _cursor("7"), _cursor("null")):
        with pytest.raises(InvalidRequestError):
            adapters.store.list_jobs(JobQuery("acme", cursor=garbage))


def test_a_cursor_must_name_a_job_of_the_listing_by_its_keys(adapters):
    """A cursor reshaped by hand (right listing, other fields) is refused like any other, never
    sent on as a malformed start key."""
    for i in range(3):
        adapters.store.create(make_job(i))
    cursor = adapters.store.list_jobs(JobQuery("acme", limit=1)).cursor
    plain = json.loads(base64.urlsafe_b64decode(cursor))
    if isinstance(plain, dict):  # DynamoDB: the index's and the table's keys
        partition = plain["gsi1pk"]
        job_id = plain["pk"].partition("#")[2]
        reshaped = [{"gsi1pk": partition, "a": "1", "b": "2", "c": "3"}, {**plain, "extra": "1"},
                    {**plain, "sk": "RUN#0001"}, {**plain, "pk": "CACHE#x"}, {**plain, "pk": f"RUN#{job_id}"},
                    {**plain, "gsi1sk": ""}, {**plain, "pk": 7}, {**plain, "gsi1sk": ["2026"]}]
    else:  # in memory: listing, created_at, id
        partition = plain[0]
        reshaped = [[partition, 1, 2], [partition, "a"], {"listing": partition}]
    for value in reshaped:
        with pytest.raises(InvalidRequestError, match="cursor is not valid"):
            adapters.store.list_jobs(JobQuery("acme", limit=1, cursor=_cursor(json.dumps(value))))


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def test_a_job_created_in_a_status_is_listed_under_it(adapters):
    """`create` writes a job in the status it holds, whichever it is: the by_status listing
    shows it under that status, as the in-memory twin does, never under queued."""
    failed = make_job(1, status=JobStatus.FAILED, error=JobErrorInfo(code="boom", message="it broke"), attempts=3)
    adapters.store.create(failed)
    assert [j.id for j in adapters.store.list_jobs(JobQuery("acme", status=JobStatus.FAILED)).jobs] == [failed.id]
    assert adapters.store.list_jobs(JobQuery("acme", status=JobStatus.QUEUED)).jobs == []


def test_filters_by_status_by_type_and_by_both(adapters):
    jobs = []
    for i in range(12):
        job = make_job(i, type="demo.steps" if i % 3 else "demo.sleep")
        adapters.store.create(job)
        if i % 2:
            job = adapters.store.apply(job, JobStatus.QUEUED, ChangeSet({"status": JobStatus.RUNNING}))
        jobs.append(job)
    newest_first = list(reversed(jobs))
    by_status, sizes = _all_pages(adapters.store, JobQuery("acme", status=JobStatus.RUNNING, limit=4))
    assert by_status == [j.id for j in newest_first if j.status == JobStatus.RUNNING] and sizes[0] == 4
    by_type, _ = _all_pages(adapters.store, JobQuery("acme", type="demo.sleep", limit=2))
    assert by_type == [j.id for j in newest_first if j.type == "demo.sleep"]
    # Both: the status listing with other types dropped, read on until the page is full; every
    # match comes exactly once, newest first.
    query = JobQuery("acme", status=JobStatus.RUNNING, type="demo.sleep", limit=2)
    both, sizes = _all_pages(adapters.store, query)
    assert both == [j.id for j in newest_first if j.status == JobStatus.RUNNING and j.type == "demo.sleep"]
    assert both and sizes[0] == min(2, len(both))


def test_a_listing_by_status_and_type_reads_past_other_types_within_its_bound(adapters):
    """A match behind other types' jobs is found on the first page while it is within
    FILTERED_LISTING_READS pages; further behind, pages are empty with a cursor to the rest."""
    limit = 2
    within = limit * FILTERED_LISTING_READS - 1
    adapters.store.create(make_job(0, type="demo.sleep"))
    for i in range(1, 1 + within):
        adapters.store.create(make_job(i, type="demo.steps"))
    first = adapters.store.list_jobs(JobQuery("acme", status=JobStatus.QUEUED, type="demo.sleep", limit=limit))
    assert [j.type for j in first.jobs] == ["demo.sleep"]
    for i in range(1 + within, 1 + within + limit):  # now one page more than the bound reads
        adapters.store.create(make_job(i, type="demo.steps"))
    query = JobQuery("acme", status=JobStatus.QUEUED, type="demo.sleep", limit=limit)
    first = adapters.store.list_jobs(query)
    assert first.jobs == [] and first.cursor
    ids, _ = _all_pages(adapters.store, query)
    assert len(ids) == 1


@pytest.mark.parametrize("tight", [False, True], ids=["page-full", "answer-full"])
def test_a_filtered_page_filled_on_a_later_read_goes_on_after_its_last_job(adapters, tight):
    """With both filters the page reads on past other types: a page that fills (with `limit`
    jobs, or with as many as its answer holds) on a later read goes on from its last job, and
    the last page, the listing read to its end, has no cursor."""
    limit = 2
    for i in range(10):
        adapters.store.create(make_job(i, type="demo.sleep" if i in (0, 3, 5) else "demo.steps"))
    query = JobQuery("acme", status=JobStatus.QUEUED, type="demo.sleep", limit=limit)
    if tight:
        one = answer_bytes(adapters.store.get(make_job(5).id, mark_gone=False).public())
        query = replace(query, answer_bytes=one + one // 2)
    ids, sizes = [], []
    while True:
        page = adapters.store.list_jobs(query)
        ids += [j.id for j in page.jobs]
        sizes.append(len(page.jobs))
        if page.cursor is None:
            break
        query = replace(query, cursor=page.cursor)
    assert ids == [make_job(i).id for i in (5, 3, 0)]
    assert sizes == ([1, 1, 1] if tight else [2, 1])


def test_a_filtered_page_full_before_the_end_of_the_listings_last_read_has_a_cursor_to_the_rest(adapters):
    """With both filters, a page that fills on the read that reaches the listing's end, before
    that read's last job, goes on after its own last job: the jobs behind it in that read are on
    the next page, not lost with a page that says the listing ends."""
    for i in range(4):  # newest first: one of another type, then three of the wanted one
        adapters.store.create(make_job(i, type="demo.steps" if i == 3 else "demo.sleep"))
    query = JobQuery("acme", status=JobStatus.QUEUED, type="demo.sleep", limit=2)
    ids, sizes = _all_pages(adapters.store, query)
    assert ids == [make_job(i).id for i in (2, 1, 0)] and sizes == [2, 1]


def test_a_listing_pages_through_jobs_whose_creation_time_carries_an_offset(adapters):
    """A creation time written with an offset (+00:00) instead of `Z`, as records may hold it:
    the cursor that names such a job is read, and the listing goes on past it."""
    jobs = [make_job(i).model_copy(update={"created_at": f"2026-01-01T00:00:0{i}+00:00"}) for i in range(3)]
    for job in jobs:
        adapters.store.create(job)
    ids, sizes = _all_pages(adapters.store, JobQuery("acme", limit=1))
    assert ids == [job.id for job in reversed(jobs)] and sizes == [1, 1, 1]


def test_a_large_payload_and_result_are_claim_checked_and_read_back_whole(adapters):
    job = make_job(1, payload=big())
    adapters.store.create(job)
    assert adapters.store.get(job.id, mark_gone=False).payload == big()
    assert adapters.blobs.get(f"jobs/{job.id}/payload.json")  # in the blob store, not the record
    size = len(adapters.blobs.get(f"jobs/{job.id}/payload.json"))
    listed = adapters.store.get_many([job.id])[job.id]
    assert listed.payload == {"claim_check": {"bytes": size}}  # listings do not fetch the objects
    assert adapters.store.list_jobs(JobQuery("acme")).jobs[0].payload == {"claim_check": {"bytes": size}}
    current = start(adapters.store, job)
    done = adapters.store.apply(current, JobStatus.RUNNING, ChangeSet({"status": JobStatus.COMPLETED, "result": big(500)}))
    assert done.result == big(500) and adapters.store.get(job.id, mark_gone=False).result == big(500)
    assert adapters.blobs.get(f"jobs/{job.id}/result-0001.json")  # keyed by the attempt that wrote it
    small = make_job(2, payload={"n": 2})
    adapters.store.create(small)
    with pytest.raises(BlobNotFoundError):
        adapters.blobs.get(f"jobs/{small.id}/payload.json")


def test_a_payload_past_the_records_size_is_stored_by_its_claim_check(adapters):
    """The claim-check is what lets a payload larger than a record (400 KB) be stored at all:
    the record keeps where its object is instead of its text, and reads it back whole."""
    job = make_job(1, payload=big(400 * 1024))
    adapters.store.create(job)
    assert adapters.store.get(job.id, mark_gone=False) == job


def test_get_fetches_only_the_claim_checked_fields_asked_for(adapters):
    """A read that needs the record, not the objects (whose job it is, its runs, its status),
    asks for no field: it reads no object, and still reads the record when an object is gone."""
    job = running(adapters.store, make_job(1, payload=big()))
    adapters.store.apply(job, JobStatus.RUNNING, ChangeSet({"status": JobStatus.COMPLETED, "result": big(500)}))
    payload_bytes = len(adapters.blobs.get(f"jobs/{job.id}/payload.json"))
    result_bytes = len(adapters.blobs.get(f"jobs/{job.id}/result-0001.json"))
    reads = adapters.blobs.get
    adapters.blobs.get = lambda key: pytest.fail(f"read {key} for a read that asked for no object")
    try:
        record = adapters.store.get(job.id, tenant="acme", fetch=(), mark_gone=False)
    finally:
        adapters.blobs.get = reads
    assert record.payload == {"claim_check": {"bytes": payload_bytes}}
    assert record.result == {"claim_check": {"bytes": result_bytes}}
    assert record.status == JobStatus.COMPLETED and record.tenant == "acme"
    assert adapters.store.get(job.id, tenant="globex", fetch=(), mark_gone=False) is None
    result_only = adapters.store.get(job.id, consistent=False, fetch=("result",), mark_gone=False)
    assert result_only.result == big(500) and result_only.payload == {"claim_check": {"bytes": payload_bytes}}
    adapters.blobs.delete([f"jobs/{job.id}/payload.json"])
    assert adapters.store.get(job.id, fetch=(), mark_gone=False).payload == {"claim_check": {"bytes": payload_bytes}}
    assert adapters.store.get(job.id, fetch=("result",), mark_gone=False).result == big(500)
    with pytest.raises(BlobNotFoundError):
        adapters.store.get(job.id, mark_gone=False)


def test_a_read_that_marks_gone_objects_shows_the_job_as_recorded(adapters):
    """A reader that shows the job (not one that runs it) asks `mark_gone`: an object found
    gone reads as empty and is named in `gone`, the rest of the job as recorded; `gone` is a
    read's, never written back."""
    job = running(adapters.store, make_job(1, payload=big()))
    adapters.store.apply(job, JobStatus.RUNNING, ChangeSet({"status": JobStatus.COMPLETED, "result": big(500),
                                                           "finished_at": "2026-01-01T00:01:00.000Z"}))
    assert adapters.store.get(job.id, mark_gone=True).gone == []
    adapters.blobs.delete([f"jobs/{job.id}/result-0001.json"])
    read = adapters.store.get(job.id, mark_gone=True)
    assert (read.result, read.gone, read.payload) == (None, ["result"], big())
    assert (read.status, read.attempts, read.finished_at) == (JobStatus.COMPLETED, 1, "2026-01-01T00:01:00.000Z")
    assert read.public()["result"] is None and read.public()["gone"] == ["result"]
    adapters.blobs.delete([f"jobs/{job.id}/payload.json"])
    read = adapters.store.get(job.id, consistent=False, tenant="acme", mark_gone=True)
    assert (read.payload, read.result, read.gone) == ({}, None, ["payload", "result"])
    assert read.public()["payload"] is None
    assert adapters.store.get(job.id, fetch=("payload",), mark_gone=True).gone == ["payload"]
    assert adapters.store.get(job.id, fetch=(), mark_gone=True).gone == []  # nothing fetched: nothing found gone
    assert adapters.store.get(job.id, tenant="globex", mark_gone=True) is None
    with pytest.raises(BlobNotFoundError):  # a reader that needs the values still hears of it
        adapters.store.get(job.id, mark_gone=False)
    assert "gone" not in make_job(2).public()


@pytest.mark.parametrize("method", ["get", "apply_expected"])
def test_a_read_of_objects_says_whether_a_gone_one_raises(adapters, method):
    """`mark_gone` has no default, on the port and on each adapter: a reader that forgets to
    say what an object gone means to it (shown empty, or an error) is a TypeError at once,
    not a BlobNotFoundError the day a bucket rule deletes an object."""
    from chalicelib.ports import JobStore

    for signature in (inspect.signature(getattr(JobStore, method)), inspect.signature(getattr(adapters.store, method))):
        parameter = signature.parameters["mark_gone"]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
        assert parameter.default is inspect.Parameter.empty


def test_apply_expected_that_marks_gone_objects_answers_a_landed_write(adapters):
    """The write lands whatever became of the job's objects; with `mark_gone` its answer shows
    the job as written, the gone object named, instead of BlobNotFoundError after the write."""
    job = running(adapters.store, make_job(1, payload=big()))
    adapters.blobs.delete([f"jobs/{job.id}/payload.json"])
    expected = Expectation(equal={"status": JobStatus.RUNNING, "cancel_requested": False})
    with pytest.raises(BlobNotFoundError):
        adapters.store.apply_expected(job.id, "acme", expected, ChangeSet({"cancel_requested": True}), mark_gone=False)
    assert adapters.store.get(job.id, fetch=(), mark_gone=False).cancel_requested  # written before the object was read
    written = adapters.store.apply_expected(job.id, "acme", Expectation(equal={"status": JobStatus.RUNNING}),
                                            ChangeSet({"progress": Progress(percent=5)}), mark_gone=True)
    assert written.applied and written.job.cancel_requested and written.job.gone == ["payload"]
    assert written.job.progress.percent == 5
    refused = adapters.store.apply_expected(job.id, "acme", expected, ChangeSet({"cancel_requested": True}),
                                            mark_gone=True)
    assert not refused.applied and refused.job.gone == ["payload"] and refused.job.payload == {}
    stored = adapters.store.get(job.id, fetch=(), mark_gone=False)
    assert stored.gone == [] and stored.version == written.job.version


def test_apply_on_a_job_read_with_a_gone_object_answers_it_still_gone(adapters):
    """A queued job's cancel reads it (`mark_gone`) and writes with `apply`: the answer is the job
    as read with the write's changes, its gone payload still null and named in `gone`, on both
    adapters (the in-memory one answered the payload whole from its own memory)."""
    job = make_job(1, payload=big())
    adapters.store.create(job)
    adapters.blobs.delete([f"jobs/{job.id}/payload.json"])
    read = adapters.store.get(job.id, mark_gone=True)
    written = adapters.store.apply(read, JobStatus.QUEUED, ChangeSet({"cancel_requested": True}))
    assert (written.gone, written.payload, written.cancel_requested) == (["payload"], {}, True)
    assert written.public()["payload"] is None and written.version == job.version + 1
    assert adapters.store.get(job.id, fetch=(), mark_gone=False).gone == []  # a read's, never stored


@pytest.mark.parametrize("gone", [None, REMOVE], ids=["none", "remove"])
def test_a_claim_checked_result_written_again_as_nothing_reads_back_as_nothing(adapters, gone):
    job = running(adapters.store, make_job(1))
    done = adapters.store.apply(job, JobStatus.RUNNING, ChangeSet({"result": big(500)}))
    assert adapters.store.get(job.id, mark_gone=False).result == big(500)
    cleared = adapters.store.apply(done, JobStatus.RUNNING, ChangeSet({"result": gone}))
    assert cleared.result is None
    assert adapters.store.get(job.id, mark_gone=False).result is None
    assert adapters.store.get_many([job.id])[job.id].result is None


def test_due_lists_unfinished_jobs_due_by_now_earliest_first(adapters):
    """And a failed job still owing its dead letter: the lifecycle leaves a due time on no other
    finished job."""
    now = "2026-01-01T12:00:00.000Z"
    late = make_job(1, due_at="2026-01-01T11:00:00.000Z")
    later = make_job(2, due_at="2026-01-01T11:30:00.000Z", payload=big())
    future = make_job(3, due_at="2026-01-01T13:00:00.000Z")
    finished = make_job(4, status=JobStatus.COMPLETED, finished_at="2026-01-01T10:00:00.000Z")
    owing = make_job(6, status=JobStatus.FAILED, due_at="2026-01-01T11:45:00.000Z",
                     finished_at="2026-01-01T09:45:00.000Z", dead_letter_owed=1)
    for job in (later, future, late, finished, make_job(5), owing):
        adapters.store.create(job)
    due = adapters.store.due(now, 10).jobs
    assert [j.id for j in due] == [late.id, later.id, owing.id]
    assert due[2].status == JobStatus.FAILED and due[2].dead_letter_owed == 1
    adapters.store.apply(owing, JobStatus.FAILED, ChangeSet({"dead_letter_owed": REMOVE, "due_at": REMOVE}))
    due = adapters.store.due(now, 10).jobs
    assert [j.id for j in due] == [late.id, later.id]
    assert due[0] == late and due[1].payload == adapters.store.get_many([later.id])[later.id].payload
    assert [j.id for j in adapters.store.due(now, 1).jobs] == [late.id]
    # a job leaves the listing when its due time is removed, and moves when it changes
    adapters.store.apply(late, JobStatus.QUEUED, ChangeSet({"due_at": REMOVE}))
    adapters.store.apply(future, JobStatus.QUEUED, ChangeSet({"due_at": "2026-01-01T09:00:00.000Z"}))
    assert [j.id for j in adapters.store.due(now, 10).jobs] == [future.id, later.id]


def test_due_pages_through_every_due_job_once_whatever_is_written_meanwhile(adapters):
    """Jobs due at the same moment sit in different shards of the index; a page ends among
    them. Paging on from each page's cursor reads every due job once, in order, even when the
    jobs read are moved (a resend's later due time) or finished before the next page is read."""
    now = "2026-01-01T12:00:00.000Z"
    jobs = [make_job(i, due_at=f"2026-01-01T11:00:0{i % 3}.000Z") for i in range(23)]
    for job in jobs:
        adapters.store.create(job)
    adapters.store.create(make_job(99, due_at="2026-01-01T12:00:00.001Z"))  # not yet due
    expected = [j.id for j in sorted(jobs, key=lambda j: (j.due_at, j.id))]
    seen: list[str] = []
    after = None
    for _ in range(20):
        page = adapters.store.due(now, 5, after)
        assert len(page.jobs) <= 5
        seen += [j.id for j in page.jobs]
        for n, job in enumerate(page.jobs):  # what a pass does to them before its next page
            changes = {"due_at": "2026-01-01T12:30:00.000Z"} if n % 2 else {"status": JobStatus.CANCELED,
                                                                             "due_at": REMOVE}
            adapters.store.apply(job, JobStatus.QUEUED, ChangeSet(changes))
        if page.cursor is None:
            break
        after = page.cursor
    assert seen == expected
    assert adapters.store.due(now, 5).jobs == [] and adapters.store.due(now, 5).cursor is None


def test_due_pages_on_from_its_cursor_through_jobs_of_one_shard_left_where_they_are(adapters):
    """Due jobs that all sit in one shard of the DynamoDB index, none of them moved between
    pages: each page goes on after the previous one's cursor (never from the start, never the
    cursor's own job again), its rest past a full page is never taken for the end of the
    listing, and the page that ends the listing has no cursor, even when it is full."""
    from chalicelib.adapters.dynamodb_items import due_keys

    now = "2026-01-01T12:00:00.000Z"
    same_shard = [i for i in range(200) if due_keys(make_job(i).id, now)[0] == "DUE#0"][:7]
    jobs = [make_job(i, due_at=f"2026-01-01T11:00:0{n}.000Z") for n, i in enumerate(same_shard)]
    for job in jobs:
        adapters.store.create(job)
    seen, sizes, after = [], [], None
    for _ in range(5):
        page = adapters.store.due(now, 3, after)
        seen += [j.id for j in page.jobs]
        sizes.append(len(page.jobs))
        if page.cursor is None:
            break
        after = page.cursor
    assert seen == [j.id for j in jobs] and sizes == [3, 3, 1]
    whole = adapters.store.due(now, len(jobs))
    assert [j.id for j in whole.jobs] == [j.id for j in jobs] and whole.cursor is None


def test_jobs_moved_to_one_due_time_are_paged_through_one_by_one(adapters):
    """A due time a write moves is keyed by its job, as a created job's: two jobs moved to the
    same moment are two places, each read once."""
    now = "2026-01-01T12:00:00.000Z"
    jobs = [make_job(i, due_at="2026-01-01T13:00:00.000Z") for i in (1, 2)]
    for job in jobs:
        adapters.store.create(job)
        adapters.store.apply(job, JobStatus.QUEUED, ChangeSet({"due_at": "2026-01-01T11:00:00.000Z"}))
    first = adapters.store.due(now, 1)
    second = adapters.store.due(now, 1, first.cursor)
    assert [j.id for j in first.jobs + second.jobs] == [j.id for j in jobs] and second.cursor is None


def test_a_job_due_at_the_very_moment_asked_is_due(adapters):
    now = "2026-01-01T12:00:00.000Z"
    job = make_job(1, due_at=now)
    adapters.store.create(job)
    assert [j.id for j in adapters.store.due(now, 10).jobs] == [job.id]
    assert adapters.store.due("2026-01-01T11:59:59.999Z", 10).jobs == []


def test_no_listing_reaches_into_another_tenants_keys(adapters):
    adapters.store.create(make_job(1))
    for query in (JobQuery("acme#Y#demo.steps"), JobQuery("acme", type="demo.steps#S#queued"), JobQuery("acme\n")):
        with pytest.raises(InvalidRequestError):
            adapters.store.list_jobs(query)


def test_count_unfinished_counts_a_tenants_queued_running_and_retrying_jobs_up_to_a_bound(adapters):
    store = adapters.store
    for i in range(3):
        store.create(make_job(i))
    running(store, make_job(3))
    done = running(store, make_job(4))
    store.apply(done, JobStatus.RUNNING, ChangeSet({"status": JobStatus.COMPLETED}))
    store.create(make_job(5, status=JobStatus.RETRYING))
    store.create(make_job(6, tenant="globex"))
    assert store.count_unfinished("acme", 100) == 5
    assert store.count_unfinished("acme", 2) == 2
    assert store.count_unfinished("globex", 100) == 1
    assert store.count_unfinished("initech", 100) == 0


@pytest.mark.parametrize("query", [JobQuery("acme", limit=10), JobQuery("acme", status=JobStatus.QUEUED, limit=10),
                                   JobQuery("acme", status=JobStatus.QUEUED, type="demo.steps", limit=10)])
def test_a_page_ends_before_the_job_that_would_pass_its_answer_bytes(adapters, query):
    """A page holds at most `limit` jobs and at most `answer_bytes` of them as the API answers
    them (Lambda returns 6 MB): it ends early, at least one job in it, and its cursor goes on
    from the job it ended before, so every job comes once."""
    jobs = [make_job(i, payload={"pad": "é" * 30}) for i in range(7)]
    for job in jobs:
        adapters.store.create(job)
    one = answer_bytes(adapters.store.get(jobs[0].id, mark_gone=False).public())
    query = replace(query, answer_bytes=3 * one + one // 2)
    ids, sizes = [], []
    while True:
        page = adapters.store.list_jobs(query)
        assert sum(answer_bytes(j.public()) for j in page.jobs) <= query.answer_bytes
        ids += [j.id for j in page.jobs]
        sizes.append(len(page.jobs))
        if page.cursor is None:
            break
        query = replace(query, cursor=page.cursor)
    assert ids == [j.id for j in reversed(jobs)] and sizes == [3, 3, 1]
    tight = adapters.store.list_jobs(replace(query, cursor=None, answer_bytes=1))
    assert len(tight.jobs) == 1 and tight.cursor  # a job larger than the bound still has its page


def test_a_cursor_names_a_position_a_job_of_the_listing_could_hold(adapters):
    """A cursor of the right listing whose position is no job's (an index sort key past
    DynamoDB's 1,024 bytes, a lone surrogate, another job's id beside the table key, no time)
    is refused like any other: DynamoDB refuses such a start key, which reached the client as
    503 store_unavailable instead of 400."""
    for i in range(3):
        adapters.store.create(make_job(i))
    cursor = adapters.store.list_jobs(JobQuery("acme", limit=1)).cursor
    plain = json.loads(base64.urlsafe_b64decode(cursor))
    other = "00000000-0000-4000-8000-000000000777"
    if isinstance(plain, dict):  # DynamoDB: the index's and the table's keys
        time, job_id = plain["gsi1sk"].split("#")
        reshaped = [{**plain, "gsi1sk": f"{time}#{job_id}" + "x" * 1100},
                    {**plain, "gsi1sk": f"{time}#{other}"},
                    {**plain, "gsi1sk": f"later#{job_id}"},
                    {**plain, "gsi1sk": f"{time[:11]}{'0' * 1100}Z#{job_id}"},
                    {**plain, "pk": "JOB#\ud800", "gsi1sk": f"{time}#\ud800"}]
    else:  # in memory: listing, created_at, id
        partition, time, job_id = plain
        reshaped = [[partition, time + "x" * 1100, job_id], [partition, "later", job_id],
                    [partition, f"{time[:11]}{'0' * 1100}Z", job_id],
                    [partition, time, "\ud800"], [partition, time, "x" * 1100]]
    for value in reshaped:
        with pytest.raises(InvalidRequestError, match="cursor is not valid"):
            adapters.store.list_jobs(JobQuery("acme", limit=1, cursor=_cursor(json.dumps(value))))


def test_due_lists_every_due_job_whatever_the_size_of_their_records(adapters):
    """A Query answers at most 1 MB, and says where it stopped: a shard of the due index whose
    jobs' records are large (a progress message filling them) may answer a few of them and that
    key. The page reads on in that shard rather than take the few for all it holds, so no due
    job is passed by."""
    now = "2026-01-01T12:00:00.000Z"
    jobs = [make_job(i, due_at=f"2026-01-01T11:{i // 60:02d}:{i % 60:02d}.000Z",
                     progress=Progress(percent=5, message="m" * 300_000)) for i in range(32)]
    for job in jobs:
        adapters.store.create(job)
    page = adapters.store.due(now, 100)
    assert [j.id for j in page.jobs] == [j.id for j in jobs] and page.cursor is None
