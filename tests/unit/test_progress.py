"""Throttle, coalesce and monotonic rules of progress reporting, on a ManualClock: the window
ends, and its timer fires, exactly when the test moves the clock."""
import contextlib
from decimal import Decimal
from fractions import Fraction
from typing import Iterator

import pytest

from chalicelib.adapters.clocks import ManualClock
from chalicelib.defaults import MAX_PROGRESS_DETAILS_BYTES, MAX_PROGRESS_MESSAGE_CHARS, MAX_PROGRESS_REPORT_BYTES
from chalicelib.domain.errors import ProgressRejectedError
from chalicelib.domain.job import Job, Progress
from chalicelib.domain.progress import check_report, clamp_percent, fitting_message, is_notable_change
from chalicelib.worker.progress import ProgressReporter


@pytest.fixture
def setup():
    clock, written = ManualClock(start=1000.0), []
    job = Job(id="j", type="t", tenant="a", user="u", created_at="x", attempts=1)

    def write(job, progress):
        written.append(progress)
        return job.model_copy(update={"progress": progress, "version": job.version + 1})

    reporter = ProgressReporter(job, write, clock=clock, min_interval_s=2.0)
    return reporter, clock, written


def test_reports_inside_the_window_are_coalesced_to_the_latest(setup):
    reporter, clock, written = setup
    for pct in (10, 20, 30):
        reporter.report(pct, step=f"s{pct}")
    assert written == [] and clock.armed == 1  # the claim opened the window: one timer for its end
    clock.advance(1.999)
    assert written == []
    clock.advance(0.001)
    assert [(p.percent, p.step) for p in written] == [(30, "s30")] and clock.armed == 0


def test_at_most_one_write_per_interval(setup):
    reporter, clock, written = setup
    real_write, at = reporter._write, []
    reporter._write = lambda job, progress: (at.append(clock.monotonic()), real_write(job, progress))[1]
    for i in range(1, 81):  # 80 calls over 10 s
        clock.advance(0.125)
        reporter.report(i * 1.25)
    # each window's end writes the latest report before it; the outcome carries the last
    assert at == [1002, 1004, 1006, 1008, 1010]
    assert [p.percent for p in written] == [18.75, 38.75, 58.75, 78.75, 98.75]
    assert reporter.settle().percent == 100


def test_due_report_is_written_at_once_and_force_skips_the_wait(setup):
    reporter, clock, written = setup
    clock.advance(2.5)
    reporter.report(40)
    assert [p.percent for p in written] == [40]
    reporter.report(41, force=True)
    assert [p.percent for p in written] == [40, 41]


def test_settle_stops_the_window_so_the_outcome_alone_carries_what_is_pending(setup):
    reporter, clock, written = setup
    reporter.report(99, message="almost")
    assert written == []
    pending = reporter.settle()
    assert (pending.percent, pending.message) == (99, "almost") and clock.armed == 0
    clock.advance(10)
    assert written == []  # the cancelled timer writes nothing


def test_a_report_whose_window_end_met_a_cancel_request_is_kept_for_the_canceled_write(setup):
    """The store refuses a progress write once a cancel was requested and answers the stored
    job: the report it carried is not stored, and is kept, so the `canceled` write carries the
    progress the handler reached before it knew (as when a poll had seen the request first)."""
    reporter, clock, written = setup
    reporter._write = lambda job, progress: job.model_copy(update={"cancel_requested": True})
    reporter.report(30, step="s30")
    clock.advance(2)  # the window ends: its write meets the request
    assert reporter.job.cancel_requested and reporter.job.progress.percent == 0 and clock.armed == 0
    pending = reporter.settle()
    assert (pending.percent, pending.step) == (30, "s30")


def test_a_report_made_once_a_write_returned_a_cancel_request_is_not_taken(setup):
    """The job as last written shows the request: the report is neither written nor queued,
    and the percent the attempt reached stays what it was before the request."""
    reporter, clock, written = setup
    reporter._write = lambda job, progress: job.model_copy(update={"cancel_requested": True})
    clock.advance(2)
    reporter.report(30, force=True)  # met the request: kept for the `canceled` write
    calls = []
    reporter._write = lambda job, progress: calls.append(progress) or job
    assert reporter.report(60, force=True).cancel_requested
    clock.advance(10)
    assert calls == [] and reporter.percent == 30 and reporter.settle().percent == 30


def test_a_failures_last_report_never_lowers_the_percent_reached(setup):
    reporter, clock, written = setup
    reporter.report(60, step="s60", force=True)
    reporter.report_final(35, "failed", "it broke")
    final = reporter.settle()
    assert (final.percent, final.step, final.message) == (60, "failed", "it broke")
    reporter.report_final("not a number", "failed", "again")
    assert reporter.settle().percent == 60


def test_an_attempt_given_up_on_mid_write_hands_back_the_report_being_written(setup):
    """`abandon` from the give-up's thread while the handler's thread holds the lock inside a
    write: the report that write carries is the last one, and the outcome carries it."""
    import threading

    reporter, clock, written = setup
    abandoned = []

    def write(job, progress):
        giving_up = threading.Thread(target=lambda: abandoned.append(reporter.abandon()))
        giving_up.start()
        giving_up.join()
        return job.model_copy(update={"progress": progress})

    reporter._write = write
    reporter.report(40, step="s40", force=True)
    assert [(p.percent, p.step) for p in abandoned] == [(40, "s40")]


