"""The worker helpers of the progress conventions: `progress`, `start_job`, `complete_job`,
`fail_job`, for handlers that prefer functions to context methods."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from chalicelib.domain.errors import FatalJobError
from chalicelib.worker.context import JobContext


@dataclass(frozen=True)
class Completion:
    """Returned by a handler (via `complete_job`): the result and a final progress message."""

    result: Any
    message: Optional[str] = None


def progress(
    ctx: JobContext,
    percent: float,
    step: Optional[str] = None,
    message: Optional[str] = None,
    details: Optional[dict[str, Any]] = None,
    force: bool = False,
) -> None:
    """Throttled progress (see JobContext.progress)."""
    ctx.progress(percent, step, message, details, force=force)


def start_job(ctx: JobContext, message: Optional[str] = None) -> None:
    """Mark the start of the work with a message, written at once. (The job is already
    running: a worker claims the attempt before the handler runs.)"""
    ctx.progress(ctx.job.progress.percent, step="started", message=message, force=True)


def complete_job(ctx: JobContext, result: Any, message: Optional[str] = None) -> Completion:
    """`return complete_job(ctx, result, "done")`: the job completes with `result` and the
    final progress message. Completion is explicit; progress alone never completes a job."""
    return Completion(result, message)


def fail_job(ctx: JobContext, code: str, message: str, progress_percent: Optional[float] = None) -> None:
    """Fail the job now with `code` and `message` (no retry), recording the percent reached."""
    if progress_percent is not None:
        ctx.progress(progress_percent, step="failed", message=message, force=True)
    raise FatalJobError(message, code=code)
