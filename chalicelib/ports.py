"""Ports: what the core needs from the outside world. Each has an AWS adapter and an in-memory one."""
from __future__ import annotations

import json

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Collection, Iterable, Iterator, Mapping, Optional, Protocol, Sequence, Union

from pydantic import BaseModel, Field, ValidationError, field_validator

from chalicelib.defaults import ARTIFACT_PAGE, MAX_ANSWER_BYTES
from chalicelib.domain.errors import BlobNotFoundError
from chalicelib.domain.job import Job, Progress, Run, is_plausible_job_id
from chalicelib.domain.status import JobStatus

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

# The message attribute a job message handed back by a worker batch carries: how many times the
# messages it replaces were delivered (JobQueue.hand_back); the worker counts it with the copy's
# own receives when it orders a batch.
HANDBACKS_ATTRIBUTE = "handbacks"


@dataclass(frozen=True)
class JobMessage:
    """What travels on the jobs queue: a pointer to the job and the attempt it asks for.

    `tenant` and `timeout_s` let a worker claim the attempt in one conditional write, without
    reading the job first (the write sets the job's index key and lease, and checks both
    against the record). They are hints, not identity: a message without them (sent before
    they existed, or moved by hand) is claimed after a read, and equality ignores them."""

    job_id: str
    attempt: int
    tenant: Optional[str] = field(default=None, compare=False)
    timeout_s: Optional[int] = field(default=None, compare=False)

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"job_id": self.job_id, "attempt": self.attempt}
        if self.tenant is not None and self.timeout_s is not None:
            body.update(tenant=self.tenant, timeout_s=self.timeout_s)
        return body


class _MessageBody(BaseModel):
    job_id: str
    attempt: int = Field(default=1, ge=1)
    tenant: Optional[str] = None
    timeout_s: Optional[int] = Field(default=None, ge=1)

    @field_validator("job_id")
    @classmethod
    def _job_id(cls, value: str) -> str:
        if not is_plausible_job_id(value):
            raise ValueError("no job has this id")
        return value


def job_message_of(body: Union[str, bytes, Mapping[str, Any]]) -> JobMessage:
    """The job message a queue body carries (its JSON text, or the JSON decoded); raises
    ValueError for anything else: a foreign or hand-made body, an id no job can have."""
    try:
        parsed = (_MessageBody.model_validate(body) if isinstance(body, Mapping)
                  else _MessageBody.model_validate_json(body))
    except ValidationError as exc:
        raise ValueError(f"not a job message: {str(body)[:200]!r}") from exc
    return JobMessage(parsed.job_id, parsed.attempt, tenant=parsed.tenant, timeout_s=parsed.timeout_s)


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
    """The record of a tenant's `Idempotency-Key`: the job its first submit made and a hash of
    that submit's request, kept until `expires_at` (epoch seconds)."""

    tenant: str
    key: str
    job_id: str
    request_hash: str
    expires_at: int


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
            fetch: Collection[str] = CLAIM_CHECKED, mark_gone: bool = False) -> Optional[Job]:
        """The job, or None. `consistent=False` allows an eventually consistent (cheaper) read,
        for status polling only; the worker and every read before a write stay consistent.
        With `tenant`, another tenant's job is None too, and nothing of it (a claim-checked
        payload or result) is read: a caller cannot tell it from a missing one. `fetch`: the
        claim-checked fields read back from the blob store; the others show as their
        placeholder, as listings show them (`()`: the record alone, no object read, so a
        read that shows neither works when an object is gone). A fetched object that is gone
        raises BlobNotFoundError, or with `mark_gone` (a read that shows the job or decides on
        its record: the claim, which fails a job whose payload is gone `payload_gone`) reads
        as empty and is named in the job's `gone` (`claim_checked_value`). Raises StoreUnavailableError."""

    def get_many(self, job_ids: Iterable[str]) -> dict[str, Job]:
        """Jobs by id; ids that do not exist are absent from the result."""

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
                       mark_gone: bool = False) -> ExpectedWrite:
        """Write `changes` (version + 1) in one conditional write, with no read before it, if
        the stored job belongs to `tenant` and meets `expected`; else write nothing and return
        the stored job as the refused write saw it (a claim refused only by its own earlier
        try, its answer lost, is `applied`: `ChangeSet.claim_landed_in`). `changes` may not
        carry a run, cache invalidations, a task completion or claim-checked fields (payload,
        result): ValueError. Raises RecordTooLargeError when the record would pass the store's
        item size, StoreUnavailableError. The job returned, written or refused, is read as
        `get` reads it, `mark_gone` alike: with it, an object found gone never turns a write
        that landed into an error."""

    def record_progress(self, job_id: str, attempt: int, progress: Progress, *, announce: bool = False) -> Job:
        """Write progress if the job is running `attempt` and the percent does not decrease;
        `announce` also makes it the job's `event_percent` (the write is a progress event).
        Returns the job as stored after the write, a claim-checked payload or result shown as
        its placeholder, as listings show it (the hot write reads no object back). Once a
        cancel was requested nothing is written: the stored job is returned (`cancel_requested`
        set), so the caller stops without a report reaching anyone after the request. Raises
        ProgressRejectedError, StoreUnavailableError."""

    def runs(self, job_id: str) -> list[Run]:
        """The job's runs, oldest attempt first."""

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
        """Up to `limit` unfinished jobs whose `due_at` is before `now` (an isoformat time),
        earliest first (by due time, then id), from the sparse due index (never a Scan), each
        read as it is now. With `after`, the page's cursor: the jobs whose place in the index
        comes after the last one that page read, whatever was written to them since, so paging
        on skips no job at a page's edge and never returns one twice. The cursor is None when
        no due job follows. Read eventually consistent: the caller's conditional writes decide."""

    def count_unfinished(self, tenant: str, at_most: int) -> int:
        """How many of the tenant's jobs are queued, running or retrying, from the status
        index (never a Scan), counting no further than `at_most`. Admission's check of its
        counter before it refuses a tenant. Raises StoreUnavailableError."""


