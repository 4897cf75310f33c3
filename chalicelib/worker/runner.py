"""Run one delivered job message: claim the attempt, call the handler, record how it ended."""
from __future__ import annotations

import functools
import json
import math
import threading
import traceback
from typing import Any, Callable, Optional, Union

from pydantic import BaseModel, ValidationError

from chalicelib.defaults import (
    CANCEL_POLL_INTERVAL_S,
    HANDLER_GIVE_UP_S,
    HANDLER_GIVE_UP_WRITE_S,
    HANDLER_MIN_TIME_S,
    LEASE_GRACE_S,
    MAX_ANSWER_BYTES,
    MAX_ERROR_MESSAGE_CHARS,
    MAX_JSON_DEPTH,
    MAX_TRACEBACK_LOG_CHARS,
    PROGRESS_MIN_INTERVAL_S,
)

from chalicelib.domain.errors import (
    DeadLetterOwedError,
    FatalJobError,
    InvalidPayloadError,
    JobCancelledError,
    JobpipeError,
    JobTimeoutError,
    PayloadGoneError,
    StaleJobError,
    describe,
)
from chalicelib.domain.job import (
    Job, JobErrorInfo, Progress, answer_bytes, nested_deeper_than, non_text_key, parse_time, too_deep_message,
)
from chalicelib.domain.numbers import shown_number
from chalicelib.domain.registry import JobType, JobTypeRegistry
from chalicelib.domain.text import NOT_UNICODE, holds_lone_surrogate
from chalicelib.lifecycle import ClaimOutcome, JobLifecycle
from chalicelib.ports import ArtifactStore, Clock, JobMessage, job_message_of
from chalicelib.worker.context import Completion, JobContext
from chalicelib.worker.progress import ProgressReporter
from chalicelib.worker.timeout import run_with_timeout


class DeferredDelivery(Exception):
    """The message must stay on the queue (another worker holds the attempt, or this
    invocation is out of time); reported as a batch item failure, to be delivered again
    after `retry_after_s`."""

    def __init__(self, reason: str, retry_after_s: Optional[int]) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


def parse_message(body: str) -> JobMessage:
    """Raises ValueError for a body that is not a job message (it then goes to the DLQ)."""
    return job_message_of(body)


def result_json(result: Any) -> Any:
    """A handler's result as the store keeps it: each pydantic model in it (the result itself,
    or one inside its lists and dicts, as a handler returns its rows) as its
    `model_dump(mode="json")`, as payloads are; anything else as it is. Raises TypeError for a
    value outside a model that JSON has no type for (a datetime, a set: not converted unseen),
    ValueError for NaN or Infinity (stored, they would read back as null) and for a dict key
    outside a model that is not text (stored as text, {1: "a", "1": "b"} would lose an entry)."""
    dumped = False

    def model_json(value: Any) -> Any:
        nonlocal dumped
        if not isinstance(value, BaseModel):
            raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
        dumped = True
        return value.model_dump(mode="json")

    key = non_text_key(result)
    if key is not None:  # json.dumps would write it as text, or refuse it saying less
        raise ValueError(f"the result must be JSON: the keys of its objects are text, not {key:.100} "
                         "(JSON would store it as text, so the result would not read back as returned)")
    text = json.dumps(result, allow_nan=False, default=model_json)
    # Models replaced by their JSON, read back as the store will (tuples as lists, keys as text).
    return json.loads(text) if dumped else result


