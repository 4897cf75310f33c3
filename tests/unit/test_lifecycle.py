import pytest

from chalicelib.domain.errors import (
    JobAlreadyFinishedError,
    JobNotFoundError,
    ProgressRejectedError,
    StaleJobError,
)
from chalicelib.domain.status import JobStatus
from chalicelib.domain.job import isoformat
from chalicelib.lifecycle import ClaimOutcome, ReconcileOutcome, retry_delay_s
from chalicelib.ports import ChangeSet, JobMessage

STEPS = {"steps": 4, "step_ms": 0}


def submit(lifecycle, **overrides):
    args = {"tenant": "acme", "user": "ann", "type": "demo.steps", "payload": STEPS, **overrides}
    return lifecycle.submit(**args)


def test_submit_stores_a_queued_job_and_enqueues_attempt_one(lifecycle, store, queue):
    job = submit(lifecycle, scope="project-1", delay_seconds=30)
    assert job.status == JobStatus.QUEUED
    assert job.version == 1 and job.attempts == 0 and job.max_attempts == 3
    assert store.get(job.id) == job
    assert queue.sent == [(JobMessage(job.id, 1), "normal", 30)]


def test_submit_that_cannot_enqueue_keeps_the_job_for_the_reconciler(lifecycle, store, queue, clock):
    queue.fail_sends = True
    job = submit(lifecycle)
    assert store.get(job.id).status == JobStatus.QUEUED and queue.sent == []
    assert store.due(isoformat(clock.now), 10) == []
    queue.fail_sends = False
    clock.advance(lifecycle.dispatch_grace_s)
    assert [j.id for j in store.due(isoformat(clock.now), 10)] == [job.id]
    assert lifecycle.reconcile(store.get(job.id)) == ReconcileOutcome.REDISPATCHED
    assert queue.drain() == [JobMessage(job.id, 1)]


def test_another_tenant_sees_not_found(lifecycle):
    job = submit(lifecycle)
    with pytest.raises(JobNotFoundError):
        lifecycle.get("other", job.id)
    with pytest.raises(JobNotFoundError):
        lifecycle.cancel("other", job.id)


def test_claim_takes_the_attempt_once(lifecycle, store):
    job = submit(lifecycle)
    first = lifecycle.claim(JobMessage(job.id, 1))
    assert first.outcome == ClaimOutcome.RUN
    assert first.job.status == JobStatus.RUNNING and first.job.attempts == 1
    duplicate = lifecycle.claim(JobMessage(job.id, 1))
    assert duplicate.outcome == ClaimOutcome.DEFER
    assert [r.attempt for r in store.runs(job.id)] == [1]


def test_expired_lease_is_taken_over_as_a_lost_worker(lifecycle, queue, clock):
    job = submit(lifecycle)
    queue.drain()
    lifecycle.claim(JobMessage(job.id, 1))
    clock.advance(job.timeout_s + 31)
    takeover = lifecycle.claim(JobMessage(job.id, 1))
    assert takeover.outcome == ClaimOutcome.SKIP
    assert takeover.job.status == JobStatus.RETRYING
    assert takeover.job.error.code == "worker_lost"
    (message, _, delay), = queue.sent
    assert message == JobMessage(job.id, 2) and 1 <= delay <= 900


def test_stale_version_write_is_refused(lifecycle, store):
    job = submit(lifecycle)
    lifecycle.claim(JobMessage(job.id, 1))
    with pytest.raises(StaleJobError):
        store.apply(job, JobStatus.QUEUED, ChangeSet({"status": JobStatus.RUNNING}))


def test_cancel_queued_is_immediate(lifecycle):
    job = submit(lifecycle)
    canceled = lifecycle.cancel("acme", job.id)
    assert canceled.status == JobStatus.CANCELED and canceled.finished_at
    assert lifecycle.claim(JobMessage(job.id, 1)).outcome == ClaimOutcome.SKIP


def test_cancel_running_only_requests_and_finished_is_refused(lifecycle):
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    requested = lifecycle.cancel("acme", job.id)
    assert requested.status == JobStatus.RUNNING and requested.cancel_requested
    canceled = lifecycle.mark_canceled(running)  # stale version: re-read and still applied
    assert canceled.status == JobStatus.CANCELED
    with pytest.raises(JobAlreadyFinishedError):
        lifecycle.cancel("acme", job.id)


def test_progress_is_monotonic_and_clamped(lifecycle):
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    running = lifecycle.report_progress(running, 40, "a", "m")
    assert running.progress.percent == 40 and running.progress.step == "a"
    with pytest.raises(ProgressRejectedError) as info:
        lifecycle.report_progress(running, 10)
    assert "cannot decrease" in info.value.message
    assert lifecycle.report_progress(running, 250).progress.percent == 100


def test_progress_from_a_finished_attempt_is_refused(lifecycle, store):
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    lifecycle.complete(running, {"ok": True})
    with pytest.raises(ProgressRejectedError):
        store.record_progress(job.id, 1, running.progress.model_copy(update={"percent": 100}))


def test_retry_then_fail_and_dead_letter(lifecycle, queue, clock):
    from chalicelib.domain.job import JobErrorInfo

    job = submit(lifecycle)
    queue.drain()
    error = JobErrorInfo(code="boom", message="it broke")
    for attempt in (1, 2):
        clock.advance(900)  # past the retry's backoff
        running = lifecycle.claim(JobMessage(job.id, attempt)).job
        after = lifecycle.fail_attempt(running, error, retryable=True)
        assert after.status == JobStatus.RETRYING
        assert queue.drain() == [JobMessage(job.id, attempt + 1)]
    clock.advance(900)
    running = lifecycle.claim(JobMessage(job.id, 3)).job
    final = lifecycle.fail_attempt(running, error, retryable=True)
    assert final.status == JobStatus.FAILED and final.error.code == "boom"
    assert queue.dead == [(JobMessage(job.id, 3), {"code": "boom", "message": "it broke"})]
    assert [r.status for r in lifecycle.store.runs(job.id)] == [JobStatus.FAILED] * 3


def test_retry_delay_grows_and_is_capped():
    assert 1 <= retry_delay_s(1, base_s=2) <= 2
    assert 8 <= retry_delay_s(4, base_s=2) <= 16
    assert retry_delay_s(30, base_s=2) <= 900


def test_spawned_children_are_linked_and_idempotent_within_an_attempt(lifecycle, store, queue):
    parent = submit(lifecycle, scope="proj")
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    first = lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS)
    again = lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS)
    second = lifecycle.spawn(running, 2, type="demo.steps", payload=STEPS, scope="elsewhere")
    assert first.id == again.id != second.id
    assert first.parent_id == parent.id and first.scope == "proj" and second.scope == "elsewhere"
    assert first.tenant == "acme" and first.user == "ann"
    assert store.get(parent.id).children == [first.id, second.id]
    assert [m.job_id for m, _, _ in queue.sent].count(first.id) == 1
    with pytest.raises(Exception):
        lifecycle.spawn(running, 3, type="nope", payload={})
    assert store.get(parent.id).children == [first.id, second.id]
