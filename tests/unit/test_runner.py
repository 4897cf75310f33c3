from typing import Any
import threading
import time
from datetime import datetime, timezone

import pytest
from pydantic import BaseModel, field_serializer, field_validator

from chalicelib.adapters.clocks import ManualClock, SystemClock
from chalicelib.defaults import CANCEL_POLL_INTERVAL_S, MAX_CHILDREN, MAX_JSON_DEPTH
from chalicelib.domain.errors import (
    DeadLetterOwedError,
    FatalJobError,
    JobCancelledError,
    PayloadTooDeepError,
    ProgressRejectedError,
    QueueUnavailableError,
    StoreUnavailableError,
    UnknownJobTypeError,
)
from chalicelib.domain.job import child_job_id, too_deep_message
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.domain.status import JobStatus
from chalicelib.lifecycle import JobLifecycle, ReconcileOutcome, SendAfterOutcomeError
from chalicelib.ports import JobMessage, job_message_of
from chalicelib.worker.runner import DeferredDelivery, JobRunner, parse_message


class Empty(BaseModel):
    pass


class Padded(BaseModel):
    pad: str = ""


class Anything(BaseModel):
    data: Any = None


def nested(levels: int) -> dict:
    """A payload whose arrays and objects nest `levels` deep, the payload itself the first."""
    value: Any = {}
    for _ in range(levels - 1):
        value = {"data": value}
    return value


# How long t.slow would sleep if its 1 s timeout did not stop it: far past the bound its tests
# hold the run to, so a busy machine's slower run is never taken for a timeout not enforced.
SLOW_HANDLER_S = 60


@pytest.fixture
def types():
    registry = JobTypeRegistry()
    calls = []

    @registry.register("t.ok", Empty)
    def ok(ctx, payload):
        calls.append(ctx.attempt)
        ctx.progress(50, "half")
        return {"ok": True}

    @registry.register("t.fatal", Empty)
    def fatal(ctx, payload):
        raise FatalJobError("no way", code="bad_input")

    @registry.register("t.flaky", Empty, max_attempts=2)
    def flaky(ctx, payload):
        if ctx.attempt == 1:
            raise RuntimeError("transient")
        return "second time lucky"

    @registry.register("t.slow", Empty, timeout_s=1, max_attempts=1)
    def slow(ctx, payload):
        time.sleep(SLOW_HANDLER_S)

    @registry.register("t.unserialisable", Empty)
    def unserialisable(ctx, payload):
        return object()

    @registry.register("t.too_deep", Empty)
    def too_deep(ctx, payload):
        result: list = []
        for _ in range(MAX_JSON_DEPTH):
            result = [result]
        return result

    @registry.register("t.nan", Empty)
    def nan(ctx, payload):
        return {"x": float("nan")}

    @registry.register("t.oversized_progress", Empty)
    def oversized_progress(ctx, payload):
        ctx.progress(10, message="m" * 500_000, force=True)  # over MAX_PROGRESS_MESSAGE_CHARS

    @registry.register("t.blank_failure", Empty)
    def blank_failure(ctx, payload):
        raise ctx.fail(" ", "")

    @registry.register("t.codeless_failure", Empty)
    def codeless_failure(ctx, payload):
        raise ctx.fail(None, "no code given")  # e.g. fail_job(ctx, response.headers.get("X-Error"), ...)

    @registry.register("t.cooperative", Empty)
    def cooperative(ctx, payload):
        for i in range(100):
            ctx.progress(i)
        return "never"

    @registry.register("t.fill_then_spawn", Padded, max_attempts=3)
    def fill_then_spawn(ctx, payload):
        """Reports the longest progress message its record takes beside its payload (as a
        handler growing its message finds it), then spawns: the record has no room to list the child."""
        fits, too_long = 0, 300_001
        while too_long - fits > 1:
            length = (fits + too_long) // 2
            try:
                ctx.progress(50, message="m" * length, force=True)
                fits = length
            except ProgressRejectedError:
                too_long = length
        return ctx.spawn("t.ok", {})

    @registry.register("t.spawn_after_refusals", Empty, max_attempts=1)
    def spawn_after_refusals(ctx, payload):
        """Skips the children it may not make (a type it cannot spawn), then spawns one."""
        for _ in range(3):
            try:
                ctx.spawn("t.no_such_type", {})
            except UnknownJobTypeError:
                pass
        return ctx.spawn("t.ok", {})

    @registry.register("t.any", Anything)
    def anything(ctx, payload):
        return None

    @registry.register("t.spawn_nested", Anything, max_attempts=3)
    def spawn_nested(ctx, payload):
        """Spawns a t.any child with a payload nesting `data` levels."""
        return ctx.spawn("t.any", nested(payload.data))

    @registry.register("t.spawn_nested_caught", Anything, max_attempts=3)
    def spawn_nested_caught(ctx, payload):
        try:
            return ctx.spawn("t.any", nested(payload.data))
        except PayloadTooDeepError as exc:
            return {"refused": exc.code}

    registry.calls = calls
    return registry


@pytest.fixture
def env(store, queue, clock, types):
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    return lifecycle, JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0)


def run_all(runner, queue):
    """Deliver every message sent until none is left, each once its delay has passed (the
    lifecycle's clock moved on by it, as SQS would hold the message back)."""
    last = None
    while queue.sent:
        if delay_s := max(delay for _, _, delay in queue.sent):
            runner.lifecycle.clock.advance(delay_s)
        for message in queue.drain():
            last = runner.run(message)
    return last


def submit(lifecycle, type_):
    return lifecycle.submit(tenant="acme", user="ann", type=type_, payload={})


def test_success_completes_with_result_and_full_progress(env, queue, types):
    lifecycle, runner = env
    job = submit(lifecycle, "t.ok")
    final = run_all(runner, queue)
    assert final.status == JobStatus.COMPLETED
    assert final.result == {"ok": True} and final.progress.percent == 100
    assert types.calls == [1]


def test_duplicate_delivery_runs_the_attempt_once(env, queue, types, store):
    lifecycle, runner = env
    job = submit(lifecycle, "t.ok")
    (message,) = queue.drain()
    runner.run(message)
    assert runner.run(message).status == JobStatus.COMPLETED  # redelivery: skipped
    assert types.calls == [1]


def test_delivery_while_another_worker_holds_the_lease_is_deferred(env, queue):
    lifecycle, runner = env
    job = submit(lifecycle, "t.ok")
    (message,) = queue.drain()
    lifecycle.claim(message)
    with pytest.raises(DeferredDelivery):
        runner.run(message)


def test_a_deferred_delivery_says_why_it_was_deferred(env, queue):
    """The batch logs a deferral in the claim's words: an operator reading why a message keeps
    coming back sees another worker's live lease, not an empty reason."""
    lifecycle, runner = env
    submit(lifecycle, "t.ok")
    (message,) = queue.drain()
    lifecycle.claim(message)
    with pytest.raises(DeferredDelivery, match="^attempt is running under a live lease$"):
        runner.run(message)