def test_a_timer_that_fired_as_a_write_stopped_it_leaves_the_next_window_alone(setup):
    """A real timer's thread can fire just as a due report's write stops it, and then waits for
    the reporter's lock. Run after that write, it found the next window's timer armed and cleared
    it: that timer, orphaned, could no longer be stopped, and wrote a failure's report (queued by
    `report_final`, for the outcome alone) as a running job's progress."""
    reporter, clock, written = setup

    class HeldTimer:  # a real timer's thread: it fires when the test says, stopped or not
        def __init__(self, delay_s, fire):
            self.fire = fire

        def start(self):
            pass

        def cancel(self):
            pass

    arm, clock.timer = clock.timer, HeldTimer
    reporter.report(10)  # inside the claim's window: timer 1 armed
    first, clock.timer = reporter._timer, arm
    clock.advance(2.5)
    reporter.report(20)  # due: written now, timer 1 stopped as its thread took the lock late
    reporter.report(30)  # the next window: timer 2 armed
    first.fire()  # timer 1's thread, run now: not this window's
    assert [p.percent for p in written] == [20]
    reporter.report_final(35, None, "failed")  # the outcome alone carries it
    clock.advance(10)
    assert [p.percent for p in written] == [20] and clock.armed == 0
    assert reporter.settle().percent == 35


def test_decrease_is_refused_and_nothing_is_queued(setup):
    reporter, clock, written = setup
    reporter.report(50, force=True)
    with pytest.raises(ProgressRejectedError) as info:
        reporter.report(40)
    assert "cannot decrease from 50 to 40" in info.value.message
    with pytest.raises(ProgressRejectedError) as info:  # however small the step back
        reporter.report(49.99)
    assert info.value.details == {"current": 50, "requested": 49.99}
    reporter.report(50, message="same percent, news")  # equal is no decrease
    clock.advance(2)
    assert [(p.percent, p.message) for p in written] == [(50, None), (50, "same percent, news")]


def test_percent_is_clamped_and_must_be_a_number():
    assert clamp_percent(-5) == 0 and clamp_percent(250) == 100 and clamp_percent(33.333) == 33.33
    for bad in ("50", None, float("nan"), True):
        with pytest.raises(ProgressRejectedError):
            clamp_percent(bad)


def test_a_percent_may_be_any_real_number_a_decimal_as_boto3_reads_one_included():
    """A handler may pass on a percent it read from DynamoDB (boto3 reads every number as a
    Decimal) or worked out as a Fraction: either is a percent, clamped and rounded as a float is."""
    assert clamp_percent(Decimal("33.333")) == 33.33 and clamp_percent(Decimal("250")) == 100
    assert clamp_percent(Fraction(200, 3)) == 66.67


@pytest.mark.parametrize("bad", [Decimal("sNaN"), Decimal("NaN"), Decimal("-Infinity")])
def test_a_decimal_that_is_no_finite_number_is_refused_as_a_percent(bad):
    """A Decimal NaN or infinity is no percent reached, as a float one is not; a signalling NaN
    will not even become a float: each is the report refused, never an error of the worker."""
    with pytest.raises(ProgressRejectedError, match="must be a finite number"):
        clamp_percent(bad)


@pytest.mark.parametrize(
    "previous, current, notable",
    [
        (0, 0, False),  # 0 is carried by the queued and running transitions, not repeated
        (0, 5, False),
        (5, 10, False),  # a 10-point boundary alone is no milestone
        (5, 15, True),  # a move of 10
        (21, 25, True),  # milestone
        (26, 29, False),
        (31, 45, True),  # jump of 10+
        (12.4, 22.4, True),  # 10 points, though 22.4 - 12.4 is 9.999… in floating point
        (99, 100, True),
        (50, 50, False),
        (60, 40, False),
    ],
)
def test_which_progress_changes_are_events(previous, current, notable):
    assert is_notable_change(previous, current) is notable


def test_settle_hands_back_the_pending_report_without_writing(setup):
    reporter, clock, written = setup
    reporter.report(40, step="s40", message="almost")
    pending = reporter.settle()
    assert pending.percent == 40 and pending.message == "almost"
    clock.advance(10)
    assert written == [] and reporter.settle() is None


def test_a_progress_write_counts_as_a_cancel_check(setup):
    from chalicelib.worker.context import JobContext

    reporter, clock, written = setup
    reads = []
    ctx = JobContext(reporter, reload=lambda job_id: reads.append(job_id), clock=clock,
                     deadline=clock.monotonic() + 60, cancel_poll_interval_s=2.0)
    for _ in range(5):  # a write every 2 s: each leaves the stored job fresh, so no read
        clock.advance(2.0)
        ctx.progress(reporter.job.progress.percent + 10)
        assert ctx.cancelled() is False
    assert len(written) == 5 and reads == []
    clock.advance(1.999)
    assert ctx.cancelled() is False and reads == []
    clock.advance(0.001)  # no write for a whole interval: now the store is read
    assert ctx.cancelled() is False and reads == ["j"]


