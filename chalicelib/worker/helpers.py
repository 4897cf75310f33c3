"""The worker helpers of the progress conventions: `progress`, `start_job`, `complete_job`,
`fail_job`, for handlers that prefer functions to context methods (the seed's worker API):

    start_job(ctx, "Initializing model processing")
    progress(ctx, 10, "setup", "Setting up environment")
    complete_job(ctx, {"model": "output.stl"}, "Model processing complete")   # no return needed
    fail_job(ctx, "MODEL_ERROR", str(exc))                                    # raises FatalJobError
"""
from __future__ import annotations

from typing import Any, NoReturn, Optional

from chalicelib.worker.context import Completion, JobContext

__all__ = ["Completion", "complete_job", "fail_job", "progress", "start_job"]


def progress(
    ctx: JobContext,
    percent: float,
    step: Optional[str] = None,
    message: Optional[str] = None,
    details: Optional[dict[str, Any]] = None,
    force: bool = False,
) -> None:
    """Throttled, coalesced, monotonic progress (see JobContext.progress): raises
    ProgressRejectedError for a decrease, JobCancelledError once a cancel was requested."""
    ctx.progress(percent, step, message, details, force=force)


def start_job(ctx: JobContext, message: Optional[str] = None) -> None:
    """Mark the start of the work with `message` (step `started`), written at once at the
    percent already reached. The job is already `running`: a worker claims the attempt
    before the handler runs. Raises JobCancelledError if a cancel was requested."""
    ctx.progress(ctx.progress_percent, step="started", message=message, force=True)


def complete_job(ctx: JobContext, result: Any, message: Optional[str] = None) -> Completion:
    """Record `result` as the job's result and `message` as its final progress message; the
    job completes with them once the handler ends, whether it returns this, None or anything
    else, raises (a clean-up's error, logged) or runs past its timeout: the work is not run
    again. Only a later `fail_job`, or a cancel request the handler saw, ends it otherwise.
    Raises AttemptEndedError, recording nothing, after `fail_job` (the job fails as it said).
    Progress alone never completes a job. Raises ProgressRejectedError at the call for a
    message `progress` would refuse (not text, too long, a lone surrogate), alone or beside the
    last report's details, which the completion keeps with it."""
    return ctx.complete(result, message)


def fail_job(ctx: JobContext, code: str, message: str, progress_percent: Optional[float] = None) -> NoReturn:
    """Fail the job now with `code` and `message`, without retrying, recording
    `progress_percent` when given (one below the percent reached keeps the percent reached;
    it is never refused). Raises FatalJobError; the job fails with this code and message
    even if the handler catches it, unless a cancel request already stopped the handler. A
    report made after it (in a `finally:` block) is not taken: the job shows the failure's."""
    raise ctx.fail(code, message, progress_percent)