def test_a_delivery_that_runs_nothing_is_observed_skipped_with_the_claims_reason(store, queue, clock, types):
    """A duplicate delivery of a finished job runs nothing: the worker's log and metrics count
    it skipped, saying why, and count no start; a message for no job at all has no job to
    count it against and is left to the batch's own log line."""
    lifecycle, observed = JobLifecycle(store, queue, types, clock=clock), []
    runner = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0,
                       observe=lambda event, job, extra: observed.append((event, job.id, extra)))
    job = submit(lifecycle, "t.ok")
    (message,) = queue.drain()
    runner.run(message)
    observed.clear()
    runner.run(message)
    assert runner.run(JobMessage("no-such-job", 1)) is None
    assert observed == [("skipped", job.id, {"reason": "job is completed"})]


def test_fatal_error_fails_without_retry(env, queue):
    lifecycle, runner = env
    submit(lifecycle, "t.fatal")
    final = run_all(runner, queue)
    assert final.status == JobStatus.FAILED and final.attempts == 1
    assert final.error.code == "bad_input"
    assert len(queue.dead) == 1


def test_retryable_error_retries_then_succeeds(env, queue):
    lifecycle, runner = env
    submit(lifecycle, "t.flaky")
    final = run_all(runner, queue)
    assert final.status == JobStatus.COMPLETED and final.attempts == 2
    assert final.result == "second time lucky"
    runs = lifecycle.store.runs(final.id)
    assert [r.status for r in runs] == [JobStatus.FAILED, JobStatus.COMPLETED]
    assert runs[0].error.message == "RuntimeError: transient"


def test_timeout_is_enforced(env, queue):
    lifecycle, runner = env
    submit(lifecycle, "t.slow")
    started = time.monotonic()
    final = run_all(runner, queue)
    assert time.monotonic() - started < SLOW_HANDLER_S / 2  # interrupted at 1 s, not waited out
    assert final.status == JobStatus.FAILED and final.error.code == "timeout"


def test_timeout_is_enforced_off_the_main_thread(env, queue):
    lifecycle, runner = env
    submit(lifecycle, "t.slow")
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("job", run_all(runner, queue)))
    worker.start()
    worker.join(SLOW_HANDLER_S / 2)
    assert not worker.is_alive() and outcome["job"].error.code == "timeout"


@pytest.mark.parametrize("stop", [KeyboardInterrupt, GeneratorExit])
def test_a_stop_of_the_workers_process_leaves_the_runner_and_the_job_to_its_lease(store, queue, clock, stop):
    """Ctrl-C on a local worker (KeyboardInterrupt), a generator being closed (GeneratorExit):
    not the handler's failure, so no attempt is failed for it. It leaves the runner, and the job
    stays `running` under its attempt's lease, retried `worker_lost` once that ends, as for a
    process that died."""
    registry = JobTypeRegistry()
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)

    @registry.register("t.stopped", Empty, max_attempts=2)
    def stopped(ctx, payload):
        raise stop()

    job = submit(lifecycle, "t.stopped")
    (message,) = queue.drain()
    with pytest.raises(stop):
        JobRunner(lifecycle, registry, clock=SystemClock(), progress_interval_s=0).run(message)
    assert store.get(job.id, mark_gone=False).status == JobStatus.RUNNING and store.runs(job.id) == []


def test_a_handler_that_exits_fails_its_attempt_like_any_error(store, queue, clock):
    """sys.exit in a handler (a library giving up its own way) is no stop of the worker: the
    attempt fails `handler_error` and the job is retried now, not left `running` until its
    lease ends, with the batch-mates behind it never run."""
    registry = JobTypeRegistry()
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)

    @registry.register("t.exits", Empty, max_attempts=2)
    def exits(ctx, payload):
        raise SystemExit("the library gave up")

    job = submit(lifecycle, "t.exits")
    (message,) = queue.drain()
    left = JobRunner(lifecycle, registry, clock=SystemClock(), progress_interval_s=0).run(message)
    assert left.status == JobStatus.RETRYING
    assert [(run.status, run.error.code, run.error.message) for run in store.runs(job.id)] == [
        (JobStatus.FAILED, "handler_error", "SystemExit: the library gave up")]


@pytest.mark.parametrize("claim_took_s, handler_ms", [(0, 60_000), (10.4, 50_000), (75, 100)],
                         ids=["at_once", "part_of_a_second_rounded_up", "past_the_timeout"])
def test_a_handler_has_its_timeout_counted_from_the_claim(store, queue, clock, claim_took_s, handler_ms):
    """The attempt's lease runs from its claim: a claim (or payload read) that took long leaves
    the handler only what is left of its timeout, in whole seconds rounded up, so the attempt
    still ends inside its lease; one that took the whole timeout still gives it a moment
    (HANDLER_MIN_TIME_S), not a negative time."""
    registry, remaining = JobTypeRegistry(), []
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)

    @registry.register("t.timed", Empty, timeout_s=60)
    def timed(ctx, payload):
        remaining.append(ctx.remaining_ms())

    claim = lifecycle.claim

    def slow_claim(message, **kwargs):
        claimed = claim(message, **kwargs)
        clock.advance(claim_took_s)
        return claimed

    lifecycle.claim = slow_claim
    submit(lifecycle, "t.timed")
    JobRunner(lifecycle, registry, clock=ManualClock(), progress_interval_s=0).run(queue.drain()[0])
    assert remaining == [handler_ms]


def test_a_handler_given_less_than_its_timeout_by_a_slow_claim_fails_naming_its_timeout(store, queue, clock):
    """The slow claim took from the handler's time, not from the job's timeout: the failure
    names the timeout the job was given, which is what its author set and looks for."""
    registry = JobTypeRegistry()
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)

    @registry.register("t.slow_after_a_slow_claim", Empty, timeout_s=2, max_attempts=1)
    def slow(ctx, payload):
        time.sleep(SLOW_HANDLER_S)

    claim = lifecycle.claim

    def slow_claim(message, **kwargs):
        claimed = claim(message, **kwargs)
        clock.advance(1.5)  # the handler has 1 s of its 2 left
        return claimed

    lifecycle.claim = slow_claim
    submit(lifecycle, "t.slow_after_a_slow_claim")
    final = JobRunner(lifecycle, registry, clock=SystemClock(), progress_interval_s=0).run(queue.drain()[0])
    assert (final.status, final.error.code) == (JobStatus.FAILED, "timeout")
    assert final.error.message == "handler exceeded its timeout of 2 s"


def test_a_context_kept_past_its_handler_writes_nothing_more(store, queue, clock):
    """A handler that hands its ctx to a thread or a callback and returns: once its attempt
    ends, a report through that ctx is refused (AttemptEndedError), and the finished job keeps
    the progress its completion wrote."""
    from chalicelib.domain.errors import AttemptEndedError

    registry, kept = JobTypeRegistry(), []
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)

    @registry.register("t.keeps_its_ctx", Empty)
    def keeps_its_ctx(ctx, payload):
        kept.append(ctx)
        return "done"

    job = submit(lifecycle, "t.keeps_its_ctx")
    JobRunner(lifecycle, registry, clock=SystemClock(), progress_interval_s=0).run(queue.drain()[0])
    with pytest.raises(AttemptEndedError, match="has ended"):
        kept[0].progress(10, "from a thread left behind", force=True)
    final = store.get(job.id, mark_gone=False)
    assert final.status == JobStatus.COMPLETED and (final.progress.percent, final.result) == (100, "done")


