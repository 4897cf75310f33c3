"""Nothing holds a job for good: a due job whose reconcile action fails on every pass does not
hold back the jobs due after it, and a record its progress filled still takes its outcome."""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from chalicelib.defaults import (
    DISPATCH_GRACE_S,
    DUE_PAGE,
    MAX_EVENT_TEXT_CHARS,
    MAX_PROGRESS_MESSAGE_CHARS,
    RECONCILE_PASS_MARGIN_S,
    RECONCILE_RETRY_S,
)
from chalicelib.domain.errors import ProgressRejectedError, QueueUnavailableError, StoreUnavailableError
from chalicelib.domain.job import JobErrorInfo, isoformat
from chalicelib.domain.status import JobStatus
from chalicelib.events.replay import REPLAYED
from chalicelib.ports import JobMessage
from chalicelib.reconciler import Reconciler

STEPS = {"steps": 2, "step_ms": 0}


def submit(lifecycle, **extra):
    return lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS, **extra)


def test_due_jobs_whose_action_keeps_failing_do_not_starve_the_rest_of_the_index(lifecycle, queue, clock, store,
                                                                                  monkeypatch):
    """A pass reads the due index a page (DUE_PAGE) at a time. Jobs whose action raises on every
    pass (a bug, a record that refuses the action's write), a whole page of them, are passed by
    and put back RECONCILE_RETRY_S: a job whose message was lost, due after all of them, is sent
    again in the same pass, the next passes do not spend their time on the failing ones, and
    these are tried again once their wait is over."""
    stuck = {submit(lifecycle).id for _ in range(DUE_PAGE)}
    clock.advance(1)
    lost = submit(lifecycle)
    queue.drain()  # every message is lost (a purge): the reconciler must resend them

    reconcile = lifecycle.reconcile
    tried: list[str] = []

    def fails_for_the_stuck(job, **options):
        if job.id in stuck:
            tried.append(job.id)
            raise StoreUnavailableError(f"could not update job {job.id}")
        return reconcile(job, **options)

    monkeypatch.setattr(lifecycle, "reconcile", fails_for_the_stuck)
    reconciler = Reconciler(lifecycle, None)
    clock.advance(3600)
    first = reconciler.run_pass()
    assert first.counts == {"errors": DUE_PAGE, "redispatched": 1}
    assert store.get(lost.id, mark_gone=False).dispatches == 2
    assert all(store.get(i, mark_gone=False).due_at > store.get(lost.id, mark_gone=False).created_at for i in stuck)
    tried.clear()
    assert reconciler.run_pass().counts == {}, "put back: not tried again at once"
    clock.advance(RECONCILE_RETRY_S + 1)
    reconciler.run_pass()
    assert set(tried) == stuck, "the failing jobs are tried again once their wait is over"


def test_a_job_whose_action_fails_is_left_where_it_is_when_the_failed_action_moved_it(lifecycle, queue, clock, store,
                                                                                      monkeypatch):
    """A resend writes the job's next due time and dispatch before its message: when the send
    fails, the dispatch is taken back in one more write, the due time left as the resend wrote
    it (put back finds the job changed and leaves it)."""
    job = submit(lifecycle)
    queue.drain()
    clock.advance(3600)

    def send_fails(*_, **__):
        raise QueueUnavailableError("queue down")

    monkeypatch.setattr(lifecycle.queue, "send", send_fails)
    result = Reconciler(lifecycle, None).run_pass()
    assert result.counts == {"errors": 1}
    after = store.get(job.id, mark_gone=False)
    assert after.dispatches == job.dispatches and after.version == job.version + 2  # the resend's write, taken back
    assert after.due_at == isoformat(clock.now + timedelta(seconds=DISPATCH_GRACE_S))  # the resend's own wait


def running(lifecycle, queue):
    job = submit(lifecycle)
    claim = lifecycle.claim(JobMessage(job.id, 1, tenant=job.tenant, timeout_s=job.timeout_s))
    assert claim.job.status == JobStatus.RUNNING
    return claim.job


def filled(lifecycle, queue):
    """A running job whose progress message is the longest its record takes."""
    fits, too_long = 0, MAX_PROGRESS_MESSAGE_CHARS + 1
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
    assert done.status == JobStatus.COMPLETED and store.get(done.id, mark_gone=False).result == {"rows": "r" * 30_000}
    assert store.get(done.id, mark_gone=False).progress.message == "я" * (MAX_EVENT_TEXT_CHARS - 1) + "…"
    asked = lifecycle.cancel("acme", filled(lifecycle, queue).id)
    assert store.get(asked.id, mark_gone=False).cancel_requested
    failed = lifecycle.fail_attempt(filled(lifecycle, queue), JobErrorInfo(code="boom", message="b" * 2000),
                                    retryable=False)
    assert failed.status == JobStatus.FAILED and store.get(failed.id, mark_gone=False).error.message == "b" * 2000
    assert store.get(failed.id, mark_gone=False).progress.message.endswith("…")


