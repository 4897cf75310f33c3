"""The worker helpers keep their word: `complete_job` records its result, `fail_job` fails with
the caller's code whatever the percent, `start_job` and `progress` report as documented."""
import pytest
from pydantic import BaseModel

from chalicelib.adapters.clocks import SystemClock
from chalicelib.defaults import MAX_EVENT_TEXT_CHARS, MAX_PROGRESS_MESSAGE_CHARS
from chalicelib.domain.errors import FatalJobError, JobCancelledError, ProgressRejectedError
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.domain.status import JobStatus
from chalicelib.events.changes import events_for_change
from chalicelib.job_types import build_registry
from chalicelib.lifecycle import JobLifecycle
from chalicelib.worker.helpers import Completion, complete_job, fail_job, progress, start_job
from chalicelib.worker.runner import JobRunner

default_registry = build_registry(demo_types=True)


class Empty(BaseModel):
    pass


class Padded(BaseModel):
    pad: str


def make_types(seen):
    types = JobTypeRegistry()

    @types.register("h.complete_no_return", Empty)
    def complete_no_return(ctx, payload):
        progress(ctx, 40, "work", "working")
        complete_job(ctx, {"model": "output.stl"}, "Model processing complete")

    @types.register("h.report_refused_by_the_store", Padded, max_attempts=1)
    def report_refused_by_the_store(ctx, payload):
        progress(ctx, 10, "load", force=True)
        try:  # fits a report, not the record beside this payload
            progress(ctx, 30, "load", "m" * 300_000, {"d": "x" * 32_000}, force=True)
        except ProgressRejectedError:
            seen.append(ctx.progress_percent)
        start_job(ctx, "resuming with less to say")
        seen.append(ctx.job.progress.percent)
        progress(ctx, 20, "load", "a shorter report", force=True)
        seen.append(ctx.job.progress.percent)

    @types.register("h.complete_returned", Empty)
    def complete_returned(ctx, payload):
        done = complete_job(ctx, [1, 2, 3], "listed")
        seen.append(done)
        return done

    @types.register("h.complete_then_other_return", Empty)
    def complete_then_other_return(ctx, payload):
        complete_job(ctx, {"kept": True}, "kept")
        return {"ignored": True}

    @types.register("h.fail_lower_percent", Empty, max_attempts=3)
    def fail_lower_percent(ctx, payload):
        progress(ctx, 80, "processing", "far along", force=True)
        fail_job(ctx, "MODEL_ERROR", "the mesh is broken", progress_percent=75)

    @types.register("h.fail_higher_percent", Empty, max_attempts=3)
    def fail_higher_percent(ctx, payload):
        progress(ctx, 20, "processing")
        fail_job(ctx, "MODEL_ERROR", "late failure", progress_percent=90)

    @types.register("h.fail_bad_percent", Empty, max_attempts=3)
    def fail_bad_percent(ctx, payload):
        fail_job(ctx, "E_BAD", "odd percent", progress_percent="lots")

    @types.register("h.fail_swallowed", Empty, max_attempts=3)
    def fail_swallowed(ctx, payload):
        try:
            fail_job(ctx, "FIRST", "the first word")
        except FatalJobError:
            pass
        return {"pretend": "fine"}

    @types.register("h.fail_then_other_error", Empty, max_attempts=3)
    def fail_then_other_error(ctx, payload):
        try:
            fail_job(ctx, "FIRST", "the first word")
        except FatalJobError:
            raise RuntimeError("cleanup broke")

    @types.register("h.seed_example", Empty, max_attempts=3)
    def seed_example(ctx, payload):
        try:
            start_job(ctx, "Initializing")
            progress(ctx, 60, "processing", "Processing")
            raise ValueError("disk full")
        except Exception as e:
            fail_job(ctx, "MODEL_ERROR", str(e))
            raise

    @types.register("h.start_after_progress", Empty)
    def start_after_progress(ctx, payload):
        progress(ctx, 30, "early")  # still pending: the throttle window is open
        start_job(ctx, "Beginning processing")
        seen.append(ctx.job.progress.model_dump())
        return "ok"

    @types.register("h.progress_forced", Empty)
    def progress_forced(ctx, payload):
        progress(ctx, 30, "load", "rows loaded", force=True)
        seen.append(ctx.job.progress.model_dump())
        return "ok"

    @types.register("h.progress_decrease", Empty, max_attempts=1)
    def progress_decrease(ctx, payload):
        progress(ctx, 50, "half", "Halfway done", {"items": 100}, force=True)
        seen.append(ctx.job.progress.model_dump())
        try:
            progress(ctx, 40)
        except ProgressRejectedError as exc:
            seen.append(exc.code)
        return None

    return types


