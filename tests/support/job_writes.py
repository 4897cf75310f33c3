"""The in-memory job store's writes as the jobs table's stream would carry them, and what every
such write must satisfy: the model tests of the lifecycle hold each write to these rules."""
from __future__ import annotations

from typing import Any, Callable, Optional

from chalicelib.adapters.dynamodb_items import job_key, job_to_item
from chalicelib.domain.job import Job
from chalicelib.domain.status import JobStatus, can_transition


class RecordingJobs(dict):
    """The store's items, every write appended to `stream` as DynamoDB's would carry it (its
    creation time from `clock`, epoch seconds, so a record decodes the same each time it is read)."""

    def __init__(self, stream: list[dict[str, Any]], clock: Optional[Callable[[], float]] = None) -> None:
        super().__init__()
        self.stream = stream
        self.clock = clock

    def __setitem__(self, job_id: str, job: Job) -> None:
        old = self.get(job_id)
        super().__setitem__(job_id, job)
        data: dict[str, Any] = {
            "Keys": job_key(job_id),
            "OldImage": job_to_item(old) if old is not None else None,
            "NewImage": job_to_item(job),
            "SequenceNumber": str(len(self.stream)),
        }
        if self.clock is not None:
            data["ApproximateCreationDateTime"] = self.clock()
        self.stream.append({"dynamodb": data})


def check_write(old: Optional[Job], new: Job) -> None:
    """One write of a job: created queued; else one version on, a status change only along the
    table, one attempt more exactly when it starts running, progress never lower within an
    attempt, a job asked to cancel never run (again), a finished job's outcome left alone."""
    if old is None:
        assert new.status == JobStatus.QUEUED and new.version == 1, new
        return
    assert new.version == old.version + 1, (old, new)
    if old.status != new.status:
        assert can_transition(old.status, new.status), f"{new.id}: {old.status.value} -> {new.status.value}"
    started = new.status == JobStatus.RUNNING and old.status != JobStatus.RUNNING
    assert new.attempts == old.attempts + (1 if started else 0), (old, new)
    if new.attempts == old.attempts:
        assert new.progress.percent >= old.progress.percent, (
            f"{new.id} attempt {new.attempts}: progress {old.progress.percent} -> {new.progress.percent}")
    if old.cancel_requested:  # asked to stop: it ends, it never runs (again)
        assert new.cancel_requested or new.status.is_terminal
        assert new.status not in (JobStatus.RETRYING, JobStatus.QUEUED) and not started
    if old.status.is_terminal:
        assert new.status == old.status
        assert new.finished_at == old.finished_at


def check_at_rest(job: Job) -> None:
    """A stored job between writes: a running one has a lease and a due time, any unfinished one
    a due time (something will look at it), a finished one neither and a finish time, but a
    failed one still owing its dead letter a due time (the reconciler parks it then)."""
    if job.status == JobStatus.RUNNING:
        assert job.lease_expires_at is not None and job.due_at is not None, job
    if not job.status.is_terminal:
        assert job.due_at is not None, f"{job.id} is {job.status.value} with nothing to reconcile it"
    else:
        assert job.finished_at is not None and job.lease_expires_at is None, job
        assert (job.due_at is not None) == (job.dead_letter_owed is not None), job
