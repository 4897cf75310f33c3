"""An attempt's outcome the store did not take at first is written again while the invocation has
time: a store's blip costs the worker a wait, not the handler's whole run again after its lease.
Bounded by OUTCOME_RETRY_PATIENCE_S and by the margin the claim left the invocation; a write
that may have landed with its answer lost is settled by the message coming back, as before."""
from __future__ import annotations

import pytest
from pydantic import BaseModel

from chalicelib.adapters.clocks import ManualClock
from chalicelib.defaults import (
    INVOCATION_MARGIN_S,
    OUTCOME_RETRY_MARGIN_S,
    OUTCOME_RETRY_MAX_WAIT_S,
    OUTCOME_RETRY_PATIENCE_S,
)
from chalicelib.domain.errors import FatalJobError, RecordTooLargeError, StoreUnavailableError
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.domain.status import JobStatus
from chalicelib.lifecycle import JobLifecycle
from chalicelib.worker.runner import JobRunner


class Empty(BaseModel):
    pass


@pytest.fixture
def types():
    registry = JobTypeRegistry()
    registry.calls = []

    @registry.register("t.ok", Empty, timeout_s=300)
    def ok(ctx, payload):
        registry.calls.append(ctx.attempt)
        return {"ok": True}

    @registry.register("t.fatal", Empty, max_attempts=1)
    def fatal(ctx, payload):
        registry.calls.append(ctx.attempt)
        raise FatalJobError("no way", code="bad_input")

    @registry.register("t.cancels", Empty)
    def cancels(ctx, payload):
        registry.calls.append(ctx.attempt)
        registry.cancel(ctx.job_id)
        ctx.progress(10)  # the write finds the request: the handler stops

    @registry.register("t.short", Empty, timeout_s=1)
    def short(ctx, payload):
        registry.calls.append(ctx.attempt)
        return "done"

    return registry


class Worker:
    """A runner on a manual clock (each wait moves it, taking no time), whose store refuses
    the writes of an attempt's end (`refuse(status, times)`), and what it observed."""

    def __init__(self, store, queue, clock, types) -> None:
        self.store, self.queue = store, queue
        self.lifecycle = JobLifecycle(store, queue, types, clock=clock)
        self.clock = ManualClock()
        self.observed: list[tuple[str, dict]] = []
        self.runner = JobRunner(self.lifecycle, types, clock=self.clock, progress_interval_s=0,
                                observe=lambda event, job, extra: self.observed.append((event, extra)))
        types.cancel = lambda job_id: self.lifecycle.cancel("acme", job_id)
        self._apply = store.apply
        self.refusals: dict[JobStatus, int] = {}
        self.tries: list[float] = []

    def refuse(self, status: JobStatus, times: int, *, landed: bool = False) -> None:
        """The next `times` writes of `status` are refused (StoreUnavailableError); `landed`:
        each lands first, its answer lost."""
        self.refusals[status] = times

        def apply(job, expected, changes):
            target = changes.fields.get("status")
            if target == status:
                self.tries.append(self.clock.monotonic())
            if target == status and self.refusals[status] > 0:
                self.refusals[status] -= 1
                if landed:
                    self._apply(job, expected, changes)
                raise StoreUnavailableError("the table did not answer")
            return self._apply(job, expected, changes)

        self.store.apply = apply

    def run(self, type_: str):
        job = self.lifecycle.submit(tenant="acme", user="ann", type=type_, payload={})
        (message,) = self.queue.drain()
        return job, message

    def waits(self) -> list[float]:
        return [extra["retry_in_s"] for event, extra in self.observed if event == "outcome_unwritten"]


@pytest.fixture
def worker(store, queue, clock, types):
    return Worker(store, queue, clock, types)


def test_a_completion_the_store_refused_twice_lands_in_the_same_delivery(worker, types):
    worker.refuse(JobStatus.COMPLETED, 2)
    job, message = worker.run("t.ok")
    done = worker.runner.run(message)
    assert done.status == JobStatus.COMPLETED and done.result == {"ok": True}
    assert worker.store.get(job.id, mark_gone=False).status == JobStatus.COMPLETED
    assert types.calls == [1]  # the handler ran once: its result was kept, not computed again
    assert worker.waits() == [1.0, 2.0]
    (reason,) = {extra["reason"] for event, extra in worker.observed if event == "outcome_unwritten"}
    assert "the table did not answer" in reason
    assert [event for event, _ in worker.observed][-1] == "completed"


@pytest.mark.parametrize("type_, status", [("t.fatal", JobStatus.FAILED), ("t.cancels", JobStatus.CANCELED)])
def test_a_failure_or_a_cancel_the_store_refused_lands_in_the_same_delivery(worker, types, type_, status):
    worker.refuse(status, 1)
    job, message = worker.run(type_)
    ended = worker.runner.run(message)
    assert ended.status == status and types.calls == [1]
    assert worker.store.get(job.id, mark_gone=False).status == status
    assert worker.waits() == [1.0]


