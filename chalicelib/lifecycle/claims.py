"""A delivery's claim: queued/retrying -> running under a lease, in one conditional write and no
read in the common case; what a delivery that may not run does instead (`ClaimOutcome`)."""
from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Optional

from chalicelib.defaults import INVOCATION_MARGIN_S, LEASE_GRACE_S, RACE_RETRIES
from chalicelib.domain.errors import StaleJobError, StoreUnavailableError
from chalicelib.domain.job import Job, JobErrorInfo, Progress, isoformat, parse_time
from chalicelib.domain.status import JobStatus, can_transition
from chalicelib.lifecycle.attempts import Attempts
from chalicelib.lifecycle.transitions import transition
from chalicelib.ports import REMOVE, ChangeSet, Expectation, ExpectedWrite, JobMessage


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


class Claims(Attempts):
    """A delivery's claim of the attempt its message names: run, skip or defer."""

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
        A RUN claim whose payload is gone is failed `payload_gone` by the runner, at once.

        A claim the store did not answer (every answer to its write lost, or the claim-checked
        payload not read back after the write landed: StoreUnavailableError) is looked up by
        its `claim_id` rather than left to its lease, which a redelivery could not tell from a
        live worker's: see `_unanswered`."""
        claim_id = uuid.uuid4().hex  # this delivery's: found on the record, the claim was ours
        try:
            return self._decide(message, time_left_s, claim_id)
        except StoreUnavailableError as exc:
            return self._unanswered(message, claim_id, exc)

    def _decide(self, message: JobMessage, time_left_s: Optional[float], claim_id: str) -> Claim:
        job: Optional[Job] = None
        if self._may_start_unread(message, time_left_s):
            written = self._start_unread(message, claim_id)
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
                return self._claim(job, time_left_s, claim_id)
            except StaleJobError:
                job = None
        return Claim(ClaimOutcome.DEFER, None, "job kept changing while claiming", retry_after_s=1)

    def _unanswered(self, message: JobMessage, claim_id: str, unanswered: StoreUnavailableError) -> Claim:
        """After a claim the store did not answer: when the record shows this delivery's claim,
        the attempt is this delivery's to run (its payload read again) or, the payload still
        unreadable, to give back at once: failed `payload_unavailable`, retried while attempts
        remain, as an attempt whose worker was lost is. Raises `unanswered` when the claim did
        not land (the delivery fails and its message is delivered again), StoreUnavailableError
        when the record cannot be read either (the lease then ends the attempt, if it began)."""
        record = self.store.get(message.job_id, fetch=(), mark_gone=False)
        if record is None or record.claim_id != claim_id or record.status != JobStatus.RUNNING:
            raise unanswered
        try:
            job = self.store.get(message.job_id, mark_gone=True)
        except StoreUnavailableError as exc:
            error = JobErrorInfo(code="payload_unavailable", message=(
                f"attempt {record.attempts} could not read its payload ({exc.message}); its handler did not run"))
            return Claim(ClaimOutcome.SKIP, self.fail_attempt(record, error, retryable=True),
                         "the attempt's payload could not be read")
        if job is None or job.claim_id != claim_id:
            raise unanswered
        return Claim(ClaimOutcome.RUN, job)

    @staticmethod
    def _may_start_unread(message: JobMessage, time_left_s: Optional[float]) -> bool:
        """A claim without a read needs the message's hints, and time for the attempt (else
        the read path defers it, as it would any attempt that cannot finish in time)."""
        if message.tenant is None or message.timeout_s is None:
            return False
        return time_left_s is None or time_left_s >= message.timeout_s + INVOCATION_MARGIN_S

    def _start_unread(self, message: JobMessage, claim_id: str) -> ExpectedWrite:
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
        changes = self._start_changes(message.attempt, message.timeout_s, now, first_start, claim_id)
        return self.store.apply_expected(message.job_id, message.tenant, expected, changes, mark_gone=True)

    @staticmethod
    def _start_changes(attempt: int, timeout_s: int, now: datetime, first_start: Optional[str],
                       claim_id: str) -> ChangeSet:
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
            "event_attempt": attempt,
            "claim_id": claim_id,
        }
        if first_start is not None:
            fields["started_at"] = first_start
        return ChangeSet(fields)

    def _claim(self, job: Job, time_left_s: Optional[float], claim_id: str) -> Claim:
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
                                      None if job.started_at else isoformat(now), claim_id)
        return Claim(ClaimOutcome.RUN, self.store.apply(job, job.status, changes))
