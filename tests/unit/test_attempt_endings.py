"""How an attempt ends, whatever way its handler stops: each ending is written on the job as
the attempt's last write left it, and the order of what the handler did decides the same
ending whether it returned, raised or was given up on past its timeout (docs/jobs.md)."""
from __future__ import annotations

import threading
import time

import pytest
from pydantic import BaseModel

from chalicelib.adapters.clocks import ManualClock
from chalicelib.domain.errors import StaleJobError
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.domain.status import JobStatus
from chalicelib.lifecycle import JobLifecycle
from chalicelib.worker.helpers import complete_job, fail_job
from chalicelib.worker.progress import ProgressReporter
from chalicelib.worker.runner import JobRunner


class Empty(BaseModel):
    pass


# How the handler stops once a progress write is under way: what the job then reads.
STOPS = {
    "raises": (JobStatus.RETRYING, "handler_error"),
    "fails": (JobStatus.FAILED, "E_BAD_ROWS"),
    "times_out": (JobStatus.RETRYING, "timeout"),
    "completes": (JobStatus.COMPLETED, None),
}


@pytest.mark.parametrize("stops", list(STOPS))
def test_an_ending_waits_for_the_progress_write_under_way_and_ends_the_job_it_returns(
        store, queue, clock, monkeypatch, stops):
    """A report held in the progress window is written by the window's timer, on its thread; the
    handler may stop while that write is on its way. The ending waits for it (`settle`), and must
    then end the job that write returned: ended on the job as it was before, its conditional
    write was refused (the record's version moved) and spent one of its tries on a read."""
    worker_clock, types = ManualClock(), JobTypeRegistry()
    writing, release = threading.Event(), threading.Event()
    record_progress = store.record_progress

    def held_write(*args, **kwargs):
        writing.set()
        release.wait(5)
        return record_progress(*args, **kwargs)

    settle = ProgressReporter.settle

    def settle_releasing(self):
        release.set()  # the ending reached the reporter: the write under way may land now
        return settle(self)

    monkeypatch.setattr(store, "record_progress", held_write)
    monkeypatch.setattr(ProgressReporter, "settle", settle_releasing)

    @types.register("t.stops_mid_write", Empty, timeout_s=1, max_attempts=3)
    def stops_mid_write(ctx, payload):
        if stops == "completes":  # first: its check reads the reporter, which the write will hold
            complete_job(ctx, {"rows": 400})
        ctx.progress(40, step="rows", message="row 400 of 1000")  # held: inside the window
        window = threading.Thread(target=worker_clock.advance, args=(30,))  # its end, on a timer's thread
        window.start()
        assert writing.wait(5)
        if stops == "raises":
            raise ValueError("row 401 is not a number")
        if stops == "fails":
            fail_job(ctx, "E_BAD_ROWS", "row 401 is not a number")
        if stops == "times_out":
            time.sleep(5)  # interrupted at its 1 s timeout

    refused = []
    apply = store.apply

    def counting_apply(*args, **kwargs):
        try:
            return apply(*args, **kwargs)
        except StaleJobError:
            refused.append(args[0].version)
            raise

    monkeypatch.setattr(store, "apply", counting_apply)
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    submitted = lifecycle.submit(tenant="acme", user="ann", type="t.stops_mid_write", payload={})
    runner = JobRunner(lifecycle, types, clock=worker_clock, progress_interval_s=30)
    final = runner.run(queue.drain()[0])
    assert (final.status, final.error.code if final.error else None) == STOPS[stops], final.error
    assert refused == [], "the ending was written on the job before the progress write landed"
    stored = store.get(submitted.id, mark_gone=False)
    assert stored.progress.percent == (100 if stops == "completes" else 40)