def test_a_pass_short_of_time_stops_taking_jobs_and_still_reports(lifecycle, queue, clock, store):
    """A pass takes nothing more once its invocation has less than RECONCILE_PASS_MARGIN_S left:
    it ends and reports instead of being cut off; the next pass takes the rest."""
    ids = [submit(lifecycle).id for _ in range(5)]
    queue.drain()
    clock.advance(3600)
    left = iter([60.0] * 5 + [RECONCILE_PASS_MARGIN_S - 1])  # the pass, its page, three jobs
    result = Reconciler(lifecycle, None).run_pass(time_left_s=lambda: next(left, 0.0))
    assert result.counts == {"redispatched": 3, "out_of_time": 1}
    assert Reconciler(lifecycle, None).run_pass(time_left_s=lambda: 60.0).counts == {"redispatched": 2}
    assert all(store.get(i, mark_gone=False).dispatches == 2 for i in ids)


def test_a_job_whose_action_was_cut_unsent_by_the_time_left_is_not_put_back(lifecycle, queue, clock, store,
                                                                              monkeypatch):
    """Out of time, the scheduled function sends no further request: the action under way fails
    with its request unsent, and a put-back would fail the same way, counted as one more error.
    The job stays due as it is, for the next pass."""
    job = submit(lifecycle)
    queue.drain()
    clock.advance(3600)
    left = [60.0]

    def cut(job, **options):
        left[0] = RECONCILE_PASS_MARGIN_S - 1
        raise StoreUnavailableError(f"could not update job {job.id}: UpdateItem not sent")

    monkeypatch.setattr(lifecycle, "reconcile", cut)
    put_back = []
    monkeypatch.setattr(lifecycle, "put_back", put_back.append)
    result = Reconciler(lifecycle, None).run_pass(time_left_s=lambda: left[0])
    assert result.counts == {"errors": 1, "out_of_time": 1}
    assert put_back == [] and store.get(job.id, mark_gone=False).due_at == job.due_at


class _NoFailedBatches:
    """The stream-replay step, seen only as whether the pass got to it, and with how much time."""

    def __init__(self, time_left) -> None:
        self._time_left = time_left
        self.taken_with: list[float] = []

    def take(self, hold_s=None):
        self.taken_with.append(self._time_left())
        return []


class _FailedBatches(_NoFailedBatches):
    """Failed stream batches to replay, `replayed` as the pass replays them; `after_each` is
    called after each replay."""

    def __init__(self, time_left, count: int, after_each=lambda: None) -> None:
        super().__init__(time_left)
        self._count = count
        self._after_each = after_each
        self.replayed: list[str] = []

    def take(self, hold_s=None):
        super().take()
        return [SimpleNamespace(first_sequence=str(i), last_sequence=str(i), condition="RecordAgeExceeded")
                for i in range(self._count)]

    def replay(self, batch) -> str:
        self.replayed.append(batch.first_sequence)
        self._after_each()
        return REPLAYED


@pytest.mark.parametrize("due_page", [DUE_PAGE, 1000], ids=["pages", "one_page"])
def test_a_pass_leaves_what_is_still_due_after_its_budget_and_the_stream_batches_get_their_turn(lifecycle, queue,
                                                                                                clock, store,
                                                                                                due_page):
    """A pass goes through the due index for RECONCILE_DUE_BUDGET_S at most, within a page as
    between pages: it ends inside the schedule's minute instead of running beside the next
    pass, and the failed stream batches (kept by the stream for 24 hours only) are still read
    and replayed, with time to replay them."""
    from chalicelib.defaults import RECONCILE_DUE_BUDGET_S

    ids = [submit(lifecycle).id for _ in range(1000)]
    queue.drain()
    clock.advance(3600)
    spent = [0.0]

    def time_left() -> float:
        spent[0] += 0.1  # each look at the time stands for a job's write and message
        return 120.0 - spent[0]

    replay = _FailedBatches(time_left, 1)
    result = Reconciler(lifecycle, None, replay=replay, due_page=due_page).run_pass(time_left_s=time_left)
    assert result.counts["out_of_time"] == 1 and "errors" not in result.counts
    assert replay.replayed == ["0"] and result.counts[REPLAYED] == 1
    done = result.counts["redispatched"]
    assert RECONCILE_DUE_BUDGET_S * 10 - 10 < done <= RECONCILE_DUE_BUDGET_S * 10
    assert replay.taken_with and replay.taken_with[0] > 120 - RECONCILE_DUE_BUDGET_S - 1
    assert sum(store.get(i, mark_gone=False).dispatches == 2 for i in ids) == done
    spent[0] = 0.0
    assert Reconciler(lifecycle, None, due_page=due_page).run_pass(time_left_s=time_left).counts["redispatched"] == done, (
        "the next pass goes on from the earliest still due")