class JobQueue(Protocol):
    def send(self, message: JobMessage, *, priority: str, delay_seconds: int = 0) -> None:
        """Enqueue; raises QueueUnavailableError when the message could not be sent,
        InvalidRequestError for a delay outside SQS's 0 to SQS_MAX_DELAY_S seconds."""

    def dead_letter(self, message: JobMessage, *, priority: str, reason: dict[str, Any]) -> None:
        """Park a message of a job that failed for good on the dead-letter queue; raises
        QueueUnavailableError (the letter is then owed: `Job.dead_letter_owed`)."""

    def dead_letter_body(self, body: str, *, priority: str, reason: str) -> None:
        """Park a received body that is no job message (foreign, hand-made, cut short) on the
        priority's dead-letter queue as it came; raises QueueUnavailableError."""

    def set_visibility(self, queue_arn: str, receipt_handle: str, seconds: int) -> None:
        """Hide a received message for `seconds` more (0: deliver again now), at most
        SQS_MAX_HOLD_S; raises QueueUnavailableError."""

    def set_visibility_many(self, queue_arn: str, receipt_handles: list[str], seconds: int) -> int:
        """`set_visibility` for several messages of one queue, ten to a request; returns how
        many could not be changed (a refusal of the whole request raises QueueUnavailableError)."""

    def hand_back(self, queue_arn: str, bodies: list[tuple[str, int]]) -> set[int]:
        """Send each received `(body, deliveries)` to its queue again as a new message, ten to a
        request, the deliveries it replaces in the HANDBACKS_ATTRIBUTE message attribute: a copy
        starts at one receive, so waiting in line does not bring a message nearer the redrive
        policy's maxReceiveCount. Returns the positions in `bodies` that were not sent (a
        refusal of a whole request raises QueueUnavailableError)."""

    def acknowledge(self, queue_arn: str, receipt_handle: str) -> None:
        """Delete a received message from its queue now, before its batch answers (a message
        parked elsewhere must not come back with a batch whose answer was lost); raises
        QueueUnavailableError."""

    def acknowledge_many(self, queue_arn: str, receipt_handles: list[str]) -> int:
        """`acknowledge` for several messages of one queue, ten to a request (the originals of
        messages handed back); returns how many could not be deleted (a refusal of the whole
        request raises QueueUnavailableError)."""