def test_a_job_whose_type_this_worker_has_no_handler_for_fails_for_good_naming_it(store, queue, clock):
    """A job submitted while its type was registered, delivered to a worker without it (a
    deploy that dropped it): no attempt of it can run, so it fails at once, not retried, with
    a code a caller can match and the type named."""
    submitted_with, worker_has = JobTypeRegistry(), JobTypeRegistry()

    @submitted_with.register("t.dropped", Empty, max_attempts=3)
    def dropped(ctx, payload):
        return "never"

    job = submit(JobLifecycle(store, queue, submitted_with, clock=clock), "t.dropped")
    lifecycle = JobLifecycle(store, queue, worker_has, clock=clock)
    final = JobRunner(lifecycle, worker_has, clock=SystemClock(), progress_interval_s=0).run(queue.drain()[0])
    assert (final.id, final.status, final.attempts) == (job.id, JobStatus.FAILED, 1)
    assert (final.error.code, final.error.message) == ("unknown_job_type", "no handler is registered for 't.dropped'")


class Named(BaseModel):
    name: str = ""


class NeedsRows(BaseModel):
    rows: int


class NamesRefused(BaseModel):
    name: str = ""

    @field_validator("name")
    @classmethod
    def look_up(cls, name: str) -> str:
        raise LookupError("no such name")


@pytest.mark.parametrize("submitted_as, payload, runs_as, said", [
    (Anything, {}, NeedsRows, "1 validation error for NeedsRows\nrows\n  Field required"),
    (Named, {"name": "x"}, NamesRefused, "the payload model of 't.changed' raised LookupError: no such name"),
], ids=["a_field_it_lacks", "a_validator_that_raises_its_own_error"])
def test_a_stored_payload_its_types_model_now_refuses_fails_the_job_for_good_saying_why(
        store, queue, clock, submitted_as, payload, runs_as, said):
    """A deploy changed the type's payload model after the job was submitted: no attempt can
    run, so the job fails at once `invalid_payload`, in pydantic's words naming the field, or
    naming the error a validator raised of its own."""
    submitted_with, worker_has = JobTypeRegistry(), JobTypeRegistry()
    submitted_with.register("t.changed", submitted_as)(lambda ctx, payload: None)
    worker_has.register("t.changed", runs_as, max_attempts=3)(lambda ctx, payload: None)
    lifecycle = JobLifecycle(store, queue, submitted_with, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.changed", payload=payload)
    final = JobRunner(JobLifecycle(store, queue, worker_has, clock=clock), worker_has, clock=SystemClock(),
                      progress_interval_s=0).run(queue.drain()[0])
    assert (final.status, final.attempts, final.error.code) == (JobStatus.FAILED, 1, "invalid_payload")
    assert final.error.message.startswith(said)


def test_unserialisable_result_fails_the_job(env, queue):
    lifecycle, runner = env
    submit(lifecycle, "t.unserialisable")
    final = run_all(runner, queue)
    assert final.status == JobStatus.FAILED and final.error.code == "result_not_serializable"


def test_a_result_nested_past_the_limit_fails_the_job_in_the_words_of_every_depth_refusal(env, queue):
    lifecycle, runner = env
    submit(lifecycle, "t.too_deep")
    final = run_all(runner, queue)
    assert final.status == JobStatus.FAILED and final.error.code == "result_not_serializable"
    assert final.error.message == too_deep_message("result")


def test_a_result_keyed_by_a_long_non_text_key_fails_saying_why_in_full(store, queue, clock):
    """A result with a key that is not text names the key cut short, so the message still says
    why it was refused (JSON stores keys as text) however long the key's repr."""
    types = JobTypeRegistry()
    types.register("t.returns", Empty, max_attempts=3)(lambda ctx, payload: {tuple(range(2_000)): "row"})
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.returns", payload={})
    final = JobRunner(lifecycle, types, clock=ManualClock(), progress_interval_s=2).run(queue.drain()[0])
    assert (final.status, final.error.code) == (JobStatus.FAILED, "result_not_serializable")
    assert final.error.message.startswith("the result must be JSON: the keys of its objects are text, not (0, 1, 2")
    assert final.error.message.endswith("(JSON would store it as text, so the result would not read back as returned)")


class Holder(BaseModel):
    data: Any = None


def _lists(levels: int, kind: type = list) -> Any:
    """A list (or a tuple, which JSON writes as an array too) whose arrays nest `levels` deep,
    itself the first."""
    value = kind()
    for _ in range(levels - 1):
        value = kind([value])
    return value


@pytest.mark.parametrize("returned, refusal", [
    (lambda: _lists(MAX_JSON_DEPTH), None),
    (lambda: _lists(MAX_JSON_DEPTH + 1), "too deep"),
    (lambda: _lists(5_000), "too deep"),  # too deep for json to write at all
    (lambda: _lists(5_000, tuple), "too deep"),  # a handler's tuples nest as its lists do
    (lambda: Holder(data=_lists(MAX_JSON_DEPTH)), "too deep"),  # a model's JSON takes a level more
    (lambda: {"name": "caf\udcff"}, "not unicode"),
], ids=["at_the_limit", "one_past", "far_past", "far_past_in_tuples", "past_inside_a_model", "lone_surrogate"])
def test_a_result_is_held_to_what_json_can_store(store, queue, clock, returned, refusal):
    """docs/jobs.md: a result whose arrays and objects nest more than 100 levels deep (a model in
    it counted as its JSON, a tuple as the array JSON makes of it), or that holds a lone
    surrogate, fails the job `result_not_serializable`, not retried; one at the limit completes."""
    from chalicelib.domain.text import NOT_UNICODE

    types = JobTypeRegistry()
    types.register("t.returns", Empty, max_attempts=3)(lambda ctx, payload: returned())
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.returns", payload={})
    final = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0).run(queue.drain()[0])
    if refusal is None:
        assert final.status == JobStatus.COMPLETED and final.result == _lists(MAX_JSON_DEPTH)
        return
    assert (final.status, final.attempts, final.error.code) == (JobStatus.FAILED, 1, "result_not_serializable")
    assert final.error.message == (too_deep_message("result") if refusal == "too deep" else f"the result {NOT_UNICODE}")


class Row(BaseModel):
    cells: str

    @field_serializer("cells")
    def _cells(self, cells: str) -> str:
        raise ValueError(f"cannot write {cells}")  # quoting the whole value, as a library's error may


def test_a_results_refusal_keeps_max_error_message_chars_of_what_json_said(store, queue, clock):
    """docs/jobs.md: a failed attempt's error keeps the first MAX_ERROR_MESSAGE_CHARS characters
    of its text. A result a model in it cannot write (its serializer raising, quoting the
    value) fails the job `result_not_serializable` in what the serializer said, cut to them: an
    error a whole row long is no message an author reads, nor one a failure event carries."""
    from chalicelib.defaults import MAX_ERROR_MESSAGE_CHARS

    types = JobTypeRegistry()
    types.register("t.returns", Empty, max_attempts=3)(lambda ctx, payload: [Row(cells="x" * 3_000)])
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.returns", payload={})
    final = JobRunner(lifecycle, types, clock=ManualClock(), progress_interval_s=2).run(queue.drain()[0])
    assert (final.status, final.error.code) == (JobStatus.FAILED, "result_not_serializable")
    assert "ValueError: cannot write xxx" in final.error.message, final.error.message[:200]
    assert len(final.error.message) == MAX_ERROR_MESSAGE_CHARS, len(final.error.message)


