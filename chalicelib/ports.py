"""Ports: what the core needs from the outside world. Each has an AWS adapter and an in-memory one."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Protocol

from chalicelib.domain.job import Job, Progress, Run
from chalicelib.domain.status import JobStatus

# Sentinel for "remove this attribute" in a change set.
REMOVE = object()


@dataclass(frozen=True)
class JobMessage:
    """What travels on the jobs queue: a pointer to the job and the attempt it asks for."""

    job_id: str
    attempt: int

    def to_body(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "attempt": self.attempt}


@dataclass
class JobPage:
    jobs: list[Job]
    cursor: Optional[str] = None


@dataclass(frozen=True)
class JobQuery:
    tenant: str
    status: Optional[JobStatus] = None
    type: Optional[str] = None
    limit: int = 25
    cursor: Optional[str] = None


@dataclass
class ChangeSet:
    """Field -> new value for a conditional job update; `REMOVE` deletes the attribute."""

    fields: dict[str, Any] = field(default_factory=dict)
    run: Optional[Run] = None


class JobStore(Protocol):
    def create(self, job: Job) -> None:
        """Write a new job; raises StaleJobError if the id exists."""

    def discard(self, job_id: str) -> None:
        """Delete a job that was never delivered (submission compensation)."""

    def get(self, job_id: str, *, consistent: bool = True) -> Optional[Job]:
        """The job, or None. `consistent=False` allows an eventually consistent (cheaper) read,
        for status polling only; the worker and every read before a write stay consistent."""

    def get_many(self, job_ids: Iterable[str]) -> dict[str, Job]:
        """Jobs by id; ids that do not exist are absent from the result."""

    def list_jobs(self, query: JobQuery) -> JobPage:
        """A tenant's jobs, newest first; raises InvalidRequestError for a bad cursor."""

    def apply(self, job: Job, expected_status: JobStatus, changes: ChangeSet) -> Job:
        """Conditionally write `changes` if the stored job still has `expected_status` and
        `job.version`. Returns the job as written (version + 1). Raises StaleJobError."""

    def record_progress(self, job_id: str, attempt: int, progress: Progress) -> Job:
        """Write progress if the job is running `attempt` and the percent does not decrease.
        Returns the job as stored after the write. Raises ProgressRejectedError."""

    def runs(self, job_id: str) -> list[Run]:
        """The job's runs, oldest attempt first."""

    def add_child(self, parent_id: str, child_id: str) -> None:
        """Append `child_id` to the parent's `children` once (version + 1)."""


class JobQueue(Protocol):
    def send(self, message: JobMessage, *, priority: str, delay_seconds: int = 0) -> None:
        """Enqueue; raises QueueUnavailableError when the message could not be sent."""

    def dead_letter(self, message: JobMessage, *, priority: str, reason: dict[str, Any]) -> None:
        """Park a message of a job that failed for good on the dead-letter queue."""

    def set_visibility(self, queue_arn: str, receipt_handle: str, seconds: int) -> None:
        """Hide a received message for `seconds` more (0: deliver again now)."""


class EventPublisher(Protocol):
    def publish(self, events: list[Any]) -> None:
        """Publish every event or raise EventPublishError naming what was not published.
        Events carry a deterministic `event_id`; consumers use it to drop re-publishes."""