class JobRunner:
    def __init__(
        self,
        lifecycle: JobLifecycle,
        registry: JobTypeRegistry,
        *,
        clock: Clock,
        observe: Optional[Callable[[str, Job, dict[str, Any]], None]] = None,
        progress_interval_s: float = PROGRESS_MIN_INTERVAL_S,
        artifacts: Optional[ArtifactStore] = None,
        admit: Optional[Callable[..., None]] = None,
        end_process: Optional[Callable[[], None]] = None,
        give_up_after_s: float = HANDLER_GIVE_UP_S,
    ) -> None:
        """`clock`: the worker's Clock (the composition root's `clock`), the one each attempt's
        progress window, cancel polls, remaining time and durations are read on.
        `admit(tenant, pending=n)`: the tenant quota's admission (TenantQuota.admit), for the
        jobs a handler spawns; `pending` is how many this attempt spawned before.
        `end_process()`: ends the worker's process (the composition root gives it on Lambda):
        called when a handler went on HANDLER_GIVE_UP_S past its timeout, interrupts and all,
        once its attempt was failed `timeout`. Without it such a handler is only interrupted
        again and again."""
        self._end_process = end_process
        self._give_up_after_s = give_up_after_s
        self._admit = admit
        self.lifecycle = lifecycle
        self.artifacts = artifacts
        self.registry = registry
        self._progress_interval_s = progress_interval_s
        self._observe = observe or (lambda event, job, extra: None)
        self._clock = clock

    def run(
        self,
        message: JobMessage,
        *,
        time_left_s: Optional[float] = None,
        hold: Optional[Callable[[int], None]] = None,
    ) -> Optional[Job]:
        """Process one delivery. Returns the job as left by this delivery (None if it does not
        exist); raises DeferredDelivery when the message must be delivered again later, and
        QueueUnavailableError when the job's owed dead letter could not be parked (it is parked
        when the message comes back).

        A message hidden for the queue's visibility timeout (longer than any invocation) needs
        nothing once claimed: if this process dies, the reconciler finds the attempt's lease
        expired and retries the job (worker_lost). `hold(seconds)`, given for a message hidden
        only briefly (a batch-mate), is called once the attempt is claimed with the lease that
        keeps it hidden for the attempt; the caller takes it then or, for a batch-mate, only if
        the attempt outlives its short lease (chalicelib/worker/batch.py)."""
        claim = self.lifecycle.claim(message, time_left_s=time_left_s)
        if claim.outcome == ClaimOutcome.DEFER:
            raise DeferredDelivery(claim.reason, claim.retry_after_s)
        if claim.outcome == ClaimOutcome.SKIP:
            if claim.job is not None:
                self._observe("skipped", claim.job, {"reason": claim.reason})
            return claim.job
        job = claim.job
        assert job is not None
        if hold is not None:
            hold(job.timeout_s + LEASE_GRACE_S)
        self._observe("started", job, {})
        try:
            return self._execute(job)
        except StaleJobError as exc:
            # The attempt was taken over or finished elsewhere; its outcome is not ours to write.
            # If the reconciler failed it while the dead-letter queue did not answer, this
            # delivery's message is the one that parks the letter: it is acknowledged next.
            self._observe("abandoned", job, {"reason": exc.message})
            fresh = self.lifecycle.store.get(job.id, fetch=(), mark_gone=False)  # its record decides
            return self.lifecycle.park_owed_letter(fresh) if fresh is not None else None

    def _execute(self, job: Job) -> Job:
        """The claimed attempt of `job` run and its outcome written: the job as it leaves it."""
        found = self._handler_and_payload(job)
        if isinstance(found, JobErrorInfo):  # no attempt of it can ever run: failed for good
            return self._fail(job, found, False)
        job_type, payload = found
        reporter = ProgressReporter(
            job,
            self.lifecycle.record_progress,
            clock=self._clock,
            min_interval_s=self._progress_interval_s,
            on_error=lambda exc: self._observe("progress_refused", job, {"reason": str(exc)}),
        )
        time_s = self._handler_time_s(job)
        ctx = self._context(job, reporter, time_s)
        started = self._clock.monotonic()
        result, raised = self._call_handler(job, job_type, payload, ctx, reporter, started, time_s)
        return self._end_attempt(job, ctx, reporter, started, result, raised)

    def _call_handler(self, job: Job, job_type: JobType, payload: Any, ctx: JobContext, reporter: ProgressReporter,
                      started: float, time_s: float) -> tuple[Any, Optional[BaseException]]:
        """(what the handler returned, what it raised): the handler run within `time_s`, its ctx
        closed after it. Raises only KeyboardInterrupt and GeneratorExit."""
        try:
            give_up = functools.partial(self._give_up, reporter, started) if self._end_process else None
            return run_with_timeout(lambda: job_type.handler(ctx, payload), time_s, ctx.expire,
                                    clock=self._clock, give_up=give_up, give_up_after_s=self._give_up_after_s,
                                    timeout_s=job.timeout_s), None
        except (KeyboardInterrupt, GeneratorExit):
            # Not the handler's failure: KeyboardInterrupt is someone stopping this process (Ctrl-C
            # on a local worker), which must stop; GeneratorExit only unwinds a generator being
            # closed. The job's lease brings it back (worker_lost) as for a process that died.
            raise
        except BaseException as exc:  # noqa: B036 - SystemExit, asyncio.CancelledError, a library's own
            # BaseException: it ends this attempt like any error instead of leaving the runner
            # (and the batch-mates behind it) and the job `running` until its lease ends.
            return None, exc
        finally:
            ctx.close()  # a ctx kept past the handler (a thread, a callback) writes nothing more

    def _end_attempt(self, job: Job, ctx: JobContext, reporter: ProgressReporter, started: float, result: Any,
                     raised: Optional[BaseException]) -> Job:
        """The attempt's outcome written, from what its handler returned or raised and what it
        did through its ctx: canceled, failed `timeout`, ended early, or completed."""
        if isinstance(raised, JobCancelledError):
            return self._cancel(reporter, started)
        if isinstance(raised, JobTimeoutError) or ctx.expired:
            # Once its time ran out the attempt failed `timeout`, whatever the handler did then
            # (returned a result after catching the timeout, or raised something else).
            timeout = raised if isinstance(raised, JobTimeoutError) else JobTimeoutError(
                f"{JobTimeoutError.exceeded(job.timeout_s)} (it went on past its timeout)")
            return self._fail(reporter.job, _error_info(timeout), True, started, reporter.settle(), raised=raised)
        # fail_job was called and its error swallowed, or the handler saw the cancel request and
        # returned (`if ctx.cancelled(): return`, a caught JobCancelledError): not a completion.
        if raised is not None or ctx.failure is not None or ctx.cancel_seen:
            return self._end_early(ctx, reporter, raised, started)
        return self._complete(ctx, reporter, result, started)

    def _complete(self, ctx: JobContext, reporter: ProgressReporter, result: Any, started: float) -> Job:
        """The attempt completed with its result (complete_job's, else the handler's), or failed
        for good when that result cannot be stored."""
        message = None
        if ctx.completion is not None:  # complete_job recorded the result: it is the job's
            result, message = ctx.completion.result, ctx.completion.message
        elif isinstance(result, Completion):
            result, message = result.result, result.message
        try:
            result = _stored_result(reporter.job, result)
        except _RefusedResult as refused:  # for good: the handler would return it again
            return self._fail(reporter.job, refused.error, False, started, reporter.settle())
        final = self.lifecycle.complete(reporter.job, result, message, last_progress=reporter.settle())
        self._observe("completed", final, {"duration_s": self._clock.monotonic() - started})
        return final

    def _handler_time_s(self, job: Job) -> float:
        """How long the claimed attempt of `job` gives its handler: its timeout, counted from the
        claim as its lease is (`lease_expires_at` less LEASE_GRACE_S, on the lifecycle's clock),
        so a claim whose write or payload read took long leaves the handler only the rest, and
        the attempt (and a give-up after it) still ends inside its lease. Whole seconds, rounded
        up (a claim's usual milliseconds take nothing from the handler; the grace has room for
        one more); at least HANDLER_MIN_TIME_S."""
        if job.lease_expires_at is None:
            return job.timeout_s
        left_s = (parse_time(job.lease_expires_at) - self.lifecycle.clock()).total_seconds() - LEASE_GRACE_S
        return max(HANDLER_MIN_TIME_S, min(job.timeout_s, math.ceil(left_s)))

    def _handler_and_payload(self, job: Job) -> Union[tuple[JobType, Any], JobErrorInfo]:
        """The job's type and its payload as the handler takes it, or why no attempt of it can
        run: its payload object gone, its type not registered, its payload not the type's."""
        if "payload" in job.gone:  # the claim found its object gone: no attempt can ever read it
            return _error_info(PayloadGoneError.of(job.id))
        job_type = self.registry.find(job.type)
        if job_type is None:
            return JobErrorInfo(code="unknown_job_type", message=f"no handler is registered for {job.type!r}")
        try:
            return job_type, job_type.parse_payload(job.payload)  # what counts as invalid: decided there, as at submit
        except InvalidPayloadError as exc:
            cause = exc.__cause__  # pydantic's own message names each field; a validator's error names itself
            message = str(cause) if isinstance(cause, ValidationError) else \
                f"the payload model of {job.type!r} raised {describe(cause or exc)}"
            return JobErrorInfo(code="invalid_payload", message=message[:MAX_ERROR_MESSAGE_CHARS])

    def _context(self, job: Job, reporter: ProgressReporter, time_s: float) -> JobContext:
        """The handler's `ctx` for this attempt of `job`, its reports through `reporter`, its
        deadline `time_s` from now."""
        return JobContext(
            reporter,
            # its cancel request: the record alone, no object read (none can be found gone)
            reload=lambda job_id: self.lifecycle.store.get(job_id, fetch=(), mark_gone=False),
            clock=self._clock,
            deadline=self._clock.monotonic() + time_s,
            spawn=functools.partial(self._spawn, listed_at_claim=len(job.children)),
            store_artifact=functools.partial(self.artifacts.put, attempt=job.attempts)
            if self.artifacts is not None else None,
            cancel_poll_interval_s=max(CANCEL_POLL_INTERVAL_S, self._progress_interval_s),
        )

    def _spawn(self, parent: Job, index: int, *, made: int, listed_at_claim: int, **request: Any) -> Job:
        """Child number `index` of `parent`, admitted like a submitted job: a handler spawning in
        a loop stays within its tenant's bound (QuotaExceededError at the call). The `made`
        children this attempt spawned before count though the stream has not counted them yet,
        and count towards the children the parent may list, beside those it listed when the
        attempt was claimed (its earlier attempts')."""
        admit = functools.partial(self._admit, pending=made) if self._admit is not None else None
        return self.lifecycle.spawn(parent, index, admit=admit, listed=listed_at_claim + made, **request)

    def _end_early(self, ctx: JobContext, reporter: ProgressReporter, exc: Optional[BaseException],
                   started: float) -> Job:
        """How an attempt ends when the handler raised `exc`, or returned after fail_job or after
        it saw a cancel request: canceled once the handler saw a cancel request (the user's
        word wins); else failed with the first fail_job's code and message; else failed now for
        a FatalJobError, retried (while attempts remain) for any other exception."""
        if ctx.cancel_seen:
            return self._cancel(reporter, started)
        if ctx.failure is not None:
            error = JobErrorInfo(code=ctx.failure.code, message=ctx.failure.message[:MAX_ERROR_MESSAGE_CHARS])
            return self._fail(reporter.job, error, False, started, reporter.settle())
        assert exc is not None
        return self._fail(reporter.job, _error_info(exc), not isinstance(exc, FatalJobError), started,
                          reporter.settle(), raised=exc)

    def _cancel(self, reporter: ProgressReporter, started: float) -> Job:
        final = self.lifecycle.mark_canceled(reporter.job, reporter.settle())
        self._observe("canceled", final, {"duration_s": self._clock.monotonic() - started})
        return final

    def _give_up(self, reporter: ProgressReporter, started: float, over_s: float) -> None:
        """A handler went on `over_s` past its timeout, however often interrupted: its attempt
        is failed `timeout` (from another thread, for at most HANDLER_GIVE_UP_WRITE_S: this
        runs in the alarm, which may have cut the main thread inside a store call) and the
        process ends, before the attempt's lease lapses and its next attempt starts. Its
        batch-mates come back after their short lease; the reconciler ends the attempt
        `worker_lost` if that write did not land."""
        job = reporter.job
        self._observe("process_ended", job, {"reason": "the handler went on past its timeout",
                                             "over_s": round(over_s, 1)})
        error = JobErrorInfo(code=JobTimeoutError.code, message=(
            f"{JobTimeoutError.exceeded(job.timeout_s, over_s)} despite being interrupted: "
            "its worker process was ended"))

        def record() -> None:
            try:
                self._fail(job, error, True, started)
            except Exception as exc:  # noqa: BLE001 - the lease ends the attempt instead
                self._observe("process_ended_unrecorded", job, {"reason": describe(exc)})

        writer = threading.Thread(target=record, name="give-up", daemon=True)
        writer.start()
        writer.join(HANDLER_GIVE_UP_WRITE_S)
        assert self._end_process is not None
        self._end_process()

    def _fail(self, job: Job, error: JobErrorInfo, retryable: bool, started: Optional[float] = None,
              last_progress: Optional[Progress] = None, raised: Optional[BaseException] = None) -> Job:
        """End the attempt with `error` and the report it had not written yet (`last_progress`,
        the reporter's settled: one write, one event), observed with the error and, for what the
        handler `raised`, where (its traceback's end); raises DeadLetterOwedError, after observing
        the failure, when the job failed but its dead letter was not sent (the delivery must fail
        so that its message comes back to park it)."""
        extra: dict[str, Any] = {"error_code": error.code, "error_message": error.message}
        if raised is not None:
            extra["traceback"] = _traceback_end(raised)
        try:
            final = self.lifecycle.fail_attempt(job, error, retryable=retryable, last_progress=last_progress)
        except DeadLetterOwedError as owed:
            self._observe_failure(owed.job, {**extra, "dead_letter": "owed"}, started)
            raise
        self._observe_failure(final, extra, started)
        return final

    def _observe_failure(self, final: Job, extra: dict[str, Any], started: Optional[float]) -> None:
        if started is not None:
            extra = {**extra, "duration_s": self._clock.monotonic() - started}
        self._observe("retried" if final.status.value == "retrying" else final.status.value, final, extra)