def test_a_pass_takes_jobs_down_to_its_margin_and_replays_no_batch_past_it(lifecycle, queue, clock):
    """Exactly RECONCILE_PASS_MARGIN_S left is still time for a job; once less is left, the
    failed stream batches not yet replayed wait for the next pass."""
    submit(lifecycle)
    queue.drain()
    clock.advance(3600)
    left = [float(RECONCILE_PASS_MARGIN_S)]
    replay = _FailedBatches(lambda: left[0], 2, after_each=lambda: left.__setitem__(0, RECONCILE_PASS_MARGIN_S - 1))
    result = Reconciler(lifecycle, None, replay=replay).run_pass(time_left_s=lambda: left[0])
    assert result.counts == {"redispatched": 1, REPLAYED: 1, "out_of_time": 1}
    assert replay.replayed == ["0"]


def test_the_due_step_takes_no_job_once_exactly_its_budget_is_spent(lifecycle, queue, clock, store, monkeypatch):
    """The due step reads the index for RECONCILE_DUE_BUDGET_S at most: a job looked at a hair
    before the budget is spent is still taken, and once exactly the budget is spent no more is
    (the margin's twin: exactly RECONCILE_PASS_MARGIN_S left is still time, exactly the
    budget spent is not)."""
    from chalicelib.defaults import RECONCILE_DUE_BUDGET_S

    ids = [submit(lifecycle).id for _ in range(3)]
    queue.drain()
    clock.advance(3600)
    start = 100.0
    left = [start]
    reconcile = lifecycle.reconcile
    after_each = iter([start - RECONCILE_DUE_BUDGET_S + 0.001, start - RECONCILE_DUE_BUDGET_S])

    def acted(job, **options):
        outcome = reconcile(job, **options)
        left[0] = next(after_each)
        return outcome

    monkeypatch.setattr(lifecycle, "reconcile", acted)
    assert start - RECONCILE_DUE_BUDGET_S > RECONCILE_PASS_MARGIN_S
    result = Reconciler(lifecycle, None).run_pass(time_left_s=lambda: left[0])
    assert result.counts == {"redispatched": 2, "out_of_time": 1}
    assert sorted(store.get(i, mark_gone=False).dispatches for i in ids) == [1, 2, 2]


def test_a_job_whose_action_and_put_back_both_fail_is_passed_by_not_read_again(lifecycle, queue, clock, store,
                                                                               monkeypatch):
    """The store refuses the failing job's put-back too: the job stays due where it is, and the
    pass goes on past it through the index's cursor, not back to the start of the index, where
    it would meet the same job until its time ran out."""
    broken = submit(lifecycle)
    clock.advance(1)
    lost = submit(lifecycle)
    queue.drain()
    reconcile, put_back = lifecycle.reconcile, lifecycle.put_back

    def fails_for_the_broken(job, **options):
        if job.id == broken.id:
            raise StoreUnavailableError(f"could not update job {job.id}")
        return reconcile(job, **options)

    def put_back_fails_for_the_broken(job):
        if job.id == broken.id:
            raise StoreUnavailableError(f"could not update job {job.id}")
        return put_back(job)

    monkeypatch.setattr(lifecycle, "reconcile", fails_for_the_broken)
    monkeypatch.setattr(lifecycle, "put_back", put_back_fails_for_the_broken)
    clock.advance(3600)
    spent = [0.0]

    def time_left() -> float:
        spent[0] += 0.1
        return 120.0 - spent[0]

    result = Reconciler(lifecycle, None, due_page=1).run_pass(time_left_s=time_left)
    assert result.counts == {"errors": 2, "redispatched": 1}
    assert store.get(lost.id, mark_gone=False).dispatches == 2


class _DiesOnSend(BaseException):
    """Not a failure the pass catches as a job's: its process ends (its function timed out)."""


def _lost_jobs(lifecycle, queue, clock, n):
    jobs = [submit(lifecycle) for _ in range(n)]
    queue.drain()  # every message lost
    clock.advance(DISPATCH_GRACE_S + 1)
    return jobs