@pytest.fixture
def seen():
    return []


@pytest.fixture
def env(store, queue, clock, seen):
    types = make_types(seen)
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    return lifecycle, JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0)


def run(env, queue, type_):
    lifecycle, runner = env
    lifecycle.submit(tenant="acme", user="ann", type=type_, payload={})
    (message,) = queue.drain()
    return runner.run(message)


def test_complete_job_records_its_result_without_a_return(env, queue):
    final = run(env, queue, "h.complete_no_return")
    assert final.status == JobStatus.COMPLETED
    assert final.result == {"model": "output.stl"}
    assert final.progress.percent == 100 and final.progress.message == "Model processing complete"


def test_complete_job_returned_is_the_same_completion(env, queue, seen):
    final = run(env, queue, "h.complete_returned")
    assert final.result == [1, 2, 3] and final.progress.message == "listed"
    assert seen == [Completion([1, 2, 3], "listed")]  # what the handler holds is what the job completed with


def test_complete_job_wins_over_another_return_value(env, queue):
    final = run(env, queue, "h.complete_then_other_return")
    assert final.result == {"kept": True}


def test_fail_job_with_a_lower_percent_fails_with_the_callers_code_once(env, queue, store):
    final = run(env, queue, "h.fail_lower_percent")
    assert final.status == JobStatus.FAILED and final.attempts == 1
    assert final.error.code == "MODEL_ERROR" and final.error.message == "the mesh is broken"
    assert final.progress.percent == 80  # never moved backwards
    assert final.progress.step == "failed" and final.progress.message == "the mesh is broken"
    assert queue.sent == []  # no retry was scheduled


def test_fail_job_records_a_higher_percent(env, queue):
    final = run(env, queue, "h.fail_higher_percent")
    assert final.status == JobStatus.FAILED and final.error.code == "MODEL_ERROR"
    assert final.progress.percent == 90


def test_fail_job_with_an_invalid_percent_still_fails_with_the_callers_code(env, queue):
    final = run(env, queue, "h.fail_bad_percent")
    assert final.status == JobStatus.FAILED and final.error.code == "E_BAD" and final.attempts == 1


def test_fail_job_holds_even_when_the_handler_swallows_its_error(env, queue):
    final = run(env, queue, "h.fail_swallowed")
    assert final.status == JobStatus.FAILED and final.error.code == "FIRST" and final.result is None


def test_fail_job_holds_when_the_handler_raises_something_else_after(env, queue):
    final = run(env, queue, "h.fail_then_other_error")
    assert final.status == JobStatus.FAILED and final.attempts == 1
    assert (final.error.code, final.error.message) == ("FIRST", "the first word")


def test_seed_usage_except_fail_job_raise_fails_without_retry(env, queue):
    final = run(env, queue, "h.seed_example")
    assert final.status == JobStatus.FAILED and final.attempts == 1
    assert (final.error.code, final.error.message) == ("MODEL_ERROR", "disk full")
    assert final.progress.percent == 60


