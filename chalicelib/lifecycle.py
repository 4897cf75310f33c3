"""Every status change of a job happens here, and nowhere else.

Each method computes the change from the transition table, then asks the store for a
conditional write against the status and version it read. A lost race surfaces as
StaleJobError from the store; the methods here re-read and decide again where that is safe.
Two writes state what they require of the job instead (`JobStore.apply_expected`) and decide
on what a refused write returns: the claim, the one write per job on the worker's hot path,
writes first and reads nothing (see `claim`); a cancel request on a running job is conditioned
on its attempt, not its version, which each progress write moves (see `cancel`).
"""
from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, Callable, Collection, Optional, Sequence

from chalicelib.defaults import (
    DISPATCH_GRACE_S,
    IDEMPOTENCY_TTL_S,
    INVOCATION_MARGIN_S,
    JOB_RETRY_BASE_S,
    JOBS_QUEUE_RETENTION_S,
    LEASE_GRACE_S,
    MAX_ANSWER_BYTES,
    MAX_CHILDREN,
    MAX_DISPATCH_BACKOFF_S,
    MAX_DISPATCHES,
    MAX_EVENT_TEXT_CHARS,
    MAX_JSON_DEPTH,
    MAX_SCHEDULE_S,
    RACE_RETRIES,
    RECONCILE_RETRY_S,
    RECORD_EXPIRY_SLACK_S,
    RETENTION_DAYS,
    SQS_MAX_DELAY_S,
)
from chalicelib.domain.caches import check_name
from chalicelib.domain.errors import (
    DeadLetterOwedError,
    IdempotencyConflictError,
    InvalidRequestError,
    InvalidTransitionError,
    JobAlreadyFinishedError,
    JobNotFoundError,
    JobPurgedError,
    PayloadTooDeepError,
    PayloadTooLargeError,
    QueueUnavailableError,
    QuotaExceededError,
    RecordFullError,
    RecordTooLargeError,
    StaleJobError,
    StoreUnavailableError,
    TooManyChildrenError,
)
from chalicelib.domain.events import clip
from chalicelib.domain.job import (
    PRIORITIES,
    Job,
    JobErrorInfo,
    Progress,
    Run,
    answer_bytes,
    child_job_id,
    isoformat,
    nested_deeper_than,
    new_job_id,
    parse_time,
    too_deep_message,
    utcnow,
)
from chalicelib.domain.numbers import shown_number
from chalicelib.domain.progress import check_not_decreasing, clamp_percent, is_notable_change
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.domain.status import JobStatus, can_transition
from chalicelib.domain.submission_keys import check_key, request_hash
from chalicelib.ports import (
    CLAIM_CHECKED,
    REMOVE,
    ChangeSet,
    Expectation,
    ExpectedWrite,
    JobMessage,
    JobQueue,
    JobStore,
    SubmissionKey,
    TaskCompletion,
)

Clock = Callable[[], datetime]


class ReconcileOutcome(str, Enum):
    RELEASED = "released"  # a held job's message was sent: its start is within SQS's delay
    REDISPATCHED = "redispatched"  # a queued/retrying job's message was sent again
    LEASE_EXPIRED = "lease_expired"  # a running attempt outlived its lease: worker_lost
    DEAD_LETTERED = "dead_lettered"  # its message sits on a dead-letter queue: failed
    OWED_LETTER_FOUND = "owed_letter_found"  # a failed job's owed letter is on its DLQ: mark cleared
    UNDELIVERABLE = "undeliverable"  # sent max_dispatches times, never claimed: failed
    BACKLOGGED = "backlogged"  # sent max_dispatches times, its queue still has a line: looked at later
    SKIPPED = "skipped"  # nothing to do (finished meanwhile, not due)


class ClaimOutcome(str, Enum):
    RUN = "run"  # this delivery owns the attempt: run the handler
    SKIP = "skip"  # nothing to do (finished, canceled, stale message): acknowledge
    DEFER = "defer"  # another worker holds a live lease: leave the message on the queue


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    job: Optional[Job] = None
    reason: str = ""
    retry_after_s: Optional[int] = None  # for DEFER: when the delivery is worth retrying


def retry_delay_s(attempt: int, *, base_s: int = 2, cap_s: int = 900) -> int:
    """Exponential backoff with full jitter for the retry after `attempt` failed (SQS caps at 900 s)."""
    ceiling = min(cap_s, base_s * (2 ** max(0, attempt - 1)))
    return max(1, int(random.uniform(ceiling / 2, ceiling)))


def _start_message(job: Job, attempt: int) -> JobMessage:
    """The message that starts `attempt`, with what its claim writes without a read."""
    return JobMessage(job.id, attempt, tenant=job.tenant, timeout_s=job.timeout_s)


