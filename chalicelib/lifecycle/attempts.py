"""A running attempt's writes: throttled, monotonic progress, and its outcome: completed,
canceled on request, retrying after a delay (`retry_delay_s`) while attempts remain, or failed
with its message parked on the dead-letter queue."""
from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from typing import Any, Callable, Optional

from chalicelib.defaults import OWED_LETTER_WAIT_S, RACE_RETRIES, SQS_MAX_DELAY_S
from chalicelib.domain.errors import DeadLetterOwedError, NextAttemptUnsentError, QueueUnavailableError, StaleJobError
from chalicelib.domain.job import Job, JobErrorInfo, Progress, isoformat
from chalicelib.domain.progress import check_not_decreasing, clamp_percent, is_notable_change, progress_refusal
from chalicelib.domain.status import JobStatus
from chalicelib.lifecycle.dead_letters import DeadLetters
from chalicelib.lifecycle.transitions import start_message, transition
from chalicelib.ports import REMOVE, ChangeSet


def retry_delay_s(attempt: int, *, base_s: int = 2, cap_s: int = 900) -> int:
    """Exponential backoff with jitter for the retry after `attempt` failed: a whole number of
    seconds drawn evenly from half the ceiling to all of it, both ends included (1-2 s, 2-4 s,
    …; SQS caps a delay at 900 s)."""
    ceiling = max(1, min(cap_s, base_s * (2 ** max(0, attempt - 1))))
    return random.randint(math.ceil(ceiling / 2), ceiling)


