"""How an attempt ends, whatever way its handler stops: each ending is written on the job as
the attempt's last write left it, and the order of what the handler did decides the same
ending whether it returned, raised or was given up on past its timeout (docs/jobs.md)."""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Optional

import pytest
from pydantic import BaseModel

from chalicelib.adapters.clocks import ManualClock, SystemClock
from chalicelib.adapters.memory_blobs import InMemoryArtifactStore, InMemoryBlobStore
from chalicelib.domain.errors import (
    DeadLetterOwedError, FatalJobError, JobCancelledError, JobTimeoutError, NextAttemptUnsentError, QuotaExceededError,
    StaleJobError, StoreUnavailableError,
)
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.domain.status import JobStatus
from chalicelib.lifecycle import JobLifecycle
from chalicelib.worker import outcome
from chalicelib.worker.context import JobContext
from chalicelib.worker.helpers import complete_job, fail_job
from chalicelib.worker.outcome import AttemptOutcomes
from chalicelib.worker.progress import ProgressReporter
from chalicelib.worker.runner import JobRunner
from tests.support.waiting import WatchedLock


class Empty(BaseModel):
    pass


# How the handler stops once a progress write is under way: what the job then reads.
MID_WRITE_STOPS = {
    "raises": (JobStatus.RETRYING, "handler_error"),
    "fails": (JobStatus.FAILED, "E_BAD_ROWS"),
    "times_out": (JobStatus.RETRYING, "timeout"),
    "completes": (JobStatus.COMPLETED, None),
}


@pytest.mark.parametrize("stops", list(MID_WRITE_STOPS))
def test_an_ending_waits_for_the_progress_write_under_way_and_ends_the_job_it_returns(
        store, queue, clock, monkeypatch, stops):
    """A report held in the progress window is written by the window's timer, on its thread; the
    handler may stop while that write is on its way. The ending waits for it (`settle`), and must
    then end the job that write returned: ended on the job as it was before, its conditional
    write was refused (the record's version moved) and spent one of its tries on a read."""
    worker_clock, types = ManualClock(), JobTypeRegistry()
    writing, release = threading.Event(), threading.Event()
    record_progress = store.record_progress

    def held_write(*args, **kwargs):
        writing.set()
        release.wait(5)
        return record_progress(*args, **kwargs)

    settle = ProgressReporter.settle

    def settle_releasing(self):
        release.set()  # the ending reached the reporter: the write under way may land now
        return settle(self)

    monkeypatch.setattr(store, "record_progress", held_write)
    monkeypatch.setattr(ProgressReporter, "settle", settle_releasing)

    @types.register("t.stops_mid_write", Empty, timeout_s=1, max_attempts=3)
    def stops_mid_write(ctx, payload):
        if stops == "completes":  # first: its check reads the reporter, which the write will hold
            complete_job(ctx, {"rows": 400})
        ctx.progress(40, step="rows", message="row 400 of 1000")  # held: inside the window
        window = threading.Thread(target=worker_clock.advance, args=(30,))  # its end, on a timer's thread
        window.start()
        assert writing.wait(5)
        if stops == "raises":
            raise ValueError("row 401 is not a number")
        if stops == "fails":
            fail_job(ctx, "E_BAD_ROWS", "row 401 is not a number")
        if stops == "times_out":
            time.sleep(5)  # interrupted at its 1 s timeout

    refused = []
    apply = store.apply

    def counting_apply(*args, **kwargs):
        try:
            return apply(*args, **kwargs)
        except StaleJobError:
            refused.append(args[0].version)
            raise

    monkeypatch.setattr(store, "apply", counting_apply)
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    submitted = lifecycle.submit(tenant="acme", user="ann", type="t.stops_mid_write", payload={})
    runner = JobRunner(lifecycle, types, clock=worker_clock, progress_interval_s=30)
    final = runner.run(queue.drain()[0])
    assert (final.status, final.error.code if final.error else None) == MID_WRITE_STOPS[stops], final.error
    assert refused == [], "the ending was written on the job before the progress write landed"
    stored = store.get(submitted.id, mark_gone=False)
    assert stored.progress.percent == (100 if stops == "completes" else 40)


# What the handler did, in order: the cancel request (none; made and never looked at; seen by the
# handler before its fail_job; seen only after it, by a clean-up's look; seen only once its time
# ran out), complete_job, fail_job.
CANCELS = ("none", "unseen", "seen", "seen_after_fail", "seen_after_timeout")
# How it stopped, through each path that ends an attempt: returning, raising, and (past its
# timeout) returning, raising the interrupt, another error or the JobCancelledError of a look at
# the cancel, or going on until it is given up on.
STOPS = ("returns", "raises", "raises_fatal", "raises_cancelled", "times_out_returns", "times_out_raises",
         "times_out_raises_other", "times_out_raises_cancelled", "given_up")
TIMED_OUT = {"times_out_returns", "times_out_raises", "times_out_raises_other", "times_out_raises_cancelled",
             "given_up"}
CASES = [(cancel, completed, failed, stop) for cancel in CANCELS for completed in (False, True)
         for failed in (False, True) for stop in STOPS
         if (failed or cancel != "seen_after_fail") and (stop in TIMED_OUT or cancel != "seen_after_timeout")]


