"""Which events a write to a job produces: the old image against the new one (pure)."""
from __future__ import annotations

from typing import Optional

from chalicelib.defaults import MAX_LABEL_CHARS
from chalicelib.domain.events import PROGRESS_CHANGED, STATUS_CHANGED, JobEvent, clip, event_id_for
from chalicelib.domain.job import Job
from chalicelib.domain.progress import is_notable_change


def events_for_change(old: Optional[Job], new: Optional[Job], timestamp: str) -> list[JobEvent]:
    """One `job.status.changed` per status transition (creation counts: none -> queued), else
    one `job.status.progress` when the write announced its progress (moved the job's
    `event_percent`: a milestone or 10 points since the attempt's last event, decided where
    progress is written). Deleting a job (TTL expiry, cleanup) produces nothing. At most one
    event per write, keyed by version."""
    if new is None:
        return []
    if old is not None and new.version <= old.version:
        return []  # not a new write of this job
    status_changed = old is None or old.status != new.status
    if status_changed:
        event_type = STATUS_CHANGED
    elif new.attempts == old.attempts and _announced(old, new):
        event_type = PROGRESS_CHANGED
    else:
        return []
    return [
        JobEvent(
            event_id=event_id_for(new.id, new.version),
            event_type=event_type,
            timestamp=timestamp,
            job_id=new.id,
            status=new.status.value,
            progress=new.progress.percent,
            attempt=new.attempts,
            previous_status=old.status.value if old else None,
            # A progress event's previous progress is the one the attempt's last event carried.
            previous_progress=(old.progress.percent if status_changed else _last_announced(old)) if old else None,
            step=clip(new.progress.step, MAX_LABEL_CHARS),
            message=clip(new.progress.message),
            tenant=new.tenant,
            type=new.type,
            scope=new.scope,
            version=new.version,
            error={"code": clip(new.error.code, MAX_LABEL_CHARS), "message": clip(new.error.message)}
            if new.error and status_changed else None,
            finished_at=new.finished_at if new.status.is_terminal else None,
        )
    ]


def _announced(old: Job, new: Job) -> bool:
    """Whether a write within an attempt announced its progress: it moved the attempt's mark
    (`Job.event_mark`). A write by a version that kept no mark (an attempt it started, finishing
    under it while the stream already runs this one, its record holding no mark or an earlier
    attempt's) is announced as that version decided: a notable change from the write before."""
    if new.event_mark is None:
        return is_notable_change(old.progress.percent, new.progress.percent)
    return new.event_mark != old.event_mark


def _last_announced(job: Job) -> float:
    """The percent the attempt's last event carried (the last write's, for an unmarked one)."""
    return job.progress.percent if job.event_mark is None else job.event_mark