class EventPublisher(Protocol):
    def publish(self, events: list[Any]) -> None:
        """Publish every event or raise EventPublishError naming what was not published.
        Events carry a deterministic `event_id`; consumers use it to drop re-publishes."""


# -- large data: S3 objects, artifacts ---------------------------------------------------------


class BlobStore(Protocol):
    """Objects in the jobs bucket, by key."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Raises StoreUnavailableError."""

    def get(self, key: str) -> bytes:
        """Raises BlobNotFoundError when the object is gone, StoreUnavailableError otherwise."""

    def delete(self, keys: list[str]) -> int:
        """Delete the objects (missing ones are fine); returns how many were asked for."""

    def presigned_url(self, key: str, expires_s: int, *, content_disposition: Optional[str] = None) -> str:
        """A GET URL for the object, valid `expires_s` seconds; its answer carries
        `content_disposition` as its Content-Disposition header when given."""

    def keys_older_than(self, prefix: str, before: datetime) -> Iterator[list[str]]:
        """Pages of keys under `prefix` last modified before `before`."""


@dataclass(frozen=True)
class ArtifactInfo:
    job_id: str
    name: str
    content_type: str
    size: int
    created_at: str
    location: str  # "inline" (in the job's partition) or "s3"

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "content_type": self.content_type, "size": self.size,
                "created_at": self.created_at, "location": self.location}


@dataclass(frozen=True)
class Artifact:
    info: ArtifactInfo
    content: Optional[bytes] = None  # inline artifacts
    blob_key: Optional[str] = None  # artifacts kept in S3


@dataclass
class ArtifactPage:
    artifacts: list[ArtifactInfo]
    cursor: Optional[str] = None  # where the next page starts; None when no artifact follows


class ArtifactStore(Protocol):
    def put(self, job_id: str, name: str, data: bytes, content_type: str, *,
            attempt: Optional[int] = None) -> ArtifactInfo:
        """Store (or replace) a job's artifact: small text inline, the rest in S3. With
        `attempt` (the attempt writing it) only while that attempt is the job's running one:
        else AttemptEndedError, and nothing is stored or replaced."""

    def list(self, job_id: str, *, limit: int = ARTIFACT_PAGE, cursor: Optional[str] = None) -> ArtifactPage:
        """A page of a job's artifacts, by name: at most `limit`, from where `cursor` (a page's
        of this job's listing) left off, with a cursor only while more follow. Raises
        InvalidRequestError for a cursor that is not one (another job's, made by hand)."""

    def get(self, job_id: str, name: str) -> Artifact:
        """Raises ArtifactNotFoundError."""


# -- retention: finding and removing finished jobs -------------------------------------------------


class FinishedJobs(Protocol):
    def finished_before(self, cutoff: datetime, *, since: datetime, page_size: int = 100) -> Iterator[list[str]]:
        """Pages of ids of jobs that finished in [since, cutoff), read from the sparse
        finished-day index (never a Scan)."""

    def purge(self, job_id: str) -> int:
        """Delete the job's item, runs and artifacts and its S3 objects; returns items deleted."""


# -- operations: counters, queues ----------------------------------------------------------------


class StatsStore(Protocol):
    def record_batch(self, deltas: Sequence[Any]) -> int:
        """Apply each StatDelta whose dedupe key was not seen before, exactly once, and return
        how many were new. The shared counter items (`STATUS`, each hour's) are written at most
        once per call (per transaction of up to ~90 deltas), never once per delta."""

    def status_counts(self) -> dict[str, int]:
        """Jobs currently in each status."""

    def unfinished(self, tenant: str) -> int:
        """The tenant's jobs not yet finished (as far as the recorder has seen)."""

    def hourly(self, hours: list[str]) -> list[dict[str, int]]:
        """The counters of each hour key given (missing hours are empty)."""


class ReconcilerLog(Protocol):
    def record(self, started_at: str, counts: dict[str, int]) -> None:
        """Keep one pass's counts: added to the totals, and as the last pass."""

    def summary(self) -> dict[str, Any]:
        """{"last_pass": {"started_at", "counts"} or None, "totals": {outcome: n}}."""


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    body: dict[str, Any]
    sent_at: Optional[str]
    reason: Optional[str] = None  # why it was parked, when whoever parked it said (its `reason` attribute)
    # What deletes it (SQS's receipt handle of the peek that read it); never shown.
    receipt: Optional[str] = field(default=None, repr=False, compare=False)


