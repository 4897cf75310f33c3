"""An operator's delete of one dead letter (DELETE /api/system/dlq/letters/{message_id}) over the
in-memory queues: the letter an operator names is the one deleted, however SQS samples its
receives, a record that left its queue takes no later request to drop it, and a letter that is
not there costs no more than the looks for it."""
from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.adapters.memory_queues import InMemoryDeadLetterQueue, InMemoryJobQueue, InMemoryQueueOperations
from chalicelib.adapters.memory_stream import InMemoryParkedRecordDrops
from chalicelib.adapters.sqs_stream_failures import parked_body
from chalicelib.dead_letters import BATCH_DESCRIPTION, DELETED, DROP_REQUESTED, delete_dead_letter
from chalicelib.defaults import LETTER_DELETE_READS, MAX_DEAD_LETTER_BATCH, STREAM_FAILURE_QUEUE
from chalicelib.domain.errors import LetterNotFoundError, NotRedrivableError


class Sampled(InMemoryQueueOperations):
    """Dead-letter queues whose looks leave every letter out the first `missed` times, as an SQS
    receive (which asks a sample of its servers) may hand out none of a queue's few messages."""

    def __init__(self, missed: int = 0) -> None:
        self.dead = {name: InMemoryDeadLetterQueue() for name in (STREAM_FAILURE_QUEUE, "events")}
        super().__init__(InMemoryJobQueue(), {name: (queue, None) for name, queue in self.dead.items()})
        self.missed = missed
        self.looks = 0
        self.refuse = False
        self.deletes = 0

    def put(self, name: str, body: dict[str, Any]) -> str:
        self.dead[name].put(json.dumps(body))
        return self.dead[name].parked[-1].message_id

    def peek_dead_letters(self, priority: str, limit: int, hold_s: int = 0):
        self.looks += 1
        letters = super().peek_dead_letters(priority, limit, hold_s)
        return [] if self.looks <= self.missed else letters

    def delete_dead_letters(self, priority: str, letters) -> int:
        self.deletes += 1
        return 0 if self.refuse else super().delete_dead_letters(priority, letters)


class Drops(InMemoryParkedRecordDrops):
    """The parked records' entries, with what was asked of them (each an UpdateItem on AWS)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str, str]] = []

    def request(self, message_id: str) -> bool:
        self.asked.append(("request", message_id))
        return super().request(message_id)

    def removed(self, message_id: str) -> None:
        self.asked.append(("removed", message_id))
        super().removed(message_id)


# A parked record's body as the change-stream function parks it: the key the listing knows it by
# (PARKED_RECORD) is the one the adapter writes.
PARKED = {**json.loads(parked_body({"dynamodb": {"SequenceNumber": "300", "Keys": {}}})), "job_id": "j1"}


@pytest.mark.parametrize("missed", range(LETTER_DELETE_READS))
def test_a_letter_a_look_did_not_hand_out_is_deleted_by_a_later_look(missed):
    """A receive need not hand out every message of a queue: a letter no look of the first ones
    showed, and a later one does, is deleted, not answered 404 while it is still there."""
    queues = Sampled(missed)
    message_id = queues.put("events", {"note": "hand-made"})
    assert delete_dead_letter(queues, "events", message_id, Drops()) == DELETED
    assert queues.dead_letter_depth("events") == 0 and queues.looks == missed + 1


def test_a_letter_behind_many_others_is_found_by_one_look_of_up_to_a_hundred():
    """SQS hands out ten messages a receive: a look reads MAX_DEAD_LETTER_BATCH letters, so the
    last of a full listing's letters is deleted at the first look, not answered 404."""
    queues = Sampled()
    ids = [queues.put("events", {"note": f"hand-made {n}"}) for n in range(MAX_DEAD_LETTER_BATCH)]
    assert delete_dead_letter(queues, "events", ids[-1], Drops()) == DELETED
    assert queues.dead_letter_depth("events") == MAX_DEAD_LETTER_BATCH - 1 and queues.looks == 1


def test_a_letter_no_look_handed_out_is_not_found_and_stays():
    """LETTER_DELETE_READS looks and no more: a letter none of them showed is 404 (the answer
    says to list and try again), left where it is."""
    queues = Sampled(LETTER_DELETE_READS)
    message_id = queues.put("events", {"note": "hand-made"})
    with pytest.raises(LetterNotFoundError):
        delete_dead_letter(queues, "events", message_id, Drops())
    assert queues.dead_letter_depth("events") == 1 and queues.looks == LETTER_DELETE_READS


