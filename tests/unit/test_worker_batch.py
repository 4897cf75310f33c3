"""A worker batch's timing and bookkeeping on the in-memory queue and a manual clock: when its
batch-mates' short lease is counted from, what a batch of one arms, and what a foreign
message's attributes count for. The batch's behaviour on SQS (moto) is
tests/functional/test_worker_batches.py."""
from __future__ import annotations

from typing import Optional

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.adapters.clocks import ManualClock
from chalicelib.adapters.memory import InMemoryJobQueue
from chalicelib.adapters.memory_events import InMemoryDeliveryLedger
from chalicelib.defaults import BATCH_MATE_LEASE_S, BATCH_MATE_WAIT_S, BATCH_TURN_MARGIN_S
from chalicelib.domain.errors import StoreUnavailableError
from chalicelib.worker import batch
from chalicelib.worker.runner import DeferredDelivery
from tests.unit.test_worker_batch_refusals import ARN, record, warnings  # noqa: F401  (a fixture)

LATE = BATCH_MATE_LEASE_S - BATCH_TURN_MARGIN_S + 1  # a batch-mate's turn this long after the start comes too late


class Runner:
    """A JobRunner that runs every message it is given (`ran`, by job id), each job in
    `seconds` taking that long on `clock`, the others no time."""

    def __init__(self, clock: Optional[ManualClock] = None, seconds: Optional[dict[str, float]] = None,
                 error: Optional[Exception] = None) -> None:
        """`error`: raised by every run instead (a store or queue that did not answer)."""
        self.ran: list[str] = []
        self._clock, self._seconds, self._error = clock, seconds or {}, error

    def run(self, message, *, time_left_s: Optional[float] = None, hold=None) -> Optional[float]:
        if self._error is not None:
            raise self._error
        self.ran.append(message.job_id)
        if message.job_id in self._seconds:
            self._clock.advance(self._seconds[message.job_id])
        return time_left_s


def services_on(clock: ManualClock, queue: Optional[InMemoryJobQueue] = None, runner: Optional[Runner] = None,
                ledger: Optional[InMemoryDeliveryLedger] = None) -> batch.BatchServices:
    """A batch's services on `clock`: the in-memory queue, `runner` (a fresh Runner if None),
    `ledger` for the messages that are no job messages."""
    runner = runner or Runner()
    return batch.BatchServices(queue=queue or InMemoryJobQueue(), clock=clock, runner=lambda: runner,
                               unreadable_ledger=lambda: ledger, redelivery_wait_s=lambda receives: 5)


def run_unreadable(queue: InMemoryJobQueue, ledger: InMemoryDeliveryLedger) -> None:
    """The worker's run of a delivery whose body is no job message (`not json`)."""
    batch.RecordRunner(services_on(ManualClock(), queue, ledger=ledger))(SQSRecord({**record(1), "body": "not json"}))


def run_batch(records: list[dict], services: batch.BatchServices, **kwargs) -> list[str]:
    """Run `records` as one batch, each in its turn; the message ids whose delivery was deferred."""
    deferred = []
    with batch.job_batch(records, services, time_left_s=lambda: None, **kwargs) as (ordered, run):
        for r in ordered:
            try:
                run(SQSRecord(r))
            except DeferredDelivery:
                deferred.append(r["messageId"])
    return deferred


def test_a_batch_given_no_start_counts_its_mates_short_lease_from_when_it_began():
    """Without the invocation's start, the batch reads its clock as it begins: a batch-mate
    whose turn comes at once is within its short lease and runs, however long the clock has
    run before."""
    clock, runner = ManualClock(start=1000.0), Runner()
    assert run_batch([record(1), record(2)], services_on(clock, runner=runner)) == []
    assert runner.ran == ["job-1", "job-2"]


def test_a_batch_counts_its_mates_short_lease_from_the_invocations_start():
    """The invocation began earlier than its batch (a fresh process builds its queue client
    first): a batch-mate's short lease was set by the receive before that, so its turn is
    counted from the start it is given, and one that comes too late by then is deferred
    untouched, not run where it may be running already."""
    clock, runner = ManualClock(), Runner()
    started = clock.monotonic()
    clock.advance(LATE)
    assert run_batch([record(1), record(2)], services_on(clock, runner=runner), started=started) == ["m-2"]
    assert runner.ran == ["job-1"]


