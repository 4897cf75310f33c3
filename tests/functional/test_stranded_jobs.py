"""A job whose progress left its record (nearly) full still ends: on moto with the real adapters."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from chalicelib import composition
from chalicelib.defaults import LEASE_GRACE_S, MAX_EVENT_TEXT_CHARS, MAX_PROGRESS_MESSAGE_CHARS
from chalicelib.domain.errors import ProgressRejectedError
from chalicelib.domain.status import JobStatus
from chalicelib.lifecycle import JobLifecycle
from chalicelib.ports import JobMessage
from chalicelib.reconciler import Reconciler

STEPS = {"steps": 2, "step_ms": 0}
# Progress in Russian: two bytes a character in UTF-8, so 300,000 characters may take 600 KB.
TEXT = "я"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_a_running_job_whose_progress_filled_its_record_still_ends_when_its_lease_expires(aws):
    """A handler's progress message may hold 300,000 characters and the store accepts any report
    that fits the 400 KB record; a handler that grows its message until a report is refused
    leaves the record with a few bytes to spare. Its worker then dies: the worker_lost write
    (status, error, not_before, ...) does not fit beside the full progress. It is written again
    with the progress message cut to what events carry, so the job is retried, not left
    running for good."""
    services = composition.container()
    clock = Clock()
    lifecycle = JobLifecycle(services.store, services.queue, services.registry, clock=clock)

    def running_job():
        job = lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS)
        claim = lifecycle.claim(JobMessage(job.id, 1, tenant=job.tenant, timeout_s=job.timeout_s))
        assert claim.job.status == JobStatus.RUNNING
        return claim.job

    # The longest progress message the store accepts for a job in this state (each probe on a
    # job of its own): what a handler appending to its message ends with once a report is refused.
    fits, too_long = 0, MAX_PROGRESS_MESSAGE_CHARS + 1
    while too_long - fits > 1:
        length = (fits + too_long) // 2
        try:
            lifecycle.report_progress(running_job(), 50, message=TEXT * length)
            fits = length
        except ProgressRejectedError:
            too_long = length
    assert 0 < fits <= MAX_PROGRESS_MESSAGE_CHARS, "a report within its bounds fills the record"

    job = running_job()
    lifecycle.report_progress(job, 50, message=TEXT * fits)  # accepted: the record is nearly full
    clock.advance(job.timeout_s + LEASE_GRACE_S + 1)  # the worker died; its lease is over

    reconciler = Reconciler(lifecycle, services.queue_operations)
    passes = [reconciler.run_pass() for _ in range(3)]
    after = services.store.get(job.id, mark_gone=False)
    assert after.status == JobStatus.RETRYING and after.error.code == "worker_lost", (
        f"job {job.id} is {after.status.value} 3 passes after its lease ended; the passes' errors: "
        f"{[e for p in passes for e in p.errors if job.id in e]}"
    )
    assert not [e for p in passes for e in p.errors if job.id in e], "ended in the first pass, without an error"
    assert after.progress.message == TEXT * (MAX_EVENT_TEXT_CHARS - 1) + "…"