def documented_ending(cancel: str, completed: bool, failed: bool, stop: str) -> tuple[JobStatus, Optional[str]]:
    """The status and error code docs/jobs.md gives the job, whichever path ends the attempt."""
    requested = cancel != "none"
    # A failure ends the job canceled when its cancel was requested (no retry runs for it), keeping its error.
    failed_as = JobStatus.CANCELED if requested else None
    if failed and cancel != "seen":  # fail_job said first: its failure stands
        return failed_as or JobStatus.FAILED, "E_BAD_ROWS"
    if cancel in ("seen", "seen_after_fail") or (stop == "raises_cancelled" and not completed):
        return JobStatus.CANCELED, "canceled"
    if completed:  # stands: an error or a timeout after it, or a cancel it never looked at, change nothing
        return JobStatus.COMPLETED, None
    # From the timeout on, what the handler does (a look at the cancel too) changes nothing.
    if stop in TIMED_OUT:
        return failed_as or JobStatus.RETRYING, "timeout"
    if stop == "raises":
        return failed_as or JobStatus.RETRYING, "handler_error"
    if stop == "raises_fatal":
        return failed_as or JobStatus.FAILED, "own_code"
    return JobStatus.COMPLETED, None  # returned: a cancel it never looked at leaves its result


def driven_attempt(store, queue, clock, *, observe, end_process):
    """A job of a type whose handler the test stands in for (30 s timeout, 3 attempts), claimed,
    with its attempt's reporter, ctx and outcomes on a worker clock the test moves: (lifecycle,
    the job submitted, the job claimed, the worker clock, reporter, ctx, outcomes)."""
    worker_clock, types = ManualClock(), JobTypeRegistry()

    @types.register("t.any", Empty, timeout_s=30, max_attempts=3)
    def any_(ctx, payload):
        raise AssertionError("driven by the test")

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    submitted = lifecycle.submit(tenant="acme", user="ann", type="t.any", payload={})
    job = lifecycle.claim(queue.drain()[0]).job
    reporter = ProgressReporter(job, lifecycle.record_progress, clock=worker_clock, min_interval_s=2)
    ctx = JobContext(reporter, reload=lambda job_id: store.get(job_id, fetch=(), mark_gone=False),
                     clock=worker_clock, deadline=worker_clock.monotonic() + 30)
    outcomes = AttemptOutcomes(lifecycle, clock=worker_clock, observe=observe, end_process=end_process)
    return lifecycle, submitted, job, worker_clock, reporter, ctx, outcomes


@pytest.mark.parametrize(("cancel", "completed", "failed", "stop"), CASES)
def test_every_path_ends_an_attempt_as_the_documented_precedence_says(
        store, queue, clock, cancel, completed, failed, stop):
    """docs/jobs.md: a cancel the handler saw ends the job canceled on request, unless fail_job
    came first (its failure stands); complete_job stands unless a later fail_job or a seen cancel
    decides otherwise; a timeout fails `timeout` whatever the handler does next; an exception
    retries (a FatalJobError fails). The same facts end the attempt alike whether the handler
    returned, raised, or ran past its timeout until its process was ended."""
    ended = []
    lifecycle, submitted, job, worker_clock, reporter, ctx, outcomes = driven_attempt(
        store, queue, clock, observe=lambda event, job_, extra: None, end_process=lambda: ended.append(True))

    if cancel != "none":
        lifecycle.cancel("acme", job.id)
    if cancel == "seen":
        assert ctx.cancelled(fresh=True)
    if completed:
        ctx.complete({"rows": 3})
    if failed:
        ctx.fail("E_BAD_ROWS", "row 401 is not a number")
    if cancel == "seen_after_fail":
        assert ctx.cancelled(fresh=True)  # a clean-up's look, after the failure was decided
    if stop in TIMED_OUT:
        ctx.expire()
    if cancel == "seen_after_timeout":
        assert ctx.cancelled(fresh=True)  # a look from the loop that caught the interrupt

    raised: Optional[BaseException] = {
        "raises": ValueError("row 401 is not a number"),
        "raises_fatal": FatalJobError("no way", code="own_code"),
        "raises_cancelled": JobCancelledError(f"job {job.id} was canceled"),
        "times_out_raises": JobTimeoutError(JobTimeoutError.exceeded(30)),
        "times_out_raises_other": ValueError("the connection closed"),
        "times_out_raises_cancelled": JobCancelledError(f"job {job.id} was canceled"),
    }.get(stop)
    try:
        if stop == "given_up":
            outcomes.give_up(reporter, worker_clock.monotonic(), 15.0, ctx=ctx)
            assert ended == [True]
        else:
            outcomes.after_handler(job, ctx, reporter, worker_clock.monotonic(), "returned", raised)
    finally:
        ctx.close()
    final = store.get(submitted.id, mark_gone=False)
    assert (final.status, final.error.code if final.error else None) == \
        documented_ending(cancel, completed, failed, stop), final.error
    if final.status == JobStatus.COMPLETED:
        assert final.result == ({"rows": 3} if completed else "returned")


@pytest.mark.parametrize("look", ["artifact", "cancelled"])
def test_a_cancel_first_seen_after_fail_job_leaves_the_job_the_failures_code(store, queue, clock, look):
    """fail_job decided the job fails; its clean-up then met the cancel request, which a window's
    write had returned though the handler never looked: storing an artifact of the refused rows
    (JobCancelledError, replacing fail_job's error) or asking `ctx.cancelled()`. Failed first, the
    job keeps the failure's code, as with a cancel it never saw (no retry runs for it: canceled),
    not "canceled on request" for a request it had not looked at when it decided."""
    worker_clock, types = ManualClock(start=100.0), JobTypeRegistry()
    blobs = InMemoryBlobStore(clock=clock)
    artifacts = InMemoryArtifactStore(blobs, clock=clock, jobs=store)

    @types.register("t.fails_then_cleans_up", Empty, max_attempts=3)
    def fails_then_cleans_up(ctx, payload):
        try:
            ctx.progress(40, step="rows", message="row 400 of 1000")  # inside the claim's window: pending
            lifecycle.cancel("acme", ctx.job_id)
            worker_clock.advance(2)  # the window's write meets the request
            assert ctx.job.cancel_requested and not ctx.cancel_seen
            fail_job(ctx, "E_BAD_ROWS", "row 401 is not a number")
        finally:
            if look == "artifact":
                ctx.artifact("refused.txt", "row 401")
            else:
                assert ctx.cancelled()

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.fails_then_cleans_up", payload={})
    runner = JobRunner(lifecycle, types, clock=worker_clock, progress_interval_s=2, artifacts=artifacts)
    final = runner.run(queue.drain()[0])
    assert (final.status, final.error.code, final.error.message) == \
        (JobStatus.CANCELED, "E_BAD_ROWS", "row 401 is not a number"), final.error
    (run,) = store.runs(final.id)
    assert run.error.code == "E_BAD_ROWS"