def test_a_result_no_job_can_hold_fails_the_job_in_the_same_delivery_when_the_store_blips(worker, types):
    """A result the store cannot take (not JSON: a set) fails the job for good instead of
    completing it; that failure is the attempt's outcome as much as a completion is, so a store
    that does not answer it at first is waited for as for any outcome, not left to the lease to
    run the handler again only to return the same result."""

    @types.register("t.set", Empty, max_attempts=3)
    def returns_a_set(ctx, payload):
        types.calls.append(ctx.attempt)
        return {1, 2}

    worker.refuse(JobStatus.FAILED, 1)
    job, message = worker.run("t.set")
    ended = worker.runner.run(message)
    assert (ended.status, ended.error.code) == (JobStatus.FAILED, "result_not_serializable")
    assert worker.store.get(job.id, mark_gone=False).status == JobStatus.FAILED
    assert types.calls == [1] and worker.waits() == [1.0]


def test_a_store_that_does_not_answer_is_waited_for_no_longer_than_the_patience(worker, types):
    worker.refuse(JobStatus.COMPLETED, 1_000)
    job, message = worker.run("t.ok")
    started = worker.clock.monotonic()
    with pytest.raises(StoreUnavailableError):
        worker.runner.run(message)
    waits = worker.waits()
    assert waits[:5] == [1.0, 2.0, 4.0, 8.0, 8.0] and max(waits) == OUTCOME_RETRY_MAX_WAIT_S
    assert sum(waits) <= OUTCOME_RETRY_PATIENCE_S < sum(waits) + OUTCOME_RETRY_MAX_WAIT_S
    assert worker.clock.monotonic() - started == sum(waits)
    assert len(worker.tries) == len(waits) + 1
    assert worker.store.get(job.id, mark_gone=False).status == JobStatus.RUNNING  # its lease brings it back


def test_the_waits_end_before_the_margin_the_claim_left_the_invocation(worker, types):
    """A handler of a 1 s timeout: the invocation was claimed with its timeout and
    INVOCATION_MARGIN_S left, of which the batch keeps OUTCOME_RETRY_MARGIN_S to answer."""
    worker.refuse(JobStatus.COMPLETED, 1_000)
    _, message = worker.run("t.short")
    started = worker.clock.monotonic()
    with pytest.raises(StoreUnavailableError):
        worker.runner.run(message)
    assert worker.waits() == [1.0, 2.0]  # 4 s more would pass 1 + 10 - 5 s after the handler's start
    assert worker.clock.monotonic() - started <= 1 + INVOCATION_MARGIN_S - OUTCOME_RETRY_MARGIN_S


def test_a_try_that_falls_on_the_margins_end_exactly_is_still_made(worker, types):
    """The waits end "never past" the margin the claim left: a handler of a 2 s timeout leaves
    2 + INVOCATION_MARGIN_S - OUTCOME_RETRY_MARGIN_S = 7 s, and the waits of 1, 2 and 4 s reach it
    exactly, so the third retry is made (at the margin's end, not past it) rather than the
    completion given up on a wait early and the handler's run done again after its lease."""

    @types.register("t.two", Empty, timeout_s=2)
    def two(ctx, payload):
        return "done"

    worker.refuse(JobStatus.COMPLETED, 1_000)
    _, message = worker.run("t.two")
    started = worker.clock.monotonic()
    with pytest.raises(StoreUnavailableError):
        worker.runner.run(message)
    assert 2 + INVOCATION_MARGIN_S - OUTCOME_RETRY_MARGIN_S == 7
    assert worker.waits() == [1.0, 2.0, 4.0]
    assert worker.tries[-1] - started == 7


def test_a_write_that_landed_with_its_answer_lost_is_settled_by_the_message_coming_back(worker, types):
    """Written again, the completion finds the attempt no longer running: the worker cannot tell
    its own lost answer from a lapsed lease, so the delivery fails as it did before any retry and
    the message, back, finds the job completed and is acknowledged. The handler ran once."""
    worker.refuse(JobStatus.COMPLETED, 1, landed=True)
    job, message = worker.run("t.ok")
    with pytest.raises(StoreUnavailableError):
        worker.runner.run(message)
    assert worker.waits() == [1.0]
    stored = worker.store.get(job.id, mark_gone=False)
    assert stored.status == JobStatus.COMPLETED and stored.result == {"ok": True}
    again = worker.runner.run(message)
    assert again.status == JobStatus.COMPLETED and types.calls == [1]


def test_a_record_with_no_room_is_not_written_again_as_it_is(worker, types):
    refused = []

    def apply(job, expected, changes):
        refused.append(changes.fields.get("status"))
        raise RecordTooLargeError("no room")

    job, message = worker.run("t.ok")
    worker.store.apply = apply
    with pytest.raises(RecordTooLargeError):
        worker.runner.run(message)
    assert worker.waits() == []
