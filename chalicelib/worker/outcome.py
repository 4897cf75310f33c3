"""How a job's attempt ends: its outcome written and observed, from what the handler returned or
raised and what it did through its ctx (completed, failed or retried, canceled, failed
`timeout`), its result checked first (JSON a store can write and the API can return), written
again while the store does not answer and the invocation has time, and the give-up that ends
the process of a handler that went on past its timeout. runner.py claims the attempt and calls
the handler; ending.py decides which way the attempt ends; the rest after the handler's call
is here."""
from __future__ import annotations

import json
import threading
import traceback
from typing import Any, Callable, Optional

from pydantic import BaseModel

from chalicelib.defaults import (
    HANDLER_GIVE_UP_WRITE_S,
    MAX_ANSWER_BYTES,
    MAX_ERROR_MESSAGE_CHARS,
    MAX_JSON_DEPTH,
    MAX_TRACEBACK_LOG_CHARS,
    OUTCOME_RETRY_FIRST_WAIT_S,
    OUTCOME_RETRY_MAX_WAIT_S,
    OUTCOME_RETRY_PATIENCE_S,
    REPORT_SLACK_BYTES,
)
from chalicelib.domain.errors import (
    DeadLetterOwedError,
    NextAttemptUnsentError,
    RecordTooLargeError,
    StaleJobError,
    StoreUnavailableError,
    describe,
)
from chalicelib.domain.job import (
    Job, JobErrorInfo, Progress, answer_bytes, answer_prefix, answer_shares, nested_deeper_than, non_text_key,
    too_deep_message,
)
from chalicelib.domain.numbers import shown_number
from chalicelib.domain.text import NOT_UNICODE, holds_lone_surrogate
from chalicelib.lifecycle import JobLifecycle
from chalicelib.ports import Clock
from chalicelib.worker.context import JobContext
from chalicelib.worker.ending import AfterCompletion, EndCanceled, EndCompleted, Ending, decide_ending
from chalicelib.worker.progress import ProgressReporter


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


