"""Jobs that nothing else would end or settle, ended by the reconciler: on moto with the real adapters."""
from __future__ import annotations

import json

import pytest

from chalicelib import composition
from chalicelib.defaults import LEASE_GRACE_S, MAX_EVENT_TEXT_CHARS, MAX_PROGRESS_MESSAGE_CHARS, OWED_LETTER_WAIT_S
from chalicelib.domain.errors import DeadLetterOwedError, ProgressRejectedError, QueueUnavailableError
from chalicelib.domain.job import JobErrorInfo
from chalicelib.domain.status import JobStatus
from chalicelib.lifecycle import JobLifecycle
from chalicelib.ports import JobMessage
from chalicelib.reconciler import Reconciler
from tests.support.clocks import SteppedClock as Clock

STEPS = {"steps": 2, "step_ms": 0}
# Progress in Russian: two bytes a character in UTF-8, so 300,000 characters may take 600 KB.
TEXT = "я"


def test_a_running_job_whose_progress_filled_its_record_still_ends_when_its_lease_expires(aws):
    """A handler's progress message may hold 300,000 characters and the store accepts any report
    that fits the 400 KB record; a handler that grows its message until a report is refused
    leaves the record with a few bytes to spare. Its worker then dies: the worker_lost write
    (status, error, not_before, ...) does not fit beside the full progress. It is written again
    with the progress message cut to what events carry, so the job is retried, not left
    running for good."""
    services = composition.container()
    clock = Clock()
    lifecycle = JobLifecycle(services.store, services.queue, services.registry, clock=clock)

    def running_job():
        job = lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS)
        claim = lifecycle.claim(JobMessage(job.id, 1, tenant=job.tenant, timeout_s=job.timeout_s))
        assert claim.job.status == JobStatus.RUNNING
        return claim.job

    # The longest progress message the store accepts for a job in this state (each probe on a
    # job of its own): what a handler appending to its message ends with once a report is refused.
    fits, too_long = 0, MAX_PROGRESS_MESSAGE_CHARS + 1
    while too_long - fits > 1:
        length = (fits + too_long) // 2
        try:
            lifecycle.report_progress(running_job(), 50, message=TEXT * length)
            fits = length
        except ProgressRejectedError:
            too_long = length
    assert 0 < fits <= MAX_PROGRESS_MESSAGE_CHARS, "a report within its bounds fills the record"

    job = running_job()
    lifecycle.report_progress(job, 50, message=TEXT * fits)  # accepted: the record is nearly full
    clock.advance(job.timeout_s + LEASE_GRACE_S + 1)  # the worker died; its lease is over

    reconciler = Reconciler(lifecycle, services.queue_operations)
    passes = [reconciler.run_pass() for _ in range(3)]
    after = services.store.get(job.id, mark_gone=False)
    assert after.status == JobStatus.RETRYING and after.error.code == "worker_lost", (
        f"job {job.id} is {after.status.value} 3 passes after its lease ended; the passes' errors: "
        f"{[e for p in passes for e in p.errors if job.id in e]}"
    )
    assert not [e for p in passes for e in p.errors if job.id in e], "ended in the first pass, without an error"
    assert after.progress.message == TEXT * (MAX_EVENT_TEXT_CHARS - 1) + "…"


def test_a_dead_letter_owed_by_a_job_whose_message_was_then_lost_is_parked_by_the_reconciler(aws, monkeypatch):
    """The job failed for good while its dead-letter queue did not answer: it reads `failed` and
    owes its letter, which the attempt's message parks when it comes back. That message is lost
    (a purge): the job stays in the due index, and the reconciler parks the letter once the
    message had its time to come back, once, on moto with the real adapters."""
    services = composition.container()
    clock = Clock()
    lifecycle = JobLifecycle(services.store, services.queue, services.registry, clock=clock)
    job = lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS)
    running = lifecycle.claim(JobMessage(job.id, 1, tenant=job.tenant, timeout_s=job.timeout_s)).job

    def refused(*args, **kwargs):
        raise QueueUnavailableError("could not dead-letter: the queue did not answer")

    with monkeypatch.context() as down:
        down.setattr(services.queue, "dead_letter", refused)
        with pytest.raises(DeadLetterOwedError):
            lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=False)
    aws["sqs"].purge_queue(QueueUrl=aws["jobs_url"])  # the attempt's message is lost

    reconciler = Reconciler(lifecycle, services.queue_operations)
    assert reconciler.run_pass().counts == {}
    clock.advance(OWED_LETTER_WAIT_S + 1)
    assert reconciler.run_pass().counts == {"owed_letter_parked": 1}
    letters = aws["sqs"].receive_message(QueueUrl=aws["dlq_url"], MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["job_id"] for m in letters] == [job.id]
    after = services.store.get(job.id, mark_gone=False)
    assert after.status == JobStatus.FAILED and after.dead_letter_owed is None and after.due_at is None
    clock.advance(OWED_LETTER_WAIT_S + 1)
    assert reconciler.run_pass().counts == {}, "parked once: the job left the due index"


class _Received:
    """Queue operations whose jobs queues a worker is receiving (a message in flight), as on a
    stack whose workers run: what waits there is not waited for as a paused queue's would be."""

    def __init__(self, operations) -> None:
        self._operations = operations

    def queue_depth(self, priority):
        return {**self._operations.queue_depth(priority), "in_flight": 1}

    def __getattr__(self, name):
        return getattr(self._operations, name)