def test_a_poll_finding_the_job_with_no_cancel_request_answers_no_cancel(setup):
    """The store read finds the job running on: `ctx.cancelled()` answers False and the handler
    goes on, as it does until a read finds the request."""
    from chalicelib.worker.context import JobContext

    reporter, clock, written = setup
    stored = [reporter.job]
    ctx = JobContext(reporter, reload=lambda job_id: stored[0], clock=clock, deadline=clock.monotonic() + 60,
                     cancel_poll_interval_s=2.0)
    clock.advance(2.0)
    assert ctx.cancelled() is False and ctx.cancelled(fresh=True) is False and not ctx.cancel_seen
    ctx.check_cancelled(fresh=True)
    stored[0] = reporter.job.model_copy(update={"cancel_requested": True})
    assert ctx.cancelled(fresh=True) is True


def test_a_cancel_poll_the_store_does_not_answer_answers_what_is_known_and_is_made_again(setup):
    """A moment's outage does not fail the attempt through a routine `ctx.cancelled()`: the
    poll answers what is known, the caller is told, and the store is asked again an interval
    later. `fresh=True` guards a step that cannot be undone: it raises."""
    from chalicelib.domain.errors import StoreUnavailableError
    from chalicelib.worker.context import JobContext

    reporter, clock, written = setup
    answers = [StoreUnavailableError("the table did not answer"),
               reporter.job.model_copy(update={"cancel_requested": True})]
    told = []

    def reload(job_id):
        answer = answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    ctx = JobContext(reporter, reload=reload, clock=clock, deadline=clock.monotonic() + 60,
                     cancel_poll_interval_s=2.0, on_poll_error=told.append)
    clock.advance(2.0)
    assert ctx.cancelled() is False and [str(e) for e in told] == ["the table did not answer"]
    clock.advance(1.0)
    with pytest.raises(StoreUnavailableError):
        ctx.cancelled(fresh=True)
    with pytest.raises(StoreUnavailableError):
        ctx.check_cancelled(fresh=True)
    answers.pop(0)
    clock.advance(1.999)
    assert ctx.cancelled() is False  # the interval since the last poll has not passed: no read
    clock.advance(0.001)
    assert ctx.cancelled() is True and len(told) == 1


def _context_reading_a_cancel(reporter, clock):
    """A handler's context whose every store read finds a cancel requested, and the reads it made."""
    from chalicelib.worker.context import JobContext

    reads = []

    def reload(job_id):
        reads.append(job_id)
        return reporter.job.model_copy(update={"cancel_requested": True})

    return JobContext(reporter, reload=reload, clock=clock, deadline=clock.monotonic() + 60,
                      cancel_poll_interval_s=2.0), reads


def test_a_progress_write_the_store_did_not_answer_is_no_cancel_check(setup):
    """A write returns the stored job, so one that answered spares the next poll; one the store
    did not answer (a timeout, a lost connection) returned nothing: `ctx.cancelled()` right after
    it reads the store, and sees a cancel request made meanwhile."""
    reporter, clock, written = setup
    down, _ = store_down(reporter)
    ctx, reads = _context_reading_a_cancel(reporter, clock)
    clock.advance(2.0)
    ctx.progress(10, message="ten", force=True)  # not answered: raises nothing, kept
    assert written == [] and reads == []
    assert ctx.cancelled() is True and reads == ["j"]


def test_a_cancel_a_write_returned_is_answered_without_a_read_and_is_seen(setup):
    """The window's write (on its timer) met the cancel request and returned it: `ctx.cancelled()`
    answers True at once, though the write left the stored job fresh and no poll is due, and the
    handler has seen the request from then on (`cancel_seen`): stopping on it ends the job
    canceled on request, not completed with what it returned."""
    reporter, clock, written = setup
    ctx, reads = _context_reading_a_cancel(reporter, clock)
    reporter._write = lambda job, progress: job.model_copy(update={"cancel_requested": True})
    clock.advance(2.0)
    reporter.report(30, force=True)  # the timer's write, not the handler's call
    assert not ctx.cancel_seen
    assert ctx.cancelled() is True and reads == [] and ctx.cancel_seen


def test_a_cancel_first_seen_after_the_timeout_is_not_in_time_however_often_it_expires(setup):
    """`expire` marks the moment the attempt's time ran out: a cancel request first seen after it
    (a look from a loop that caught the interrupt) is not `cancel_seen_in_time`, and an expiry
    told again (the alarm and its watchdog both finding the time out) does not move that
    moment past the look."""
    reporter, clock, written = setup
    ctx, reads = _context_reading_a_cancel(reporter, clock)
    ctx.expire()
    assert ctx.cancelled(fresh=True) and ctx.cancel_seen
    ctx.expire()
    assert ctx.expired and not ctx.cancel_seen_in_time


def test_a_handler_still_running_past_its_timeout_writes_nothing_more(setup):
    """Once the attempt's time ran out (`expire`), a handler that caught the interrupt and goes
    on is refused every write with JobTimeoutError naming its attempt: no report reaches the
    store after the timeout's outcome."""
    from chalicelib.domain.errors import JobTimeoutError

    reporter, clock, written = setup
    ctx, _ = _context_reading_a_cancel(reporter, clock)
    ctx.expire()
    clock.advance(2.0)
    with pytest.raises(JobTimeoutError, match="attempt 1 of job j timed out"):
        ctx.progress(50, force=True)
    with pytest.raises(JobTimeoutError):
        ctx.complete("late")
    assert written == [] and ctx.completion is None and reporter.settle() is None