def test_a_result_too_large_is_refused_naming_each_part_of_the_answer_it_would_take(store, queue, clock):
    """docs/jobs.md: a result that would take the job's answer past what the API returns fails
    the job `result_too_large`, not retried, its message giving the result's, the payload's and
    the final message's shares of the answer (and the children's ids' only when it lists some)."""
    from chalicelib.defaults import MAX_ANSWER_BYTES
    from chalicelib.domain.job import answer_bytes
    from chalicelib.domain.numbers import shown_number
    from chalicelib.worker.helpers import complete_job

    result, message = "r" * MAX_ANSWER_BYTES, "done: " + "m" * 1_000
    types = JobTypeRegistry()
    types.register("t.large", Empty, max_attempts=3)(lambda ctx, payload: complete_job(ctx, result, message))
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.large", payload={})
    final = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0).run(queue.drain()[0])
    assert (final.status, final.attempts, final.error.code) == (JobStatus.FAILED, 1, "result_too_large")
    said = final.error.message
    assert (f"(the result {shown_number(answer_bytes(result))}, the payload {shown_number(answer_bytes({}))}, "
            f"the final progress message {shown_number(answer_bytes(message))})") in said, said
    assert "children" not in said and "artifact" in said


@pytest.mark.parametrize("over", [0, 1])
def test_a_result_that_takes_the_answer_to_the_bound_exactly_completes_and_one_byte_more_is_refused(
        queue, clock, over):
    """docs/jobs.md: a result fails the job result_too_large when the job's answer with it would
    pass MAX_ANSWER_BYTES; one that takes the answer to it exactly is stored and returned. The
    answer measured is the completed job's (its status, end time and expiry), not the running
    one the result was returned in."""
    import re

    from chalicelib.adapters.memory import InMemoryJobStore
    from chalicelib.adapters.memory_blobs import InMemoryBlobStore
    from chalicelib.defaults import MAX_ANSWER_BYTES
    from chalicelib.domain.job import answer_bytes

    store = InMemoryJobStore(blobs=InMemoryBlobStore())  # a result near 6 MB goes to S3
    lengths = []
    types = JobTypeRegistry()
    types.register("t.sized", Empty, max_attempts=1)(lambda ctx, payload: "r" * lengths[-1])
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    runner = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0)
    lengths.append(MAX_ANSWER_BYTES)
    lifecycle.submit(tenant="acme", user="ann", type="t.sized", payload={})
    probe = runner.run(queue.drain()[0])  # its refusal says how far past the bound it went
    past = int(re.search(r"would be ([\d,]+) bytes", probe.error.message).group(1).replace(",", "")) - MAX_ANSWER_BYTES
    lengths.append(MAX_ANSWER_BYTES - past + over)
    lifecycle.submit(tenant="acme", user="ann", type="t.sized", payload={})
    final = runner.run(queue.drain()[0])
    if over:
        assert (final.status, final.error.code) == (JobStatus.FAILED, "result_too_large")
        assert f"would be {MAX_ANSWER_BYTES + 1:,} bytes" in final.error.message
    else:
        assert final.status == JobStatus.COMPLETED, final.error
        assert final.result == "r" * lengths[-1]
        assert answer_bytes(final.public()) == MAX_ANSWER_BYTES


def test_cancel_request_stops_a_cooperative_handler(env, queue, store):
    """The report whose write meets the cancel request is not stored as a running job's
    progress (no event comes between the request and `canceled`); made before the handler knew
    of the request, it is the progress the job reached, and the `canceled` write carries it."""
    lifecycle, runner = env
    job = submit(lifecycle, "t.cooperative")
    (message,) = queue.drain()
    original = store.record_progress
    stored_at_the_request = []

    def cancel_midway(job_id, attempt, progress, **kwargs):
        if progress.percent == 10:
            lifecycle.cancel("acme", job_id)
            stored = original(job_id, attempt, progress, **kwargs)
            stored_at_the_request.append((stored.cancel_requested, stored.progress.percent))
            return stored
        return original(job_id, attempt, progress, **kwargs)

    store.record_progress = cancel_midway
    final = runner.run(message)
    assert stored_at_the_request == [(True, 9)]
    assert final.status == JobStatus.CANCELED and final.progress.percent == 10


@pytest.mark.parametrize("timer_writes", ["before the call", "while the call waits for the reporter"])
def test_a_report_after_the_windows_write_met_the_cancel_is_not_kept_however_close(store, queue, clock, timer_writes):
    """The window's timer writes 60 % and its write meets a cancel request: the attempt knows of
    it. A report the handler makes after that raises JobCancelledError and is not kept for the
    `canceled` write, also when the timer's write returned while the call was on its way to the
    reporter (it had found no request on the job yet, and waited for the write to end): the job
    ends canceled at 60 % in both orderings, not at the refused report's 70 % in one."""
    registry = JobTypeRegistry()
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    worker_clock = ManualClock()
    raised = []

    @registry.register("t.reports_on", Empty)
    def reports_on(ctx, payload):
        worker_clock.advance(2)
        ctx.progress(30, "load")  # its window had passed: written
        ctx.progress(60, "work")  # held by the next window
        lifecycle.cancel("acme", ctx.job_id)  # the client's DELETE
        if timer_writes == "before the call":
            worker_clock.advance(2)
        else:  # the timer's write ends between the call's look at the job and the reporter
            report = ctx._reporter.report
            ctx._reporter.report = lambda *args, **kwargs: (worker_clock.advance(2), report(*args, **kwargs))[1]
        try:
            ctx.progress(70, "more")
        except JobCancelledError as exc:
            raised.append(type(exc).__name__)
            raise
        return {"done": True}

    submit(lifecycle, "t.reports_on")
    final = run_all(JobRunner(lifecycle, registry, clock=worker_clock, progress_interval_s=2), queue)
    assert raised == ["JobCancelledError"]
    assert final.status == JobStatus.CANCELED
    assert (final.progress.percent, final.progress.step) == (60, "work"), final.progress


def test_a_report_made_once_a_poll_saw_the_cancel_is_not_kept(store, queue, clock):
    """docs/jobs.md: a report made once the cancel is known raises JobCancelledError at once,
    kept for no write. Known from `ctx.cancelled()`'s read of the store (no write returned it),
    a report after it (a clean-up's "stopping at 90 %") is no progress the job reached before
    the request: the job ends canceled at the 40 % written before it."""
    registry = JobTypeRegistry()
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    worker_clock, raised = ManualClock(), []

    @registry.register("t.polls_then_reports", Empty)
    def polls_then_reports(ctx, payload):
        ctx.progress(40, "load", force=True)
        lifecycle.cancel("acme", ctx.job_id)  # the client's DELETE
        assert ctx.cancelled(fresh=True) and not ctx.job.cancel_requested
        try:
            ctx.progress(90, "stopping", force=True)
        except JobCancelledError as exc:
            raised.append(type(exc).__name__)
            raise

    submit(lifecycle, "t.polls_then_reports")
    final = run_all(JobRunner(lifecycle, registry, clock=worker_clock, progress_interval_s=2), queue)
    assert raised == ["JobCancelledError"]
    assert final.status == JobStatus.CANCELED
    assert (final.progress.percent, final.progress.step) == (40, "load"), final.progress