def test_a_spawn_on_another_thread_meeting_the_cancel_after_fail_job_leaves_the_failures_code(
        store, queue, clock, monkeypatch):
    """A handler spawning from a thread of its own while its main thread calls fail_job: the
    spawn, under way as the failure is decided, then meets the job's cancel request
    (JobCancelledError on that thread). The failure was decided first: its code stands."""
    types = JobTypeRegistry()
    spawning, failed = threading.Event(), threading.Event()

    @types.register("t.child", Empty)
    def child(ctx, payload):
        return None

    @types.register("t.spawns_beside_fail", Empty, max_attempts=3)
    def spawns_beside_fail(ctx, payload):
        met = []

        def spawn():
            try:
                ctx.spawn("t.child", {})
            except JobCancelledError:
                met.append(True)

        spawner = threading.Thread(target=spawn)
        spawner.start()
        lifecycle.cancel("acme", ctx.job_id)
        assert spawning.wait(5)
        try:
            fail_job(ctx, "E_BAD_ROWS", "row 401 is not a number")
        finally:
            failed.set()
            spawner.join(5)
            assert met == [True] and ctx.cancel_seen

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    spawn = lifecycle.spawn

    def spawn_after_the_failure(*args, **kwargs):
        spawning.set()
        assert failed.wait(5)  # under way as the main thread fails the job
        return spawn(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "spawn", spawn_after_the_failure)
    lifecycle.submit(tenant="acme", user="ann", type="t.spawns_beside_fail", payload={})
    runner = JobRunner(lifecycle, types, clock=ManualClock(), progress_interval_s=2)
    final = runner.run(queue.drain()[0])
    assert (final.status, final.error.code) == (JobStatus.CANCELED, "E_BAD_ROWS"), final.error
    assert final.children == []


def test_a_spawn_waiting_for_another_threads_spawn_makes_no_child_once_fail_job_decided(
        store, queue, clock, monkeypatch):
    """docs/jobs.md: a ctx.spawn after fail_job makes no child (a failed job starts none that
    would run on without it). A handler fanning out from threads: one spawn is under way, another
    waits for it (spawns are made one at a time) when the main thread calls fail_job. The waiting
    one had been let through before the failure, and made its child once its turn came."""
    types = JobTypeRegistry()
    in_flight, release = threading.Event(), threading.Event()
    made, refused = [], []

    @types.register("t.child", Empty)
    def child(ctx, payload):
        return None

    @types.register("t.fans_out_then_fails", Empty, max_attempts=3)
    def fans_out_then_fails(ctx, payload):
        lock = ctx._spawn_lock = WatchedLock(ctx._spawn_lock)

        def spawn():
            try:
                made.append(ctx.spawn("t.child", {}))
            except Exception as exc:  # noqa: BLE001 - what the test is about
                refused.append(type(exc).__name__)

        first, second = threading.Thread(target=spawn), threading.Thread(target=spawn)
        first.start()
        assert in_flight.wait(5)
        second.start()
        assert lock.waiting.wait(5)
        try:
            fail_job(ctx, "E_BAD_ROWS", "row 401 is not a number")
        finally:
            release.set()
            first.join(5)
            second.join(5)

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    spawn = lifecycle.spawn

    def held_spawn(*args, **kwargs):
        in_flight.set()
        assert release.wait(5)
        return spawn(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "spawn", held_spawn)
    lifecycle.submit(tenant="acme", user="ann", type="t.fans_out_then_fails", payload={})
    runner = JobRunner(lifecycle, types, clock=ManualClock(), progress_interval_s=2)
    final = runner.run(queue.drain()[0])
    assert (len(made), refused) == (1, ["AttemptEndedError"]), (made, refused)
    assert (final.status, final.error.code, final.children) == (JobStatus.FAILED, "E_BAD_ROWS", made), final.error


def test_a_cancel_first_looked_at_once_the_time_ran_out_leaves_the_timeout(store, queue, clock):
    """docs/jobs.md: once the time ran out the attempt fails `timeout` whatever the handler does
    next; docs/api.md: an attempt that failed before its handler looked at the cancel request
    ends the job canceled with its own error. A retry loop that caught the interrupt and only
    then asked `ctx.cancelled()` made it "canceled on request", as if it had stopped for it."""
    types = JobTypeRegistry()

    @types.register("t.looks_after_its_timeout", Empty, timeout_s=1, max_attempts=3)
    def looks_after_its_timeout(ctx, payload):
        lifecycle.cancel("acme", ctx.job_id)  # requested while the handler works, not looked at
        while True:
            try:
                time.sleep(3)  # a call that outlives the timeout, interrupted
            except Exception:  # noqa: BLE001 - a retry loop around its calls
                pass
            if ctx.cancelled(fresh=True):
                return "stopped"

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.looks_after_its_timeout", payload={})
    final = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0).run(queue.drain()[0])
    assert (final.status, final.error.code) == (JobStatus.CANCELED, "timeout"), final.error
    assert queue.drain() == [], "no attempt after it"


