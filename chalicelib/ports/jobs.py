"""The job store's port (`JobStore`) and the values its reads and conditional writes carry."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterable, Mapping, Optional, Protocol

from chalicelib.defaults import MAX_ANSWER_BYTES
from chalicelib.domain.errors import BlobNotFoundError
from chalicelib.domain.job import Job, Progress, Run
from chalicelib.domain.status import JobStatus
from chalicelib.ports.subscribers import TaskCompletion


# Sentinel for "remove this attribute" in a change set.
REMOVE = object()
# The job's fields a store keeps outside its record once their JSON passes the inline limit
# (the claim-check: an object in S3, read back by `JobStore.get`, shown as a placeholder by
# listings and progress writes).
CLAIM_CHECKED = ("payload", "result")


def claim_checked_value(field: str, size: int, read: Optional[Callable[[], bytes]], *, mark_gone: bool,
                        gone: list[str]) -> Any:
    """A claim-checked `field` (its object `size` bytes) as a JobStore read shows it, alike on
    every adapter: without `read`, its placeholder `{"claim_check": {"bytes": size}}`; else the
    object `read` returns, as JSON. An object gone raises BlobNotFoundError, or with `mark_gone`
    is appended to `gone` and reads as empty: `{}` for a payload, None for a result."""
    if read is None:
        return {"claim_check": {"bytes": size}}
    try:
        return json.loads(read())
    except BlobNotFoundError:
        if not mark_gone:
            raise
        gone.append(field)
        return {} if field == "payload" else None


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
    # The page's jobs take at most this many bytes as the API answers them (answer_bytes): the
    # answer's MAX_ANSWER_BYTES less room for its cursor and frame. A page ends before the job
    # that would pass it (a page holds one job whatever its size), its cursor going on from there.
    answer_bytes: int = MAX_ANSWER_BYTES - 8 * 1024


@dataclass
class ChangeSet:
    """Field -> new value for a conditional job update; `REMOVE` deletes the attribute."""

    fields: dict[str, Any] = field(default_factory=dict)
    run: Optional[Run] = None
    # Cache namespaces of the job's scope invalidated in the same atomic write (a completion):
    # once the change is visible, so is the invalidation (read-your-writes for scope caches).
    invalidate_caches: tuple[str, ...] = ()
    # The scope's record of this completion (`/scopes/{scope}/tasks`), in the same atomic write:
    # once the job reads completed, its scope's tasks show it, as a worker's timestamp did.
    task_completion: Optional[TaskCompletion] = None

    def check_unread(self) -> None:
        """Raise ValueError unless these changes may be written with no read of the job
        (`JobStore.apply_expected`): no run, cache invalidation, task completion or
        claim-checked field, each of which a store writes from the job it read."""
        if (self.run is not None or self.invalidate_caches or self.task_completion is not None
                or set(self.fields) & set(CLAIM_CHECKED)):
            raise ValueError("a write without a read carries no run, cache invalidation, task completion or "
                             "claim-checked field")

    def written_on(self, job: Job) -> Job:
        """`job` as this write leaves it, read nothing back (`JobStore.apply`'s answer): the
        changes set on it (REMOVE as None), version + 1, every other field as `job` holds it, a
        claim-checked one as the caller read it (whole, its placeholder, or named in `gone`)."""
        fields = {k: (None if v is REMOVE else v) for k, v in self.fields.items()}
        gone = [f for f in job.gone if f not in fields]  # a field written is no longer gone
        return job.model_copy(update={**fields, "gone": gone, "version": job.version + 1})

    def claim_landed_in(self, job: Job) -> bool:
        """Whether `job`, the job a claim's conditional write was refused on, holds every change
        of that claim: botocore tried the write again after it was applied and its answer was
        lost, and the retry was refused by the write itself. A claim is known so by its
        contents, its `claim_id` among them (no other writer's changes carry it)."""
        return "claim_id" in self.fields and all(
            getattr(job, name, REMOVE) == (None if value is REMOVE else value) for name, value in self.fields.items())


@dataclass(frozen=True)
class Expectation:
    """What a write made without reading the job first requires of the stored job, checked by
    the write itself: each field of `equal` has that value (None: the field is absent), each
    field of `one_of` has one of those values, each field of `absent_or_at_most` is absent or
    not above the value (isoformat times compare as times)."""

    equal: Mapping[str, Any] = field(default_factory=dict)
    one_of: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    absent_or_at_most: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExpectedWrite:
    """How `JobStore.apply_expected` ended: `applied` with the job as written, or refused with
    the job as stored when the write was tried (None: no such job)."""

    applied: bool
    job: Optional[Job]


@dataclass(frozen=True)
class SubmissionKey:
    """The record of a tenant's `Idempotency-Key`: the job its first submit made and hashes of
    that submit's request, kept until `expires_at` (epoch seconds): `request_hash` of the request
    as sent, `taken_hash` of the request as the job takes it (its defaults taken alike, given or
    not; None in a record written before it was kept)."""

    tenant: str
    key: str
    job_id: str
    request_hash: str
    expires_at: int
    taken_hash: Optional[str] = None


class JobStore(Protocol):
    def create(self, job: Job) -> None:
        """Write a new job; raises StaleJobError if the id holds another job. The very same job
        already stored is this write landing once (a retry whose first try landed, its answer
        lost), not an error. StoreUnavailableError when it may or may not have been written."""

    def create_keyed(self, job: Job, key: SubmissionKey, *, now: int) -> Optional[SubmissionKey]:
        """Write `job` and the record `key` in one atomic write, unless the tenant's key has a
        record that has not expired at `now` (epoch seconds): then write nothing and return that
        record. None: both were written. Raises StaleJobError if the job id exists,
        StoreUnavailableError."""

    def submission_key(self, tenant: str, key: str, *, now: int) -> Optional[SubmissionKey]:
        """The record of the tenant's key, or None when there is none unexpired at `now`."""

    def get(self, job_id: str, *, consistent: bool = True, tenant: Optional[str] = None,
            fetch: Collection[str] = CLAIM_CHECKED, mark_gone: bool) -> Optional[Job]:
        """The job, or None. `consistent=False` allows an eventually consistent (cheaper) read,
        for status polling only; the worker and every read before a write stay consistent.
        With `tenant`, another tenant's job is None too, and nothing of it (a claim-checked
        payload or result) is read: a caller cannot tell it from a missing one. `fetch`: the
        claim-checked fields read back from the blob store; the others show as their
        placeholder, as listings show them (`()`: the record alone, no object read, so a
        read that shows neither works when an object is gone). A fetched object that is gone
        raises BlobNotFoundError, or with `mark_gone` (a read that shows the job or decides on
        its record: the claim, which fails a job whose payload is gone `payload_gone`) reads
        as empty and is named in the job's `gone` (`claim_checked_value`). `mark_gone` has no
        default: every caller says which it needs, so none meets an error it did not expect
        the day a bucket rule deletes an object. Raises StoreUnavailableError."""

    def get_many(self, job_ids: Iterable[str], *, consistent: bool = False,
                 tenant: Optional[str] = None) -> dict[str, Job]:
        """Jobs by id; ids that do not exist are absent from the result, and so are those whose
        record this code cannot read (an error is logged naming each). Eventually consistent
        unless `consistent`. With `tenant`, another tenant's jobs are absent too, each dropped
        on its record's tenant before anything else of it is read into a job (as `get` drops
        one): a batch naming them costs what one naming missing ids does."""

    def list_jobs(self, query: JobQuery) -> JobPage:
        """A tenant's jobs, newest first; raises InvalidRequestError for a bad cursor."""

    def apply(self, job: Job, expected_status: JobStatus, changes: ChangeSet) -> Job:
        """Conditionally write `changes` if the stored job still has `expected_status` and
        `job.version`. Returns the job as written (version + 1), an object `job` was read with as
        gone (`Job.gone`) still named so unless the write sets its field. A write refused only by
        what its own earlier try wrote (retried after it landed, its answer lost) is written, not a
        lost race. Raises StaleJobError, RecordTooLargeError when the record would pass the store's
        item size, StoreUnavailableError. The job returned is `changes.written_on(job)`: no object
        is read back, so a claim-checked field shows as the caller read it, one written as written."""

    def cut_progress_message(self, job: Job, expected_status: JobStatus, limit: int) -> Job:
        """Cut the stored progress message to `limit` characters (`domain.events.clip`), nothing
        else, if the stored job still has `expected_status` and `job.version`: room for a write
        the record could not take. Returns the job as written (version + 1), read nothing back
        (as `apply`: `job` with the message cut). Raises StaleJobError, StoreUnavailableError."""

    def apply_expected(self, job_id: str, tenant: str, expected: Expectation, changes: ChangeSet, *,
                       mark_gone: bool) -> ExpectedWrite:
        """Write `changes` (version + 1) in one conditional write, with no read before it, if
        the stored job belongs to `tenant` and meets `expected`; else write nothing and return
        the stored job as the refused write saw it (a claim refused only by its own earlier
        try, its answer lost, is `applied`: `ChangeSet.claim_landed_in`). `changes` may not
        carry a run, cache invalidations, a task completion or claim-checked fields (payload,
        result): ValueError. Raises RecordTooLargeError when the record would pass the store's
        item size, StoreUnavailableError. The job returned, written or refused, is read as
        `get` reads it, `mark_gone` alike (no default, as `get`'s): with it, an object found
        gone never turns a write that landed into an error."""

    def record_progress(self, job_id: str, attempt: int, progress: Progress, *, announce: bool = False,
                        mark: Optional[float] = None) -> Job:
        """Write progress if the job is running `attempt` and the percent does not decrease;
        `announce` also makes it the attempt's mark (`event_percent`, `event_attempt`: the write
        is a progress event), and then writes only while the stored mark (`Job.event_mark`) is
        still `mark`, the one the announcement was decided from (None: the attempt has none):
        StaleJobError otherwise, nothing written (a write of the caller's that landed unanswered
        moved it).
        Returns the job as stored after the write, a claim-checked payload or result shown as
        its placeholder, as listings show it (the hot write reads no object back). Once a
        cancel was requested nothing is written: the stored job is returned (`cancel_requested`
        set), so the caller stops without a report reaching anyone after the request. Raises
        ProgressRejectedError, StaleJobError, StoreUnavailableError."""

    def runs(self, job_id: str) -> list[Run]:
        """The job's runs, oldest attempt first."""

    def keep_parts(self, job_id: str, until: int) -> int:
        """Move the expiry (`expires_at`, epoch seconds) of the job's runs and artifacts that
        expire before `until` to `until`; how many it moved. A part deleted meanwhile stays
        deleted; one that expires later is left so. A job's end calls it when its record
        would outlive its parts (JobTransitions._keep_parts): never on a job's ordinary path.
        Raises StoreUnavailableError (some may be moved)."""

    def create_child(self, child: Job, attempt: int) -> None:
        """Store `child` (a new job naming its `parent_id`) and append it to the parent's
        `children` (version + 1) in one write, while attempt `attempt` of the parent is running
        and no cancel of the parent was requested. Raises StaleJobError when the child exists,
        AttemptEndedError when that attempt is no longer the parent's running one,
        JobCancelledError when its cancel was requested, JobNotFoundError when the parent does
        not exist, RecordTooLargeError when the parent's record has no room to list it: each
        writing nothing."""

    def add_child(self, parent_id: str, child_id: str, attempt: int) -> None:
        """Append an existing `child_id` to the parent's `children` once (version + 1), while
        attempt `attempt` of the parent is running; one already listed is left as it is.
        Raises AttemptEndedError, JobNotFoundError (the parent does not exist)."""

    def due(self, now: str, limit: int, after: Optional[str] = None) -> JobPage:
        """Up to `limit` jobs whose `due_at` is before `now` (an isoformat time: unfinished jobs,
        and failed ones still owing their dead letter),
        earliest first (by due time, then id), from the sparse due index (never a Scan), each
        read as it is now. With `after`, the page's cursor: the jobs whose place in the index
        comes after the last one that page read, whatever was written to them since, so paging
        on skips no job at a page's edge and never returns one twice. The cursor is None when
        no due job follows. Read eventually consistent: the caller's conditional writes decide."""

    def count_unfinished(self, tenant: str, at_most: int) -> int:
        """How many of the tenant's jobs are queued, running or retrying, from the status
        index (never a Scan), counting no further than `at_most`. Admission's check of its
        counter before it refuses a tenant. Raises StoreUnavailableError."""