def written_at_once(store, queue, clock, seen, job_type: str) -> dict:
    """What the one progress write of a `job_type` job, run with no window ending while it runs,
    wrote (its handler reads it back into `seen`)."""
    types = make_types(seen)
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    runner = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=3600)  # nothing due by time
    lifecycle.submit(tenant="acme", user="ann", type=job_type, payload={})
    (message,) = queue.drain()
    assert runner.run(message).status == JobStatus.COMPLETED
    (written,) = seen
    return written


def test_start_job_writes_at_once_at_the_percent_reached(store, queue, clock, seen):
    written = written_at_once(store, queue, clock, seen, "h.start_after_progress")
    assert written["percent"] == 30 and written["step"] == "started"
    assert written["message"] == "Beginning processing"


def test_progress_forced_writes_at_once_inside_the_window(store, queue, clock, seen):
    """`force=True` is passed on: the report is written at the call, not held for the window."""
    written = written_at_once(store, queue, clock, seen, "h.progress_forced")
    assert (written["percent"], written["step"], written["message"]) == (30, "load", "rows loaded")


def test_a_report_the_store_refused_leaves_the_percent_the_job_holds(env, queue, seen):
    """A report the store refuses (no room on the record beside a large payload) counts for
    nothing: `ctx.progress_percent` reads the percent the job holds, `start_job` reports at it,
    and a report between the two is no decrease."""
    lifecycle, runner = env
    lifecycle.submit(tenant="acme", user="ann", type="h.report_refused_by_the_store", payload={"pad": "p" * 90_000})
    (message,) = queue.drain()
    final = runner.run(message)
    assert seen == [10, 10, 20]
    assert final.status == JobStatus.COMPLETED, final.error


def test_progress_writes_the_seed_fields_and_refuses_a_decrease(env, queue, seen):
    final = run(env, queue, "h.progress_decrease")
    assert seen[0]["percent"] == 50 and seen[0]["step"] == "half"
    assert seen[0]["message"] == "Halfway done" and seen[0]["details"] == {"items": 100}
    assert seen[1] == "progress_rejected"
    assert final.status == JobStatus.COMPLETED and final.result is None


def test_a_cancel_seen_by_the_handler_wins_over_fail_job(store, queue, clock):
    types = JobTypeRegistry()

    @types.register("h.cancel", Empty)
    def cancelled(ctx, payload):
        try:
            progress(ctx, 10, "one", force=True)
        except Exception as e:
            fail_job(ctx, "MODEL_ERROR", str(e))
            raise

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    runner = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0)
    job = lifecycle.submit(tenant="acme", user="ann", type="h.cancel", payload={})
    (message,) = queue.drain()
    original = store.record_progress

    def cancel_first(job_id, attempt, progress_, **kwargs):
        lifecycle.cancel("acme", job_id)
        return original(job_id, attempt, progress_, **kwargs)

    store.record_progress = cancel_first
    assert runner.run(message).status == JobStatus.CANCELED


@pytest.mark.parametrize("learns", ["poll", "report"])
def test_a_fail_job_percent_after_the_handler_saw_the_cancel_is_not_the_canceled_jobs_progress(store, queue, clock, learns):
    """Once the handler has seen the cancel request a report is not kept for the `canceled`
    write (docs/jobs.md), and `fail_job`'s is no exception: the job ends canceled showing the
    progress its handler reached, not step `failed` at the percent it gave with its message."""
    types = JobTypeRegistry()

    @types.register("h.fail_after_cancel", Empty, max_attempts=3)
    def fail_after_cancel(ctx, payload):
        progress(ctx, 40, "work", "forty done", force=True)
        lifecycle.cancel("acme", ctx.job_id)
        if learns == "poll":
            assert ctx.cancelled(fresh=True)
        else:  # the report's write meets the request
            with pytest.raises(JobCancelledError):
                progress(ctx, 50, "work", "fifty done", force=True)
        fail_job(ctx, "MODEL_ERROR", "giving up", progress_percent=90)

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    runner = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0)
    lifecycle.submit(tenant="acme", user="ann", type="h.fail_after_cancel", payload={})
    (message,) = queue.drain()
    final = runner.run(message)
    assert final.status == JobStatus.CANCELED
    # the report whose write met the request was made before the attempt knew of it: it is kept
    reached = (40, "work", "forty done") if learns == "poll" else (50, "work", "fifty done")
    assert (final.progress.percent, final.progress.step, final.progress.message) == reached