def test_the_time_left_is_never_less_than_none(setup):
    """`ctx.remaining_ms()` counts down to the attempt's timeout and stays at 0 past it: a
    handler sizing its next step by it (a batch of `remaining_ms() // per_row_ms` rows) gets
    none to do, not a negative count."""
    reporter, clock, written = setup
    ctx, _ = _context_reading_a_cancel(reporter, clock)
    clock.advance(59.5)
    assert ctx.remaining_ms() == 500
    clock.advance(2)
    assert ctx.remaining_ms() == 0


def test_a_spawn_the_store_refused_for_a_cancel_request_leaves_the_request_seen(setup):
    """A spawn that meets the job's cancel request (the store makes no child of a canceled job)
    raises JobCancelledError, and the handler has seen the request from then on: stopping on it
    ends the job canceled on request, and a later call refuses without asking the store."""
    from chalicelib.domain.errors import JobCancelledError
    from chalicelib.worker.context import JobContext

    reporter, clock, written = setup
    spawns = []

    def spawn(job, index, **request):
        spawns.append(index)
        raise JobCancelledError(f"job {job.id} was canceled")

    ctx = JobContext(reporter, reload=lambda job_id: None, clock=clock, deadline=clock.monotonic() + 60, spawn=spawn)
    with pytest.raises(JobCancelledError):
        ctx.spawn("t.child", {})
    assert ctx.cancel_seen and ctx.cancelled() is True
    with pytest.raises(JobCancelledError):
        ctx.spawn("t.child", {})
    assert spawns == [1]


def test_a_context_given_no_way_to_spawn_refuses_a_child_saying_so(setup):
    """A context built without `spawn` (a handler run by hand, outside the worker) raises a
    RuntimeError that says it cannot spawn, not a TypeError from calling nothing."""
    reporter, clock, written = setup
    ctx, _ = _context_reading_a_cancel(reporter, clock)
    with pytest.raises(RuntimeError, match="this context cannot spawn child jobs"):
        ctx.spawn("t.child", {})


def test_a_cancel_request_once_seen_stays_seen_without_another_read(setup):
    """A handler may ask in more than one place (an inner and an outer loop): once
    `ctx.cancelled()` answered True it answers True again, and reads the store no more."""
    reporter, clock, written = setup
    ctx, reads = _context_reading_a_cancel(reporter, clock)
    clock.advance(2.0)
    assert ctx.cancelled() is True and reads == ["j"]
    for _ in range(3):
        clock.advance(2.0)
        assert ctx.cancelled() is True
    assert reads == ["j"] and ctx.cancel_seen


@pytest.mark.parametrize("step, message, details, says", [
    ("s" * 257, None, None, "step is 257 characters"),
    (None, "m" * 300_001, None, "message is 300001 characters"),
    (None, 42, None, "message must be text"),
    (None, None, ["a"], "details must be a JSON object"),
    (None, None, {"x": float("nan")}, "details must be JSON"),
    (None, None, {"x": object()}, "details must be JSON"),
    (None, None, {"x": "d" * MAX_PROGRESS_DETAILS_BYTES}, "at most 32,768"),
])
def test_a_report_that_cannot_be_stored_as_given_is_refused(step, message, details, says):
    with pytest.raises(ProgressRejectedError, match=says):
        check_report(step, message, details)


def _details_of(size: int) -> dict:
    """Details taking exactly `size` bytes as the record keeps them (compact JSON: no space
    after a comma between members, nor after a colon), several members long."""
    return {"n": [1, 2], "x": "d" * (size - len('{"n":[1,2],"x":""}'))}


def test_a_report_at_each_bound_is_taken_and_one_byte_more_is_refused():
    largest = _details_of(MAX_PROGRESS_DETAILS_BYTES)
    check_report(None, None, largest)
    with pytest.raises(ProgressRejectedError, match="32,769 bytes as JSON"):
        check_report(None, None, _details_of(MAX_PROGRESS_DETAILS_BYTES + 1))
    # Together: the longest ASCII message beside the largest details is the report's bound.
    longest = "m" * MAX_PROGRESS_MESSAGE_CHARS
    check_report(None, longest, largest)
    with pytest.raises(ProgressRejectedError, match=f"takes at most {MAX_PROGRESS_REPORT_BYTES:,} bytes"):
        check_report(None, "é" + longest[1:], largest)  # as many characters, one byte more


def test_a_failure_message_is_cut_only_past_what_a_report_takes():
    largest = _details_of(MAX_PROGRESS_DETAILS_BYTES)
    fits = "m" * MAX_PROGRESS_MESSAGE_CHARS
    assert fitting_message(fits, largest) == fits
    cut = fitting_message("é" + fits[1:], largest)
    assert cut.endswith("…") and len(cut.encode()) <= MAX_PROGRESS_REPORT_BYTES - MAX_PROGRESS_DETAILS_BYTES
    check_report(None, cut, largest)


def test_a_refused_report_queues_nothing(setup):
    reporter, clock, written = setup
    reporter.report(20, force=True)
    with pytest.raises(ProgressRejectedError):
        reporter.report(30, details={"x": float("inf")}, force=True)
    reporter.report(30, step="s" * 256, message="m" * 300_000, details={"n": 1}, force=True)
    assert [p.percent for p in written] == [20, 30]