class _RefusedResult(Exception):
    """A handler's result no job can be completed with; `error` is the failure it ends in."""

    def __init__(self, error: JobErrorInfo) -> None:
        super().__init__(error.message)
        self.error = error


def _stored_result(job: Job, result: Any) -> Any:
    """`result` as the job is completed with it (`result_json`); _RefusedResult when it is no
    JSON a store could write and a reader take (`result_not_serializable`: a type JSON lacks,
    NaN, a key that is not text, too deep, a lone surrogate) or the job with it would be past
    what the API can return (`result_too_large`)."""
    too_deep = too_deep_message("result")
    try:
        if nested_deeper_than(result, MAX_JSON_DEPTH):  # before: one too deep to encode at all
            raise ValueError(too_deep)
        result = result_json(result)
        if nested_deeper_than(result, MAX_JSON_DEPTH):  # after: the models in it as their JSON
            raise ValueError(too_deep)
        if holds_lone_surrogate(result):  # no store could write it, no strict JSON reader take it
            raise ValueError(f"the result {NOT_UNICODE}")
    except (TypeError, ValueError) as exc:
        raise _RefusedResult(JobErrorInfo(code="result_not_serializable",
                                          message=str(exc)[:MAX_ERROR_MESSAGE_CHARS])) from None
    size = answer_bytes(job.model_copy(update={"result": result}).public())
    if size > MAX_ANSWER_BYTES:  # stored, no GET of the job could return it
        raise _RefusedResult(JobErrorInfo(code="result_too_large", message=(
            f"the job with its result would be {shown_number(size)} bytes as the API answers it, past "
            f"the {shown_number(MAX_ANSWER_BYTES)} it can return (Lambda's 6 MB): write large outputs as artifacts "
            "(ctx.artifact) and return their names")))
    return result


def _traceback_end(exc: BaseException) -> str:
    """The last MAX_TRACEBACK_LOG_CHARS of `exc`'s traceback: the frames nearest the raise."""
    return "".join(traceback.format_exception(exc))[-MAX_TRACEBACK_LOG_CHARS:]


def _error_info(exc: BaseException) -> JobErrorInfo:
    # A spawn's: the fields it names are in its details, which a job's error has not.
    if isinstance(exc, InvalidPayloadError):
        code, message = exc.code, exc.with_fields()
    elif isinstance(exc, JobpipeError):
        code, message = exc.code, str(exc.message)
    else:
        code, message = "handler_error", describe(exc)
    return JobErrorInfo(code=code, message=message[:MAX_ERROR_MESSAGE_CHARS] or type(exc).__name__)
