"""Nothing holds a job for good: a due job whose reconcile action fails on every pass does not
hold back the jobs due after it, and a record its progress filled still takes its outcome."""
from __future__ import annotations

from chalicelib.defaults import RECONCILE_PASS_MARGIN_S, RECONCILE_RETRY_S
from chalicelib.domain.errors import ProgressRejectedError, StoreUnavailableError
from chalicelib.domain.events import MAX_EVENT_TEXT_CHARS
from chalicelib.domain.job import JobErrorInfo
from chalicelib.domain.progress import MAX_MESSAGE_CHARS
from chalicelib.domain.status import JobStatus
from chalicelib.ports import JobMessage
from chalicelib.reconciler import DUE_PER_PASS, Reconciler

STEPS = {"steps": 2, "step_ms": 0}


def submit(lifecycle, **extra):
    return lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS, **extra)


def test_due_jobs_whose_action_keeps_failing_do_not_starve_the_rest_of_the_index(lifecycle, queue, clock, store,
                                                                                  monkeypatch):
    """A pass reads the DUE_PER_PASS earliest entries of the due index. Jobs whose action raises
    on every pass (a bug, a record that refuses the action's write) are put back
    RECONCILE_RETRY_S, so a job whose message was lost, due after all of them, is still sent
    again within the same pass's successor — and the failing ones keep being tried."""
    stuck = {submit(lifecycle).id for _ in range(DUE_PER_PASS)}
    clock.advance(1)
    lost = submit(lifecycle)
    queue.drain()  # every message is lost (a purge): the reconciler must resend them

    reconcile = lifecycle.reconcile
    tried: list[str] = []

    def fails_for_the_stuck(job):
        if job.id in stuck:
            tried.append(job.id)
            raise StoreUnavailableError(f"could not update job {job.id}")
        return reconcile(job)

    monkeypatch.setattr(lifecycle, "reconcile", fails_for_the_stuck)
    reconciler = Reconciler(lifecycle, None)
    clock.advance(3600)
    first = reconciler.run_pass()
    assert first.counts["errors"] == DUE_PER_PASS and store.get(lost.id).dispatches == 1
    second = reconciler.run_pass()  # the stuck ones were put back: the lost job's turn
    assert second.counts["redispatched"] == 1 and store.get(lost.id).dispatches == 2
    assert all(store.get(i).due_at > store.get(lost.id).created_at for i in stuck)
    clock.advance(RECONCILE_RETRY_S + 1)
    tried.clear()
    reconciler.run_pass()
    reconciler.run_pass()  # the lost job, due again, may take a place in the first
    assert set(tried) == stuck, "the failing jobs are tried again once their wait is over"


def test_a_job_whose_action_fails_is_left_where_it_is_when_the_failed_action_moved_it(lifecycle, queue, clock, store,
                                                                                      monkeypatch):
    """A resend writes the job's next due time before its message: when the send fails, that
    due time stands (put back would find the job changed and leaves it)."""
    job = submit(lifecycle)
    queue.drain()
    clock.advance(3600)

    def send_fails(*_, **__):
        raise StoreUnavailableError("queue down")

    monkeypatch.setattr(lifecycle.queue, "send", send_fails)
    result = Reconciler(lifecycle, None).run_pass()
    assert result.counts == {"errors": 1}
    after = store.get(job.id)
    assert after.dispatches == 2 and after.version == job.version + 1  # the resend's own write, nothing more


def running(lifecycle, queue):
    job = submit(lifecycle)
    claim = lifecycle.claim(JobMessage(job.id, 1, tenant=job.tenant, timeout_s=job.timeout_s))
    assert claim.job.status == JobStatus.RUNNING
    return claim.job


def filled(lifecycle, queue):
    """A running job whose progress message is the longest its record takes."""
    fits, too_long = 0, MAX_MESSAGE_CHARS + 1
    while too_long - fits > 1:
        length = (fits + too_long) // 2
        try:
            lifecycle.report_progress(running(lifecycle, queue), 50, message="я" * length)
            fits = length
        except ProgressRejectedError:
            too_long = length
    return lifecycle.report_progress(running(lifecycle, queue), 50, message="я" * fits)


def test_a_job_whose_progress_filled_its_record_still_completes_cancels_and_fails(lifecycle, queue, store):
    """Every write that ends an attempt or asks it to stop lands on a full record: the progress
    message is cut to what events carry, the rest of the write is as it would have been."""
    done = lifecycle.complete(filled(lifecycle, queue), {"rows": "r" * 30_000})
    assert done.status == JobStatus.COMPLETED and store.get(done.id).result == {"rows": "r" * 30_000}
    assert store.get(done.id).progress.message == "я" * (MAX_EVENT_TEXT_CHARS - 1) + "…"
    asked = lifecycle.cancel("acme", filled(lifecycle, queue).id)
    assert store.get(asked.id).cancel_requested
    failed = lifecycle.fail_attempt(filled(lifecycle, queue), JobErrorInfo(code="boom", message="b" * 2000),
                                    retryable=False)
    assert failed.status == JobStatus.FAILED and store.get(failed.id).error.message == "b" * 2000
    assert store.get(failed.id).progress.message.endswith("…")


def test_a_pass_short_of_time_stops_taking_jobs_and_still_reports(lifecycle, queue, clock, store):
    """A pass takes nothing more once its invocation has less than RECONCILE_PASS_MARGIN_S left:
    it ends and reports instead of being cut off; the next pass takes the rest."""
    ids = [submit(lifecycle).id for _ in range(5)]
    queue.drain()
    clock.advance(3600)
    left = iter([60.0, 60.0, 60.0, RECONCILE_PASS_MARGIN_S - 1])
    result = Reconciler(lifecycle, None).run_pass(time_left_s=lambda: next(left, 0.0))
    assert result.counts == {"redispatched": 3, "out_of_time": 1}
    assert Reconciler(lifecycle, None).run_pass(time_left_s=lambda: 60.0).counts == {"redispatched": 2}
    assert all(store.get(i).dispatches == 2 for i in ids)