@pytest.mark.parametrize("progress_interval_s, waits", [(5, [1, 4]), (0, [0.5, 0.5])],
                         ids=["the_progress_window_when_longer", "a_second_at_least"])
def test_ctx_cancelled_reads_the_store_once_a_poll_interval(store, queue, clock, progress_interval_s, waits):
    """A handler asking `ctx.cancelled()` in a tight loop costs one read per interval: the
    progress window when it is longer than CANCEL_POLL_INTERVAL_S (a read more often would cost
    more requests than the writes the window saves), never less than that. Between, it answers
    what it last read, even with the request made."""
    registry, seen = JobTypeRegistry(), []
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    worker_clock = ManualClock()

    @registry.register("t.polls_in_a_loop", Empty)
    def polls_in_a_loop(ctx, payload):
        lifecycle.cancel("acme", ctx.job_id)  # the client's DELETE, while the handler runs
        for wait in waits:
            worker_clock.advance(wait)
            seen.append(ctx.cancelled())
        return None

    submit(lifecycle, "t.polls_in_a_loop")
    run_all(JobRunner(lifecycle, registry, clock=worker_clock, progress_interval_s=progress_interval_s), queue)
    assert seen == [False, True]


@pytest.mark.parametrize("stops", ["returns on ctx.cancelled()", "catches JobCancelledError and returns",
                                   "completes on ctx.cancelled()"])
def test_a_handler_that_saw_the_cancel_request_and_returned_ends_canceled(store, queue, clock, stops):
    """A client cancels while the handler runs; the handler sees the request (`ctx.cancelled()`,
    or the JobCancelledError of a progress report) and stops by returning: the job ends
    `canceled`, as when it raises, not `completed` with what it returned on the way out."""
    registry = JobTypeRegistry()
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    worker_clock = ManualClock()

    @registry.register("t.polls", Empty)
    def polls(ctx, payload):
        lifecycle.cancel("acme", ctx.job_id)  # the client's DELETE, while the handler runs
        worker_clock.advance(CANCEL_POLL_INTERVAL_S)  # ctx.cancelled() reads the store now
        if stops == "catches JobCancelledError and returns":
            try:
                ctx.progress(50)
            except JobCancelledError:
                return {"partial": True}
        elif ctx.cancelled():
            if stops == "completes on ctx.cancelled()":
                ctx.complete({"partial": True})
                return None
            return {"partial": True}
        return {"done": True}

    runner = JobRunner(lifecycle, registry, clock=worker_clock, progress_interval_s=0)
    submit(lifecycle, "t.polls")
    final = run_all(runner, queue)
    assert final.status == JobStatus.CANCELED and final.result is None
    assert final.error.code == "canceled" and store.runs(final.id)[0].status == JobStatus.CANCELED


def test_a_cancel_the_handler_never_saw_lets_its_result_stand(store, queue, clock):
    """Cancellation is cooperative: a handler that returns its result before it looks at the
    request has done the work, and the job completes with it."""
    registry = JobTypeRegistry()
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)

    @registry.register("t.quick", Empty)
    def quick(ctx, payload):
        lifecycle.cancel("acme", ctx.job_id)
        return {"done": True}

    submit(lifecycle, "t.quick")
    final = run_all(JobRunner(lifecycle, registry, clock=SystemClock(), progress_interval_s=0), queue)
    assert final.status == JobStatus.COMPLETED and final.result == {"done": True}


@pytest.mark.parametrize("last_report", [{}, {"message": "Writing"}, {"details": {"written": 3}}])
def test_a_completion_shows_the_last_report_whether_its_window_wrote_it_or_not(store, queue, clock, last_report):
    """The last report leaves out a message or details the report before it had. Whether the
    window's timer wrote it before the handler returned, or the completion carries it, the
    completed job shows what that last report said (the completion's 100 %), not the earlier
    report's words in one of the two orderings."""
    registry = JobTypeRegistry()
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    worker_clock = ManualClock()
    finals = {}

    for window in ("ends before the return", "still open at the return"):
        @registry.register(f"t.{len(finals)}", Empty)
        def reports(ctx, payload, window=window):
            worker_clock.advance(2)
            ctx.progress(30, "load", "Loading", details={"rows": 5})  # its window had passed: written
            ctx.progress(60, "write", **last_report)  # inside the next window
            if window == "ends before the return":
                worker_clock.advance(2)  # the window's timer writes it
            return {"done": True}

        submit(lifecycle, f"t.{len(finals)}")
        final = run_all(JobRunner(lifecycle, registry, clock=worker_clock, progress_interval_s=2), queue)
        assert final.status == JobStatus.COMPLETED
        finals[window] = (final.progress.percent, final.progress.step, final.progress.message, final.progress.details)
    assert finals["ends before the return"] == finals["still open at the return"] == (
        100, "completed", last_report.get("message"), last_report.get("details")), finals


def ended_after_a_held_report(store, queue, clock, result, **report):
    """The job a t.held handler's attempt ends in: it reports 30 % (written: its window had
    passed), then 60 % with `report` inside the next window (held, not yet written), then
    returns `result`; 3 attempts."""
    registry, worker_clock = JobTypeRegistry(), ManualClock()

    @registry.register("t.held", Empty, max_attempts=3)
    def held(ctx, payload):
        worker_clock.advance(2)
        ctx.progress(30, "load", "Loading")
        ctx.progress(60, "write", **report)
        return result

    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    submit(lifecycle, "t.held")
    return JobRunner(lifecycle, registry, clock=worker_clock, progress_interval_s=2).run(queue.drain()[0])


def test_a_result_is_measured_beside_the_details_of_the_report_its_window_still_held(queue, clock):
    """The job a completion writes carries the last report's details, whether its window wrote
    them or the completion does; a result is measured beside those, so one that fits beside the
    report written before but not beside the one still held fails `result_too_large` (not
    retried), instead of completing a job no GET could return."""
    from chalicelib.adapters.memory import InMemoryJobStore
    from chalicelib.adapters.memory_blobs import InMemoryBlobStore
    from chalicelib.defaults import MAX_ANSWER_BYTES

    store = InMemoryJobStore(blobs=InMemoryBlobStore())  # a result near 6 MB goes to S3
    final = ended_after_a_held_report(store, queue, clock, "r" * (MAX_ANSWER_BYTES - 15_000),
                                      details={"rows": "d" * 30_000})
    assert (final.status, final.attempts, final.error.code if final.error else None) == (
        JobStatus.FAILED, 1, "result_too_large")


def test_a_result_no_job_can_hold_fails_the_job_with_the_report_its_window_still_held(store, queue, clock):
    """A result that is no JSON fails the job for good; like any failure it is written with the
    last report the attempt made, still held in its window at the return: the failed job shows
    how far its handler got, not the report before."""
    final = ended_after_a_held_report(store, queue, clock, {1, 2}, message="Writing")
    assert (final.status, final.error.code) == (JobStatus.FAILED, "result_not_serializable")
    assert (final.progress.percent, final.progress.step, final.progress.message) == (60, "write", "Writing")