def store_down(reporter) -> tuple[list[bool], list[Exception]]:
    """The reporter's store not answering (StoreUnavailableError "throttled") while `down[0]`;
    `observed`: what it reported to `on_error`."""
    from chalicelib.domain.errors import StoreUnavailableError

    real_write, down, observed = reporter._write, [True], []
    reporter._on_error = observed.append

    def flaky(job, progress):
        if down[0]:
            raise StoreUnavailableError("throttled")
        return real_write(job, progress)

    reporter._write = flaky
    return down, observed


def test_a_report_whose_write_fails_is_kept_for_the_outcome(setup):
    reporter, clock, written = setup
    down, _ = store_down(reporter)
    reporter.report(90, step="upload", message="uploading", details={"files": 3})
    clock.advance(2)  # the store did not answer the timer's write
    assert written == []
    pending = reporter.settle()  # the completion still carries the last report
    assert (pending.percent, pending.message, pending.details) == (90, "uploading", {"files": 3})

    clock.advance(2)
    reporter.report(95, message="closing", force=True)  # not raised: the handler goes on
    down[0] = False
    clock.advance(2)  # the next window's end writes it
    assert [(p.percent, p.message) for p in written] == [(95, "closing")]


def test_a_write_cut_by_a_base_exception_keeps_its_report_for_the_outcome(setup):
    """A SystemExit or asyncio's CancelledError (no Exception) raised inside a forced write ends
    the attempt as any error does: the report that write carried is kept, so the outcome's
    write still carries it."""
    import asyncio

    reporter, clock, written = setup

    def cut(job, progress):
        raise asyncio.CancelledError()

    reporter._write = cut
    with pytest.raises(asyncio.CancelledError):
        reporter.report(70, message="seventy", force=True)
    pending = reporter.settle()
    assert (pending.percent, pending.message) == (70, "seventy")


def test_a_forced_write_the_store_does_not_answer_is_written_when_the_next_window_ends(setup):
    """docs/jobs.md: a report whose write the store did not answer is kept for the next write or
    the outcome. The handler is not failed for it (its attempt would run again from the start
    for a progress bar): the write is tried again a window later, and the failure observed."""
    from chalicelib.domain.errors import StoreUnavailableError

    reporter, clock, written = setup
    down, observed = store_down(reporter)
    reporter.report(40, message="halfway", force=True)
    assert written == [] and [type(e) for e in observed] == [StoreUnavailableError]
    down[0] = False
    clock.advance(2)  # the window's end
    assert [(p.percent, p.message) for p in written] == [(40, "halfway")]


def test_a_window_end_whose_write_the_store_did_not_answer_is_observed_and_tried_again(setup):
    """The timer's write has no caller to raise to: its failure goes to `on_error` (the worker's
    `job progress_refused` line), and the report is written when the next window ends, as a
    report's own refused write is, though the handler reports nothing more meanwhile."""
    reporter, clock, written = setup
    down, observed = store_down(reporter)
    reporter.report(30, message="a third")
    clock.advance(2)  # the window's end: the timer's write is not answered
    assert written == [] and [str(e) for e in observed] == ["throttled"]
    down[0] = False
    clock.advance(2)
    assert [(p.percent, p.message) for p in written] == [(30, "a third")] and clock.armed == 0


def record_full(reporter) -> list[Exception]:
    """The reporter's store refusing each report whose message is "too big" as its record has no
    room for it (ProgressRejectedError, as a store refuses one beside a large payload);
    returns what the reporter reported to `on_error`."""
    real_write, observed = reporter._write, []
    reporter._on_error = observed.append

    def full(job, progress):
        if progress.message == "too big":
            raise ProgressRejectedError(f"progress of job {job.id} does not fit its record")
        return real_write(job, progress)

    reporter._write = full
    return observed


def test_a_forced_report_the_store_refuses_leaves_the_report_it_replaced_due(setup):
    """A report taken inside the window is the job's next progress: a forced one the store then
    refuses (raised at the call, as any refused report) does not take it along. It is written
    when the window ends, and carried by the outcome otherwise."""
    reporter, clock, written = setup
    record_full(reporter)
    reporter.report(20, message="twenty")
    with pytest.raises(ProgressRejectedError, match="does not fit its record"):
        reporter.report(30, message="too big", force=True)
    assert written == [] and clock.armed == 1
    clock.advance(2)
    assert [(p.percent, p.message) for p in written] == [(20, "twenty")] and clock.armed == 0

    reporter.report(40, message="forty")
    with pytest.raises(ProgressRejectedError):
        reporter.report(50, message="too big", force=True)
    pending = reporter.settle()
    assert (pending.percent, pending.message) == (40, "forty")


def test_a_report_the_store_refuses_at_the_call_counts_for_nothing(setup):
    """Refused by the store's write at the call (forced), a report leaves the attempt at the
    percent the job holds: `percent` (the handler's `ctx.progress_percent`) reads it, and a
    report above it is no decrease, as after a report refused by a check."""
    reporter, clock, written = setup
    record_full(reporter)
    clock.advance(2)
    reporter.report(20, message="twenty")
    with pytest.raises(ProgressRejectedError):
        reporter.report(30, message="too big", force=True)
    assert reporter.percent == 20 and reporter.job.progress.percent == 20
    reporter.report(25, message="less to say", force=True)
    assert [(p.percent, p.message) for p in written] == [(20, "twenty"), (25, "less to say")]