@pytest.mark.parametrize("window_ends", [False, True], ids=["before_the_windows_end", "after_it"])
def test_a_fail_job_percent_with_a_cancel_the_handler_never_saw_ends_alike_whenever_the_window_ends(
        store, queue, clock, window_ends):
    """A cancel request the handler never saw leaves fail_job its word (the job ends canceled,
    its error kept): whether the window's end wrote the report before it, meeting the request,
    or not, the job shows the failure's percent and message."""
    from chalicelib.adapters.clocks import ManualClock

    worker_clock = ManualClock(start=100.0)
    types = JobTypeRegistry()

    @types.register("h.fail_with_an_unseen_cancel", Empty, max_attempts=3)
    def fail_with_an_unseen_cancel(ctx, payload):
        progress(ctx, 40, "work", "forty done")  # inside the claim's window: pending
        lifecycle.cancel("acme", ctx.job_id)
        if window_ends:
            worker_clock.advance(2)  # its write meets the request
            assert ctx.job.cancel_requested
        fail_job(ctx, "MODEL_ERROR", "giving up", progress_percent=90)

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    runner = JobRunner(lifecycle, types, clock=worker_clock, progress_interval_s=2)
    lifecycle.submit(tenant="acme", user="ann", type="h.fail_with_an_unseen_cancel", payload={})
    (message,) = queue.drain()
    final = runner.run(message)
    assert (final.status, final.error.code) == (JobStatus.CANCELED, "MODEL_ERROR")
    assert (final.progress.percent, final.progress.step, final.progress.message) == (90, "failed", "giving up")


@pytest.mark.parametrize("window_ends", [False, True], ids=["before_the_handler_ends", "after_it"])
@pytest.mark.parametrize("ending", ["return", "fail_job", "raise"])
def test_a_report_its_record_has_no_room_for_ends_the_job_alike_whenever_its_window_ends(
        store, queue, clock, window_ends, ending):
    """A throttled report that fits a report but not the record beside a large payload is carried
    by the attempt's outcome, its message cut (docs/jobs.md), whether the handler ended before
    its window did or the window's end tried to write it first."""
    from chalicelib.adapters.clocks import ManualClock

    worker_clock = ManualClock(start=100.0)
    types = JobTypeRegistry()

    @types.register("h.report_the_record_has_no_room_for", Padded, max_attempts=1)
    def report_the_record_has_no_room_for(ctx, payload):
        progress(ctx, 10, "load", "ten", force=True)
        progress(ctx, 30, "load", "m" * 300_000, {"rows": "x" * 32_000})  # inside the window
        if window_ends:
            worker_clock.advance(2)
        if ending == "fail_job":
            fail_job(ctx, "E_LOAD", "could not load")
        if ending == "raise":
            raise ValueError("boom")
        return {"loaded": True}

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    runner = JobRunner(lifecycle, types, clock=worker_clock, progress_interval_s=2)
    lifecycle.submit(tenant="acme", user="ann", type="h.report_the_record_has_no_room_for",
                     payload={"pad": "p" * 90_000})
    (message,) = queue.drain()
    final = runner.run(message)
    assert final.status == (JobStatus.COMPLETED if ending == "return" else JobStatus.FAILED), final.error
    assert final.progress.percent == (100 if ending == "return" else 30)
    cut = final.progress.message
    assert (len(cut), cut[-2:]) == (MAX_EVENT_TEXT_CHARS, "m…") and final.progress.details == {"rows": "x" * 32_000}


