"""What every family of a job's transitions shares: the ports and settings (`JobTransitions`),
the transition table's check (`transition`), the message that starts an attempt, the
tenant's read of its job, and a job's end written with its attempt's run record, its runs and
artifacts kept as long as its record."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Callable, Collection, Optional, Sequence

from chalicelib.defaults import (
    DISPATCH_GRACE_S,
    IDEMPOTENCY_TTL_S,
    JOB_RETRY_BASE_S,
    MAX_DISPATCH_BACKOFF_S,
    MAX_DISPATCHES,
    MAX_EVENT_TEXT_CHARS,
    RECORD_EXPIRY_SLACK_S,
    RECORD_PART_EXPIRY_S,
    RECORD_PART_KEEP_S,
    RETENTION_DAYS,
)
from chalicelib.domain.errors import (
    InvalidTransitionError,
    JobNotFoundError,
    QueueUnavailableError,
    RecordTooLargeError,
    StaleJobError,
    StoreUnavailableError,
)
from chalicelib.domain.events import clip
from chalicelib.domain.job import Job, JobErrorInfo, Run, isoformat, parse_time, utcnow
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.domain.status import JobStatus, can_transition
from chalicelib.ports import CLAIM_CHECKED, REMOVE, ChangeSet, JobMessage, JobQueue, JobStore, TaskCompletion


Clock = Callable[[], datetime]


def start_message(job: Job, attempt: int) -> JobMessage:
    """The message that starts `attempt`, with what its claim writes without a read."""
    return JobMessage(job.id, attempt, tenant=job.tenant, timeout_s=job.timeout_s)


def transition(job: Job, target: JobStatus) -> None:
    """Raise InvalidTransitionError unless the table allows job.status -> target."""
    if not can_transition(job.status, target):
        raise InvalidTransitionError(
            f"job {job.id} cannot go from {job.status.value} to {target.value}"
        )


class JobTransitions:
    """The ports and settings every family of transitions works with, the tenant's read of
    its job, and a job's end: written with its attempt's run record, room made for it."""

    def __init__(
        self,
        store: JobStore,
        queue: JobQueue,
        registry: JobTypeRegistry,
        *,
        clock: Clock = utcnow,
        retention_s: int = RETENTION_DAYS * 86400,
        retry_base_s: int = JOB_RETRY_BASE_S,
        dispatch_grace_s: int = DISPATCH_GRACE_S,
        max_dispatches: int = MAX_DISPATCHES,
        caches_of: Callable[[str], Sequence[str]] = lambda job_type: (),
        key_ttl_s: int = IDEMPOTENCY_TTL_S,
    ) -> None:
        """`caches_of(job_type)`: the scope cache namespaces a completion of that type
        invalidates, in the completion's own write. `key_ttl_s`: how long a submission's
        Idempotency-Key keeps answering with its job. `max_dispatches`: how many messages
        a job's next attempt is sent before, never claimed, it fails `undeliverable`."""
        self.caches_of = caches_of
        self.key_ttl_s = key_ttl_s
        self.store = store
        self.queue = queue
        self.registry = registry
        self.clock = clock
        self.retention_s = retention_s
        self.retry_base_s = retry_base_s
        self.dispatch_grace_s = dispatch_grace_s
        self.max_dispatches = max_dispatches

    # -- reads ------------------------------------------------------------------------------

    def get(self, tenant: str, job_id: str, *, fetch: Collection[str] = CLAIM_CHECKED) -> Job:
        """The tenant's job, read consistently; another tenant's job is indistinguishable from
        a missing one (polls read through chalicelib/job_reads.py, cheaper). `fetch`:
        the claim-checked fields read back from S3 (`()` for a read that shows neither the
        payload nor the result: the record alone). A fetched object that is gone reads as
        empty, named in the job's `gone`: the job as recorded, not an error. Raises
        JobNotFoundError."""
        job = self.store.get(job_id, tenant=tenant, fetch=fetch, mark_gone=True)
        if job is None:
            raise JobNotFoundError(f"job {job_id} not found")
        return job

    # -- a job's end, and the writes every family shares ------------------------------------

    def _claim_deadline(self, start: datetime, *, sent: int) -> datetime:
        """When a job starting at `start` should have been claimed, once `sent` messages went
        out for its next attempt: the grace, doubled per earlier resend, at most the cap."""
        return start + timedelta(seconds=min(MAX_DISPATCH_BACKOFF_S, self.dispatch_grace_s * 2 ** (sent - 1)))

    def _send_again(self, job: Job, start: datetime, wait_s: int) -> Job:
        """One more message for the next attempt of queued/retrying `job`, starting it at
        `start`, `wait_s` from now: counted in its `dispatches`, the job due again when the
        message's grace ends. The write comes first, so that two overlapping senders (two
        reconciler passes, a keyed replay beside a pass) send one message, not two (the other's
        write is StaleJobError). Returns the job written. Raises QueueUnavailableError, the
        count put back (`_uncount_dispatch`)."""
        written = self.store.apply(job, job.status, ChangeSet({
            "due_at": isoformat(self._claim_deadline(start, sent=max(1, job.dispatches))),
            "dispatches": job.dispatches + 1,
        }))
        try:
            self.queue.send(start_message(job, job.attempts + 1), priority=job.priority, delay_seconds=wait_s)
        except QueueUnavailableError:
            self._uncount_dispatch(written, job.dispatches)
            raise
        return written

    def _uncount_dispatch(self, written: Job, dispatches: int) -> None:
        """The queue did not take the message whose dispatch `written` counts: the count goes back
        to `dispatches`, and the job is due again when the resend's wait, as written, ends (a
        resend the next time is not a doubled wait). A queue refusing for hours would otherwise
        spend the job's `max_dispatches` on messages never sent, and fail it `undeliverable`,
        "each was lost or dead-lettered", when none was sent at all. (A send whose answer was lost
        may have gone out: one dispatch more than the bound, at most once a refusal.) A write that
        fails leaves the count as written: the job is due all the same."""
        try:
            self.store.apply(written, written.status, ChangeSet({"dispatches": dispatches}))
        except (StaleJobError, StoreUnavailableError):
            pass

    def _finish(self, job: Job, target: JobStatus, **fields: Any) -> Job:
        transition(job, target)
        now = self.clock()
        self._keep_parts(job, now)
        changes = self._ending(target, now, fields)
        run = None
        if job.status == JobStatus.RUNNING:
            run = self._closed_run(job, target, fields.get("error"))
        caches, completion = (), None
        if target == JobStatus.COMPLETED and job.scope:
            caches = tuple(self.caches_of(job.type))
            completion = TaskCompletion(job.type, changes["finished_at"], job.id, caches)
        return self._write_room(job, job.status, ChangeSet(changes, run=run, invalidate_caches=caches,
                                                           task_completion=completion))

    def _ending(self, target: JobStatus, now: datetime, fields: dict[str, Any]) -> dict[str, Any]:
        """The fields a job's end at `now` writes, `fields` among them."""
        changes = {
            "status": target,
            "finished_at": isoformat(now),
            # the daily clean-up deletes it with its objects first (TTL deletes the record only)
            "expires_at": int(now.timestamp()) + self.retention_s + RECORD_EXPIRY_SLACK_S,
            "lease_expires_at": REMOVE,
            "due_at": REMOVE,
            **fields,
        }
        if target == JobStatus.COMPLETED:
            changes["error"] = REMOVE  # an earlier attempt's failure is not the job's outcome
        return changes

    def _ended_as(self, job: Job, target: JobStatus, **fields: Any) -> Job:
        """`job` as `_finish` would end it now, nothing written: what an end is measured on."""
        transition(job, target)
        return ChangeSet(self._ending(target, self.clock(), fields)).written_on(job)

    def _keep_parts(self, job: Job, end: datetime) -> None:
        """Make the runs and artifacts of `job`, ending at `end`, outlive the record the end
        gives it: each expires RECORD_PART_KEEP_S after its write, and every one was written
        since the job's first start, so only a job that lived longer than the longest retention
        less its own has parts to move, a day past the record (RECORD_PART_EXPIRY_S past the
        retention). Moved before the end's write: when that write is then refused or not
        answered, the parts are only kept longer, and the end tried again moves them again."""
        if job.started_at is None:  # never started: no run, no artifact
            return
        until = int(end.timestamp()) + self.retention_s + RECORD_PART_EXPIRY_S
        if int(parse_time(job.started_at).timestamp()) + RECORD_PART_KEEP_S < until:
            self.store.keep_parts(job.id, until)

    def _write_room(self, job: Job, expected: JobStatus, changes: ChangeSet) -> Job:
        """`store.apply` for a write that must land whatever the attempt reported: an outcome
        (or `worker_lost`). When the record has no room left for it (a long progress message
        beside a large payload fills DynamoDB's 400 KB), it is written with the progress
        message cut to what events carry (MAX_EVENT_TEXT_CHARS): a job that could not be ended
        would stay running, and be reconciled in vain, for good."""
        try:
            return self.store.apply(job, expected, changes)
        except RecordTooLargeError:
            pass  # written again below, once, with room made; refused again, it raises
        cut = self.store.cut_progress_message(job, expected, MAX_EVENT_TEXT_CHARS)
        progress = changes.fields.get("progress")
        if progress is not None:  # a completion's progress keeps the attempt's last message
            changes = replace(changes, fields={**changes.fields, "progress": progress.model_copy(
                update={"message": clip(progress.message)})})
        return self.store.apply(cut, expected, changes)

    def _closed_run(self, job: Job, status: JobStatus, error: Optional[JobErrorInfo]) -> Run:
        """The run record of the attempt `job` is running, written as it ends (in the same
        write). An attempt started before starts were kept on the job has a run record from
        its claim: without a start time, the write keeps the stored one."""
        return Run(
            job_id=job.id,
            attempt=job.attempts,
            status=status,
            started_at=job.attempt_started_at,
            finished_at=isoformat(self.clock()),
            error=error,
        )