def transition(job: Job, target: JobStatus) -> None:
    """Raise InvalidTransitionError unless the table allows job.status -> target."""
    if not can_transition(job.status, target):
        raise InvalidTransitionError(
            f"job {job.id} cannot go from {job.status.value} to {target.value}"
        )


class JobLifecycle:
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

    # -- submission -------------------------------------------------------------------------

    def submit(
        self,
        *,
        tenant: str,
        user: str,
        type: str,
        payload: Any,
        priority: Optional[str] = None,
        delay_seconds: int = 0,
        run_at: Optional[datetime] = None,
        scope: Optional[str] = None,
        job_id: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        admit: Optional[Callable[[str], None]] = None,
    ) -> Job:
        """Validate, store as queued, enqueue. The job starts `delay_seconds` from now or at
        `run_at` (at most MAX_SCHEDULE_S ahead). A start within SQS's delay is sent at once;
        a later one is held in the store and released by the reconciler. The record is
        written first and is what counts: if the enqueue fails, the reconciler sends the
        message once the job is due, so an accepted job is never stranded.

        `admit(tenant)` (admission, the tenant quota) runs before anything is written and may
        raise to refuse the job. With an `idempotency_key` the job and the key's record are
        written in one atomic write, the key kept `key_ttl_s`; while it is kept, the same
        request under that key returns the job it made, sending and writing nothing.
        Raises UnknownJobTypeError, InvalidPayloadError, InvalidRequestError,
        IdempotencyConflictError (the key was used with another request), JobPurgedError (the
        key's job was removed while the key is kept), what `admit` raises."""
        request = {"type": type, "payload": payload, "priority": priority, "delay_seconds": delay_seconds,
                   "run_at": run_at, "scope": scope}
        key = check_key(idempotency_key) if idempotency_key is not None else None
        now = self.clock()
        job, wait_s = self._new_job(now, tenant=tenant, user=user, type=type, payload=payload, priority=priority,
                                    delay_seconds=delay_seconds, run_at=run_at, scope=scope, job_id=job_id)
        if key is None:
            if admit is not None:
                admit(tenant)
            self.store.create(job)
        else:
            record = SubmissionKey(tenant, key, job.id, request_hash(request),
                                   int(now.timestamp()) + self.key_ttl_s)
            # Admission comes before the key is written, so a new job costs no read of the key;
            # a replay refused by admission looks its key up then (one GetItem, on refusals
            # only): the key's first request was admitted, and its replays answer its job.
            if admit is not None:
                try:
                    admit(tenant)
                except QuotaExceededError:
                    first = self.store.submission_key(tenant, key, now=int(now.timestamp()))
                    if first is None:
                        raise
                    return self._replayed(first, record)
            first = self.store.create_keyed(job, record, now=int(now.timestamp()))
            if first is not None:
                return self._replayed(first, record)
        self._send_first(job, wait_s)
        return job

    def _new_job(self, now: datetime, *, tenant: str, user: str, type: str, payload: Any, priority: Optional[str],
                 delay_seconds: int, run_at: Optional[datetime], scope: Optional[str], job_id: Optional[str],
                 parent_id: Optional[str] = None) -> tuple[Job, int]:
        """A checked request as the queued job to store, and the seconds until it starts.
        Raises UnknownJobTypeError, InvalidPayloadError, InvalidRequestError,
        PayloadTooLargeError (no answer could carry the job)."""
        job_type = self.registry.get(type)
        model = job_type.parse_payload(payload)
        if priority is not None and priority not in PRIORITIES:  # POST /jobs's model checks it; ctx.spawn's comes here
            raise InvalidRequestError(f"priority must be high, normal or low, not {priority!r:.100}")
        start = self._start_time(now, delay_seconds, run_at)
        wait_s = math.ceil((start - now).total_seconds())
        held = wait_s > SQS_MAX_DELAY_S
        job = Job(
            id=job_id or new_job_id(),
            type=job_type.name,
            payload=job_type.dump_payload(model),
            tenant=tenant,
            user=user,
            scope=scope,
            parent_id=parent_id,
            priority=priority or job_type.priority,
            max_attempts=job_type.max_attempts,
            timeout_s=job_type.timeout_s,
            created_at=isoformat(now),
            not_before=isoformat(start),
            due_at=isoformat(start - timedelta(seconds=SQS_MAX_DELAY_S) if held
                             else self._claim_deadline(start, sent=1)),
            dispatches=0 if held else 1,
        )
        size = answer_bytes(job.public())
        if size > MAX_ANSWER_BYTES:  # no answer could carry the job: not its 202, not a GET of it
            raise PayloadTooLargeError(
                f"the job would be {shown_number(size)} bytes as the API answers it, past the "
                f"{shown_number(MAX_ANSWER_BYTES)} "
                "it can return (Lambda's 6 MB, with JSON's escapes: a non-ASCII character takes 7 "
                "bytes); pass a reference to large input (an object in S3) instead",
                details={"answer_bytes": size, "limit": MAX_ANSWER_BYTES})
        return job, wait_s

    def _send_first(self, job: Job, wait_s: int) -> None:
        """The stored job's first message, unless it is held for a start beyond SQS's delay.
        The record is what counts: a send that fails leaves it to the reconciler."""
        if wait_s > SQS_MAX_DELAY_S:
            return
        try:
            self.queue.send(_start_message(job, 1), priority=job.priority, delay_seconds=max(0, wait_s))
        except QueueUnavailableError:
            pass  # stored with a due time: the reconciler sends the message then

    def _replayed(self, first: SubmissionKey, again: SubmissionKey) -> Job:
        """The job `first` made, answering a request under the same key (`again`); raises
        IdempotencyConflictError when `again` is another request: a key names one request."""
        if first.request_hash != again.request_hash:
            raise IdempotencyConflictError("this Idempotency-Key was already used with a different request body")
        job = self.store.get(first.job_id, mark_gone=True)  # answered as GET /jobs/{id} shows it
        if job is None or job.tenant != first.tenant:  # removed after its retention, key still kept
            free_at = isoformat(datetime.fromtimestamp(first.expires_at, timezone.utc))
            raise JobPurgedError(
                f"job {first.job_id}, made with this Idempotency-Key, has finished and been removed; the key "
                f"makes no other job until {free_at}: to run the request again, submit it under a new key",
                details={"job_id": first.job_id, "key_expires_at": free_at})
        return job

    @staticmethod
    def _start_time(now: datetime, delay_seconds: int, run_at: Optional[datetime]) -> datetime:
        if run_at is not None and delay_seconds:
            raise InvalidRequestError("give either run_at or delay_seconds, not both")
        if run_at is not None:
            if run_at.tzinfo is None:
                raise InvalidRequestError("run_at needs a time zone (for example 2027-01-31T09:00:00Z)")
            start = max(now, run_at)
        else:
            if delay_seconds < 0:
                raise InvalidRequestError("delay_seconds must not be negative")
            start = now + timedelta(seconds=delay_seconds)
        if (start - now).total_seconds() > MAX_SCHEDULE_S:
            raise InvalidRequestError(
                f"a job can be scheduled at most {MAX_SCHEDULE_S // 86400} days ahead",
                details={"max_delay_seconds": MAX_SCHEDULE_S},
            )
        return start

    def spawn(
        self, parent: Job, index: int, *, type: str, payload: Any,
        priority: Optional[str] = None, scope: Optional[str] = None,
        admit: Optional[Callable[[str], None]] = None, listed: Optional[int] = None,
    ) -> Job:
        """Submit child number `index` of the running attempt of `parent` (same tenant and user,
        the parent's scope unless given) and list it in the parent's `children`, in one write
        (a worker dying between the two would leave a child its parent does not list).
        Spawning the same index again in the same attempt returns the existing child. `admit` as
        for submit: a spawned job is admitted like a submitted one (what it raises reaches the
        handler). A `priority` or `scope` given is checked as a submitted one is (InvalidRequestError); the
        parent's is taken as it was accepted. Raises AttemptEndedError, writing and sending
        nothing, once that attempt is no longer the parent's running one (a worker that lost
        its lease and woke after the next attempt started, or after the parent ended), and
        JobCancelledError, the same way, once the parent's cancel was requested. A built-in
        (maintenance) type is as unknown to a handler as to POST /jobs (UnknownJobTypeError): its
        tasks reach every tenant's jobs. `listed`: how many children the parent may list already
        (default: its `children`); with MAX_CHILDREN of them, TooManyChildrenError, before the
        child is made. RecordFullError, nothing made, when the parent's record has no room to
        list it (DynamoDB's 400 KB). PayloadTooDeepError, nothing made, for a payload nesting more
        levels than a submitted one may (MAX_JSON_DEPTH less POST /jobs's envelope)."""
        self.registry.get_public(type)
        if nested_deeper_than(payload, MAX_JSON_DEPTH - 1):  # what POST /jobs's body parser refuses
            raise PayloadTooDeepError(f"{too_deep_message('payload', MAX_JSON_DEPTH - 1)}, as in a submitted job",
                                      details={"limit": MAX_JSON_DEPTH - 1})
        if scope is not None:
            check_name("scope", scope)
        child_id = child_job_id(parent.id, parent.attempts, index)
        existing = self.store.get(child_id, mark_gone=True)  # the child as recorded, whatever its objects
        if existing is None and (len(parent.children) if listed is None else listed) >= MAX_CHILDREN:
            raise TooManyChildrenError(
                f"job {parent.id} lists {MAX_CHILDREN} children, as many as a job may; "
                "spawn the rest from its children (a tree) or from a follow-up job",
                details={"limit": MAX_CHILDREN})
        if existing is None:
            child, wait_s = self._new_job(
                self.clock(), tenant=parent.tenant, user=parent.user, type=type, payload=payload,
                priority=priority or parent.priority, delay_seconds=0, run_at=None,
                scope=scope if scope is not None else parent.scope, job_id=child_id, parent_id=parent.id,
            )
            if admit is not None:
                admit(parent.tenant)
            try:
                self.store.create_child(child, parent.attempts)
            except StaleJobError:  # created by a concurrent spawn of the same index
                existing = self.store.get(child_id, mark_gone=True)
            except RecordTooLargeError as exc:  # the handler's doing, as a retry would find it
                raise RecordFullError(
                    f"job {parent.id}'s record has no room to list child {child_id}: DynamoDB's 400 KB "
                    "item holds its payload, its progress (message and details) and its children; report a "
                    "shorter progress message or smaller details before spawning, or spawn the rest from "
                    "its children (a tree)") from exc
            else:
                self._send_first(child, wait_s)
                return child
        self.store.add_child(parent.id, child_id, parent.attempts)
        return existing

    # -- reads ------------------------------------------------------------------------------

    def get(self, tenant: str, job_id: str, *, consistent: bool = True,
            fetch: Collection[str] = CLAIM_CHECKED) -> Job:
        """The tenant's job; another tenant's job is indistinguishable from a missing one.
        `consistent=False` is for polling reads that may lag a write by a moment. `fetch`:
        the claim-checked fields read back from S3 (`()` for a read that shows neither the
        payload nor the result: the record alone). A fetched object that is gone reads as
        empty, named in the job's `gone`: the job as recorded, not an error. Raises
        JobNotFoundError."""
        job = self.store.get(job_id, consistent=consistent, tenant=tenant, fetch=fetch, mark_gone=True)
        if job is None:
            raise JobNotFoundError(f"job {job_id} not found")
        return job

    # -- cancel -----------------------------------------------------------------------------

    def cancel(self, tenant: str, job_id: str) -> Job:
        """Queued/retrying -> canceled now; running -> cancel_requested (the worker stops
        cooperatively); finished -> JobAlreadyFinishedError.

        The request on a running job is conditioned on its attempt, not on the version read:
        a handler's progress writes bump the version as often as it forces them, and the
        request, which changes nothing they write, must not lose to each of them. Whatever
        became of the job's objects, the cancel decides on its record and answers the job as
        written, a gone object named in `gone` (as `get`)."""
        job = self.get(tenant, job_id)
        for _ in range(RACE_RETRIES):
            try:
                if job.status.is_terminal:
                    raise JobAlreadyFinishedError(
                        f"job {job_id} is already {job.status.value}", details={"status": job.status.value}
                    )
                if job.status == JobStatus.RUNNING:
                    if job.cancel_requested:
                        return job
                    written = self.store.apply_expected(job.id, job.tenant, Expectation(equal={
                        "status": JobStatus.RUNNING, "attempts": job.attempts, "cancel_requested": False,
                    }), ChangeSet({"cancel_requested": True}), mark_gone=True)
                    if written.applied and written.job is not None:
                        return written.job
                    if written.job is None:  # removed meanwhile (a clean-up)
                        raise JobNotFoundError(f"job {job_id} not found")
                    job = written.job  # the attempt ended, or the request landed already: decide on it
                    continue
                # No attempt ends here: a retrying job's error is its failed attempt's, kept on
                # that attempt's run record, not the outcome of the job or of its `canceled` event.
                return self._finish(job, JobStatus.CANCELED, cancel_requested=True, error=REMOVE)
            except StaleJobError:
                job = self.get(tenant, job_id)
        raise StaleJobError(f"job {job_id} kept changing; try again")

    # -- worker side ------------------------------------------------------------------------

    def claim(self, message: JobMessage, *, time_left_s: Optional[float] = None) -> Claim:
        """Decide what a delivery of `message` should do, and take the attempt if it may run.

        Duplicate deliveries find the job running under a live lease (DEFER) or finished
        (SKIP), so an attempt runs once. A delivery that finds the lease expired takes over
        from a worker that died: that attempt is failed as `worker_lost` and retried.
        With `time_left_s` (the invocation's remaining time) an attempt that could not finish
        before the invocation ends is not taken (DEFER, to be delivered again at once).

        The common case costs one conditional write and no read: the message names the
        attempt, tenant and timeout, and the write starts the attempt only if the stored job
        is exactly the one that may start now. When it is not, the refused write returns the
        stored job and the decision below is made on it, as after a read.

        The decision rests on the record: an object of the job found gone (deleted by hand or
        by a bucket rule) is named in the job's `gone`, never an error after the write landed.
        A RUN claim whose payload is gone is failed `payload_gone` by the runner, at once."""
        job: Optional[Job] = None
        if self._may_start_unread(message, time_left_s):
            written = self._start_unread(message)
            if written.applied:
                return Claim(ClaimOutcome.RUN, written.job)
            if written.job is None:
                return Claim(ClaimOutcome.SKIP, None, "job does not exist")
            job = written.job
        for _ in range(RACE_RETRIES):
            if job is None:
                job = self.store.get(message.job_id, mark_gone=True)
                if job is None:
                    return Claim(ClaimOutcome.SKIP, None, "job does not exist")
            try:
                return self._claim(job, time_left_s)
            except StaleJobError:
                job = None
        return Claim(ClaimOutcome.DEFER, None, "job kept changing while claiming", retry_after_s=1)

    @staticmethod
    def _may_start_unread(message: JobMessage, time_left_s: Optional[float]) -> bool:
        """A claim without a read needs the message's hints, and time for the attempt (else
        the read path defers it, as it would any attempt that cannot finish in time)."""
        if message.tenant is None or message.timeout_s is None:
            return False
        return time_left_s is None or time_left_s >= message.timeout_s + INVOCATION_MARGIN_S

    def _start_unread(self, message: JobMessage) -> ExpectedWrite:
        """Start attempt `message.attempt` if the stored job is what `_claim` would start
        right now: a status that may go to running, the previous attempt count, the timeout
        the lease is computed from, no cancel request, its start reached (within 1 s)."""
        now = self.clock()
        startable = tuple(s for s in JobStatus if can_transition(s, JobStatus.RUNNING))
        expected = Expectation(
            equal={"attempts": message.attempt - 1, "timeout_s": message.timeout_s, "cancel_requested": False},
            one_of={"status": startable},
            absent_or_at_most={"not_before": isoformat(now + timedelta(seconds=1))},
        )
        # Only the first attempt sets the job's start: a later one finds it set (the guard on
        # `attempts` pins which case this is).
        first_start = isoformat(now) if message.attempt == 1 else None
        changes = self._start_changes(message.attempt, message.timeout_s, now, first_start)
        return self.store.apply_expected(message.job_id, message.tenant, expected, changes, mark_gone=True)

    @staticmethod
    def _start_changes(attempt: int, timeout_s: int, now: datetime, first_start: Optional[str]) -> ChangeSet:
        """queued/retrying -> running for `attempt`, under a lease of the timeout plus grace. No
        run record: it is written when the attempt ends; until then the job itself shows it."""
        started = isoformat(now)
        lease = isoformat(now + timedelta(seconds=timeout_s + LEASE_GRACE_S))
        fields: dict[str, Any] = {
            "status": JobStatus.RUNNING,
            "attempts": attempt,
            "attempt_started_at": started,
            "lease_expires_at": lease,
            "due_at": lease,
            "progress": Progress(percent=0, step="started", updated_at=started),
            "error": REMOVE,  # the failed attempt's error stays on its run record, not on the next attempt
            "event_percent": 0.0,  # the running transition carries 0 %
            "claim_id": uuid.uuid4().hex,
        }
        if first_start is not None:
            fields["started_at"] = first_start
        return ChangeSet(fields)

    def _claim(self, job: Job, time_left_s: Optional[float]) -> Claim:
        now = self.clock()
        if job.status.is_terminal:
            job = self.park_owed_letter(job)  # raises QueueUnavailableError: delivered again
            return Claim(ClaimOutcome.SKIP, job, f"job is {job.status.value}")
        if job.status == JobStatus.RUNNING:
            lease = job.lease_expires_at
            if lease is not None and lease > isoformat(now):
                wait = (datetime.fromisoformat(lease.replace("Z", "+00:00")) - now).total_seconds()
                return Claim(ClaimOutcome.DEFER, job, "attempt is running under a live lease",
                             retry_after_s=max(1, int(wait) + 1))
            error = JobErrorInfo(code="worker_lost", message=f"attempt {job.attempts} stopped without finishing")
            after = self.fail_attempt(job, error, retryable=True)
            return Claim(ClaimOutcome.SKIP, after, "took over an abandoned attempt")
        if job.cancel_requested:
            self._finish(job, JobStatus.CANCELED)
            return Claim(ClaimOutcome.SKIP, job, "cancel requested before start")
        if job.not_before is not None:
            early_s = (parse_time(job.not_before) - now).total_seconds()
            if early_s > 1:  # a message delivered before the job's start (a redrive, a duplicate)
                return Claim(ClaimOutcome.DEFER, job, "job is scheduled later", retry_after_s=math.ceil(early_s))
        if time_left_s is not None and time_left_s < job.timeout_s + INVOCATION_MARGIN_S:
            return Claim(ClaimOutcome.DEFER, job, "not enough time left in this invocation",
                         retry_after_s=0)
        transition(job, JobStatus.RUNNING)
        changes = self._start_changes(job.attempts + 1, job.timeout_s, now,
                                      None if job.started_at else isoformat(now))
        return Claim(ClaimOutcome.RUN, self.store.apply(job, job.status, changes))

    def park_owed_letter(self, job: Job) -> Job:
        """Park the dead letter a failed `job` owes (`dead_letter_owed`: its queue did not answer
        when the job failed, or the worker ended before it was parked) and clear the mark;
        returns the job as it is then (unchanged when it owes none). Called by a delivery of one
        of the job's messages, whichever it is: a claim that finds the job failed, or a late
        attempt whose outcome was not written. Raises QueueUnavailableError, the letter still
        owed: that delivery must fail, so that its message comes back to park it."""
        if job.dead_letter_owed is None:
            return job
        self._dead_letter(job, job.dead_letter_owed)
        return self._letter_parked(job)

    def _letter_parked(self, job: Job) -> Job:
        """Clear the owed mark of a failed `job` whose letter was just parked; returns the job as
        it is then. A store that does not answer leaves the mark: a later delivery of the
        attempt's message would park the letter a second time, which is better than none."""
        try:
            return self._clear_owed_mark(job)
        except StaleJobError:  # another delivery parked it meanwhile
            return self.store.get(job.id, mark_gone=True) or job
        except StoreUnavailableError:
            return job

    def _clear_owed_mark(self, job: Job) -> Job:
        """`job` with its owed dead letter settled (parked, or found on its DLQ). Raises
        StaleJobError when the job changed since read, StoreUnavailableError."""
        return self.store.apply(job, job.status, ChangeSet({"dead_letter_owed": REMOVE}))

    def record_progress(self, job: Job, progress: Progress) -> Job:
        """Conditional, monotonic progress write for the running attempt of `job`. Returns the
        stored job (a cancel request is visible in it without another read). Raises
        ProgressRejectedError when the percent would decrease or the attempt is over."""
        percent = clamp_percent(progress.percent)
        check_not_decreasing(job.progress.percent, percent)
        stamped = progress.model_copy(update={"percent": percent, "updated_at": isoformat(self.clock())})
        # A progress event when the percent reached a milestone or moved 10 points since the
        # attempt's last event (its running transition or a progress event), not since the
        # last write: throttled writes of a slow job each move less than 10.
        announce = is_notable_change(job.progress.percent if job.event_percent is None else job.event_percent, percent)
        written = self.store.record_progress(job.id, job.attempts, stamped, announce=announce)
        # The store answers a claim-checked payload as its placeholder; a job's payload never
        # changes, and the attempt keeps the one it was claimed with (its handler reads it).
        return written.model_copy(update={"payload": job.payload})

    def report_progress(
        self,
        job: Job,
        percent: float,
        step: Optional[str] = None,
        message: Optional[str] = None,
    ) -> Job:
        """`record_progress` from plain values."""
        return self.record_progress(job, Progress(percent=clamp_percent(percent), step=step, message=message))

    def complete(self, job: Job, result: Any, message: Optional[str] = None,
                 last_progress: Optional[Progress] = None) -> Job:
        """running -> completed with the handler's result (and a final progress message).
        `last_progress`, a report not yet written, lends its message and details to the
        completion's progress (100 %), so it costs no write of its own."""

        def finish(j: Job) -> Job:
            last = last_progress or j.progress
            return self._finish(
                j, JobStatus.COMPLETED, result=result,
                progress=Progress(percent=100, step="completed", message=message or last.message or j.progress.message,
                                  details=last.details if last.details is not None else j.progress.details,
                                  updated_at=isoformat(self.clock())),
            )

        return self._with_fresh(job, finish)

    def mark_canceled(self, job: Job) -> Job:
        """running -> canceled after the handler stopped on a cancel request."""
        return self._with_fresh(job, lambda j: self._finish(
            j, JobStatus.CANCELED,
            error=JobErrorInfo(code="canceled", message="canceled on request"),
        ))

    def fail_attempt(self, job: Job, error: JobErrorInfo, *, retryable: bool) -> Job:
        """End the running attempt with `error`: retrying (and a delayed message for the next
        attempt) while attempts remain and the error is retryable, else failed and the
        message parked on the dead-letter queue. Raises DeadLetterOwedError (a
        QueueUnavailableError) when the job was failed but its dead letter not sent."""

        def decide(current: Job) -> Job:
            if current.cancel_requested:
                return self._finish(current, JobStatus.CANCELED, error=error)
            if retryable and current.attempts < current.max_attempts:
                transition(current, JobStatus.RETRYING)
                delay = retry_delay_s(current.attempts, base_s=self.retry_base_s)
                start = self.clock() + timedelta(seconds=delay)
                retried = self._write_room(
                    current,
                    JobStatus.RUNNING,
                    ChangeSet(
                        {"status": JobStatus.RETRYING, "error": error, "lease_expires_at": REMOVE,
                         "not_before": isoformat(start), "dispatches": 1,
                         "due_at": isoformat(self._claim_deadline(start, sent=1))},
                        run=self._closed_run(current, JobStatus.FAILED, error),
                    ),
                )
                # If this send fails the delivery is reported failed; its redelivery finds the
                # job `retrying` and claims the next attempt itself, so nothing is lost.
                self.queue.send(
                    _start_message(current, current.attempts + 1),
                    priority=current.priority,
                    delay_seconds=delay,
                )
                return retried
            # Written failed owing its letter, in one write: whatever stops this delivery before
            # the letter is parked (the queue does not answer, the process dies), the attempt's
            # message parks it when it comes back (its delivery fails; a dead worker's message
            # reappears). Parked, the mark is cleared: one more write, for a failed job only.
            failed = self._finish(current, JobStatus.FAILED, error=error, dead_letter_owed=current.attempts)
            try:
                self._dead_letter(failed, failed.attempts)
            except QueueUnavailableError as exc:
                raise DeadLetterOwedError(
                    f"job {failed.id} failed ({error.code}) and its dead letter is owed: the dead-letter queue "
                    f"did not answer ({exc.message}); the message of attempt {failed.attempts} parks it when "
                    "it is delivered again", job=failed) from exc
            return self._letter_parked(failed)

        return self._with_fresh(job, decide)

    # -- reconciliation: jobs whose due time passed ------------------------------------------

    def reconcile(self, job: Job, *, waiting: Callable[[str], bool] = lambda priority: False) -> ReconcileOutcome:
        """Act on a job the due index returned. A queued/retrying job gets its message (again):
        released when it was held for a long schedule, redispatched when a message was sent
        before but no worker claimed it (lost, purged, stuck); each resend doubles the wait
        before the next, and once `max_dispatches` went out with none claimed the job fails
        `undeliverable` (every message lost or dead-lettered: waiting longer would wait
        forever), unless `waiting(priority)` says its queue still holds messages no worker
        received (a backlog its messages may be waiting in: looked at again later, until its
        last message cannot be on the queue any more). A running job past its lease is failed
        `worker_lost` and retried or failed by the usual rules. Raises StaleJobError when the
        job changed meanwhile, QueueUnavailableError when the message could not be sent (the
        job stays due)."""
        now = self.clock()
        if job.status.is_terminal or job.due_at is None or parse_time(job.due_at) > now:
            return ReconcileOutcome.SKIPPED
        if job.status == JobStatus.RUNNING:  # a running job is due when its lease ends (the claim sets both)
            error = JobErrorInfo(code="worker_lost",
                                 message=f"attempt {job.attempts} outlived its lease without finishing")
            self.fail_attempt(job, error, retryable=True)
            return ReconcileOutcome.LEASE_EXPIRED
        start = max(now, parse_time(job.not_before)) if job.not_before else now
        wait_s = math.ceil((start - now).total_seconds())
        if wait_s > SQS_MAX_DELAY_S:  # not yet within SQS's reach: look again when it is
            self.store.apply(job, job.status, ChangeSet(
                {"due_at": isoformat(start - timedelta(seconds=SQS_MAX_DELAY_S))}))
            return ReconcileOutcome.SKIPPED
        if job.dispatches >= self.max_dispatches:
            kept_until = parse_time(job.not_before or job.created_at) + timedelta(seconds=JOBS_QUEUE_RETENTION_S)
            if now < kept_until and waiting(job.priority):
                self.store.apply(job, job.status, ChangeSet(
                    {"due_at": isoformat(min(kept_until, now + timedelta(seconds=MAX_DISPATCH_BACKOFF_S)))}))
                return ReconcileOutcome.BACKLOGGED
            self._finish(job, JobStatus.FAILED, error=JobErrorInfo(
                code="undeliverable",
                message=(f"no worker claimed attempt {job.attempts + 1} after {job.dispatches} messages; "
                         "each was lost or dead-lettered (see GET /api/system/dlq)"),
            ))
            return ReconcileOutcome.UNDELIVERABLE
        # The write comes first so that two overlapping passes send one message, not two.
        self.store.apply(job, job.status, ChangeSet({
            "due_at": isoformat(self._claim_deadline(start, sent=max(1, job.dispatches))),
            "dispatches": job.dispatches + 1,
        }))
        self.queue.send(_start_message(job, job.attempts + 1), priority=job.priority, delay_seconds=wait_s)
        return ReconcileOutcome.RELEASED if job.dispatches == 0 else ReconcileOutcome.REDISPATCHED

    def put_back(self, job: Job) -> None:
        """A due job whose reconcile action failed: due again in RECONCILE_RETRY_S, behind what
        is due now (the job is otherwise unchanged). Raises StaleJobError when the job changed
        meanwhile (the failed action may have moved it itself), StoreUnavailableError."""
        later = self.clock() + timedelta(seconds=RECONCILE_RETRY_S)
        self.store.apply(job, job.status, ChangeSet({"due_at": isoformat(later)}))

    def fail_dead_lettered(self, job: Job, message: JobMessage) -> ReconcileOutcome:
        """A message found on a dead-letter queue: if it is the one that should start the job's
        next attempt, nothing will run the job any more, so it fails with `dead_lettered`.
        Messages of earlier attempts, of running or finished jobs are left alone."""
        if job.status not in (JobStatus.QUEUED, JobStatus.RETRYING) or message.attempt != job.attempts + 1:
            return ReconcileOutcome.SKIPPED
        self._finish(job, JobStatus.FAILED, error=JobErrorInfo(
            code="dead_lettered",
            message=f"the message for attempt {message.attempt} was dead-lettered after failed deliveries",
        ))
        return ReconcileOutcome.DEAD_LETTERED

    def owed_letter_found(self, job: Job, message: JobMessage) -> ReconcileOutcome:
        """A message found on a dead-letter queue that is the letter a failed `job` owes (of
        the attempt it failed on): SQS's redrive policy moved that attempt's message there
        itself (its last receive was the delivery that failed the job), or the mark's clearing
        did not answer. The mark is cleared, so a later delivery or redrive of the message is
        acknowledged rather than parked a second time. Raises StaleJobError on a lost race."""
        if not job.owes_dead_letter(message.attempt):
            return ReconcileOutcome.SKIPPED
        self._clear_owed_mark(job)
        return ReconcileOutcome.OWED_LETTER_FOUND

    # -- helpers ----------------------------------------------------------------------------

    def _claim_deadline(self, start: datetime, *, sent: int) -> datetime:
        """When a job starting at `start` should have been claimed, once `sent` messages went
        out for its next attempt: the grace, doubled per earlier resend, at most the cap."""
        return start + timedelta(seconds=min(MAX_DISPATCH_BACKOFF_S, self.dispatch_grace_s * 2 ** (sent - 1)))

    def _dead_letter(self, job: Job, attempt: int) -> None:
        """Park the message of `job`'s failed `attempt`, with the job's error as the reason.
        Raises QueueUnavailableError."""
        error = job.error or JobErrorInfo(code="failed", message="")
        self.queue.dead_letter(JobMessage(job.id, attempt), priority=job.priority,
                               reason={"code": error.code, "message": error.message})

    def _with_fresh(self, job: Job, decide: Callable[[Job], Job]) -> Job:
        """Apply `decide` to the running attempt of `job`; on a lost race re-read and apply again
        while the same attempt is still running (a cancel request or progress bumped the version)."""
        current = job
        for _ in range(RACE_RETRIES):
            if current.status != JobStatus.RUNNING or current.attempts != job.attempts:
                raise StaleJobError(
                    f"attempt {job.attempts} of job {job.id} is no longer running "
                    f"(job is {current.status.value}, attempt {current.attempts})"
                )
            try:
                return decide(current)
            except StaleJobError:
                fresh = self.store.get(job.id, mark_gone=True)  # the attempt's payload is in `job` already
                if fresh is None:
                    raise
                current = fresh
        raise StaleJobError(f"job {job.id} kept changing; giving up this write")

    def _finish(self, job: Job, target: JobStatus, **fields: Any) -> Job:
        transition(job, target)
        now = self.clock()
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
        run = None
        if job.status == JobStatus.RUNNING:
            run = self._closed_run(job, target, fields.get("error"))
        caches, completion = (), None
        if target == JobStatus.COMPLETED and job.scope:
            caches = tuple(self.caches_of(job.type))
            completion = TaskCompletion(job.type, changes["finished_at"], job.id)
        return self._write_room(job, job.status, ChangeSet(changes, run=run, invalidate_caches=caches,
                                                           task_completion=completion))

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