def test_a_pass_whose_page_read_fails_midway_leaves_the_rest_to_the_next_pass(lifecycle, queue, clock, store,
                                                                               monkeypatch):
    """Its first page acted on, the store does not answer the second: the pass ends with the
    error, and the next pass takes every job still due, none twice."""
    jobs = _lost_jobs(lifecycle, queue, clock, 5)
    real, reads = store.due, []

    def due(*args, **kwargs):
        reads.append(args)
        if len(reads) == 2:
            raise StoreUnavailableError("could not read the due jobs")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "due", due)
    first = Reconciler(lifecycle, None, due_page=2).run_pass()
    assert first.counts == {"redispatched": 2, "errors": 1}
    assert Reconciler(lifecycle, None, due_page=2).run_pass().counts == {"redispatched": 3}
    assert sorted(m.job_id for m in queue.drain()) == sorted(j.id for j in jobs), "each sent once"


def test_a_pass_that_dies_between_a_resend_written_and_sent_leaves_that_job_due_again(lifecycle, queue, clock,
                                                                                      store, monkeypatch):
    """The pass's process ends after writing a job's resend and before sending it (the write
    comes first, so two passes send one message): nothing more of that pass happens. The job is
    due again one doubled grace on, and that pass sends it; the other jobs are taken by the
    next pass."""
    jobs = _lost_jobs(lifecycle, queue, clock, 3)
    real = queue.send

    def dies(*args, **kwargs):
        raise _DiesOnSend()

    monkeypatch.setattr(queue, "send", dies)
    with pytest.raises(_DiesOnSend):
        Reconciler(lifecycle, None).run_pass()
    monkeypatch.setattr(queue, "send", real)
    assert Reconciler(lifecycle, None).run_pass().counts == {"redispatched": 2}
    sent = queue.drain()
    unsent = {j.id for j in jobs} - {m.job_id for m in sent}
    assert len(unsent) == 1
    for message in sent:  # workers take the two sent
        assert lifecycle.claim(message).job.status == JobStatus.RUNNING
    clock.advance(2 * DISPATCH_GRACE_S + 1)
    assert Reconciler(lifecycle, None).run_pass().counts == {"redispatched": 1}
    assert [m.job_id for m in queue.drain()] == list(unsent)


def test_a_resend_that_fails_twice_in_a_row_is_sent_by_the_third_pass_due(lifecycle, queue, clock, store):
    """The queue refuses the reconciler's resend of a lost message, and again at the job's next
    due time: each failure is an error of its pass, the job stays due (again once the resend's
    wait ends, the refused resends not counted, so the wait does not double), and once the queue
    answers the job's message goes out and a worker claims it."""
    [job] = _lost_jobs(lifecycle, queue, clock, 1)
    reconciler = Reconciler(lifecycle, None)
    queue.fail_sends = True
    assert reconciler.run_pass().counts == {"errors": 1}
    clock.advance(DISPATCH_GRACE_S + 1)
    assert reconciler.run_pass().counts == {"errors": 1}
    queue.fail_sends = False
    clock.advance(DISPATCH_GRACE_S + 1)
    assert reconciler.run_pass().counts == {"redispatched": 1}
    assert store.get(job.id, mark_gone=False).dispatches == job.dispatches + 1
    assert lifecycle.claim(queue.drain()[0]).job.status == JobStatus.RUNNING
    assert store.get(job.id, mark_gone=False).due_at is not None


def test_a_worker_whose_clock_is_behind_defers_a_retry_until_its_start_and_then_runs_it(store, queue, clock):
    """The retry's start was written on a clock 90 s ahead of the worker's (the reconciler's, or
    another worker's): the worker's claim, on its own clock, finds the start not reached and
    defers the message for the difference, not for good; delivered then, it runs the attempt."""
    from chalicelib.job_types import build_registry
    from chalicelib.lifecycle import ClaimOutcome, JobLifecycle
    from tests.unit.conftest import FakeClock

    registry = build_registry(demo_types=True)
    ahead = JobLifecycle(store, queue, registry, clock=clock)
    behind_clock = FakeClock()
    behind_clock.now = clock.now - timedelta(seconds=90)
    behind = JobLifecycle(store, queue, registry, clock=behind_clock)
    job = submit(ahead)
    running = ahead.claim(queue.drain()[0]).job
    ahead.fail_attempt(running, JobErrorInfo(code="boom", message="x"), retryable=True)
    [retry] = queue.drain()
    for _ in range(3):  # the message comes back as often as the claim asks
        claim = behind.claim(retry)
        if claim.outcome != ClaimOutcome.DEFER:
            break
        assert 0 < claim.retry_after_s <= 90 + 900, claim
        clock.advance(claim.retry_after_s)
        behind_clock.advance(claim.retry_after_s)
    assert claim.outcome == ClaimOutcome.RUN and store.get(job.id, mark_gone=False).attempts == 2