def test_two_threads_failing_at_once_end_the_job_with_the_error_both_raise(store, queue, clock, monkeypatch):
    """docs/jobs.md: fail_job's first call decides, and the handler raises what it returns. Two
    threads of a handler failing at the same moment both found no failure recorded, each
    recorded its own, and the later write won: the job ended with one thread's code while the
    other raised its own. One decides now; both raise its error."""
    import chalicelib.worker.context as context_module

    types = JobTypeRegistry()
    first_inside, release = threading.Event(), threading.Event()
    raised = {}
    error_code = context_module.error_code

    def held_error_code(code, default):
        if code == "E_FIRST":
            first_inside.set()  # the first call is deciding: hold it there
            assert release.wait(5)
        return error_code(code, default)

    monkeypatch.setattr(context_module, "error_code", held_error_code)

    @types.register("t.fails_from_two_threads", Empty, max_attempts=3)
    def fails_from_two_threads(ctx, payload):
        lock = ctx._fail_lock = WatchedLock(getattr(ctx, "_fail_lock", threading.Lock()))

        def failing(code):
            try:
                fail_job(ctx, code, f"{code} said so")
            except FatalJobError as exc:
                raised[code] = exc.code

        first = threading.Thread(target=failing, args=("E_FIRST",))
        second = threading.Thread(target=failing, args=("E_SECOND",))
        first.start()
        assert first_inside.wait(5)
        second.start()
        while second.is_alive() and not lock.waiting.is_set():  # it waits for the first, or went past it
            second.join(0.01)
        release.set()
        first.join(5)
        second.join(5)
        return "unreachable: fail_job decided"

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.fails_from_two_threads", payload={})
    final = JobRunner(lifecycle, types, clock=ManualClock(), progress_interval_s=2).run(queue.drain()[0])
    assert (final.status, final.error.code) == (JobStatus.FAILED, "E_FIRST"), final.error
    assert raised == {"E_FIRST": "E_FIRST", "E_SECOND": "E_FIRST"}, raised


def ended_attempt(store, queue, clock, *, completed: bool, stop: str, raised: Optional[BaseException] = None):
    """The job and the events observed once its handler (complete_job first when `completed`)
    stopped as `stop` says: returned, raised (`raised`, else a ValueError of its own), ran past
    its 30 s timeout and returned or raised the interrupt, or went on 15.04 s past it (said to a
    tenth of a second) until it was given up on."""
    observed = []
    _, submitted, job, worker_clock, reporter, ctx, outcomes = driven_attempt(
        store, queue, clock, observe=lambda event, job_, extra: observed.append((event, extra)),
        end_process=lambda: None)
    if completed:
        ctx.complete({"rows": 3}, "three rows")
    if stop.startswith("times_out") or stop == "given_up":
        ctx.expire()
    raised = raised or {
        "raises": ValueError("the connection closed"),
        "times_out_raises": JobTimeoutError(JobTimeoutError.exceeded(30)),
    }.get(stop)
    try:
        if stop == "given_up":
            outcomes.give_up(reporter, worker_clock.monotonic(), 15.04, ctx=ctx)
        else:
            outcomes.after_handler(job, ctx, reporter, worker_clock.monotonic(), None, raised)
    finally:
        ctx.close()
    return store.get(submitted.id, mark_gone=False), observed


# docs/jobs.md (complete_job): the worker's `job completed` line carries a `warning` saying what
# went wrong after complete_job (and the error's `traceback`); none when nothing did.
AFTER_COMPLETE_JOB = {
    "returns": None,
    "raises": "the handler raised ValueError: the connection closed",
    "times_out_returns": "the handler ran past its timeout",
    "times_out_raises": f"the handler ran past its timeout ({JobTimeoutError.exceeded(30)})",
    "given_up": "the handler went on 15.0 s past its timeout and its worker process was ended",
}


@pytest.mark.parametrize("stop", list(AFTER_COMPLETE_JOB))
def test_the_completed_line_warns_of_what_went_wrong_after_complete_job_and_only_then(store, queue, clock, stop):
    """docs/jobs.md: a handler that raises, or runs past its timeout, after complete_job completes
    its job with the recorded result; the `completed` line's `warning` says what went wrong (the
    error's `traceback` beside it when the handler raised). A handler that returned in time gets
    no warning: an operator reading one looks for a fault."""
    final, observed = ended_attempt(store, queue, clock, completed=True, stop=stop)
    assert (final.status, final.result, final.progress.message) == (JobStatus.COMPLETED, {"rows": 3}, "three rows")
    (extra,) = [extra for event, extra in observed if event == "completed"]
    what = AFTER_COMPLETE_JOB[stop]
    if what is None:
        assert "warning" not in extra and "traceback" not in extra, extra
        return
    assert extra["warning"] == f"{what} after complete_job: the job completed with the result it recorded"
    assert ("traceback" in extra) == stop.endswith("raises"), extra
    if stop == "raises":
        assert "ValueError: the connection closed" in extra["traceback"]


def test_what_the_handler_raised_after_complete_job_is_warned_of_in_at_most_an_errors_length(store, queue, clock):
    """The `completed` line's warning names what the handler raised after complete_job, cut as a
    job's error message is (MAX_ERROR_MESSAGE_CHARS): an exception carrying a whole response body
    makes no log line of that size, its traceback's end beside it saying the rest."""
    from chalicelib.defaults import MAX_ERROR_MESSAGE_CHARS

    final, observed = ended_attempt(store, queue, clock, completed=True, stop="raises",
                                    raised=ValueError("x" * (MAX_ERROR_MESSAGE_CHARS + 500)))
    assert final.status == JobStatus.COMPLETED
    (extra,) = [extra for event, extra in observed if event == "completed"]
    what, _, rest = extra["warning"].partition(" after complete_job: ")
    assert rest == "the job completed with the result it recorded", extra["warning"][-100:]
    assert what.startswith("the handler raised ValueError: xxx")
    assert len(what) == len("the handler raised ") + MAX_ERROR_MESSAGE_CHARS, len(what)


