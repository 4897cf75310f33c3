"""A worker batch when the queue refuses some entries of a batch call (SQS answers each entry:
a stale receipt handle is refused, the others go through): the batch-mates' short leases, their
hand-back and the deletion of their originals each carry on with what went through and say
what did not. Driven through the in-memory queue's `refuse`."""
from __future__ import annotations

import pytest

from chalicelib.adapters.clocks import ManualClock
from chalicelib.adapters.memory import InMemoryJobQueue
from chalicelib.defaults import BATCH_MATE_LEASE_S
from chalicelib.observability import logger
from chalicelib.worker import batch

ARN = "arn:aws:sqs:us-east-1:123456789012:jobs-normal"


def record(n: int) -> dict:
    return {"messageId": f"m-{n}", "receiptHandle": f"handle-{n}", "body": f'{{"job_id": "job-{n}", "attempt": 1}}',
            "eventSourceARN": ARN, "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}}


@pytest.fixture
def warnings(monkeypatch) -> list[tuple[str, dict]]:
    """The worker's warnings from now on: (message, extra)."""
    said: list[tuple[str, dict]] = []
    monkeypatch.setattr(logger, "warning", lambda message, *args, extra=None, **kwargs: said.append(
        (message, extra or {})))
    return said


def held_up(queue: InMemoryJobQueue, mates: list[dict]) -> batch._WaitingMates:
    """`mates` waiting their turn behind a job that has now run BATCH_MATE_WAIT_S: the hand-back
    is done (or refused) by then."""
    clock = ManualClock()
    waiting = batch._WaitingMates(queue, mates, batch.BATCH_MATE_WAIT_S, clock)
    clock.advance(batch.BATCH_MATE_WAIT_S)
    return waiting


def test_batch_mates_whose_lease_the_queue_would_not_shorten_are_counted_and_the_others_shortened(warnings):
    queue = InMemoryJobQueue()
    queue.refuse.add("handle-2")
    batch._shorten_waits(queue, [record(1), record(2), record(3)])
    assert queue.visibility == {"handle-1": BATCH_MATE_LEASE_S, "handle-3": BATCH_MATE_LEASE_S}
    assert warnings == [("some batch-mates' visibility was not shortened", {"refused": 1})]


def test_batch_mates_whose_leases_were_all_shortened_are_not_warned_of(warnings):
    """The warning tells an operator that some batch-mates keep the queue's visibility timeout
    (a crash would strand them for 90 minutes): when the queue shortened every lease, it must
    not be said."""
    queue = InMemoryJobQueue()
    batch._shorten_waits(queue, [record(1), record(2)])
    assert queue.visibility == {"handle-1": BATCH_MATE_LEASE_S, "handle-2": BATCH_MATE_LEASE_S}
    assert warnings == []


def test_a_batch_mate_whose_copy_was_refused_runs_in_its_batch_and_only_the_sent_originals_go(warnings):
    """Of three batch-mates held up by a long job, the queue refuses the second's copy and the
    first's delete: the first and third are handed back (their turn in this batch is gone), the
    second keeps its turn, the third's original is deleted and the first's, left, is logged."""
    queue = InMemoryJobQueue()
    mates = [record(1), record(2), record(3)]
    queue.refuse |= {mates[1]["body"], "handle-1"}
    waiting = held_up(queue, mates)
    assert [waiting.take(m["messageId"]) for m in mates] == [False, True, False]
    assert queue.handed_back == [(ARN, mates[0]["body"], 1), (ARN, mates[2]["body"], 1)]
    assert queue.acknowledged == ["handle-3"]
    assert warnings == [("some handed-back batch-mates' originals were not deleted", {"undeleted": 1})]
    waiting.stop()


def test_a_hand_back_the_queue_took_whole_is_not_warned_of(warnings):
    """Every copy sent and every original deleted: nothing is left for an operator to look
    into, so nothing is said at warning level."""
    queue = InMemoryJobQueue()
    mates = [record(1), record(2)]
    waiting = held_up(queue, mates)
    assert [waiting.take(m["messageId"]) for m in mates] == [False, False]
    assert queue.acknowledged == ["handle-1", "handle-2"]
    assert warnings == []
    waiting.stop()


def test_a_hand_back_whose_deletes_the_queue_does_not_answer_still_hands_back_and_says_so(warnings, monkeypatch):
    """The copies went out but the originals' delete got no answer: the mates are still handed
    back (their copies will run them), and the warning says how many originals are left to come
    back after their short lease, each a duplicate its claim sees."""
    from chalicelib.domain.errors import QueueUnavailableError

    def unanswered(queue_arn, receipt_handles):
        raise QueueUnavailableError("the queue did not answer")

    queue = InMemoryJobQueue()
    monkeypatch.setattr(queue, "acknowledge_many", unanswered)
    mates = [record(1), record(2)]
    waiting = held_up(queue, mates)
    assert [waiting.take(m["messageId"]) for m in mates] == [False, False]
    assert queue.handed_back == [(ARN, mates[0]["body"], 1), (ARN, mates[1]["body"], 1)]
    assert warnings == [("could not delete the handed-back batch-mates' originals", {"records": 2})]
    waiting.stop()


def test_a_hand_back_whose_every_copy_the_queue_refused_leaves_every_mate_its_turn(warnings):
    """No copy was sent: every batch-mate keeps its turn in this batch, and no original is
    deleted (nor a delete asked for none)."""
    queue = InMemoryJobQueue()
    mates = [record(1), record(2)]
    queue.refuse |= {m["body"] for m in mates}
    waiting = held_up(queue, mates)
    assert [waiting.take(m["messageId"]) for m in mates] == [True, True]
    assert queue.handed_back == [] and queue.acknowledged == [] and warnings == []
    waiting.stop()


def test_a_deferred_delivery_whose_wait_the_queue_refuses_stays_deferred(warnings):
    """A claim deferred with a wait (another worker holds the job's lease) whose hold the queue
    refuses (a stale receipt handle) fails as deferred: the record comes back when its lease
    ends, and the refused hold is said."""
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from chalicelib.worker.runner import DeferredDelivery

    class Deferring:
        def run(self, message, *, time_left_s=None, hold=None):
            raise DeferredDelivery("another worker holds its lease", 30)

    queue = InMemoryJobQueue()
    queue.refuse.add("handle-1")
    services = batch.BatchServices(queue=queue, clock=ManualClock(), runner=Deferring,
                                   unreadable_ledger=lambda: None, redelivery_wait_s=lambda receives: 5)
    with pytest.raises(DeferredDelivery):
        batch.RecordRunner(services)(SQSRecord(record(1)))
    assert queue.visibility == {}
    assert warnings == [("could not hide the deferred delivery for its wait", {})]
