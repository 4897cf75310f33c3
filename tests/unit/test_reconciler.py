"""The reconciler over the in-memory adapters: nothing stays queued or running for good."""
from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.adapters.memory import InMemoryQueueOperations
from chalicelib.domain.errors import InvalidRequestError
from chalicelib.domain.job import isoformat
from chalicelib.domain.status import JobStatus
from chalicelib.defaults import DISPATCH_GRACE_S, MAX_SCHEDULE_S, SQS_MAX_DELAY_S
from chalicelib.ports import JobMessage
from chalicelib.reconciler import Reconciler

STEPS = {"steps": 2, "step_ms": 0}


@pytest.fixture
def reconciler(lifecycle, queue):
    return Reconciler(lifecycle, InMemoryQueueOperations(queue))


def submit(lifecycle, **extra):
    return lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS, **extra)


def test_a_lost_message_is_sent_again_once_the_job_is_overdue(lifecycle, queue, clock, reconciler):
    job = submit(lifecycle, delay_seconds=15)
    queue.drain()  # the message is lost (a purge)
    clock.advance(15 + DISPATCH_GRACE_S - 1)
    assert reconciler.run_pass().counts == {}
    clock.advance(2)
    assert reconciler.run_pass().counts == {"redispatched": 1}
    assert queue.drain() == [JobMessage(job.id, 1)]
    assert reconciler.run_pass().counts == {}, "one resend per due time"
    clock.advance(2 * DISPATCH_GRACE_S)
    assert reconciler.run_pass().counts == {"redispatched": 1}, "the wait doubles after each resend"
    claim = lifecycle.claim(queue.drain()[0])
    assert claim.job.status == JobStatus.RUNNING
    assert reconciler.run_pass().counts == {}


def test_a_claimed_job_is_left_alone_until_its_lease_ends(lifecycle, queue, clock, reconciler, store):
    job = submit(lifecycle)
    running = lifecycle.claim(queue.drain()[0]).job
    clock.advance(running.timeout_s + 29)
    assert reconciler.run_pass().counts == {}
    clock.advance(2)
    assert reconciler.run_pass().counts == {"lease_expired": 1}
    after = store.get(job.id)
    assert after.status == JobStatus.RETRYING and after.error.code == "worker_lost"
    assert [m.attempt for m in queue.drain()] == [2]


def test_a_dead_lettered_message_fails_its_queued_job(lifecycle, queue, reconciler, store):
    job = submit(lifecycle)
    other = submit(lifecycle)
    queue.dead.append((queue.drain()[0], {}))  # SQS's redrive policy parked it: no attempt ran
    result = reconciler.run_pass()
    assert result.counts == {"dead_lettered": 1}
    failed = store.get(job.id)
    assert failed.status == JobStatus.FAILED and failed.error.code == "dead_lettered"
    assert store.get(other.id).status == JobStatus.QUEUED
    assert reconciler.run_pass().counts == {}, "a failed job is not failed again"


def test_a_dead_letter_of_an_earlier_attempt_does_not_fail_the_retry(lifecycle, queue, reconciler, store, clock):
    from chalicelib.domain.job import JobErrorInfo

    job = submit(lifecycle)
    running = lifecycle.claim(queue.drain()[0]).job
    lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="x"), retryable=True)
    queue.dead.append((JobMessage(job.id, 1), {}))
    assert reconciler.run_pass().counts == {}
    assert store.get(job.id).status == JobStatus.RETRYING


def test_a_long_schedule_is_held_and_released_within_sqs_delay(lifecycle, queue, clock, reconciler, store):
    job = submit(lifecycle, delay_seconds=3600)
    assert queue.sent == [] and job.not_before == isoformat(clock.now + timedelta(seconds=3600))
    clock.advance(3600 - SQS_MAX_DELAY_S - 1)
    assert reconciler.run_pass().counts == {}
    clock.advance(61)
    assert reconciler.run_pass().counts == {"released": 1}
    (message, _, delay), = queue.sent
    assert message == JobMessage(job.id, 1) and delay == SQS_MAX_DELAY_S - 60
    queue.drain()
    early = lifecycle.claim(JobMessage(job.id, 1))
    assert early.outcome.value == "defer" and early.retry_after_s == SQS_MAX_DELAY_S - 60


def test_a_held_job_can_be_canceled_and_then_never_runs(lifecycle, queue, clock, reconciler, store):
    job = submit(lifecycle, run_at=clock.now + timedelta(days=3))
    assert lifecycle.cancel("acme", job.id).status == JobStatus.CANCELED
    clock.advance(4 * 86400)
    assert reconciler.run_pass().counts == {} and queue.sent == []
    assert store.due(isoformat(clock.now), 10) == []


def test_schedules_are_bounded(lifecycle, clock):
    with pytest.raises(InvalidRequestError):
        submit(lifecycle, delay_seconds=MAX_SCHEDULE_S + 1)
    with pytest.raises(InvalidRequestError):
        submit(lifecycle, delay_seconds=5, run_at=clock.now)
    past = submit(lifecycle, run_at=clock.now - timedelta(hours=1))
    assert past.not_before == isoformat(clock.now)


def test_a_pass_is_bounded_and_takes_the_earliest_first(lifecycle, queue, clock):
    jobs = [submit(lifecycle) for _ in range(5)]
    queue.drain()
    clock.advance(DISPATCH_GRACE_S + 1)
    result = Reconciler(lifecycle, None, due_per_pass=3).run_pass()
    assert result.counts == {"redispatched": 3}
    # all were due at the same time: the index orders them by id after the due time
    assert [m.job_id for m in queue.drain()] == sorted(j.id for j in jobs)[:3]
    assert Reconciler(lifecycle, None, due_per_pass=3).run_pass().counts == {"redispatched": 2}