def test_a_retrying_job_whose_record_is_full_is_still_sent_again_and_ended(aws):
    """A worker died on a job whose progress left its record as full as the `worker_lost` write
    still fits in, progress message kept whole: the job is retrying with a few bytes to spare.
    Its next attempt's message is then lost. Each write the reconciler makes to it (the resend,
    another resend, and failing it `dead_lettered` when its letter turns up) still lands: none
    may leave it retrying for good."""
    services = composition.container()
    clock = Clock()
    lifecycle = JobLifecycle(services.store, services.queue, services.registry, clock=clock)

    def retrying_job(length):
        """A job whose worker died after reporting `length` characters, and whether its
        `worker_lost` write kept the message whole (None: the report itself was refused)."""
        job = lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS)
        job = lifecycle.claim(JobMessage(job.id, 1, tenant=job.tenant, timeout_s=job.timeout_s)).job
        try:
            lifecycle.report_progress(job, 50, message=TEXT * length)
        except ProgressRejectedError:
            return job, None
        clock.advance(job.timeout_s + LEASE_GRACE_S + 1)
        lifecycle.reconcile(services.store.get(job.id, mark_gone=False))
        after = services.store.get(job.id, mark_gone=False)
        assert after.status == JobStatus.RETRYING, after.status
        return after, after.progress.message == TEXT * length

    whole, cut = 0, MAX_PROGRESS_MESSAGE_CHARS + 1
    while cut - whole > 1:
        length = (whole + cut) // 2
        if retrying_job(length)[1]:
            whole = length
        else:
            cut = length
    job, kept = retrying_job(whole)
    assert kept and whole > 100_000, "the worker_lost write fits beside this much progress"
    aws["sqs"].purge_queue(QueueUrl=aws["jobs_url"])  # the next attempt's message is lost

    reconciler = Reconciler(lifecycle, _Received(services.queue_operations))
    for resend in (1, 2):
        clock.advance(3600)
        result = reconciler.run_pass()
        assert not [e for e in result.errors if job.id in e], result.errors
        after = services.store.get(job.id, mark_gone=False)
        assert after.status == JobStatus.RETRYING and after.dispatches == 1 + resend
    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=json.dumps(JobMessage(job.id, 2).to_body()))
    result = reconciler.run_pass()
    assert not [e for e in result.errors if job.id in e], result.errors
    after = services.store.get(job.id, mark_gone=False)
    assert after.status == JobStatus.FAILED and after.error.code == "dead_lettered", after.error
    assert after.progress.message == TEXT * (MAX_EVENT_TEXT_CHARS - 1) + "…", "room made by cutting the message"


def test_a_pass_takes_every_due_job_page_after_page_over_the_sharded_index(aws):
    """More jobs are due than one page holds, spread over the index's shards: one pass pages
    through all of them, each resent once, and the next pass finds none due."""
    services = composition.container()
    clock = Clock()
    lifecycle = JobLifecycle(services.store, services.queue, services.registry, clock=clock)
    jobs = [lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS) for _ in range(11)]
    aws["sqs"].purge_queue(QueueUrl=aws["jobs_url"])
    clock.advance(3600)

    reconciler = Reconciler(lifecycle, services.queue_operations, due_page=3)
    assert reconciler.run_pass().counts == {"redispatched": 11}
    assert reconciler.run_pass().counts == {}
    sent = []
    for _ in range(5):
        sent += aws["sqs"].receive_message(QueueUrl=aws["jobs_url"], MaxNumberOfMessages=10).get("Messages", [])
    assert sorted(json.loads(m["Body"])["job_id"] for m in sent) == sorted(j.id for j in jobs)


def test_a_letter_of_a_removed_job_is_deleted_and_counted_by_one_of_two_overlapping_passes(aws):
    """Two passes overlap (a slow one and the schedule's next): both read the DLQ's letters
    before either deleted the letter of a job retention removed. SQS answers a delete by an
    earlier receipt, or of a letter already deleted, as done: each pass counted it, two
    `orphaned_letter_deleted` for one letter. The letters a pass reads are its own until it
    has decided on them: the other pass does not read that one, and it is counted once."""
    services = composition.container()
    lifecycle = JobLifecycle(services.store, services.queue, services.registry, clock=Clock())
    removed = "00000000-0000-0000-0000-000000000621"
    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=json.dumps(JobMessage(removed, 1).to_body()))
    second = Reconciler(lifecycle, services.queue_operations)
    counts = []

    class Overlapped:
        """The first pass's queue operations: the second pass runs whole just before its delete."""

        def __getattr__(self, name):
            return getattr(services.queue_operations, name)

        def delete_dead_letters(self, priority, letters):
            counts.append(second.run_pass().counts)
            return services.queue_operations.delete_dead_letters(priority, letters)

    counts.append(Reconciler(lifecycle, Overlapped()).run_pass().counts)
    assert sum(c["orphaned_letter_deleted"] for c in counts) == 1, counts
    assert aws["sqs"].get_queue_attributes(QueueUrl=aws["dlq_url"], AttributeNames=["All"])["Attributes"][
        "ApproximateNumberOfMessages"] == "0"