def test_a_report_the_store_refuses_at_the_windows_end_is_left_for_the_outcome(setup):
    """The window's end has no caller to raise to: a report its write could not store (no room
    on the record) is observed and left for the outcome, whose write makes room, as when the
    handler ends before the window does; no later window writes it again, a later report
    replaces it as any."""
    reporter, clock, written = setup
    observed = record_full(reporter)
    reporter.report(30, message="too big", details={"rows": 3})
    clock.advance(2)
    assert written == [] and [str(e) for e in observed] == ["progress of job j does not fit its record"]
    assert clock.armed == 0 and reporter.percent == 30
    pending = reporter.settle()
    assert (pending.percent, pending.message, pending.details) == (30, "too big", {"rows": 3})

    reporter.report(40, message="too big")
    clock.advance(2)
    reporter.report(45, message="smaller")
    clock.advance(2)
    assert [(p.percent, p.message) for p in written] == [(45, "smaller")] and reporter.settle() is None


def test_details_nested_past_the_json_depth_limit_are_refused_at_the_call():
    """Stored, details 255 levels deep made every read of the job fail to serialize (a 500)."""
    from chalicelib.defaults import MAX_JSON_DEPTH
    from chalicelib.domain.job import too_deep_message

    deep: dict = {}
    inner = deep
    for _ in range(MAX_JSON_DEPTH - 1):
        inner["d"] = {}
        inner = inner["d"]
    check_report(None, None, deep)  # MAX_JSON_DEPTH levels: kept
    inner["d"] = {}
    with pytest.raises(ProgressRejectedError) as refused:
        check_report(None, None, deep)
    assert str(refused.value) == too_deep_message("progress details object")


def test_a_report_no_answer_could_carry_beside_the_payload_is_refused_at_the_call():
    """A payload near what one answer of the API carries left no room for a long progress
message: the report was stored, and every GET of the job (running, then ended with it) passed
Lambda's 6 MB, a 502 a poller takes for an outage. Such a report is refused at the call, nothing
kept, so the handler can send a shorter one; the same report beside a small payload is taken."""
    from chalicelib.defaults import MAX_ANSWER_BYTES
    from chalicelib.domain.job import answer_bytes

    clock, written = ManualClock(), []

    def write(job, progress):
        written.append(progress)
        return job.model_copy(update={"progress": progress, "version": job.version + 1})

    message = "é" * 150_000  # 300,000 bytes in UTF-8, within a report; 7 bytes each in an answer
    for pad, refused in (("p" * 5_200_000, True), ("p" * 1_000, False)):
        job = Job(id="j", type="t", tenant="a", user="u", created_at="2026-01-01T00:00:00.000Z", attempts=1,
                  payload={"pad": pad})
        reporter = ProgressReporter(job, write, clock=clock, min_interval_s=2.0)
        reporter.report(10, message="short", force=True)
        shown = job.model_copy(update={"progress": Progress(percent=20, message=message,
                                                            updated_at=job.created_at)}).public()
        assert (answer_bytes(shown) > MAX_ANSWER_BYTES) is refused
        if refused:
            with pytest.raises(ProgressRejectedError, match="6 MB"):
                reporter.report(20, message=message, force=True)
            assert reporter.percent == 10 and reporter.settle() is None
            assert written[-1].message == "short"
        else:
            reporter.report(20, message=message, force=True)
            assert written[-1].message == message


@contextlib.contextmanager
def measures_counted() -> Iterator[list]:
    """Every job shown whole (`Job.public`, what measuring a job's answer costs) while inside."""
    shown: list = []
    original = Job.public
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Job, "public", lambda self: shown.append(self) or original(self))
        yield shown


def test_a_report_far_from_the_answers_bound_is_measured_alone():
    """A report is called for in loops (the throttle is there to make that cheap): each one
    measures its own JSON, not the whole job again (2,000 children's ids are 90 KB of it); the
    job is measured once per write that changed it."""
    clock = ManualClock()
    job = Job(id="j", type="t", tenant="a", user="u", created_at="2026-01-01T00:00:00.000Z", attempts=1,
              children=[f"c{i:025d}" for i in range(2_000)])
    reporter = ProgressReporter(job, lambda j, p: j.model_copy(update={"progress": p, "version": j.version + 1}),
                                clock=clock, min_interval_s=2.0)
    with measures_counted() as shown:
        for i in range(100):
            reporter.report(i * 0.5, message=f"item {i}")
        assert len(shown) == 1
        reporter.report(60, message="written", force=True)
        reporter.report(61, message="after the write")
    assert len(shown) == 2


def short_of_the_answers_bound(message: str, room: int) -> Job:
    """A job whose answer, showing a 20 % report with `message`, comes `room` bytes short of
    MAX_ANSWER_BYTES: its payload padded to that."""
    from chalicelib.defaults import MAX_ANSWER_BYTES
    from chalicelib.domain.job import answer_bytes

    job = Job(id="j", type="t", tenant="a", user="u", created_at="2026-01-01T00:00:00.000Z", attempts=1)

    def size(pad: str) -> int:
        return answer_bytes(job.model_copy(update={"payload": {"pad": pad}, "progress": Progress(
            percent=20, message=message, updated_at=job.created_at)}).public())

    padded = job.model_copy(update={"payload": {"pad": "p" * (MAX_ANSWER_BYTES - size("") - room)}})
    assert size(padded.payload["pad"]) == MAX_ANSWER_BYTES - room
    return padded