@pytest.mark.parametrize("interval_s", [0, 60], ids=["report_written", "report_pending"])
def test_complete_job_refuses_at_the_call_a_message_with_no_room_beside_the_last_reports_details(
        store, queue, clock, interval_s):
    """The completion keeps the last report's details beside its message: a message that fits a
    report alone, but not with those details, raises ProgressRejectedError at the call, as a
    report carrying both would, instead of the completion's write finding no room in the
    record and cutting the message the handler gave."""
    types, seen = JobTypeRegistry(), []

    @types.register("h.complete_beside_large_details", Padded, max_attempts=1)
    def complete_beside_large_details(ctx, payload):
        progress(ctx, 50, "rows", "half", {"rows": "x" * 32_000})
        try:
            complete_job(ctx, {"rows": 2}, "\U0001F600" * 80_000)  # 320,000 bytes in UTF-8
        except ProgressRejectedError as exc:
            seen.append(str(exc))
            complete_job(ctx, {"rows": 2}, "done")

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    runner = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=interval_s)
    lifecycle.submit(tenant="acme", user="ann", type="h.complete_beside_large_details",
                     payload={"pad": "p" * 60_000})
    (message,) = queue.drain()
    final = runner.run(message)
    assert len(seen) == 1 and "320,000 bytes in UTF-8 and its details 32,011 as JSON" in seen[0], seen
    assert "the last progress report's details" in seen[0]
    assert final.status == JobStatus.COMPLETED and final.result == {"rows": 2}
    assert (final.progress.message, final.progress.details) == ("done", {"rows": "x" * 32_000})


def test_a_report_after_complete_job_with_no_room_beside_its_final_message_is_refused_at_the_call(
        store, queue, clock):
    """The other way round: the details of a report made after `complete_job` are the ones its
    final message will stand beside."""
    types, seen = JobTypeRegistry(), []

    @types.register("h.details_after_completion", Padded, max_attempts=1)
    def details_after_completion(ctx, payload):
        complete_job(ctx, {"rows": 2}, "\U0001F600" * 80_000)
        try:
            progress(ctx, 100, "rows", "all", {"rows": "x" * 32_000})
        except ProgressRejectedError as exc:
            seen.append(str(exc))
        progress(ctx, 100, "rows", "all", {"rows": 2})

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    runner = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0)
    lifecycle.submit(tenant="acme", user="ann", type="h.details_after_completion", payload={"pad": "p" * 60_000})
    (message,) = queue.drain()
    final = runner.run(message)
    assert len(seen) == 1 and "the last progress report's details" in seen[0], seen
    assert final.status == JobStatus.COMPLETED and final.progress.details == {"rows": 2}
    assert final.progress.message == "\U0001F600" * 80_000


def test_demo_model_completes_through_the_helpers(store, queue, clock):
    lifecycle = JobLifecycle(store, queue, default_registry, clock=clock)
    runner = JobRunner(lifecycle, default_registry, clock=SystemClock(), progress_interval_s=0)
    lifecycle.submit(tenant="acme", user="ann", type="demo.model", payload={"step_ms": 0})
    (message,) = queue.drain()
    final = runner.run(message)
    assert final.status == JobStatus.COMPLETED
    assert final.result == {"model": "output.stl", "size": 1024}
    assert final.progress.message == "Model processing complete"


def test_demo_model_fails_with_model_error_and_no_retry(store, queue, clock):
    lifecycle = JobLifecycle(store, queue, default_registry, clock=clock)
    runner = JobRunner(lifecycle, default_registry, clock=SystemClock(), progress_interval_s=0)
    lifecycle.submit(tenant="acme", user="ann", type="demo.model", payload={"step_ms": 0, "fail_at": 50})
    (message,) = queue.drain()
    final = runner.run(message)
    assert final.status == JobStatus.FAILED and final.attempts == 1
    assert final.error.code == "MODEL_ERROR" and "step 50%" in final.error.message
    assert final.progress.percent == 50