def test_a_parked_record_deleted_from_its_queue_takes_no_later_drop_request():
    """The reconciler took the parked record once and it is back on its queue: the operator's
    delete removes it there, and says so to the drops, so a second delete is 404 (it is gone),
    not a drop request kept for a record no pass will take again."""
    queues, drops = Sampled(), Drops()
    message_id = queues.put(STREAM_FAILURE_QUEUE, PARKED)
    drops.taken(message_id)
    assert delete_dead_letter(queues, STREAM_FAILURE_QUEUE, message_id, drops) == DELETED
    with pytest.raises(LetterNotFoundError):
        delete_dead_letter(queues, STREAM_FAILURE_QUEUE, message_id, drops)
    assert queues.dead_letter_depth(STREAM_FAILURE_QUEUE) == 0


@pytest.mark.parametrize("body", [PARKED, {"note": "hand-made"}])
def test_a_stream_failure_letter_is_deleted_where_no_drops_are_kept(body):
    """A stack without the drops' table (`drops` None) still deletes what is on the queue, and
    answers a letter that is not there 404, never a 500."""
    queues = Sampled()
    message_id = queues.put(STREAM_FAILURE_QUEUE, body)
    assert delete_dead_letter(queues, STREAM_FAILURE_QUEUE, message_id, None) == DELETED
    with pytest.raises(LetterNotFoundError):
        delete_dead_letter(queues, STREAM_FAILURE_QUEUE, message_id, None)


def test_a_body_naming_a_stream_batch_on_another_queue_is_the_operators_to_delete():
    """Only StreamFailureQueue's batch descriptions are the reconciler's: a body carrying the
    same key on another dead-letter queue is a foreign body like any other, deleted."""
    queues = Sampled()
    message_id = queues.put("events", {BATCH_DESCRIPTION: {"ShardId": "shard-0"}})
    assert delete_dead_letter(queues, "events", message_id, Drops()) == DELETED


def test_a_letter_not_found_on_another_queue_asks_nothing_of_the_drops():
    """Only a parked stream record can be dropped later: a 404 on any other queue costs its
    looks and no request of the drops' table."""
    queues, drops = Sampled(), Drops()
    missing = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(LetterNotFoundError):
        delete_dead_letter(queues, "events", missing, drops)
    assert drops.asked == []
    with pytest.raises(LetterNotFoundError):
        delete_dead_letter(queues, STREAM_FAILURE_QUEUE, missing, drops)
    assert drops.asked == [("request", missing)]


def test_only_a_parked_record_deleted_from_stream_failure_queue_is_told_to_the_drops():
    """The drops hold entries of parked stream records only: deleting a hand-made body there,
    or a body shaped like a parked record on another queue, writes nothing to their table."""
    queues, drops = Sampled(), Drops()
    for name, body in ((STREAM_FAILURE_QUEUE, {"note": "hand-made"}), ("events", PARKED)):
        assert delete_dead_letter(queues, name, queues.put(name, body), drops) == DELETED
    assert drops.asked == []
    parked = queues.put(STREAM_FAILURE_QUEUE, PARKED)
    assert delete_dead_letter(queues, STREAM_FAILURE_QUEUE, parked, drops) == DELETED
    assert drops.asked == [("removed", parked)]


def test_a_delete_sqs_refused_is_not_found_and_not_tried_again():
    """SQS refusing the delete of a letter a look showed (its receipt no longer good: the
    letter moved or was taken meanwhile) is 404 at once: the operator lists the queue again to
    see what it holds, rather than the route deleting whatever a later look shows."""
    queues = Sampled()
    queues.refuse = True
    message_id = queues.put("events", {"note": "hand-made"})
    with pytest.raises(LetterNotFoundError):
        delete_dead_letter(queues, "events", message_id, Drops())
    assert (queues.looks, queues.deletes) == (1, 1)


def test_a_parked_record_the_reconciler_holds_hidden_is_dropped_at_its_next_take():
    """SQS hands out no hidden message: a parked record the reconciler took is not found by any
    look, and its delete is kept as a request the reconciler carries out when it next takes it
    (DROP_REQUESTED), the record left on its queue meanwhile."""
    queues, drops = Sampled(LETTER_DELETE_READS), Drops()
    message_id = queues.put(STREAM_FAILURE_QUEUE, PARKED)
    drops.taken(message_id)
    assert delete_dead_letter(queues, STREAM_FAILURE_QUEUE, message_id, drops) == DROP_REQUESTED
    assert drops.asked == [("request", message_id)] and queues.dead_letter_depth(STREAM_FAILURE_QUEUE) == 1


def test_a_failed_stream_batchs_description_is_the_reconcilers_not_an_operators_to_delete():
    queues = Sampled()
    message_id = queues.put(STREAM_FAILURE_QUEUE, {BATCH_DESCRIPTION: {"shardId": "shard-0"}})
    with pytest.raises(NotRedrivableError, match="describes a failed stream batch"):
        delete_dead_letter(queues, STREAM_FAILURE_QUEUE, message_id, Drops())
    assert queues.dead_letter_depth(STREAM_FAILURE_QUEUE) == 1