class AttemptOutcomes:
    """Writes how each attempt of the worker's jobs ends, through the lifecycle, and observes it
    (`observe(event, job, extra)`: the runner's callback, `duration_s` read on `clock` from the
    handler's start). `end_process()`: ends the worker's process, for `give_up` (None: the
    runner then gives no give-up to the handler's timeout)."""

    def __init__(self, lifecycle: JobLifecycle, *, clock: Clock,
                 observe: Callable[[str, Job, dict[str, Any]], None],
                 end_process: Optional[Callable[[], None]] = None) -> None:
        self._lifecycle = lifecycle
        self._clock = clock
        self._observe = observe
        self._end_process = end_process

    def after_handler(self, job: Job, ctx: JobContext, reporter: ProgressReporter, started: float, result: Any,
                      raised: Optional[BaseException], *, ends_by: Optional[float] = None) -> Job:
        """The attempt's outcome written, from what its handler returned or raised and what it
        did through its ctx, as `decide_ending` decides: canceled, failed as fail_job said,
        completed as complete_job said (though it raised or timed out after), failed `timeout`,
        ended early, or completed. While the store does not answer it is written again
        (`_patiently`), until `ends_by` on the clock at the latest (None:
        OUTCOME_RETRY_PATIENCE_S is the only bound)."""
        ending = decide_ending(failure=ctx.failure, completion=ctx.completion, cancel_seen=ctx.cancel_seen_in_time,
                               timed_out=ctx.expired, timeout_s=job.timeout_s, raised=raised, returned=result)
        last_progress = reporter.settle()  # first: the job a timer's write under way returns is the one ended

        def patiently(write: Callable[[], Job]) -> Job:
            return self._patiently(reporter.job, write, ends_by)

        return self._end(reporter.job, ending, last_progress, started, patiently)

    def _end(self, job: Job, ending: Ending, last_progress: Optional[Progress], started: float,
             patiently: Optional[Callable[[Callable[[], Job]], Job]]) -> Job:
        """`job`'s attempt ended as `ending` says, written with `last_progress` (through
        `patiently` when given) and observed."""
        if isinstance(ending, EndCanceled):
            return self._cancel_with(job, last_progress, started, patiently)
        if isinstance(ending, EndCompleted):
            return self._complete_with(job, ending.result, ending.message, last_progress, started, patiently,
                                       ending.after)
        return self.fail(job, ending.error, ending.retryable, started, last_progress, raised=ending.raised,
                         patiently=patiently, retry_after_s=ending.retry_after_s)

    def _patiently(self, job: Job, write: Callable[[], Job], ends_by: Optional[float]) -> Job:
        """`write()`, the outcome of `job`'s attempt, written again while the store does not
        answer (StoreUnavailableError past botocore's retries: a throttled or unreachable table
        or bucket), after a wait of OUTCOME_RETRY_FIRST_WAIT_S doubling up to
        OUTCOME_RETRY_MAX_WAIT_S, for OUTCOME_RETRY_PATIENCE_S at most and never past `ends_by`:
        the handler's work is kept instead of run again once the lease lapses. Each wait is
        observed (`outcome_unwritten`). A record with no room is not written again as it is
        (RecordTooLargeError). When a try after the first finds the attempt no longer running,
        an earlier try may have landed with its answer lost (or the lease lapsed meanwhile): the
        last StoreUnavailableError is raised then, so the delivery fails and its message, back,
        settles the attempt from the record as it would have without the retries."""
        gives_up_at = self._clock.monotonic() + OUTCOME_RETRY_PATIENCE_S
        if ends_by is not None:
            gives_up_at = min(gives_up_at, ends_by)
        wait = OUTCOME_RETRY_FIRST_WAIT_S
        unanswered: Optional[StoreUnavailableError] = None
        while True:
            try:
                return write()
            except RecordTooLargeError:
                raise
            except StaleJobError:
                if unanswered is None:
                    raise
                raise unanswered from None
            except StoreUnavailableError as exc:
                if self._clock.monotonic() + wait > gives_up_at:
                    raise
                unanswered = exc
                self._observe("outcome_unwritten", job, {"reason": describe(exc), "retry_in_s": wait})
                self._clock.sleep(wait)
                wait = min(wait * 2, OUTCOME_RETRY_MAX_WAIT_S)

    def _complete_with(self, job: Job, result: Any, message: Optional[str], last_progress: Optional[Progress],
                       started: float, patiently: Optional[Callable[[Callable[[], Job]], Job]],
                       after: Optional[AfterCompletion]) -> Job:
        """`job`'s attempt completed with `result` and `message` (written with `last_progress`,
        through `patiently` when given), or failed for good when the result cannot be stored."""
        try:  # measured as the completed job will be answered: with its own progress, status and end
            result = _stored_result(self._lifecycle.completed_as(job, message, last_progress), result)
        except _RefusedResult as refused:  # for good: the handler would return it again
            return self.fail(job, refused.error, False, started, last_progress, patiently=patiently)

        def write() -> Job:
            return self._lifecycle.complete(job, result, message, last_progress=last_progress)

        final = patiently(write) if patiently is not None else write()
        extra: dict[str, Any] = {"duration_s": self._clock.monotonic() - started}
        if after is not None:
            extra["warning"] = f"{after.what} after complete_job: the job completed with the result it recorded"
            if after.raised is not None:
                extra["traceback"] = _traceback_end(after.raised)
        self._observe("completed", final, extra)
        return final

    def _cancel_with(self, job: Job, last_progress: Optional[Progress], started: float,
                     patiently: Optional[Callable[[Callable[[], Job]], Job]]) -> Job:
        """`job`'s attempt ended canceled on request (written with `last_progress`, through
        `patiently` when given), observed."""

        def write() -> Job:
            return self._lifecycle.mark_canceled(job, last_progress)

        final = patiently(write) if patiently is not None else write()
        self._observe("canceled", final, {"duration_s": self._clock.monotonic() - started})
        return final

    def give_up(self, reporter: ProgressReporter, started: float, over_s: float, *,
                ctx: Optional[JobContext] = None) -> None:
        """A handler went on `over_s` past its timeout, however often interrupted: its attempt
        is failed `timeout`, with the report its progress window held (from another thread, for
        at most HANDLER_GIVE_UP_WRITE_S: this runs in the alarm, which may have cut the main
        thread inside a store call, or inside a progress write holding the reporter) and the
        process ends, before the attempt's lease lapses and its next attempt starts. Its
        batch-mates come back after their short lease; the reconciler ends the attempt
        `worker_lost` if that write did not land. A failure its handler recorded before the
        timeout (`ctx`'s fail_job) is the job's instead, not retried, as when it returns, and a
        completion it recorded (complete_job) completes it, as when it returns; a cancel request
        its handler saw (before any fail_job) ends it canceled on request, as when it returns."""
        job = reporter.job
        self._observe("process_ended", job, {"reason": "the handler went on past its timeout",
                                             "over_s": round(over_s, 1)})
        ending = decide_ending(failure=ctx.failure if ctx is not None else None,
                               completion=ctx.completion if ctx is not None else None,
                               cancel_seen=ctx is not None and ctx.cancel_seen_in_time, timed_out=True,
                               timeout_s=job.timeout_s, given_up_over_s=over_s)

        def record() -> None:
            try:
                # With the report the progress window held: the process ends with its timer.
                self._end(job, ending, reporter.abandon(), started, None)
            except (DeadLetterOwedError, NextAttemptUnsentError):
                pass  # recorded and observed: the message, back after the process ends, does the rest
            except Exception as exc:  # noqa: BLE001 - the lease ends the attempt instead
                self._observe("process_ended_unrecorded", job, {"reason": describe(exc)})

        writer = threading.Thread(target=record, name="give-up", daemon=True)
        writer.start()
        writer.join(HANDLER_GIVE_UP_WRITE_S)
        assert self._end_process is not None
        self._end_process()

    def fail(self, job: Job, error: JobErrorInfo, retryable: bool, started: Optional[float] = None,
             last_progress: Optional[Progress] = None, raised: Optional[BaseException] = None,
             patiently: Optional[Callable[[Callable[[], Job]], Job]] = None,
             retry_after_s: Optional[int] = None) -> Job:
        """End the attempt with `error` and the report it had not written yet (`last_progress`,
        the reporter's settled: one write, one event), through `patiently` when given (written
        again while the store does not answer), observed with the error and, for what the
        handler `raised`, where (its traceback's end); raises DeadLetterOwedError, after observing
        the failure, when the job failed but its dead letter was not sent (the delivery must fail
        so that its message comes back to park it), and NextAttemptUnsentError, the same way, when
        the job is retrying but its next attempt's message was not sent (its message, coming back,
        starts that attempt). `retry_after_s`: the least wait before a retry (a quota's refusal)."""
        extra: dict[str, Any] = {"error_code": error.code, "error_message": error.message}
        if raised is not None:
            extra["traceback"] = _traceback_end(raised)
        error, last_progress = _answerable(job, error, last_progress)

        def write() -> Job:
            return self._lifecycle.fail_attempt(job, error, retryable=retryable, last_progress=last_progress,
                                                retry_after_s=retry_after_s)

        try:
            final = patiently(write) if patiently is not None else write()
        except DeadLetterOwedError as owed:
            self._observe_failure(owed.job, {**extra, "dead_letter": "owed"}, started)
            raise
        except NextAttemptUnsentError as unsent:
            self._observe_failure(unsent.job, {**extra, "next_attempt": "unsent"}, started)
            raise
        if final.dead_letter_unconfirmed:  # sent, its answer lost: left to the reconciler
            extra["dead_letter"] = "unconfirmed"
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
        shares = [("the result", result), ("the payload", job.payload),
                  ("the final progress message", job.progress.message or "")]
        if job.children:  # listed as the attempt spawned them, the latest before any write read them back
            shares.append((f"its {len(job.children)} children's ids", job.children))
        raise _RefusedResult(JobErrorInfo(code="result_too_large", message=(
            f"the job with its result would be {shown_number(size)} bytes as the API answers it ("
            f"{answer_shares(shares)}), past "
            f"the {shown_number(MAX_ANSWER_BYTES)} it can return (Lambda's 6 MB): write large outputs as artifacts "
            "(ctx.artifact) and return their names, and keep the final message short")))
    return result