class Attempts(DeadLetters):
    """What a running attempt writes: its progress, and its end (completed, canceled,
    retrying or failed)."""

    def record_progress(self, job: Job, progress: Progress) -> Job:
        """Conditional, monotonic progress write for the running attempt of `job`. Returns the
        stored job (a cancel request is visible in it without another read). Raises
        ProgressRejectedError when the percent would decrease or the attempt is over. An
        announcement is written against the job's event mark it was decided from; a mark that
        moved meanwhile (a write of this attempt whose every answer was lost) is read again and
        the write decided on it."""
        percent = clamp_percent(progress.percent)
        check_not_decreasing(job.progress.percent, percent)
        stamped = progress.model_copy(update={"percent": percent, "updated_at": isoformat(self.clock())})
        current = job
        for _ in range(RACE_RETRIES):
            # A progress event when the percent reached a milestone or moved 10 points since the
            # attempt's last event (its running transition or a progress event), not since the
            # last write: throttled writes of a slow job each move less than 10.
            mark = current.event_mark
            announce = is_notable_change(current.progress.percent if mark is None else mark, percent)
            try:
                written = self.store.record_progress(job.id, job.attempts, stamped, announce=announce, mark=mark)
            except StaleJobError:
                # The mark moved: a write of this attempt landed unanswered (its worker still
                # holds the mark before it). Decided again on the record, the announcement is
                # measured from the event that write made, not made a second time.
                fresh = self.store.get(job.id, fetch=(), mark_gone=False)
                if fresh is None or fresh.status != JobStatus.RUNNING or fresh.attempts != job.attempts:
                    raise progress_refusal(job.id, job.attempts, percent, fresh) from None
                current = fresh
                continue
            # The store answers a claim-checked payload as its placeholder; a job's payload never
            # changes, and the attempt keeps the one it was claimed with (its handler reads it).
            return written.model_copy(update={"payload": job.payload})
        raise StaleJobError(f"job {job.id} kept changing; giving up this progress write")

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
            return self._finish(j, JobStatus.COMPLETED, result=result,
                                progress=completed_progress(j, message, last_progress, isoformat(self.clock())))

        return self._with_fresh(job, finish)

    def completed_as(self, job: Job, message: Optional[str] = None, last_progress: Optional[Progress] = None) -> Job:
        """The job `complete` would write now (its result aside), nothing written: a result is
        measured beside it, as the API will answer the completed job (its status, end time and
        expiry, not the running attempt's)."""
        return self._ended_as(job, JobStatus.COMPLETED,
                              progress=completed_progress(job, message, last_progress, isoformat(self.clock())))

    def mark_canceled(self, job: Job, last_progress: Optional[Progress] = None) -> Job:
        """running -> canceled after the handler stopped on a cancel request; `last_progress`
        as `fail_attempt` takes it."""
        return self._with_fresh(job, lambda j: self._finish(
            j, JobStatus.CANCELED,
            error=JobErrorInfo(code="canceled", message="canceled on request"),
            **_reported(j, last_progress, self.clock()),
        ))

    def fail_attempt(self, job: Job, error: JobErrorInfo, *, retryable: bool,
                     last_progress: Optional[Progress] = None, retry_after_s: Optional[int] = None) -> Job:
        """End the running attempt with `error`: retrying (and a delayed message for the next
        attempt) while attempts remain and the error is retryable, else failed and the
        message parked on the dead-letter queue (a letter whose answer was lost is left owed to
        the reconciler, which looks on the queue first). Raises DeadLetterOwedError (a
        QueueUnavailableError) when the job was failed but its dead letter not sent, and
        NextAttemptUnsentError (one too) when it was written retrying but its next attempt's
        message not sent.
        `last_progress`, a report not yet written (`fail_job(..., progress_percent=75)`), is
        written with the outcome: one write and one event (seed 002: exactly one per
        transition), not a `running` progress event before the `failed` one. `retry_after_s`:
        the retry waits at least this long (what a quota's refusal asked; SQS's 900 s at most)."""

        def decide(current: Job) -> Job:
            reported = _reported(current, last_progress, self.clock())
            if current.cancel_requested:
                return self._finish(current, JobStatus.CANCELED, error=error, **reported)
            if retryable and current.attempts < current.max_attempts:
                transition(current, JobStatus.RETRYING)
                delay = max(retry_delay_s(current.attempts, base_s=self.retry_base_s),
                            min(retry_after_s or 0, SQS_MAX_DELAY_S))
                start = self.clock() + timedelta(seconds=delay)
                retried = self._write_room(
                    current,
                    JobStatus.RUNNING,
                    ChangeSet(
                        {"status": JobStatus.RETRYING, "error": error, "lease_expires_at": REMOVE,
                         "not_before": isoformat(start), "dispatches": 1,
                         "due_at": isoformat(self._claim_deadline(start, sent=1)), **reported},
                        run=self._closed_run(current, JobStatus.FAILED, error),
                    ),
                )
                # If this send fails the delivery is reported failed; its redelivery finds the
                # job `retrying` and claims the next attempt itself, so nothing is lost.
                try:
                    self.queue.send(
                        start_message(current, current.attempts + 1),
                        priority=current.priority,
                        delay_seconds=delay,
                    )
                except QueueUnavailableError as exc:
                    raise NextAttemptUnsentError(
                        f"job {retried.id} is retrying ({error.code}) and the message of attempt "
                        f"{retried.attempts + 1} was not sent ({exc.message}); the message of attempt "
                        f"{retried.attempts} starts it when it is delivered again", job=retried) from exc
                return retried
            # Written failed owing its letter, in one write: whatever stops this delivery before
            # the letter is parked (the queue does not answer, the process dies), the attempt's
            # message parks it when it comes back (its delivery fails; a dead worker's message
            # reappears). Parked, the mark is cleared: one more write, for a failed job only.
            # Due meanwhile: a message that never comes back leaves the reconciler to park it.
            # A letter sent whose answer was lost may be parked: sent again by the message's
            # return it could be there twice, so it is marked unconfirmed and left owed to the
            # reconciler, whose pass reads the dead-letter queues before its due jobs: found, the
            # mark is cleared; not found by OWED_LETTER_WAIT_S, it is parked then.
            owed_until = isoformat(self.clock() + timedelta(seconds=OWED_LETTER_WAIT_S))
            failed = self._finish(current, JobStatus.FAILED, error=error, dead_letter_owed=current.attempts,
                                  due_at=owed_until, **reported)
            try:
                return self.park_owed_letter(failed)
            except QueueUnavailableError as exc:
                raise DeadLetterOwedError(
                    f"job {failed.id} failed ({error.code}) and its dead letter is owed: the dead-letter queue "
                    f"did not answer ({exc.message}); the message of attempt {failed.attempts} parks it when "
                    "it is delivered again", job=failed) from exc

        return self._with_fresh(job, decide)

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
                # The record alone: the attempt's payload is in `job` already, and an object read
                # that failed here would lose the attempt's outcome to its lease.
                fresh = self.store.get(job.id, fetch=(), mark_gone=False)
                if fresh is None:
                    raise
                current = fresh.model_copy(update={"payload": job.payload, "gone": job.gone})
        raise StaleJobError(f"job {job.id} kept changing; giving up this write")


def completed_progress(job: Job, message: Optional[str], last_progress: Optional[Progress],
                       updated_at: Optional[str]) -> Progress:
    """The progress a completion of `job`'s attempt writes: 100 %, step `completed`, `message`
    (else the last report's), and the last report's details: `last_progress` (a report not yet
    written), else the job's. The last report alone, whether the window wrote it or the
    completion carries it: a message or details it left out are not the report's before."""
    last = last_progress or job.progress
    return Progress(percent=100, step="completed", message=message or last.message, details=last.details,
                    updated_at=updated_at)


def _reported(job: Job, last_progress: Optional[Progress], now: datetime) -> dict[str, Progress]:
    """The fields that write `last_progress` (a report the attempt made and did not write) with
    an attempt's outcome, stamped `now` as every progress write is: none without one, or for
    one behind what `job` shows."""
    if last_progress is None or last_progress.percent < job.progress.percent:
        return {}
    return {"progress": last_progress.model_copy(update={"updated_at": isoformat(now)})}