@pytest.mark.parametrize("over", [0, 1])
def test_a_report_near_the_answers_bound_is_measured_whole(over):
    """Within a few hundred bytes of the bound the job is measured with the report as it would
    be answered: a report that leaves it at the bound exactly is taken, one byte more refused."""
    message = "m" * 200
    job = short_of_the_answers_bound(message, 0)
    reporter = ProgressReporter(job, lambda j, p: j, clock=ManualClock(), min_interval_s=2.0)
    if over:
        with pytest.raises(ProgressRejectedError, match="6 MB"):
            reporter.report(20, message=message + "m")
    else:
        reporter.report(20, message=message)
        assert reporter.percent == 20


def test_a_report_counts_the_children_the_attempt_listed_since_its_last_write():
    """A spawn lists its child on the job, but only a write reads the list back: a report after
    100 spawns was measured beside the job as last written, without their 4 KB of ids, and taken
    past the bound."""
    from chalicelib.domain.job import child_job_id

    message = "m" * 2_000
    job = short_of_the_answers_bound(message, 1_000)
    reporter = ProgressReporter(job, lambda j, p: j, clock=ManualClock(), min_interval_s=2.0)
    reporter.report(10, message=message)
    for index in range(1, 101):
        reporter.listed(child_job_id(job.id, 1, index))
    reporter.listed(child_job_id(job.id, 1, 100))  # listed once, however often told
    assert len(reporter.job.children) == 100
    with pytest.raises(ProgressRejectedError, match="6 MB"):
        reporter.report(20, message=message)


def test_a_spawn_loop_measures_the_job_once_and_its_answer_exactly():
    """A handler spawns in a loop (MAX_CHILDREN times): each spawn's check adds its child's share
    to the job measured once, not the whole job with a list that grows each time; near a bound
    the job is measured whole, to the byte."""
    from chalicelib.defaults import MAX_ANSWER_BYTES
    from chalicelib.domain.job import answer_bytes, child_job_id, listed_bytes

    job = Job(id="j", type="t", tenant="a", user="u", created_at="2026-01-01T00:00:00.000Z", attempts=1,
              payload={"pad": "p" * 10_000})
    reporter = ProgressReporter(job, lambda j, p: j, clock=ManualClock(), min_interval_s=2.0)
    with measures_counted() as shown:
        for index in range(1, 2_001):
            child = child_job_id(job.id, 1, index)
            assert reporter.answer_past(MAX_ANSWER_BYTES, listed_bytes(child, index - 1)) is None
            reporter.listed(child)
        assert len(shown) == 1
    whole = answer_bytes(reporter.job.model_copy(update={"progress": Progress(updated_at=job.created_at)}).public())
    assert reporter.answer_past(whole - 1) == whole and reporter.answer_past(whole) is None


def test_the_extra_bytes_asked_about_count_however_far_from_the_bound_the_job_stands():
    """A spawn asks whether its parent's answer, with what listing its child adds (`extra`),
    passes the bound: a job well short of the bound on its own is past it with an extra larger
    than the room it has, and the size answered counts that extra."""
    from chalicelib.domain.job import answer_bytes

    job = Job(id="j", type="t", tenant="a", user="u", created_at="2026-01-01T00:00:00.000Z", attempts=1)
    reporter = ProgressReporter(job, lambda j, p: j, clock=ManualClock(), min_interval_s=2.0)
    whole = answer_bytes(job.model_copy(update={"progress": Progress(updated_at=job.created_at)}).public())
    assert reporter.answer_past(whole + 10_000, 20_000) == whole + 20_000
    assert reporter.answer_past(whole + 20_000, 20_000) is None


@pytest.mark.parametrize("previous, current, notable", [
    (9.96, 19.95, False), (9.96, 19.96, True), (20, 24.99, False), (20, 25, True), (45, 49.99, False), (45, 50, True), (70, 74.99, False), (70, 75, True),
])
def test_a_milestone_is_an_event_when_reached_not_a_hundredth_before(previous, current, notable):
    assert is_notable_change(previous, current) is notable


def test_a_percent_too_large_for_a_float_is_refused_saying_what_it_was():
    from fractions import Fraction

    with pytest.raises(ProgressRejectedError, match="not a whole number of 1,329 bits, too large"):
        clamp_percent(10**400)
    with pytest.raises(ProgressRejectedError, match="not a fraction, too large"):
        clamp_percent(Fraction(10**400, 3))