class QueueOperations(Protocol):
    """Each queue is read on its own: one that does not answer raises DeadLetterUnavailableError
    for itself, and callers reading every queue go on to the others."""

    def dead_letter_queues(self) -> list[str]:
        """Names of the dead-letter queues: the jobs DLQs by priority, then any others."""

    def queue_depth(self, priority: str) -> dict[str, int]:
        """visible, in_flight, delayed on the priority's jobs queue."""

    def dead_letter_depth(self, name: str) -> int:
        """Messages on the named dead-letter queue (visible and in flight)."""

    def peek_dead_letters(self, priority: str, limit: int) -> list[DeadLetter]:
        """Up to `limit` messages of the priority's DLQ, left on it (visible again at once)."""

    def delete_dead_letters(self, priority: str, letters: Sequence[DeadLetter]) -> int:
        """Delete `letters`, as a peek of the priority's DLQ returned them; how many went (a
        letter received again since, by a peek or a redrive, may stay: a later peek shows it).
        Raises DeadLetterUnavailableError."""

    def redrive(self, priority: str, limit: int) -> dict[str, int]:
        """Move up to `limit` DLQ messages back to the priority's queue; {"moved", "failed"}."""

    def health(self) -> list[dict[str, Any]]:
        """One entry per queue and DLQ: name, ok, depth or error."""


# -- the jobs table's change stream ---------------------------------------------------------------


@dataclass(frozen=True)
class JobChange:
    """One write to a job as the change stream reports it (the stream adapter decodes records
    into these; the event publisher and the stats recorder read them)."""

    sequence_number: str
    old: Optional[Job]
    new: Optional[Job]
    timestamp: str


@dataclass(frozen=True)
class FailedStreamBatch:
    """A batch of the jobs table's stream that the change-stream function gave up on (retries
    exhausted, or too old), as the mapping's on-failure destination describes it: where its
    records are on the stream, not the records themselves."""

    handle: str  # settles or holds it (the queue message's receipt handle)
    message_id: str
    stream_arn: str
    shard_id: str
    first_sequence: str
    last_sequence: str
    size: int
    condition: str  # RetryAttemptsExhausted, MaxRecordAgeExceeded
    receives: int = 1  # how often this description was taken, this time included


class FailedStreamBatches(Protocol):
    """Where the change-stream function's failed batches are described (StreamFailureQueue)."""

    def take(self, limit: int, hold_s: int) -> list[FailedStreamBatch]:
        """Up to `limit` failed batches, each hidden from the next take for `hold_s` seconds
        (until settled or held longer). Messages that describe no stream batch are not
        returned; they stay for operators (GET /api/system/dlq)."""

    def settle(self, batch: FailedStreamBatch) -> None:
        """The batch was replayed: its description is removed."""

    def hold(self, batch: FailedStreamBatch, seconds: int) -> None:
        """Hide the batch's description for `seconds` (at most 12 hours) before it is taken again."""


class ChangeStream(Protocol):
    def records(self, batch: FailedStreamBatch) -> list[dict[str, Any]]:
        """The batch's stream records, first to last sequence number in stream order, shaped as
        the change-stream function receives them. Raises StreamBatchUnreadableError when the
        stream no longer holds them (or the batch names another stream),
        ChangeStreamUnavailableError when the stream cannot be read now."""


# -- subscribers: scope caches, the ERP webhook ----------------------------------------------------


@dataclass(frozen=True)
class CacheEntry:
    namespace: str
    generation: int
    value: Any = None
    hit: bool = False
    cached_at: Optional[str] = None
    invalidated_at: Optional[str] = None
    invalidated_by: Optional[str] = None


@dataclass(frozen=True)
class TaskCompletion:
    type: str
    completed_at: str
    job_id: str


