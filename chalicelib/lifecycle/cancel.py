"""A tenant's cancel: a queued or retrying job canceled at once, a running one asked to stop."""
from __future__ import annotations

from chalicelib.defaults import RACE_RETRIES
from chalicelib.domain.errors import JobAlreadyFinishedError, JobNotFoundError, StaleJobError
from chalicelib.domain.job import Job
from chalicelib.domain.status import JobStatus
from chalicelib.lifecycle.transitions import JobTransitions
from chalicelib.ports import REMOVE, ChangeSet, Expectation


class Cancellation(JobTransitions):
    """A tenant's cancel of its job."""

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
                    raise JobAlreadyFinishedError.of(job_id, job.status.value)
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