def test_a_report_at_its_byte_bound_exactly_is_taken_and_its_refusal_names_the_details():
    at_bound = "aa" + "é" * ((MAX_PROGRESS_REPORT_BYTES - 2) // 2)
    assert len(at_bound.encode()) == MAX_PROGRESS_REPORT_BYTES
    check_report(None, at_bound, None)
    with pytest.raises(ProgressRejectedError) as alone:
        check_report(None, at_bound + "a", None)
    assert "bytes in UTF-8; a report takes at most" in alone.value.message  # no details to name
    with pytest.raises(ProgressRejectedError, match=r"in UTF-8 and its details 7 as JSON; a report takes"):
        check_report(None, at_bound, {"n": 1})


def test_a_failures_message_is_cut_to_the_reports_byte_bound_exactly():
    message = "a" + "é" * MAX_PROGRESS_MESSAGE_CHARS
    cut = fitting_message(message, None)
    assert len(cut.encode()) == MAX_PROGRESS_REPORT_BYTES and cut.endswith("…")
    assert len(fitting_message("a" + message, None).encode()) <= MAX_PROGRESS_REPORT_BYTES  # a character cut in two
    assert fitting_message(None, {"n": 1}) is None


@pytest.mark.parametrize("rows", [[{1: "x"}], ({1: "x"},), [{"a": "x", 1: "y"}]],
                         ids=["in_a_list", "in_a_tuple", "after_a_text_key"])
def test_progress_details_with_a_key_that_is_not_text_are_refused(rows):
    """json.dumps would write {1: ...} as {"1": ...}: the details would not read back as reported,
    wherever the object stands (a tuple is written as an array, as a list is) and whichever of
    its keys it is."""
    with pytest.raises(ProgressRejectedError, match="its keys are text, not 1"):
        check_report(None, None, {"rows": rows})


def test_the_on_error_given_hears_a_write_the_store_did_not_answer_while_the_handler_goes_on():
    """ProgressReporter(on_error=...): the worker's `job progress_refused` line. A due write the
    store did not answer is told to it, and the handler's report returns (a progress report is
    worth no attempt): the report is written when the next window ends."""
    from chalicelib.domain.errors import StoreUnavailableError

    clock, written, observed, down = ManualClock(start=1000.0), [], [], [True]
    job = Job(id="j", type="t", tenant="a", user="u", created_at="x", attempts=1)

    def write(job, progress):
        if down[0]:
            raise StoreUnavailableError("throttled")
        written.append(progress)
        return job.model_copy(update={"progress": progress, "version": job.version + 1})

    reporter = ProgressReporter(job, write, clock=clock, min_interval_s=2.0, on_error=observed.append)
    reporter.report(40, message="halfway", force=True)
    assert [str(e) for e in observed] == ["throttled"] and written == []
    down[0] = False
    clock.advance(2)
    assert [(p.percent, p.message) for p in written] == [(40, "halfway")]


def test_a_failures_last_report_keeps_the_details_of_the_report_before_it(setup):
    """report_final (fail_job's percent, a failure's message) keeps the last report's details
    beside its message, as the outcome keeps them: the failed job still shows the rows counted."""
    reporter, clock, written = setup
    reporter.report(40, step="rows", message="40 rows", details={"rows": 40}, force=True)
    reporter.report(50, details={"rows": 50})  # pending: its window has not ended
    reporter.report_final(55, "failed", "row 51 is not a number")
    final = reporter.settle()
    assert (final.percent, final.message, final.details) == (55, "row 51 is not a number", {"rows": 50})
    assert reporter.percent == 55  # what the handler's ctx.progress_percent reads after fail_job


def test_a_failures_last_report_carries_a_message_too_long_for_a_report_cut_to_fit(setup):
    """A failure's message (a whole stderr, fail_job's) is never refused: its report carries it
    cut, marked "…", to what a report takes beside the details it keeps, so the failure's write
    can store it."""
    reporter, clock, written = setup
    details = _details_of(MAX_PROGRESS_DETAILS_BYTES)
    reporter.report(40, details=details, force=True)
    reporter.report_final(55, "failed", "é" * MAX_PROGRESS_MESSAGE_CHARS)
    final = reporter.settle()
    assert final.message.endswith("…") and final.details == details
    check_report(final.step, final.message, final.details)


def test_an_attempt_given_up_on_with_the_lock_free_stops_the_window(setup):
    """`abandon` with no write under way is `settle`: the report the timeout's write carries is
    handed back and no window's timer writes it after as a `running` job's progress."""
    reporter, clock, written = setup
    reporter.report(40, step="s40")
    assert clock.armed == 1
    assert (reporter.abandon().percent, clock.armed) == (40, 0)
    clock.advance(10)
    assert written == [] and reporter.settle() is None


@pytest.mark.parametrize("reported", [False, True])
def test_an_attempt_given_up_on_while_the_handler_holds_the_lock_outside_a_write(setup, reported):
    """The alarm can cut the handler's thread inside a report, holding the reporter's lock, with
    no write under way (measuring the report): `abandon` from the give-up's thread hands back the
    report its window still held, which the timeout's write then carries, or None when there is
    none (the give-up still writes the timeout)."""
    import threading

    reporter, clock, written = setup
    if reported:
        reporter.report(40, step="s40")  # its window has not ended: pending
    holding, release, abandoned = threading.Event(), threading.Event(), []

    def hold():
        with reporter._lock:
            holding.set()
            release.wait(5)

    handler = threading.Thread(target=hold)
    handler.start()
    assert holding.wait(5)
    try:
        giving_up = threading.Thread(target=lambda: abandoned.append(reporter.abandon()))
        giving_up.start()
        giving_up.join(5)
    finally:
        release.set()
        handler.join(5)
    assert [(p.percent, p.step) if p else None for p in abandoned] == ([(40, "s40")] if reported else [None])


def test_a_report_made_late_in_the_window_is_written_when_the_window_ends(setup):
    """The window is PROGRESS_MIN_INTERVAL_S from the last write: a report made 1.5 s into a
    2 s window is written at its end, 0.5 s later, not a whole interval or a second later."""
    reporter, clock, written = setup
    clock.advance(1.5)
    reporter.report(30, step="s30")
    clock.advance(0.499)
    assert written == []
    clock.advance(0.001)
    assert [(p.percent, p.step) for p in written] == [(30, "s30")]