def test_a_completion_returned_without_complete_job_is_the_result_and_message(store, queue, clock):
    """`Completion` is exported beside `complete_job`: a handler that returns one it made (a
    library's, say, never recorded on its ctx) completes with its result and message."""
    types = JobTypeRegistry()
    types.register("h.completion_made", Empty)(lambda ctx, payload: Completion({"rows": 3}, "three rows"))
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    final = run((lifecycle, JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0)),
                queue, "h.completion_made")
    assert final.status == JobStatus.COMPLETED and final.result == {"rows": 3}
    assert final.progress.message == "three rows"


def test_a_handler_reads_its_jobs_tenant_scope_and_attempt_on_its_ctx(store, queue, clock):
    """A handler's ctx names the job it runs: its id, the tenant that submitted it, the scope it
    was submitted in and which attempt this is, so that what it writes elsewhere (a tenant's
    bucket, a scope's rows) goes where the job belongs."""
    types = JobTypeRegistry()
    types.register("h.says_whose", Empty)(
        lambda ctx, payload: {"id": ctx.job_id, "tenant": ctx.tenant, "scope": ctx.scope, "attempt": ctx.attempt})
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    job = lifecycle.submit(tenant="acme", user="ann", type="h.says_whose", payload={}, scope="invoices-eu")
    final = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0).run(queue.drain()[0])
    assert final.result == {"id": job.id, "tenant": "acme", "scope": "invoices-eu", "attempt": 1}, final.result


@pytest.mark.parametrize("message", ["x" * (MAX_PROGRESS_MESSAGE_CHARS + 1), "caf\udcff"], ids=["too_long", "lone_surrogate"])
def test_a_completion_made_with_a_message_no_report_could_carry_is_refused_where_it_is_made(message):
    """A handler that returns a `Completion` it made (no complete_job) is told at the call, as
    `ctx.progress` would tell it, that its final message is one no report could carry: the
    completion's write could not store it, and the job would fail far from the line at fault."""
    with pytest.raises(ProgressRejectedError):
        Completion({"rows": 3}, message)


@pytest.mark.parametrize("percent", [75, None], ids=["with_a_percent", "without"])
@pytest.mark.parametrize("interval_s", [0, 60], ids=["report_written", "report_pending"])
def test_a_report_after_fail_job_leaves_the_job_showing_the_failures_progress(store, queue, clock, percent, interval_s):
    """A report made once `fail_job` decided the attempt's end (a `finally:` block's) is not
    taken: the failed job shows the progress the failure recorded, not the clean-up's."""
    types = JobTypeRegistry()

    @types.register("h.report_in_finally", Empty, max_attempts=3)
    def report_in_finally(ctx, payload):
        try:
            progress(ctx, 40, "work", "forty done", force=True)
            fail_job(ctx, "MODEL_ERROR", "the mesh is broken", progress_percent=percent)
        finally:
            progress(ctx, 90, "cleanup", "closed the session")
            start_job(ctx, "never shown")

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    runner = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=interval_s)
    lifecycle.submit(tenant="acme", user="ann", type="h.report_in_finally", payload={})
    (message,) = queue.drain()
    final = runner.run(message)
    assert (final.status, final.error.code, final.attempts) == (JobStatus.FAILED, "MODEL_ERROR", 1)
    shown = (final.progress.percent, final.progress.step, final.progress.message)
    assert shown == ((75, "failed", "the mesh is broken") if percent else (40, "work", "forty done"))