class CacheStore(Protocol):
    def put(self, tenant: str, scope: str, namespace: str, value: Any, at: str,
            expected_generation: Optional[int] = None) -> CacheEntry:
        """Store `value` for the namespace's current generation; with `expected_generation`,
        raises CacheGenerationChangedError if the namespace was invalidated since."""

    def get(self, tenant: str, scope: str, namespace: str) -> CacheEntry:
        """The entry, read strongly consistent; `hit` is False when nothing is stored for the
        current generation."""

    def invalidate(self, tenant: str, scope: str, namespace: str, job_id: str, at: str) -> int:
        """Bump the generation (one write) unless `job_id` already did at `at`, or the namespace
        was invalidated later than `at` (a completion's own write invalidates the namespaces its
        rules name, so its event finds that done; a late event of an older completion finds a
        newer one); returns the generation."""

    def record_completion(self, tenant: str, scope: str, completion: TaskCompletion) -> None:
        """Remember when a task of `completion.type` last completed for the scope."""

    def completions(self, tenant: str, scope: str) -> list[TaskCompletion]:
        """The scope's last completion of each task type, by type."""


@dataclass(frozen=True)
class LedgerOpening:
    """How `DeliveryLedger.begin` left each event id of a batch: `opened` ones are this
    process's to deliver (and then to `finish`), `done` ones were delivered before (skip them),
    `busy` ones are being delivered elsewhere under an unexpired lease (retry them later)."""

    opened: tuple[str, ...] = ()
    done: tuple[str, ...] = ()
    busy: tuple[str, ...] = ()


class DeliveryLedger(Protocol):
    """A subscriber's record of which events it delivered: one request to open a batch's
    events, one to close them, whatever the batch's size (up to an SQS batch)."""

    def begin(self, event_ids: Sequence[str], lease_s: float) -> LedgerOpening:
        """Open an in-progress record per distinct event id, lasting `lease_s` (the time a
        delivery has to finish: after it, an unfinished record may be taken over, so a process
        that died mid-delivery does not hold the event for ever). Ids already done, or in
        progress under an unexpired lease, are left as they are and reported so. Raises
        StoreUnavailableError (nothing is opened then)."""

    def finish(self, delivered: Sequence[str], failed: Sequence[str]) -> None:
        """Mark `delivered` done (kept for the ledger's time to live, so a later duplicate is
        skipped) and forget `failed` (so their next delivery delivers). Raises
        StoreUnavailableError; records not closed then stay in progress until their lease ends."""

    def begin_parking(self, message_id: str) -> bool:
        """Whether the queue message `message_id` (SQS's id: the same on each of its deliveries,
        a new one for a redriven copy) is still to be parked: False once `parked` recorded it.
        One conditional write. Raises StoreUnavailableError."""

    def parked(self, message_id: str) -> None:
        """Record the message parked, for the ledger's time to live (longer than the message
        can stay on its queue): a later delivery of it is not parked again. Raises
        StoreUnavailableError."""


@dataclass(frozen=True)
class WebhookAnswer:
    """A webhook's answer: its HTTP status, the wait its Retry-After asked for (seconds; None
    without one), and for a 4xx the status line's reason phrase and the start of the body
    (what the receiver said was wrong)."""

    status: int
    retry_after_s: Optional[float] = None
    reason: str = ""
    text: str = ""


class DeadLetterQueue(Protocol):
    """A subscriber's dead-letter queue, where it parks a message that must not be retried."""

    def park(self, body: str, reason: str) -> None:
        """Put `body` on the queue as it came (a redrive sends it back as it is), with `reason`
        (cut to 1,000 characters) in its `reason` attribute. Raises QueueUnavailableError."""


class WebhookSender(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: Optional[float] = None) -> WebhookAnswer:
        """POST and return the answer (any status: a redirect is not followed). Raises WebhookDeliveryError when no answer came, or none whole (status line
        and headers) within `timeout_s` seconds of wall clock, connecting included (at most the
        sender's own timeout)."""


# -- the worker's runtime -----------------------------------------------------------------------


class Timer(Protocol):
    """A one-shot timer (threading.Timer): the progress reporter's deferred write."""

    def start(self) -> None: ...

    def cancel(self) -> None: ...


TimerFactory = Callable[[float, Callable[[], None]], Timer]