def test_a_spawn_once_the_handler_saw_the_cancel_asks_the_store_nothing(store, queue, clock, monkeypatch):
    """docs/jobs.md: a spawn once the job's cancel is known raises JobCancelledError, making no
    child. Known already (the handler's `ctx.cancelled()` saw it), it is refused at the call:
    no spawn request reaches the store, which would only refuse it, one more request per child
    a loop goes on to ask for."""
    registry = JobTypeRegistry()
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    asked, refused = [], []
    registry.register("t.child", Empty)(lambda ctx, payload: None)

    @registry.register("t.fanout_after_look", Empty)
    def fanout_after_look(ctx, payload):
        lifecycle.cancel("acme", ctx.job_id)
        assert ctx.cancelled(fresh=True)
        try:
            ctx.spawn("t.child", {})
        except JobCancelledError as exc:
            refused.append(exc)
            raise

    spawn = lifecycle.spawn
    monkeypatch.setattr(lifecycle, "spawn", lambda *args, **kwargs: (asked.append(args), spawn(*args, **kwargs))[1])
    submit(lifecycle, "t.fanout_after_look")
    final = JobRunner(lifecycle, registry, clock=SystemClock(), progress_interval_s=0).run(queue.drain()[0])
    assert (len(refused), asked) == (1, [])
    assert final.status == JobStatus.CANCELED and final.children == []


@pytest.mark.parametrize("handler_then", ["lets the error go", "catches it and returns"])
def test_a_parent_whose_cancel_was_requested_spawns_no_child(store, queue, clock, handler_then):
    """A user cancels a fan-out while its handler spawns: the spawn after the request (the
    handler has not looked at it) makes, lists and sends no child; it raises JobCancelledError,
    and the job ends canceled however the handler stops. The child made before stays."""
    registry = JobTypeRegistry()
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    spawned, refused = [], []

    @registry.register("t.child", Empty)
    def child(ctx, payload):
        return None

    @registry.register("t.fanout", Empty)
    def fanout(ctx, payload):
        spawned.append(ctx.spawn("t.child", {}))
        lifecycle.cancel("acme", ctx.job_id)  # the client's DELETE, while the handler runs
        try:
            spawned.append(ctx.spawn("t.child", {}))
        except JobCancelledError as exc:
            refused.append(exc)
            if handler_then == "lets the error go":
                raise
        return {"spawned": len(spawned)}

    parent = submit(lifecycle, "t.fanout")
    (message,) = queue.drain()
    final = JobRunner(lifecycle, registry, clock=SystemClock(), progress_interval_s=0).run(message)
    assert len(spawned) == 1 and len(refused) == 1
    assert final.status == JobStatus.CANCELED and final.result is None and final.children == spawned
    assert [m.job_id for m in queue.drain()] == spawned
    assert store.get(child_job_id(parent.id, 1, 2), mark_gone=False) is None


def test_a_child_whose_first_message_was_not_sent_runs_after_its_parent_was_canceled(store, queue, clock):
    """A fan-out spawns a child while the queue does not answer (the child is stored, its first
    message unsent), and the user then cancels the fan-out, which ends canceled. The child is
    no part of the cancel: the reconciler sends its message once it is due and it completes."""
    from chalicelib.adapters.memory import InMemoryQueueOperations
    from chalicelib.defaults import DISPATCH_GRACE_S
    from chalicelib.reconciler import Reconciler

    registry = JobTypeRegistry()
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    spawned = []

    @registry.register("t.child", Empty)
    def child(ctx, payload):
        return {"child": True}

    @registry.register("t.fanout", Empty)
    def fanout(ctx, payload):
        queue.fail_sends = True
        spawned.append(ctx.spawn("t.child", {}))
        queue.fail_sends = False
        lifecycle.cancel("acme", ctx.job_id)
        ctx.check_cancelled(fresh=True)
        return {"spawned": len(spawned)}

    submit(lifecycle, "t.fanout")
    runner = JobRunner(lifecycle, registry, clock=SystemClock(), progress_interval_s=0)
    parent = runner.run(queue.drain()[0])
    assert parent.status == JobStatus.CANCELED and parent.children == spawned
    assert queue.drain() == [], "the child's first message was not sent"
    clock.advance(DISPATCH_GRACE_S + 1)
    assert Reconciler(lifecycle, InMemoryQueueOperations(queue)).run_pass().counts == {"redispatched": 1}
    final = run_all(runner, queue)
    assert final.id == spawned[0] and final.status == JobStatus.COMPLETED and final.result == {"child": True}


def test_children_spawned_from_several_threads_are_each_made_once(store, queue, clock):
    """A handler fans out from a thread pool: every ctx.spawn makes its own child (each call
    takes its own index, which names the child), none replays another's."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    registry = JobTypeRegistry()
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)

    @registry.register("t.child", Empty)
    def child(ctx, payload):
        return None

    @registry.register("t.pool", Empty)
    def pool(ctx, payload):
        with ThreadPoolExecutor(8) as threads:
            return list(threads.map(lambda _: ctx.spawn("t.child", {}), range(40)))

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often: the index read and its increment interleave
    try:
        submit(lifecycle, "t.pool")
        (message,) = queue.drain()
        final = JobRunner(lifecycle, registry, clock=SystemClock(), progress_interval_s=0).run(message)
    finally:
        sys.setswitchinterval(switch)
    assert final.status == JobStatus.COMPLETED
    assert len(set(final.result)) == 40 and sorted(final.children) == sorted(final.result)
    assert sorted(m.job_id for m in queue.drain()) == sorted(final.result)


def test_parse_message_rejects_garbage():
    assert parse_message('{"job_id": "a", "attempt": 2}') == JobMessage("a", 2)
    with pytest.raises(ValueError):
        parse_message("not json")


@pytest.mark.parametrize("body", ['{"job_id": "a#b"}', '{"job_id": ""}', '{"job_id": "a\\n"}', '{"attempt": 1}',
                                  '{"job_id": "a", "attempt": 0}', '{"job_id": "a", "timeout_s": -5}', "[1]"])
def test_a_body_naming_no_possible_job_is_not_a_job_message(body):
    """Refused before any store call: the worker reports it (it goes to the DLQ for operators),
    and the reconciler, reading the DLQ, passes it by instead of failing on its key."""
    with pytest.raises(ValueError, match="not a job message"):
        parse_message(body)
    assert job_message_of({"job_id": "a", "tenant": "acme", "timeout_s": 60}) == JobMessage("a", 1)


def test_a_result_with_nan_fails_the_job_instead_of_reading_back_as_null(env, queue):
    lifecycle, runner = env
    submit(lifecycle, "t.nan")
    final = run_all(runner, queue)
    assert final.status == JobStatus.FAILED and final.error.code == "result_not_serializable"


def test_a_progress_report_too_large_to_store_is_refused_as_such(env, queue):
    """Not a store outage: the handler's report is what is wrong, and the error says so."""
    lifecycle, runner = env
    submit(lifecycle, "t.oversized_progress")
    (message,) = queue.drain()
    after = runner.run(message)  # an error raised by the handler: retried, like any other
    assert after.status == JobStatus.RETRYING and after.error.code == "progress_rejected"
    assert "500000 characters; at most 300000" in after.error.message


@pytest.mark.parametrize("type_", ["t.blank_failure", "t.codeless_failure"])
def test_a_failure_without_a_code_still_has_one(env, queue, type_):
    """A blank code, or none at all, is `handler_failed`: never the code "None", which a
    consumer branching on codes would take for one the handler chose."""
    lifecycle, runner = env
    submit(lifecycle, type_)
    final = run_all(runner, queue)
    assert final.status == JobStatus.FAILED and final.error.code == "handler_failed"