def test_a_report_after_fail_job_with_a_cancel_the_handler_never_saw_leaves_the_failures_error(store, queue, clock):
    """A report after `fail_job` is not taken, and raises nothing, even once a write returned a
    cancel request the handler never looked at: the job ends canceled keeping the failure's
    error (docs/jobs.md), not as if the clean-up's report had seen the request."""
    from chalicelib.adapters.clocks import ManualClock

    worker_clock = ManualClock(start=100.0)
    types, raised = JobTypeRegistry(), []

    @types.register("h.report_in_finally_past_a_cancel", Empty, max_attempts=3)
    def report_in_finally_past_a_cancel(ctx, payload):
        try:
            progress(ctx, 40, "work", "forty done")  # inside the claim's window: pending
            lifecycle.cancel("acme", ctx.job_id)
            worker_clock.advance(2)  # its write meets the request
            assert ctx.job.cancel_requested
            fail_job(ctx, "MODEL_ERROR", "giving up")
        finally:
            try:
                progress(ctx, 90, "cleanup", "closed the session")
            except Exception as exc:  # noqa: BLE001 - what the test is about
                raised.append(type(exc).__name__)

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    runner = JobRunner(lifecycle, types, clock=worker_clock, progress_interval_s=2)
    lifecycle.submit(tenant="acme", user="ann", type="h.report_in_finally_past_a_cancel", payload={})
    (message,) = queue.drain()
    final = runner.run(message)
    assert raised == []
    assert (final.status, final.error.code) == (JobStatus.CANCELED, "MODEL_ERROR")
    assert (final.progress.percent, final.progress.message) == (40, "forty done")


def run_observed(store, queue, clock, types, type_):
    """A job of `type_` run once by a runner whose observations are kept: (the job as the run
    left it, the job as it was stored when its handler ended, what the runner observed)."""
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    observed, before = [], []

    def observe(event, job, extra):
        observed.append((event, extra))

    runner = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0, observe=observe)
    submitted = lifecycle.submit(tenant="acme", user="ann", type=type_, payload={})
    (message,) = queue.drain()
    complete = lifecycle.complete

    def complete_seen(job, *args, **kwargs):  # the record as the outcome's write found it
        before.append(store.get(job.id, mark_gone=False))
        return complete(job, *args, **kwargs)

    lifecycle.complete = complete_seen
    final = runner.run(message)
    return final, (before or [store.get(submitted.id, mark_gone=False)])[0], observed


@pytest.mark.parametrize("then", ["complete_again", "raise", "complete_again_then_raise", "fail_job"])
def test_what_a_handler_does_after_complete_job_decides_as_docs_jobs_md_says(store, queue, clock, then):
    """docs/jobs.md's complete_job row: called again, the last call's result; a handler that
    raises after it (a clean-up in `finally:` that fails, as closing a connection may) has done
    the work it said was complete: the job completes with the recorded result, not retried (its
    side effects would run again), the error logged as a warning on the `completed` line. The
    run record and the status event say completed too. A fail_job after it fails the job with
    its code."""
    types = JobTypeRegistry()

    @types.register("h.after_complete", Empty, max_attempts=3)
    def after_complete(ctx, payload):
        try:
            complete_job(ctx, {"rows": 1}, "first")
            if then.startswith("complete_again"):
                complete_job(ctx, {"rows": 2}, "second")
            elif then == "fail_job":
                fail_job(ctx, "E_LATE", "found a fault after all")
        finally:
            if then.endswith("raise"):
                raise OSError("the connection would not close")

    final, before, observed = run_observed(store, queue, clock, types, "h.after_complete")
    if then == "fail_job":
        assert (final.status, final.error.code, final.result) == (JobStatus.FAILED, "E_LATE", None)
        return
    expected = ({"rows": 2}, "second") if then.startswith("complete_again") else ({"rows": 1}, "first")
    assert (final.status, final.result, final.progress.message) == (JobStatus.COMPLETED, *expected), final.error
    assert (final.attempts, final.error) == (1, None)
    assert queue.drain() == [], "no attempt after it"
    (run_,) = store.runs(final.id)
    assert (run_.status, run_.error) == (JobStatus.COMPLETED, None)
    (event,) = events_for_change(before, final, "2026-01-01T00:00:00.000Z")
    assert (event.event_type, event.status, event.error) == ("job.status.changed", "completed", None)
    (extra,) = [extra for event, extra in observed if event == "completed"]
    assert [event for event, _ in observed] == ["started", "completed"]
    if then.endswith("raise"):
        assert extra["warning"] == ("the handler raised OSError: the connection would not close after "
                                    "complete_job: the job completed with the result it recorded")
        assert "OSError: the connection would not close" in extra["traceback"]
    else:
        assert "warning" not in extra