def test_a_batch_mate_running_when_the_wait_ends_is_not_handed_back():
    """Only the batch-mates not started yet are handed back: one running long when the wait
    ends (or done by then) is neither sent again nor deleted, or its job would run twice."""
    clock, queue = ManualClock(), InMemoryJobQueue()
    runner = Runner(clock, {"job-2": BATCH_MATE_WAIT_S + 1})
    assert run_batch([record(1), record(2), record(3)], services_on(clock, queue, runner)) == []
    assert runner.ran == ["job-1", "job-2"]
    assert queue.handed_back == [(ARN, record(3)["body"], 1)] and queue.acknowledged == ["handle-3"]


def test_a_batch_whose_mates_leases_the_queue_does_not_shorten_still_runs_them():
    """The batch-mates keep the queue's visibility timeout then (the reconciler resends them if
    the process dies); the batch itself must not fail for it, or every record in it would come
    back, the first after 90 minutes."""
    queue, runner = InMemoryJobQueue(), Runner()
    queue.fail_sends = True
    assert run_batch([record(1), record(2)], services_on(ManualClock(), queue, runner)) == []
    assert runner.ran == ["job-1", "job-2"]


def test_a_parked_message_whose_mark_the_ledger_refuses_still_leaves_its_queue_answered_done(monkeypatch):
    """It is on the dead-letter queue: it must leave its jobs queue now whether or not the
    ledger took its mark. Failed instead, it would come back, find no mark and be parked a
    second time."""
    queue, ledger = InMemoryJobQueue(), InMemoryDeliveryLedger(ttl_s=3600)

    def refused(message_id):
        raise StoreUnavailableError("could not record the message parked")

    monkeypatch.setattr(ledger, "parked", refused)
    run_unreadable(queue, ledger)
    assert [parked.raw for parked in queue.parked("normal")] == ["not json"]
    assert queue.acknowledged == ["handle-1"]


def test_a_message_that_could_not_be_parked_comes_back_after_the_wait_its_deliveries_earned(warnings):
    """The dead-letter queue does not answer: the message that is no job message fails and
    comes back to be parked then, after the redelivery wait of its receives so far (the wait
    doubles), not a first delivery's."""
    from dataclasses import replace

    from chalicelib.domain.errors import QueueUnavailableError

    queue = InMemoryJobQueue()
    queue.fail_sends = True
    services = replace(services_on(ManualClock(), queue, ledger=InMemoryDeliveryLedger(ttl_s=3600)),
                       redelivery_wait_s=lambda receives: 10 * receives)
    third = {**record(1), "body": "not json", "attributes": {"ApproximateReceiveCount": "3"}}
    with pytest.raises(QueueUnavailableError):
        batch.RecordRunner(services)(SQSRecord(third))
    assert [(message, extra.get("retry_in_s")) for message, extra in warnings][0] == (
        "could not dead-letter a message that is no job message; retrying", 30)


def test_a_parked_message_its_queue_would_not_delete_is_left_to_the_batchs_answer(warnings):
    """Parked, its delete refused: the delivery still succeeds (the batch's answer deletes it)
    and the line says the delete did not go; failed, it would come back to be parked again."""
    queue = InMemoryJobQueue()
    queue.refuse = {"handle-1"}
    run_unreadable(queue, InMemoryDeliveryLedger(ttl_s=3600))
    assert [parked.raw for parked in queue.parked("normal")] == ["not json"] and queue.acknowledged == []
    assert [message for message, extra in warnings] == ["could not delete a dead-lettered message that is no job message"]


def test_a_job_that_ran_is_not_said_skipped(warnings):
    """The runner answers None only for a message nothing can run (its job does not exist):
    that is worth an operator's warning; a job it ran, answered with the time left, is not."""
    run = batch.RecordRunner(services_on(ManualClock()), time_left_s=lambda: 60.0)
    run(SQSRecord(record(1)))
    assert warnings == []


def test_a_delivery_that_failed_before_its_outcome_says_it_comes_back(warnings):
    """The store did not answer before the attempt's outcome was written: the line says the
    delivery comes back after its wait, not that the job was retried or failed (it was not)."""
    services = services_on(ManualClock(), runner=Runner(error=StoreUnavailableError("throttled")))
    with pytest.raises(StoreUnavailableError):
        batch.RecordRunner(services)(SQSRecord(record(1)))
    assert [(message, extra["retry_in_s"], extra["error"]) for message, extra in warnings] == [
        ("delivery failed; retrying", 5, "StoreUnavailableError: throttled")]


def test_a_failed_delivery_the_queue_would_not_hold_back_fails_as_itself_and_says_so(warnings):
    """The queue does not answer the shortened visibility either: the delivery fails with its
    own error (the batch reports it failed; it comes back after the queue's visibility timeout)
    and the lines say both."""
    queue = InMemoryJobQueue()
    queue.refuse = {"handle-1"}  # its visibility cannot be changed
    services = services_on(ManualClock(), queue, runner=Runner(error=StoreUnavailableError("throttled")))
    with pytest.raises(StoreUnavailableError):
        batch.RecordRunner(services)(SQSRecord(record(1)))
    assert [message for message, extra in warnings] == [
        "delivery failed; retrying", "could not shorten the failed delivery's visibility"]