@pytest.mark.parametrize(("stop", "said"), [
    ("times_out_returns", f"{JobTimeoutError.exceeded(30)} (it went on past its timeout)"),
    ("times_out_raises", JobTimeoutError.exceeded(30)),  # the interrupt's own
    ("given_up", f"{JobTimeoutError.exceeded(30, 15.0)} despite being interrupted: its worker process was ended"),
])
def test_a_timeout_says_whether_the_worker_process_was_ended(store, queue, clock, stop, said):
    """docs/jobs.md: a handler that goes on past its timeout until the give-up has its attempt
    failed `timeout` saying "its worker process was ended", one that returned late says it went
    on past its timeout, and one the interrupt stopped says what the interrupt said: the error
    tells an author which of the three their handler did."""
    final, _ = ended_attempt(store, queue, clock, completed=False, stop=stop)
    assert (final.status, final.error.code, final.error.message) == (JobStatus.RETRYING, "timeout", said)


def given_up(store, queue, clock, over_s: float, meanwhile=lambda: None):
    """A driven attempt its handler kept past its timeout by `over_s`, given up: its job, the
    lines observed, and one True per end of the process. `meanwhile` runs before the give-up."""
    seen, ended = [], []
    lifecycle, submitted, job, worker_clock, reporter, ctx, outcomes = driven_attempt(
        store, queue, clock, observe=lambda event, job_, extra: seen.append((event, extra)),
        end_process=lambda: ended.append(True))
    meanwhile()
    ctx.expire()
    try:
        outcomes.give_up(reporter, worker_clock.monotonic(), over_s, ctx=ctx)
    finally:
        ctx.close()
    return job, seen, ended


def test_the_process_ended_line_says_how_far_past_its_timeout_to_a_tenth_of_a_second(store, queue, clock):
    """The `process_ended` line says how long the handler went on past its timeout as read on
    the worker's clock, to a tenth of a second: not the float the clock's subtraction left."""
    job, seen, ended = given_up(store, queue, clock, 15.0400000001)
    assert ended == [True]
    assert [extra["over_s"] for event, extra in seen if event == "process_ended"] == [15.0]


def test_a_give_up_whose_write_hangs_ends_the_process_without_waiting_for_it(store, queue, clock, monkeypatch):
    """The give-up waits HANDLER_GIVE_UP_WRITE_S at most for its write: a store call that hangs
    does not keep the process from ending before the attempt's lease lapses."""
    monkeypatch.setattr(outcome, "HANDLER_GIVE_UP_WRITE_S", 0.1)
    release, written, ended = threading.Event(), [], []
    lifecycle, submitted, job, worker_clock, reporter, ctx, outcomes = driven_attempt(
        store, queue, clock, observe=lambda event, job_, extra: None, end_process=lambda: ended.append(list(written)))
    apply = store.apply

    def hanging_apply(*args, **kwargs):
        release.wait(10)
        landed = apply(*args, **kwargs)
        written.append(True)
        return landed

    monkeypatch.setattr(store, "apply", hanging_apply)
    ctx.expire()
    try:
        outcomes.give_up(reporter, worker_clock.monotonic(), 15.0, ctx=ctx)
    finally:
        release.set()
        ctx.close()
    assert ended == [[]], "the process ended only once its write landed"


def test_a_give_up_whose_write_the_store_refuses_says_so_and_still_ends_the_process(store, queue, clock, monkeypatch):
    """The table does not answer the give-up's write: the process ends all the same (the lease
    ends the attempt `worker_lost` instead) and the `process_ended_unrecorded` line says why
    the failure was not written, the only sign of it an operator gets."""
    def unanswered(*args, **kwargs):
        raise StoreUnavailableError("the table did not answer")

    job, seen, ended = given_up(store, queue, clock, 15.0,
                                meanwhile=lambda: monkeypatch.setattr(store, "apply", unanswered))
    assert ended == [True]
    assert ("process_ended_unrecorded", {"reason": "StoreUnavailableError: the table did not answer"}) in seen
    assert store.get(job.id, mark_gone=False).status == JobStatus.RUNNING


@pytest.mark.parametrize("stop", ["times_out_returns", "times_out_raises"])
def test_a_timeout_is_logged_with_where_the_handler_was_interrupted_when_it_raised_it(store, queue, clock, stop):
    """docs/operations.md: a failing attempt's `job retried` line carries the `traceback` of what
    the handler raised. A handler interrupted at its timeout raised the interrupt: its traceback
    says which call the time ran out in, the one thing an author needs to shorten it. One that
    returned late raised nothing, and has no traceback."""
    final, observed = ended_attempt(store, queue, clock, completed=False, stop=stop)
    assert (final.status, final.error.code) == (JobStatus.RETRYING, "timeout")
    (extra,) = [extra for event, extra in observed if event == "retried"]
    if stop == "times_out_raises":
        assert "JobTimeoutError: handler exceeded its timeout of 30 s" in extra["traceback"], extra
    else:
        assert "traceback" not in extra, extra


