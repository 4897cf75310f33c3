"""jobpipe jobs described in RQ's vocabulary, the shape rq-engine's polling clients parse.

Status mapping (RQ has no "retrying"): an attempt that failed and waits for its redelivery is
not executing, so it reads as `queued`, the state RQ gives a job waiting for a worker; it only
becomes `failed` when no attempt is left, as an RQ job would.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from chalicelib.domain.job import Job
from chalicelib.domain.status import JobStatus

RQ_STATUS: dict[JobStatus, str] = {
    JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "started",
    JobStatus.RETRYING: "queued",
    JobStatus.COMPLETED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELED: "canceled",
}


def _parse(moment: Optional[str]) -> Optional[datetime]:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")) if moment else None


def elapsed_s(job: Job, now: datetime) -> Optional[float]:
    """Seconds from the first attempt's start to the end (or to `now` while not ended)."""
    started = _parse(job.started_at)
    if started is None:
        return None
    ended = _parse(job.finished_at) or now
    return round(max(0.0, (ended - started).total_seconds()), 3)


def exc_info(job: Job) -> Optional[str]:
    """RQ carries a traceback here; jobpipe's error is a stable code and a message."""
    return f"{job.error.code}: {job.error.message}" if job.error is not None else None


def description(job: Job) -> str:
    """Like RQ's call description: the job type, with its scope as the argument when set."""
    return f"{job.type}({job.scope})" if job.scope else job.type


def children(job: Job) -> list[Any]:
    """The job's children once jobs can spawn them; an empty list until then."""
    return list(getattr(job, "children", None) or [])


def job_status(job: Job, now: datetime) -> dict[str, Any]:
    """`GET /api/jobstatus/{id}`: the light answer a poller checks for a terminal status."""
    return {
        "id": job.id,
        "status": RQ_STATUS[job.status],
        "started_at": job.started_at,
        "ended_at": job.finished_at,
        "elapsed_s": elapsed_s(job, now),
    }


def job_info(job: Job, now: datetime) -> dict[str, Any]:
    """`GET /api/jobinfo/{id}`: the status plus result, error, description, progress, children."""
    return {
        **job_status(job, now),
        "result": job.result,
        "exc_info": exc_info(job),
        "description": description(job),
        "type": job.type,
        "attempts": job.attempts,
        "progress": job.progress.model_dump(mode="json"),
        "children": children(job),
    }
