"""A failed job's dead letter: its attempt's message parked on the dead-letter queue, owed
(`dead_letter_owed`) when the queue did not answer or the worker ended first, and the mark
cleared once the letter is parked or found on its queue."""
from __future__ import annotations

from chalicelib.domain.errors import LetterUnconfirmedError, StaleJobError, StoreUnavailableError
from chalicelib.domain.job import Job, JobErrorInfo
from chalicelib.lifecycle.transitions import JobTransitions
from chalicelib.ports import REMOVE, ChangeSet, JobMessage


class DeadLetters(JobTransitions):
    """A failed job's dead letter: parked, owed when its queue did not answer, the mark cleared."""

    def park_owed_letter(self, job: Job) -> Job:
        """Park the dead letter a failed `job` owes (`dead_letter_owed`: its queue did not answer
        when the job failed, or the worker ended before it was parked) and clear the mark;
        returns the job as it is then (unchanged when it owes none). Called by a delivery of one
        of the job's messages, whichever it is: a claim that finds the job failed, or a late
        attempt whose outcome was not written. Raises QueueUnavailableError, the letter still
        owed: that delivery must fail, so that its message comes back to park it. A letter sent
        whose answer was lost may be on its queue (`dead_letter_unconfirmed`): no delivery sends
        it again, it stays owed for the reconciler to find there or park when it is due."""
        if job.dead_letter_unconfirmed:
            return job
        try:
            return self.park_letter(job)
        except LetterUnconfirmedError:
            return self.letter_unconfirmed(job)

    def letter_unconfirmed(self, job: Job) -> Job:
        """Mark the letter a failed `job` owes as sent with its answer lost: it may be on its
        queue, so no delivery of the job's messages sends it again (parked twice otherwise); the
        reconciler finds it there or parks it once the job is due. Returns the job as it is then;
        a store that does not answer leaves the mark unwritten (a delivery may then send it
        again: two letters rather than none)."""
        try:
            return self.store.apply(job, job.status, ChangeSet({"dead_letter_unconfirmed": True}))
        except (StaleJobError, StoreUnavailableError):
            return job

    def park_letter(self, job: Job) -> Job:
        """Park the dead letter a failed `job` owes and clear the mark; returns the job as it is
        then (unchanged when it owes none). Raises QueueUnavailableError, LetterUnconfirmedError
        when the letter was sent and its answer lost (the mark stays either way)."""
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
        """`job` with its owed dead letter settled (parked, or found on its DLQ), out of the due
        index the mark kept it in. Raises
        StaleJobError when the job changed since read, StoreUnavailableError."""
        fields = {"dead_letter_owed": REMOVE, "due_at": REMOVE}
        if job.dead_letter_unconfirmed:
            fields["dead_letter_unconfirmed"] = REMOVE
        return self.store.apply(job, job.status, ChangeSet(fields))

    def _dead_letter(self, job: Job, attempt: int) -> None:
        """Park the message of `job`'s failed `attempt`, with the job's error as the reason.
        Raises QueueUnavailableError."""
        error = job.error or JobErrorInfo(code="failed", message="")
        self.queue.dead_letter(JobMessage(job.id, attempt), priority=job.priority,
                               reason={"code": error.code, "message": error.message})
