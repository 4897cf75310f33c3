"""The worker function's one clock: the composition root's `clock`, which its runner hands to
each attempt's progress throttle and context. On a ManualClock put there, a handler's progress
window, cancel polls and remaining time move only when the test moves the clock, so each is
asserted to the write and the millisecond, with no sleep."""
from __future__ import annotations

import pytest
from pydantic import BaseModel

from chalicelib.adapters.clocks import ManualClock
from chalicelib.defaults import CANCEL_POLL_INTERVAL_S
from chalicelib.domain.errors import JobCancelledError
from chalicelib.job_types import registry
from tests.functional.conftest import auth, get_job, invoke_worker, receive_all, sqs_event, submit_job

WINDOW_S = 2.0  # the deployed default (PROGRESS_MIN_INTERVAL_S); the functional stack sets 0
POLL_S = max(CANCEL_POLL_INTERVAL_S, WINDOW_S)  # a cancel poll reads no fresher than a progress write


class Empty(BaseModel):
    pass


@pytest.fixture
def clock(aws, monkeypatch) -> ManualClock:
    """The container's clock, a ManualClock; the progress window WINDOW_S, as deployed."""
    from chalicelib.composition import container

    monkeypatch.setenv("PROGRESS_MIN_INTERVAL_S", str(WINDOW_S))
    manual = ManualClock(start=500.0)
    monkeypatch.setattr(container(), "clock", manual)
    return manual


@pytest.fixture
def job_type():
    """Registers `clock.<name>` for one test."""
    names = []

    def add(name: str, handler, **policy) -> str:
        registry.register(f"clock.{name}", Empty, max_attempts=1, **policy)(handler)
        names.append(f"clock.{name}")
        return f"clock.{name}"

    yield add
    for name in names:
        registry._types.pop(name)


def run_one(app, aws) -> None:
    (message,) = receive_all(aws)
    assert invoke_worker(app, sqs_event([message])) == {"batchItemFailures": []}


def test_progress_in_the_window_waits_for_the_window_to_end_on_the_workers_clock(app, client, aws, clock, job_type):
    stored = []

    def reports(ctx, payload):
        def look() -> None:
            stored.append(get_job(client, ctx.job_id)["progress"]["percent"])

        ctx.progress(10)  # the claim opened the window: kept
        ctx.progress(20)  # replaces it
        look()
        clock.advance(WINDOW_S - 0.001)
        look()
        clock.advance(0.001)  # the window ends: its timer writes the latest
        look()
        ctx.progress(30)  # a new window: kept
        look()
        ctx.progress(40, force=True)
        look()
        return "done"

    job = submit_job(client, {"type": job_type("reports", reports), "payload": {}})
    run_one(app, aws)
    assert stored == [0, 0, 20, 20, 40]
    assert get_job(client, job["id"])["status"] == "completed"


def test_a_cancel_is_seen_once_the_poll_interval_passes_on_the_workers_clock(app, client, aws, clock, job_type):
    seen = []

    def polls(ctx, payload):
        assert client.http.delete(f"/jobs/{ctx.job_id}", headers=auth()).status_code == 202
        seen.append(ctx.cancelled())  # the claim's read is fresh: the store is not read again
        clock.advance(POLL_S - 0.001)
        seen.append(ctx.cancelled())
        clock.advance(0.001)
        seen.append(ctx.cancelled())
        return {"partial": True}

    job = submit_job(client, {"type": job_type("polls", polls), "payload": {}})
    run_one(app, aws)
    assert seen == [False, False, True]
    done = get_job(client, job["id"])
    assert done["status"] == "canceled" and done["result"] is None


def test_the_time_a_handler_has_left_is_read_on_the_workers_clock(app, client, aws, clock, job_type):
    left = []

    def counts_down(ctx, payload):
        left.append(ctx.remaining_ms())
        clock.advance(12.5)
        left.append(ctx.remaining_ms())
        clock.advance(100)
        left.append(ctx.remaining_ms())
        return "done"

    submit_job(client, {"type": job_type("counts_down", counts_down, timeout_s=30), "payload": {}})
    run_one(app, aws)
    assert left == [30_000, 17_500, 0]


def test_a_report_made_once_the_cancel_is_known_is_not_kept_for_the_canceled_write(app, client, aws, clock, job_type):
    """The window's timer writes 30 %, and that write meets the cancel request: not stored as a
    running job's progress, and the attempt now knows of the cancel. A report after that raises
    JobCancelledError and, as a forced one would be, is not kept: the job ends canceled at the
    30 % its handler reached before it knew, which the `canceled` write carries."""
    raised = []

    def reports_after_the_cancel(ctx, payload):
        ctx.progress(30, "loading", "30 rows")  # in the claim's window: kept
        assert client.http.delete(f"/jobs/{ctx.job_id}", headers=auth()).status_code == 202
        clock.advance(WINDOW_S)  # the timer's write meets the cancel request
        try:
            ctx.progress(70, "saving", "70 rows")  # in the timer's window: would be kept
        except JobCancelledError:
            raised.append("JobCancelledError")
            raise
        return "done"

    job = submit_job(client, {"type": job_type("after_cancel", reports_after_the_cancel), "payload": {}})
    run_one(app, aws)
    assert raised == ["JobCancelledError"]
    done = get_job(client, job["id"])
    assert done["status"] == "canceled"
    assert (done["progress"]["percent"], done["progress"]["step"]) == (30, "loading"), done["progress"]