def test_a_spawn_its_parents_record_has_no_room_to_list_fails_the_job_once_by_name(env, queue, store):
    """A record filled to DynamoDB's 400 KB (a long progress message) refuses to list one more
    child: the job fails `record_full`, not retried (its next attempt lists the same children and
    its handler reports the same), nothing made. Before, the refusal reached the handler as
    `store_unavailable`, an outage, and every attempt was retried to be refused the same way."""
    lifecycle, runner = env
    job = lifecycle.submit(tenant="acme", user="ann", type="t.fill_then_spawn",
                           payload={"pad": "p" * 120_000})  # kept in the record: this store has no blobs
    final = run_all(runner, queue)
    assert final.status == JobStatus.FAILED and final.attempts == 1, final.error
    assert final.error.code == "record_full" and "400 KB" in final.error.message
    assert final.children == [] and len(queue.dead) == 1
    assert [j.id for j in store._jobs.values()] == [job.id]


def test_a_spawn_refused_before_its_child_was_made_does_not_count_towards_the_children_bound(env, queue, store):
    """A job lists at most MAX_CHILDREN children; the spawns a handler caught, refused before
    any child was made (a type it may not spawn), are no children. They counted as children
    listed (and as jobs pending for the quota), so a parent one short of the bound was refused
    its last child as `too_many_children`."""
    lifecycle, runner = env
    job = submit(lifecycle, "t.spawn_after_refusals")
    store._jobs[job.id] = store._jobs[job.id].model_copy(
        update={"children": [f"earlier-{i}" for i in range(MAX_CHILDREN - 1)]})
    (message,) = queue.drain()
    final = runner.run(message)
    assert final.status == JobStatus.COMPLETED, final.error
    assert len(final.children) == MAX_CHILDREN and final.children[-1] == final.result


def lease_ended_owing_its_letter(lifecycle, job):
    """The reconciler's pass on `job`, its lease ended, while the dead-letter queue does not answer:
    the job is failed `worker_lost` and owes its letter."""
    with pytest.raises(SendAfterOutcomeError) as ended:
        lifecycle.reconcile(job)
    assert ended.value.outcome == ReconcileOutcome.LEASE_EXPIRED
    assert isinstance(ended.value.cause, DeadLetterOwedError)


def test_a_late_attempt_whose_job_was_failed_with_its_dead_letter_owed_parks_the_letter(store, queue, clock):
    """A worker that lost its lease (a long pause) wakes after the reconciler failed its attempt
    `worker_lost` while the dead-letter queue did not answer: the job owes the attempt's letter,
    and this delivery's message is the one that parks it. The late outcome is not written
    (abandoned), but the letter is parked before the message is acknowledged, not dropped
    with it."""
    registry = JobTypeRegistry()
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)

    @registry.register("t.paused", Empty, max_attempts=1, timeout_s=60)
    def paused(ctx, payload):
        clock.advance(3600)  # past the lease: the reconciler takes the attempt
        queue.fail_sends = True
        lease_ended_owing_its_letter(lifecycle, store.get(ctx.job_id, mark_gone=False))
        queue.fail_sends = False
        return {"late": True}

    job = submit(lifecycle, "t.paused")
    (message,) = queue.drain()
    final = JobRunner(lifecycle, registry, clock=SystemClock(), progress_interval_s=0).run(message)
    assert final.status == JobStatus.FAILED and final.error.code == "worker_lost"
    assert [message for message, _ in queue.parked("normal")] == [JobMessage(job.id, 1)]
    assert store.get(job.id, mark_gone=False).dead_letter_owed is None


def test_a_late_attempt_that_cannot_park_its_jobs_owed_letter_fails_its_delivery(store, queue, clock):
    """The dead-letter queue still does not answer: the delivery fails, so its message comes
    back and parks the letter then (the claim of a failed job that owes one)."""
    registry = JobTypeRegistry()
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)

    @registry.register("t.paused", Empty, max_attempts=1, timeout_s=60)
    def paused(ctx, payload):
        clock.advance(3600)
        queue.fail_sends = True
        lease_ended_owing_its_letter(lifecycle, store.get(ctx.job_id, mark_gone=False))
        return {"late": True}

    job = submit(lifecycle, "t.paused")
    (message,) = queue.drain()
    runner = JobRunner(lifecycle, registry, clock=SystemClock(), progress_interval_s=0)
    with pytest.raises(QueueUnavailableError):
        runner.run(message)
    queue.fail_sends = False
    assert runner.run(message).status == JobStatus.FAILED
    assert [message for message, _ in queue.parked("normal")] == [JobMessage(job.id, 1)]
    assert store.get(job.id, mark_gone=False).dead_letter_owed is None


def test_a_late_attempt_whose_job_the_reconciler_took_is_observed_abandoned_saying_why(store, queue, clock):
    """The handler outlived its lease and the reconciler failed the attempt `worker_lost`: the
    late result is not written, and the worker's log and metrics count the attempt abandoned,
    naming the state it found the job in, so the two endings of one attempt can be told apart."""
    registry, observed = JobTypeRegistry(), []
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)

    @registry.register("t.paused", Empty, max_attempts=1, timeout_s=60)
    def paused(ctx, payload):
        clock.advance(3600)  # past the lease: the reconciler takes the attempt
        lifecycle.reconcile(store.get(ctx.job_id, mark_gone=False))
        return {"late": True}

    job = submit(lifecycle, "t.paused")
    (message,) = queue.drain()
    final = JobRunner(lifecycle, registry, clock=SystemClock(), progress_interval_s=0,
                      observe=lambda event, job_, extra: observed.append((event, extra))).run(message)
    assert final.status == JobStatus.FAILED and final.error.code == "worker_lost"
    assert observed == [("started", {}), ("abandoned", {
        "reason": f"attempt 1 of job {job.id} is no longer running (job is failed, attempt 1)"})]


class Report(BaseModel):
    """A result as a handler's author writes one: a model, with fields JSON has no type for."""

    rows: int
    at: datetime
    share: float = 0.5


def test_a_result_that_is_a_pydantic_model_is_stored_as_its_json(env, queue, types, store):
    """Payloads are pydantic models, so results are too: one returned, or given to complete_job,
    is stored as its JSON form (datetimes as ISO text) instead of failing the job
    `result_not_serializable`; a model holding NaN still fails it."""
    from chalicelib.worker.helpers import complete_job

    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    types.register("t.model", Empty)(lambda ctx, payload: Report(rows=3, at=at))
    types.register("t.completed_model", Empty)(lambda ctx, payload: complete_job(ctx, Report(rows=4, at=at), "done"))
    types.register("t.model_nan", Empty)(lambda ctx, payload: Report(rows=1, at=at, share=float("nan")))
    lifecycle, runner = env
    for type_, rows in (("t.model", 3), ("t.completed_model", 4)):
        job = submit(lifecycle, type_)
        final = run_all(runner, queue)
        assert final.status == JobStatus.COMPLETED, final.error
        assert store.get(job.id, mark_gone=False).result == {"rows": rows, "at": "2026-01-02T03:04:05Z", "share": 0.5}
    submit(lifecycle, "t.model_nan")
    final = run_all(runner, queue)
    assert final.status == JobStatus.FAILED and final.error.code == "result_not_serializable"