def test_a_long_traceback_is_logged_by_its_end_where_the_error_was_raised(store, queue, clock):
    """docs/operations.md: a failing attempt's line carries the `traceback` of what the handler
    raised, its last MAX_TRACEBACK_LOG_CHARS characters: the frames nearest the raise and the
    error itself, which say what went wrong, not the runner's frames it started from."""
    from chalicelib.defaults import MAX_TRACEBACK_LOG_CHARS

    def parse_list(depth: int) -> None:
        if depth == 0:
            raise ValueError("row 401 is not a number")
        parse_value(depth - 1)

    def parse_value(depth: int) -> None:
        parse_list(depth)

    try:
        parse_list(200)  # a recursive parser's traceback: far longer than a log line keeps
    except ValueError as exc:
        raised = exc
    _, observed = ended_attempt(store, queue, clock, completed=False, stop="raises", raised=raised)
    (extra,) = [extra for event, extra in observed if event == "retried"]
    assert len(extra["traceback"]) == MAX_TRACEBACK_LOG_CHARS, len(extra["traceback"])
    assert extra["traceback"].rstrip().endswith("ValueError: row 401 is not a number"), extra["traceback"][-200:]


@pytest.mark.parametrize("by", ["fail_job", "raised"])
@pytest.mark.parametrize("over", [0, 1])
def test_a_failures_message_keeps_max_error_message_chars_whole_and_cuts_past_them(store, queue, clock, by, over):
    """docs/jobs.md: a failed attempt's error keeps the first MAX_ERROR_MESSAGE_CHARS characters
    of its text, said by fail_job or by what the handler raised: a message of exactly that many
    is kept whole (not one character short), a longer one cut to them."""
    from chalicelib.defaults import MAX_ERROR_MESSAGE_CHARS

    _, submitted, job, worker_clock, reporter, ctx, outcomes = driven_attempt(
        store, queue, clock, observe=lambda event, job_, extra: None, end_process=lambda: None)
    text = "x" * (MAX_ERROR_MESSAGE_CHARS + over)
    raised: Optional[BaseException] = None
    if by == "fail_job":
        ctx.fail("E_LONG", text)
    else:
        raised = FatalJobError(text, code="E_LONG")
    try:
        outcomes.after_handler(job, ctx, reporter, worker_clock.monotonic(), None, raised)
    finally:
        ctx.close()
    final = store.get(submitted.id, mark_gone=False)
    assert (final.status, final.error.code) == (JobStatus.FAILED, "E_LONG")
    assert final.error.message == "x" * MAX_ERROR_MESSAGE_CHARS, len(final.error.message)


class Rows(BaseModel):
    rows: int


def test_a_spawn_refused_for_its_payload_fails_the_attempt_naming_the_field(store, queue, clock):
    """A handler whose ctx.spawn is refused for the child's payload (InvalidPayloadError), raised
    on, fails its attempt `invalid_payload`; the job's error has no details, so its message names
    each field and what is wrong with it, as the refusal's details said: "the payload is invalid"
    alone would leave the author guessing which of the child's fields to fix."""
    types = JobTypeRegistry()
    types.register("t.child_rows", Rows)(lambda ctx, payload: payload.rows)

    @types.register("t.spawns_bad_rows", Empty, max_attempts=3)
    def spawns_bad_rows(ctx, payload):
        ctx.spawn("t.child_rows", {"rows": "many"})

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.spawns_bad_rows", payload={})
    final = JobRunner(lifecycle, types, clock=ManualClock(), progress_interval_s=2).run(queue.drain()[0])
    assert final.error.code == "invalid_payload", final.error
    assert "rows: Input should be a valid integer" in final.error.message, final.error.message
    assert final.children == []


def test_a_handler_error_with_no_text_is_recorded_by_its_type_name(store, queue, clock):
    """A job's `error.message` is never empty: an error raised with no text (a FatalJobError("")
    of the handler's own code) is recorded by its type name, as one whose text cannot be had."""
    types = JobTypeRegistry()

    @types.register("t.says_nothing", Empty, max_attempts=3)
    def says_nothing(ctx, payload):
        raise FatalJobError("", code="E_SILENT")

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.says_nothing", payload={})
    final = JobRunner(lifecycle, types, clock=ManualClock(), progress_interval_s=2).run(queue.drain()[0])
    assert (final.status, final.error.code, final.error.message) == (JobStatus.FAILED, "E_SILENT", "FatalJobError")


def test_a_quota_refusal_the_handler_raises_retries_no_sooner_than_it_asks(store, queue, clock):
    """A handler stopped by its tenant's quota (ctx.spawn's QuotaExceededError, raised on) is
    retried, and its next attempt waits the `retry_after_s` the refusal asked, not the short
    backoff of a failed attempt: sooner, it would meet the same full quota and spend an attempt."""
    types = JobTypeRegistry()

    @types.register("t.over_quota", Empty, max_attempts=3)
    def over_quota(ctx, payload):
        raise QuotaExceededError("too many unfinished jobs", retry_after_s=600)

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    job = lifecycle.submit(tenant="acme", user="ann", type="t.over_quota", payload={})
    final = JobRunner(lifecycle, types, clock=ManualClock(), progress_interval_s=2).run(queue.drain()[0])
    assert (final.status, final.error.code) == (JobStatus.RETRYING, QuotaExceededError.code)
    (message, _, delay), = queue.sent
    assert (message.job_id, message.attempt, delay) == (job.id, 2, 600)


def test_only_a_quota_refusal_sets_the_wait_before_a_retry(store, queue, clock):
    """The wait a quota's refusal asks is the one error a handler raises that sets its retry's
    delay: an error of the handler's own (a client library's) that happens to carry a
    `retry_after_s` is retried after the ordinary backoff (1-2 s after a first attempt), as any
    other error, not after whatever that attribute holds."""
    class Throttled(Exception):
        retry_after_s = 600

    types = JobTypeRegistry()

    @types.register("t.throttled", Empty, max_attempts=3)
    def throttled(ctx, payload):
        raise Throttled("slow down")

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    job = lifecycle.submit(tenant="acme", user="ann", type="t.throttled", payload={})
    final = JobRunner(lifecycle, types, clock=ManualClock(), progress_interval_s=2).run(queue.drain()[0])
    assert (final.status, final.error.code) == (JobStatus.RETRYING, "handler_error")
    (message, _, delay), = queue.sent
    assert (message.job_id, message.attempt) == (job.id, 2) and 1 <= delay <= 2, delay