def test_a_spawn_after_fail_job_makes_no_child_of_the_failed_job(store, queue, clock):
    """docs/jobs.md's fail_job row: once fail_job decided that the job fails, `ctx.spawn` (a
    `finally:` block's follow-up) raises AttemptEndedError and makes no child: before, the child
    was made, listed and queued, and ran on although its parent had failed."""
    from chalicelib.domain.errors import AttemptEndedError

    types, refused = JobTypeRegistry(), []
    types.register("h.child", Empty)(lambda ctx, payload: None)

    @types.register("h.spawns_in_finally", Empty, max_attempts=3)
    def spawns_in_finally(ctx, payload):
        try:
            fail_job(ctx, "E_BAD_INPUT", "the rows do not add up")
        finally:
            try:
                ctx.spawn("h.child", {})
            except AttemptEndedError as exc:
                refused.append(exc.message)

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    final = run((lifecycle, JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0)),
                queue, "h.spawns_in_finally")
    assert (final.status, final.error.code, final.children) == (JobStatus.FAILED, "E_BAD_INPUT", [])
    assert refused == [f"job {final.id} has failed (fail_job 'E_BAD_INPUT'): child 'h.child' is not spawned"]
    assert queue.drain() == [], "no child queued, no attempt after it"
    assert store.count_unfinished("acme", 10) == 0, "no child made"


@pytest.mark.parametrize("how", ["complete_job", "ctx.complete"])
def test_complete_job_after_fail_job_is_refused_at_the_call(store, queue, clock, how):
    """docs/jobs.md's complete_job row: once fail_job decided that the job fails, complete_job
    (or ctx.complete) raises AttemptEndedError and records nothing, instead of returning a
    Completion the handler could take for the job's end while the job fails all the same."""
    from chalicelib.domain.errors import AttemptEndedError

    types, seen = JobTypeRegistry(), []

    @types.register("h.complete_after_fail", Empty, max_attempts=3)
    def complete_after_fail(ctx, payload):
        try:
            fail_job(ctx, "E_BAD_INPUT", "the rows do not add up")
        except FatalJobError:
            pass
        try:
            (complete_job if how == "complete_job" else lambda c, *a: c.complete(*a))(ctx, {"rows": 1}, "done")
        except AttemptEndedError as exc:
            seen.append(exc.message)
        seen.append(ctx.completion)

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    final = run((lifecycle, JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0)),
                queue, "h.complete_after_fail")
    assert (final.status, final.error.code, final.result) == (JobStatus.FAILED, "E_BAD_INPUT", None)
    assert seen == [f"job {final.id} has failed (fail_job 'E_BAD_INPUT'): it is not completed", None]


def test_a_completion_the_handler_raised_after_is_logged_as_a_warning(store, queue, clock, log_lines):
    """docs/operations.md: the `job completed` line of a handler that raised after complete_job
    carries the `warning` and the error's traceback at WARNING level, so a clean-up's error the
    completion kept from the job's outcome is not lost among the info lines."""
    from chalicelib import observability

    types = JobTypeRegistry()

    @types.register("h.raises_after_complete", Empty, max_attempts=3)
    def raises_after_complete(ctx, payload):
        try:
            complete_job(ctx, {"rows": 1}, "first")
        finally:
            raise OSError("the connection would not close")

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    runner = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0, observe=observability.job_event)
    run((lifecycle, runner), queue, "h.raises_after_complete")
    observability.flush_metrics()  # what job_event counted, outside an invocation
    started, completed = [line for line in log_lines() if line["message"].startswith("job ")]
    assert (started["message"], started["level"]) == ("job started", "INFO")
    assert (completed["message"], completed["level"], completed["status"]) == ("job completed", "WARNING", "completed")
    assert completed["warning"].startswith("the handler raised OSError: the connection would not close after")
    assert "OSError: the connection would not close" in completed["traceback"]