def test_models_inside_a_result_are_stored_as_their_json_and_nothing_else_is_converted(env, queue, types, store):
    """A handler returning its rows as models in a list or dict gets each stored as its JSON form,
    as a returned model is; a datetime or set outside any model still fails the job
    `result_not_serializable` (no silent conversion of what the author did not model), as does
    NaN inside a nested model."""
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    row = {"rows": 3, "at": "2026-01-02T03:04:05Z", "share": 0.5}
    types.register("t.list", Empty)(lambda ctx, payload: [Report(rows=3, at=at), Report(rows=3, at=at)])
    types.register("t.dict", Empty)(lambda ctx, payload: {"report": Report(rows=3, at=at),
                                                          "more": (Report(rows=3, at=at), 1, None, "x")})
    types.register("t.datetime", Empty)(lambda ctx, payload: {"report": Report(rows=3, at=at), "at": at})
    types.register("t.set", Empty)(lambda ctx, payload: [Report(rows=3, at=at), {1, 2}])
    types.register("t.nested_nan", Empty)(lambda ctx, payload: [Report(rows=1, at=at, share=float("nan"))])
    lifecycle, runner = env
    for type_, stored in (("t.list", [row, row]), ("t.dict", {"report": row, "more": [row, 1, None, "x"]})):
        job = submit(lifecycle, type_)
        final = run_all(runner, queue)
        assert final.status == JobStatus.COMPLETED, final.error
        assert store.get(job.id, mark_gone=False).result == stored
    for type_ in ("t.datetime", "t.set", "t.nested_nan"):
        submit(lifecycle, type_)
        final = run_all(runner, queue)
        assert final.status == JobStatus.FAILED and final.error.code == "result_not_serializable", type_


@pytest.mark.parametrize("levels", [100, 254, 2000])
def test_a_child_payload_nested_deeper_than_a_submit_may_fails_the_job_at_the_spawn_not_retried(env, queue, store,
                                                                                                 levels):
    """A child's payload is held to a submitted payload's depth (99 levels under POST /jobs's
    envelope, the body's 100). Deeper ones passed the spawn's checks and broke in the store's
    or the answer's encoder: a generic handler error, retried to break the same way."""
    lifecycle, runner = env
    job = lifecycle.submit(tenant="acme", user="ann", type="t.spawn_nested", payload={"data": levels})
    final = run_all(runner, queue)
    assert final.status == JobStatus.FAILED and final.attempts == 1, final.error
    assert final.error.code == "payload_too_deep" and "at most 99" in final.error.message
    assert final.children == [] and [j.id for j in store._jobs.values()] == [job.id]


def test_a_child_payload_at_the_depth_a_submit_may_have_is_spawned_and_a_deeper_one_can_be_caught(env, queue, store):
    lifecycle, runner = env
    fits = lifecycle.submit(tenant="acme", user="ann", type="t.spawn_nested", payload={"data": 99})
    caught = lifecycle.submit(tenant="acme", user="ann", type="t.spawn_nested_caught", payload={"data": 100})
    run_all(runner, queue)
    parent = store.get(fits.id, mark_gone=False)
    assert parent.status == JobStatus.COMPLETED and len(parent.children) == 1
    assert store.get(parent.children[0], mark_gone=False).status == JobStatus.COMPLETED
    assert store.get(caught.id, mark_gone=False).result == {"refused": "payload_too_deep"}


def test_a_routine_cancel_poll_in_a_moments_outage_does_not_fail_the_attempt(store, queue, clock, types):
    """The handler polls `ctx.cancelled()` while the table does not answer: the poll answers
    what is known, the worker logs it, and the job completes with the handler's result, as it
    does when a progress report meets the same outage."""
    runner_clock, seen = ManualClock(), []
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    runner = JobRunner(lifecycle, types, clock=runner_clock, progress_interval_s=0,
                       observe=lambda event, job, extra: seen.append((event, extra)))
    get = store.get

    def unanswered(*args, **kwargs):
        raise StoreUnavailableError("the table did not answer")

    @types.register("t.polls", Empty)
    def polls(ctx, payload):
        runner_clock.advance(CANCEL_POLL_INTERVAL_S)
        store.get = unanswered
        try:
            return {"cancelled": ctx.cancelled()}
        finally:
            store.get = get

    job = submit(lifecycle, "t.polls")
    final = run_all(runner, queue)
    assert final.id == job.id and final.status == JobStatus.COMPLETED and final.result == {"cancelled": False}
    assert ("cancel_poll_unanswered", {"reason": "the table did not answer"}) in seen


def test_a_progress_report_in_a_moments_outage_is_logged_and_does_not_fail_the_attempt(store, queue, clock, types):
    """The handler reports progress while the table does not answer: the report returns, the
    worker logs the refused write (the operator's only sign of it), and the job completes with
    the handler's result."""
    seen = []
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    runner = JobRunner(lifecycle, types, clock=ManualClock(), progress_interval_s=0,
                       observe=lambda event, job, extra: seen.append((event, extra)))
    record_progress, down = lifecycle.record_progress, [False]

    def unanswered_while_down(*args, **kwargs):
        if down[0]:
            raise StoreUnavailableError("the table did not answer")
        return record_progress(*args, **kwargs)

    lifecycle.record_progress = unanswered_while_down

    @types.register("t.reports", Empty)
    def reports(ctx, payload):
        down[0] = True
        ctx.progress(40, "rows read", force=True)
        down[0] = False
        return {"rows": 40}

    submit(lifecycle, "t.reports")
    final = run_all(runner, queue)
    assert final.status == JobStatus.COMPLETED and final.result == {"rows": 40}
    assert ("progress_refused", {"reason": "the table did not answer"}) in seen


def test_an_outcome_the_store_did_not_take_is_retried_once_its_own_lease_ends(store, queue, clock, types):
    """The handler ran but its completion was not written (the table did not answer, every time
    it was written again within the worker's patience): the job is left running under the
    attempt's lease, which the message coming back cannot tell from a live worker's. It waits
    that lease out (deferred until it ends, not run beside itself), and then ends the attempt
    `worker_lost`: the job is retried, not left running."""
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    runner = JobRunner(lifecycle, types, clock=ManualClock(), progress_interval_s=0)  # its waits take no time
    job = submit(lifecycle, "t.ok")
    (message,) = queue.drain()
    apply = store.apply

    def unanswered(written, expected, changes):
        if changes.fields.get("status") == JobStatus.COMPLETED:
            raise StoreUnavailableError("the table did not answer")
        return apply(written, expected, changes)

    store.apply = unanswered
    with pytest.raises(StoreUnavailableError):
        runner.run(message)
    store.apply = apply
    running = store.get(job.id, mark_gone=False)
    assert running.status == JobStatus.RUNNING
    with pytest.raises(DeferredDelivery) as deferred:  # the message is back: the lease still holds
        runner.run(message)
    assert deferred.value.retry_after_s >= running.timeout_s
    clock.advance(running.timeout_s + 31)
    after = runner.run(message)
    assert after.status == JobStatus.RETRYING and after.error.code == "worker_lost"
    assert run_all(runner, queue).status == JobStatus.COMPLETED and types.calls == [1, 2]