def test_each_failing_attempts_end_is_logged_with_its_error_and_where(store, queue, clock):
    """docs/operations.md: a worker logs each attempt's end as `job retried` or `job failed`; a
    failure adds `error_code`, `error_message` and, for what the handler raised, `traceback`,
    and the attempt's `duration_s` feeds the `job_duration` metric. So does a job no attempt of which can run (its type unknown to this worker: no handler
    ran, so no traceback)."""
    types, observed, worker_clock = JobTypeRegistry(), [], ManualClock(start=1000.0)

    @types.register("t.breaks", Empty, max_attempts=3)
    def breaks(ctx, payload):
        worker_clock.advance(5)  # the handler's run
        raise ValueError("row 401 is not a number")

    @types.register("t.refuses", Empty, max_attempts=3)
    def refuses(ctx, payload):
        raise FatalJobError("no way", code="bad_input")

    types.register("t.removed", Empty, max_attempts=3)(lambda ctx, payload: None)
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    for type_ in ("t.breaks", "t.refuses", "t.removed"):
        lifecycle.submit(tenant="acme", user="ann", type=type_, payload={})
    deployed = JobTypeRegistry()  # this worker's: t.removed is gone from it
    deployed.register("t.breaks", Empty, max_attempts=3)(breaks)
    deployed.register("t.refuses", Empty, max_attempts=3)(refuses)
    runner = JobRunner(lifecycle, deployed, clock=worker_clock, progress_interval_s=2,
                       observe=lambda event, job, extra: observed.append((event, job.type, extra)))
    for message in queue.drain():
        runner.run(message)
    ends = {job_type: (event, extra) for event, job_type, extra in observed if event != "started"}
    assert {t: (e, x["error_code"], x["error_message"]) for t, (e, x) in ends.items()} == {
        "t.breaks": ("retried", "handler_error", "ValueError: row 401 is not a number"),
        "t.refuses": ("failed", "bad_input", "no way"),
        "t.removed": ("failed", "unknown_job_type", "no handler is registered for 't.removed'"),
    }
    assert "ValueError: row 401 is not a number" in ends["t.breaks"][1]["traceback"]
    assert "FatalJobError" in ends["t.refuses"][1]["traceback"]
    assert "traceback" not in ends["t.removed"][1]
    # the `job_duration` metric (docs/operations.md) of each attempt whose handler ran
    assert (ends["t.breaks"][1]["duration_s"], ends["t.refuses"][1]["duration_s"]) == (5.0, 0.0), ends


def test_a_completed_a_canceled_and_a_refused_results_attempt_are_logged_with_their_duration(store, queue, clock):
    """docs/operations.md: `job_duration` counts every attempt that ended, so an attempt that
    completes, one that ends canceled on request and one whose returned result no job can hold
    are logged as `job completed`, `job canceled` and `job failed` with how long their handler
    ran, as one that raises is; each line with the job as its ending wrote it (its `status` the
    one the job now has, not `running`)."""
    types, observed, worker_clock = JobTypeRegistry(), [], ManualClock(start=1000.0)
    lifecycle = JobLifecycle(store, queue, types, clock=clock)

    @types.register("t.done", Empty, max_attempts=3)
    def done(ctx, payload):
        worker_clock.advance(3)
        return "ok"

    @types.register("t.stops", Empty, max_attempts=3)
    def stops(ctx, payload):
        worker_clock.advance(2)
        lifecycle.cancel("acme", ctx.job_id)
        assert ctx.cancelled(fresh=True)
        raise JobCancelledError(f"job {ctx.job_id} was canceled")

    @types.register("t.unstorable", Empty, max_attempts=3)
    def unstorable(ctx, payload):
        worker_clock.advance(4)
        return {1, 2}  # no JSON: failed `result_not_serializable`, for good

    for type_ in ("t.done", "t.stops", "t.unstorable"):
        lifecycle.submit(tenant="acme", user="ann", type=type_, payload={})
    runner = JobRunner(lifecycle, types, clock=worker_clock, progress_interval_s=2,
                       observe=lambda event, job, extra: observed.append((event, job, extra)))
    for message in queue.drain():
        runner.run(message)
    ends = {job.type: (event, job.status, extra.get("duration_s")) for event, job, extra in observed
            if event != "started"}
    assert ends == {"t.done": ("completed", JobStatus.COMPLETED, 3.0), "t.stops": ("canceled", JobStatus.CANCELED, 2.0),
                    "t.unstorable": ("failed", JobStatus.FAILED, 4.0)}


class Padded(BaseModel):
    pad: str = ""


def submit_near_the_bound(lifecycle, store, queue, job_type: str, *, left: int):
    """Submit a job of `job_type` (a Padded payload) padded so that its answer leaves `left`
    bytes to MAX_ANSWER_BYTES as submitted; its message is on `queue`."""
    from chalicelib.defaults import MAX_ANSWER_BYTES
    from chalicelib.domain.job import answer_bytes

    bare = lifecycle.submit(tenant="acme", user="ann", type=job_type, payload={"pad": ""})
    store._jobs.pop(bare.id)
    queue.drain()
    pad = "p" * (MAX_ANSWER_BYTES - answer_bytes(bare.public()) - left)
    return lifecycle.submit(tenant="acme", user="ann", type=job_type, payload={"pad": pad})