def test_a_lease_extension_is_due_as_its_short_lease_ends_however_far_from_zero_the_clock_reads():
    """A monotonic clock reads what it has counted since some start (boot, for the system's):
    the extension comes when the short lease is about to end, not that reading's worth of
    seconds after the claim, by which time the message would have been delivered again."""
    holds: list[int] = []
    clock = ManualClock(start=10_000.0)
    lease = batch._LeaseExtension(holds.append, due_at=10_025.0, clock=clock)
    clock.advance(10)
    lease.schedule(300)  # claimed at 10 010: its attempt's lease ends at 10 310
    clock.advance(15)
    assert holds == [285]


@pytest.mark.parametrize("mates", [0, 1])
def test_a_batch_of_one_or_none_arms_no_hand_back(mates):
    """Only batch-mates are handed back: a batch of one record (or none) starts no timer and
    changes no visibility."""
    queue, clock = InMemoryJobQueue(), ManualClock()
    with batch.job_batch([record(n) for n in range(mates)], services_on(clock, queue), time_left_s=lambda: None):
        assert clock.armed == 0
    assert queue.visibility == {}


@pytest.mark.parametrize("handbacks", ["", "two", "-1", "1.5"])
def test_a_handbacks_attribute_that_is_no_count_counts_as_never_handed_back(handbacks):
    """The attribute is the hand-back's own, but any sender can set a message attribute of that
    name: one that is no count must not break the batch (every record of it would fail and come
    back, again and again), only count as none."""
    odd = {**record(1), "messageAttributes": {"handbacks": {"stringValue": handbacks, "dataType": "String"}}}
    assert batch._deliveries(odd) == 1
    assert batch._receives(SQSRecord(odd)) == 1


def test_a_message_that_is_no_job_message_is_parked_saying_why_it_could_not_be_read():
    """The operator looking at the dead-letter queue finds the body as it came and the reason
    no worker could run it, not a letter that says nothing."""
    queue, ledger = InMemoryJobQueue(), InMemoryDeliveryLedger(ttl_s=3600)
    run_unreadable(queue, ledger)
    assert [(parked.raw, parked.note) for parked in queue.parked("normal")] == [
        ("not json", "not a job message: 'not json'")]


def test_a_batch_mate_that_ends_within_its_short_lease_is_not_hidden_again_whatever_the_clock_reads():
    """The extension is due as the mate's short lease, counted from the batch's start, is about
    to end: on a clock that reads the process's uptime (not 0 at the batch's start), one that
    finished well within it still costs no hold, nor hides a finished delivery's message."""

    class Holding(Runner):
        """Holds each claimed attempt's message for its lease, as JobRunner does at the claim."""

        def run(self, message, *, time_left_s=None, hold=None):
            if hold is not None:
                hold(300)
            return super().run(message, time_left_s=time_left_s, hold=hold)

    clock, queue = ManualClock(start=1000.0), InMemoryJobQueue()
    runner = Holding(clock, {"job-2": BATCH_MATE_LEASE_S - BATCH_TURN_MARGIN_S - 1})
    assert run_batch([record(1), record(2)], services_on(clock, queue, runner)) == []
    assert runner.ran == ["job-1", "job-2"] and queue.visibility == {"handle-2": BATCH_MATE_LEASE_S}


def test_a_deferred_delivery_is_hidden_for_the_wait_it_asks_for_and_a_late_turn_for_none():
    """A job scheduled later (or held under another worker's lease) comes back when its wait is
    over, not at once, to be deferred again in a busy loop; a batch-mate whose turn came too
    late keeps the short lease it has, its message left as it is for the worker it may be
    running on."""

    class Deferring(Runner):
        def run(self, message, *, time_left_s=None, hold=None):
            raise DeferredDelivery("job is scheduled later", 30)

    queue = InMemoryJobQueue()
    with pytest.raises(DeferredDelivery):
        batch.RecordRunner(services_on(ManualClock(), queue, Deferring()))(SQSRecord(record(1)))
    assert queue.visibility == {"handle-1": 30}

    clock, queue = ManualClock(), InMemoryJobQueue()
    started = clock.monotonic()
    clock.advance(LATE)
    assert run_batch([record(1), record(2)], services_on(clock, queue), started=started) == ["m-2"]
    assert queue.visibility == {"handle-2": BATCH_MATE_LEASE_S}