def _answerable(job: Job, error: JobErrorInfo, report: Optional[Progress]) -> tuple[JobErrorInfo, Optional[Progress]]:
    """`error` and `report` (the failure's own report: fail_job's message) as a failure writes
    them, their messages cut, marked "…", to the room the job's answer leaves them beside the
    payload and the rest of the job, the error's first: a failure is never refused, and a job
    past MAX_ANSWER_BYTES is one no GET, and no listing page holding it, could return. Both
    returned as they are when they fit."""
    update: dict[str, Any] = {"error": error.model_copy(update={"message": ""})}
    if report is not None:
        update["progress"] = report.model_copy(update={"message": None, "updated_at": job.created_at})
    room = MAX_ANSWER_BYTES - REPORT_SLACK_BYTES - answer_bytes(job.model_copy(update=update).public())

    def fitted(text: str) -> str:
        nonlocal room
        if answer_bytes(text) > room:
            text = answer_prefix(text, room - answer_bytes("…")) + "…"
        room -= answer_bytes(text)
        return text

    message = fitted(error.message)
    if message != error.message:
        error = error.model_copy(update={"message": message})
    if report is not None and report.message:
        message = fitted(report.message)
        if message != report.message:
            report = report.model_copy(update={"message": message})
    return error, report


def _traceback_end(exc: BaseException) -> str:
    """The last MAX_TRACEBACK_LOG_CHARS of `exc`'s traceback: the frames nearest the raise."""
    return "".join(traceback.format_exception(exc))[-MAX_TRACEBACK_LOG_CHARS:]