def test_a_failures_messages_beside_a_payload_near_the_bound_are_cut_to_the_room_left(queue, clock):
    """docs/jobs.md: beside a payload near the API's bound, a failure's error message, then its
    progress message, are cut further, ending in "…", to what the failed job's answer has room
    for: a failure is never refused, and never leaves a job no read returns. The room is
    measured leaving REPORT_SLACK_BYTES spare, as a progress report's is: a margin against a
    miscount of what the write adds, never taken by the messages."""
    from chalicelib.adapters.memory import InMemoryJobStore
    from chalicelib.defaults import MAX_ANSWER_BYTES, REPORT_SLACK_BYTES
    from chalicelib.domain.job import answer_bytes

    store = InMemoryJobStore(blobs=InMemoryBlobStore())  # a payload near 6 MB goes to S3
    types = JobTypeRegistry()

    @types.register("t.fails_long", Padded, max_attempts=1)
    def fails_long(ctx, payload):
        ctx.progress(10, details={"rows": "d" * 20_000})  # held in the window: the failure writes it
        raise ctx.fail("E_ROWS", "é" * 50_000, 50)  # 2,000 characters of error: 12,000 bytes

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    submit_near_the_bound(lifecycle, store, queue, "t.fails_long", left=30_000)
    final = JobRunner(lifecycle, types, clock=ManualClock(), progress_interval_s=2).run(queue.drain()[0])
    assert (final.status, final.error.code) == (JobStatus.FAILED, "E_ROWS")
    assert answer_bytes(final.public()) <= MAX_ANSWER_BYTES - REPORT_SLACK_BYTES
    assert final.progress.details == {"rows": "d" * 20_000} and final.progress.percent == 50
    error, progress = final.error.message, final.progress.message
    assert error.endswith("…") and error[:-1] and set(error[:-1]) == {"é"}, error[-10:]
    assert progress.endswith("…") and len(progress) < len(error), "the error's cut takes the room first"


def test_a_failures_message_that_fills_the_room_left_exactly_is_kept_whole(queue, clock):
    """Beside a payload near the API's bound, a failure's message is cut only when it does not
    fit: one that takes the room left to the last byte is kept whole, one byte more is cut,
    ending in "…". The room is read off a first failure's cut: what it kept, its "…" with it,
    measured as the answer carries it."""
    from chalicelib.adapters.memory import InMemoryJobStore
    from chalicelib.domain.job import answer_bytes

    store = InMemoryJobStore(blobs=InMemoryBlobStore())  # a payload near 6 MB goes to S3
    types, messages = JobTypeRegistry(), {}

    @types.register("t.fails", Padded, max_attempts=1)
    def fails(ctx, payload):
        raise ctx.fail("E_ROWS", messages[ctx.job_id])

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    runner = JobRunner(lifecycle, types, clock=ManualClock(), progress_interval_s=2)

    def failed_with(message: str) -> str:
        job = submit_near_the_bound(lifecycle, store, queue, "t.fails", left=2_500)
        messages[job.id] = message
        final = runner.run(queue.drain()[0])
        store._jobs.pop(final.id)  # room for the next one
        return final.error.message

    cut = failed_with("x" * 1_900)
    assert cut.endswith("…") and set(cut[:-1]) == {"x"}, cut[-10:]
    room = answer_bytes(cut)
    assert failed_with("x" * room) == "x" * room
    over = failed_with("x" * (room + 1))
    assert over.endswith("…") and len(over) < room + 1, over[-10:]


@pytest.mark.parametrize(("max_attempts", "status", "logged", "said", "raised"), [
    (1, JobStatus.FAILED, "failed", ("dead_letter", "owed"), DeadLetterOwedError),
    (2, JobStatus.RETRYING, "retried", ("next_attempt", "unsent"), NextAttemptUnsentError),
    (1, JobStatus.FAILED, "failed", ("dead_letter", "unconfirmed"), None)])
def test_a_failure_whose_message_did_not_go_is_logged_as_such_and_fails_the_delivery(
        store, queue, clock, monkeypatch, max_attempts, status, logged, said, raised):
    """docs/reliability.md: the failed write comes first; when the dead-letter queue (or, for a
    retry, the jobs queue) does not answer, the job still reads failed (retrying), the worker's
    `job failed` (`job retried`) line says what is owed, and the delivery fails, so that its
    message, back, parks the letter (starts the next attempt). A dead letter sent whose answer
    was lost may be on its queue: the job is marked `dead_letter_unconfirmed`, the line says
    `dead_letter: unconfirmed` (the reconciler's next pass settles it, not a message coming
    back) and the delivery is acknowledged."""
    from chalicelib.domain.errors import LetterUnconfirmedError

    types, observed = JobTypeRegistry(), []

    def answer_lost(*args, **kwargs):
        raise LetterUnconfirmedError("the dead-letter queue's answer was lost")

    @types.register("t.breaks", Empty, max_attempts=max_attempts)
    def breaks(ctx, payload):
        if raised is None:
            monkeypatch.setattr(queue, "dead_letter", answer_lost)
        else:
            queue.fail_sends = True  # the queues stop answering while the handler runs
        raise ValueError("row 401 is not a number")

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    submitted = lifecycle.submit(tenant="acme", user="ann", type="t.breaks", payload={})
    runner = JobRunner(lifecycle, types, clock=ManualClock(), progress_interval_s=2,
                       observe=lambda event, job, extra: observed.append((event, extra)))
    with pytest.raises(raised) if raised else contextlib.nullcontext():
        runner.run(queue.drain()[0])
    stored = store.get(submitted.id, mark_gone=False)
    assert (stored.status, stored.dead_letter_unconfirmed) == (status, True if raised is None else None)
    ends = [(event, extra.get(said[0]), extra.get("error_code"), "duration_s" in extra)
            for event, extra in observed if event != "started"]
    assert ends == [(logged, said[1], "handler_error", True)], "the line says how long the attempt ran, as any end's"
