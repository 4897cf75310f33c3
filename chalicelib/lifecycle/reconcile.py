"""The reconciler's transitions: a due job's message sent (again), a lease that ended failed
`worker_lost`, a job no message will start failed (`undeliverable`, `dead_lettered`), an owed
letter found on its queue."""
from __future__ import annotations

import math
from datetime import timedelta
from enum import Enum
from typing import Callable

from chalicelib.defaults import (
    JOBS_QUEUE_RETENTION_S,
    MAX_DISPATCH_BACKOFF_S,
    RECONCILE_RETRY_S,
    SQS_MAX_DELAY_S,
    UNCONSUMED_LOOK_S,
)
from chalicelib.domain.errors import (
    DeadLetterOwedError,
    NextAttemptUnsentError,
    QueueUnavailableError,
)
from chalicelib.domain.job import Job, JobErrorInfo, isoformat, parse_time
from chalicelib.domain.status import JobStatus
from chalicelib.lifecycle.attempts import Attempts
from chalicelib.ports import REMOVE, ChangeSet, JobMessage


class ReconcileOutcome(str, Enum):
    RELEASED = "released"  # a held job's message was sent: its start is within SQS's delay
    REDISPATCHED = "redispatched"  # a queued/retrying job's message was sent again
    LEASE_EXPIRED = "lease_expired"  # a running attempt outlived its lease: worker_lost
    DEAD_LETTERED = "dead_lettered"  # its message sits on a dead-letter queue: failed
    OWED_LETTER_FOUND = "owed_letter_found"  # a failed job's owed letter is on its DLQ: mark cleared
    OWED_LETTER_PARKED = "owed_letter_parked"  # a failed job's owed letter, its message never back: parked
    UNDELIVERABLE = "undeliverable"  # sent max_dispatches times, never claimed: failed
    BACKLOGGED = "backlogged"  # sent max_dispatches times, its queue still has a line: looked at later
    UNCONSUMED = "unconsumed"  # its queue holds messages no worker receives (paused): none sent, looked at later
    SKIPPED = "skipped"  # nothing to do (finished meanwhile, not due)


class SendAfterOutcomeError(QueueUnavailableError):
    """A reconcile action whose write landed, so that its `outcome` stands, but whose send after
    it did not (`cause`: the dead letter owed, the next attempt's message unsent). The job, as
    written, is due for what is left: it needs no put-back."""

    def __init__(self, outcome: ReconcileOutcome, cause: QueueUnavailableError) -> None:
        super().__init__(cause.message, details=cause.details)
        self.outcome = outcome
        self.cause = cause


class Reconciliation(Attempts):
    """The reconciler's actions on a job: its due time passed, or a message of it was found
    on a dead-letter queue."""

    def reconcile(self, job: Job, *, waiting: Callable[[str], bool] = lambda priority: False,
                  unconsumed: Callable[[str], bool] = lambda priority: False) -> ReconcileOutcome:
        """Act on a job the due index returned. A queued/retrying job gets its message (again):
        released when it was held for a long schedule, redispatched when a message was sent
        before but no worker claimed it (lost, purged, stuck); each resend doubles the wait
        before the next, and once `max_dispatches` went out with none claimed the job fails
        `undeliverable` (every message lost or dead-lettered: waiting longer would wait
        forever), unless `waiting(priority)` says its queue still holds messages no worker
        received (a backlog its messages may be waiting in: looked at again later, until its
        last message cannot be on the queue any more). A job whose message was sent before is not
        sent again while `unconsumed(priority)` says its queue holds messages no worker receives
        (its consumption paused: the message waits there, and a copy would only be one more
        delivery and one more dispatch counted towards `undeliverable`): looked at again
        UNCONSUMED_LOOK_S later. A running job past its lease is failed
        `worker_lost` and retried or failed by the usual rules (SendAfterOutcomeError when the
        write landed but the letter or the next attempt's message did not go). A failed job still owing its
        dead letter OWED_LETTER_WAIT_S after it failed (the attempt's message, which parks it,
        never came back: purged, deleted) has it parked, once: taken first by a write that one
        of two overlapping passes wins (due again RECONCILE_RETRY_S on, should the send not
        follow), the other doing nothing. Raises StaleJobError when the
        job changed meanwhile, QueueUnavailableError when the message could not be sent (the
        job stays due)."""
        now = self.clock()
        if job.due_at is None or parse_time(job.due_at) > now:
            return ReconcileOutcome.SKIPPED
        if job.status.is_terminal:  # only a failed job owing its letter stays due
            if job.dead_letter_owed is None:
                self.store.apply(job, job.status, ChangeSet({"due_at": REMOVE}))
                return ReconcileOutcome.SKIPPED
            # The letter goes before its mark is cleared: decided on the record, not on the due
            # page's eventually consistent read, which may predate the message parking it.
            record = self.store.get(job.id, fetch=(), mark_gone=False)
            if record is None or record.dead_letter_owed is None or record.due_at is None \
                    or parse_time(record.due_at) > now:  # parked, or taken by an overlapping pass
                return ReconcileOutcome.SKIPPED
            # Taken before the send, by a write only one pass wins (StaleJobError for the other):
            # one letter, not one per pass. A pass that ends before its send leaves the job due
            # again RECONCILE_RETRY_S on, still owing the letter, for a later pass to park.
            taken = self.store.apply(record, record.status, ChangeSet(
                {"due_at": isoformat(now + timedelta(seconds=RECONCILE_RETRY_S))}))
            # Raises QueueUnavailableError: due again then, the next pass reading the dead-letter
            # queues first (a letter whose answer was lost is found there, not parked twice).
            self.park_letter(taken)
            return ReconcileOutcome.OWED_LETTER_PARKED
        if job.status == JobStatus.RUNNING:  # a running job is due when its lease ends (the claim sets both)
            error = JobErrorInfo(code="worker_lost",
                                 message=f"attempt {job.attempts} outlived its lease without finishing")
            try:
                self.fail_attempt(job, error, retryable=True)
            except (DeadLetterOwedError, NextAttemptUnsentError) as exc:
                raise SendAfterOutcomeError(ReconcileOutcome.LEASE_EXPIRED, exc) from exc
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
        if job.dispatches and unconsumed(job.priority):
            self.store.apply(job, job.status, ChangeSet(
                {"due_at": isoformat(now + timedelta(seconds=UNCONSUMED_LOOK_S))}))
            return ReconcileOutcome.UNCONSUMED
        self._send_again(job, start, wait_s)
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
