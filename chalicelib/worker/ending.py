"""Which way an attempt ends, from what its handler did: the one place the precedence of a seen
cancel, fail_job, complete_job, a timeout and an exception is decided (docs/jobs.md), for each
path that ends an attempt (the handler returned, it raised, or it went on past its timeout until
its process is ended). outcome.py writes the ending decided here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from chalicelib.defaults import MAX_ERROR_MESSAGE_CHARS
from chalicelib.domain.errors import (
    FatalJobError,
    InvalidPayloadError,
    JobCancelledError,
    JobpipeError,
    JobTimeoutError,
    QuotaExceededError,
    describe,
    text_of,
)
from chalicelib.domain.job import JobErrorInfo
from chalicelib.worker.context import Completion, Failure


@dataclass(frozen=True)
class AfterCompletion:
    """What went wrong once complete_job was called: `what` in words, `raised` what the handler
    raised (None when it returned, or went on, past its timeout)."""

    what: str
    raised: Optional[BaseException] = None


@dataclass(frozen=True)
class EndCanceled:
    """The attempt ends canceled on request: its handler saw the request (before any fail_job)."""


@dataclass(frozen=True)
class EndFailed:
    """The attempt fails with `error`, retried while attempts remain when `retryable`; `raised`:
    what the handler raised, whose traceback is logged with it."""

    error: JobErrorInfo
    retryable: bool
    raised: Optional[BaseException] = None
    retry_after_s: Optional[int] = None  # the wait `raised` asks before a retry (a quota's refusal)


@dataclass(frozen=True)
class EndCompleted:
    """The attempt completes with `result` and `message` (complete_job's, else what the handler
    returned); `after`: what went wrong once complete_job was called, logged beside it."""

    result: Any
    message: Optional[str] = None
    after: Optional[AfterCompletion] = None


Ending = Union[EndCanceled, EndFailed, EndCompleted]


def decide_ending(*, failure: Optional[Failure], completion: Optional[Completion], cancel_seen: bool,
                  timed_out: bool, timeout_s: float, raised: Optional[BaseException] = None,
                  returned: Any = None, given_up_over_s: Optional[float] = None) -> Ending:
    """How the attempt ends, from its handler's ctx (the `failure` fail_job recorded first, the
    `completion` complete_job recorded last, whether it saw the cancel request before its time
    ran out, whether its time ran out) and from how the handler stopped: it returned `returned`,
    raised `raised`, or went on `given_up_over_s` past its timeout and its process is being
    ended. The first of these that holds decides:

    1. fail_job before any cancel was seen: failed with its code, not retried (a cancel it then
       saw, an error, a timeout after it change nothing).
    2. a cancel the handler saw in time, or a JobCancelledError it raised in time before any
       complete_job: canceled on request.
    3. complete_job: completed with its result, though it raised (a JobCancelledError of its own
       too) or ran past its timeout after.
    4. its time ran out: failed `timeout`, retried, whatever the handler did then (a look at
       the cancel request too).
    5. an exception: failed with its code, retried unless it is a FatalJobError (a quota's
       refusal, from ctx.spawn, no sooner than it asks).
    6. it returned: completed with what it returned (a Completion's result and message).

    A failure ends the job canceled, its error kept, when its cancel was requested (the lifecycle
    decides that on the record: no retry runs for a canceled job)."""
    if failure is not None and not failure.after_cancel:
        return EndFailed(failure_info(failure), retryable=False)
    if cancel_seen or (isinstance(raised, JobCancelledError) and not timed_out and completion is None):
        return EndCanceled()
    if completion is not None:
        if given_up_over_s is not None:
            after: Optional[AfterCompletion] = AfterCompletion(
                f"the handler went on {round(given_up_over_s, 1)} s past its timeout and its worker process was ended")
        else:
            after = _after_completion(raised, timed_out)
        return EndCompleted(completion.result, completion.message, after)
    if given_up_over_s is not None:
        return EndFailed(JobErrorInfo(code=JobTimeoutError.code, message=(
            f"{JobTimeoutError.exceeded(timeout_s, given_up_over_s)} despite being interrupted: "
            "its worker process was ended")), retryable=True)
    if isinstance(raised, JobTimeoutError) or timed_out:
        timeout = raised if isinstance(raised, JobTimeoutError) else JobTimeoutError(
            f"{JobTimeoutError.exceeded(timeout_s)} (it went on past its timeout)")
        return EndFailed(error_info(timeout), retryable=True, raised=raised)
    if raised is not None:
        wait = raised.retry_after_s if isinstance(raised, QuotaExceededError) else None
        return EndFailed(error_info(raised), retryable=not isinstance(raised, FatalJobError), raised=raised,
                         retry_after_s=wait)
    if isinstance(returned, Completion):
        return EndCompleted(returned.result, returned.message)
    return EndCompleted(returned)


def _after_completion(raised: Optional[BaseException], timed_out: bool) -> Optional[AfterCompletion]:
    """What went wrong once the handler called complete_job: what it raised, else its running
    past its timeout; None when it returned in time."""
    if isinstance(raised, JobTimeoutError):  # the interrupt, come through the clean-up
        return AfterCompletion(f"the handler ran past its timeout ({raised.message})", raised)
    if raised is not None:
        return AfterCompletion(f"the handler raised {describe(raised)[:MAX_ERROR_MESSAGE_CHARS]}", raised)
    if timed_out:
        return AfterCompletion("the handler ran past its timeout")
    return None


def failure_info(failure: Failure) -> JobErrorInfo:
    """What a handler's fail_job fails its job with: its code and message, the message cut to
    MAX_ERROR_MESSAGE_CHARS."""
    return JobErrorInfo(code=failure.code, message=failure.message[:MAX_ERROR_MESSAGE_CHARS])


def error_info(exc: BaseException) -> JobErrorInfo:
    """What `exc` fails a job with: a JobpipeError's code and message, `handler_error` and its
    description for any other, the message cut to MAX_ERROR_MESSAGE_CHARS (never empty)."""
    # A spawn's: the fields it names are in its details, which a job's error has not.
    if isinstance(exc, InvalidPayloadError):
        code, message = exc.code, exc.with_fields()
    elif isinstance(exc, JobpipeError):
        code, message = exc.code, text_of(exc.message)
    else:
        code, message = "handler_error", describe(exc)
    return JobErrorInfo(code=code, message=message[:MAX_ERROR_MESSAGE_CHARS] or type(exc).__name__)
