"""JobQueue and QueueOperations: what is sent shows on the priority's queue, what is parked on
its dead-letter queue, where operators peek at it and redrive it."""
from __future__ import annotations

import dataclasses
import json
import re

import pytest

from chalicelib.domain.errors import InvalidRequestError, NotRedrivableError, QueueUnavailableError
from chalicelib.ports import JobMessage
from tests.contract.conftest import PRIORITIES


def depth(adapters, priority: str) -> dict[str, int]:
    operations = adapters.queue_operations
    return {**operations.queue_depth(priority), "dead_lettered": operations.dead_letter_depth(priority)}


def test_sent_messages_are_on_their_prioritys_queue_delayed_ones_delayed(adapters):
    assert adapters.queue_operations.dead_letter_queues() == list(PRIORITIES)
    adapters.queue.send(JobMessage("job-1", 1), priority="high")
    adapters.queue.send(JobMessage("job-2", 1), priority="high", delay_seconds=60)
    adapters.queue.send(JobMessage("job-3", 2), priority="low")
    assert depth(adapters, "high") == {"visible": 1, "in_flight": 0, "delayed": 1, "dead_lettered": 0}
    assert depth(adapters, "low")["visible"] == 1 and depth(adapters, "normal")["visible"] == 0


def test_a_priority_without_its_own_queue_goes_to_normal(adapters):
    adapters.queue.send(JobMessage("job-1", 1), priority="urgent")
    assert depth(adapters, "normal")["visible"] == 1


def test_a_delay_past_the_queues_limit_is_refused(adapters):
    for delay in (-1, 901):
        with pytest.raises(InvalidRequestError):
            adapters.queue.send(JobMessage("job-1", 1), priority="normal", delay_seconds=delay)
    assert depth(adapters, "normal") == {"visible": 0, "in_flight": 0, "delayed": 0, "dead_lettered": 0}


def test_dead_letters_are_peeked_without_being_taken_then_redriven(adapters):
    reason = {"code": "boom", "message": "it broke"}
    adapters.queue.dead_letter(JobMessage("job-1", 3), priority="low", reason=reason)
    adapters.queue.dead_letter(JobMessage("job-2", 3), priority="low", reason=reason)
    assert depth(adapters, "low")["dead_lettered"] == 2 and depth(adapters, "high")["dead_lettered"] == 0
    peeked = adapters.queue_operations.peek_dead_letters("low", 10)
    assert sorted(m.body["job_id"] for m in peeked) == ["job-1", "job-2"]
    assert all(m.body == {"job_id": m.body["job_id"], "attempt": 3, "reason": reason} for m in peeked)
    assert all(m.message_id for m in peeked)
    # Every time an answer shows is written one way: UTC, milliseconds, `Z` (domain isoformat).
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", m.sent_at) for m in peeked), \
        [m.sent_at for m in peeked]
    assert len(adapters.queue_operations.peek_dead_letters("low", 1)) == 1
    assert depth(adapters, "low")["dead_lettered"] == 2  # a peek takes nothing
    assert adapters.queue_operations.redrive("low", 10) == {"moved": 2, "failed": 0}
    assert depth(adapters, "low") == {"visible": 2, "in_flight": 0, "delayed": 0, "dead_lettered": 0}
    assert adapters.queue_operations.peek_dead_letters("low", 10) == []
    assert adapters.queue_operations.redrive("low", 10) == {"moved": 0, "failed": 0}


def test_a_redrive_moves_up_to_its_limit_past_a_batch_of_ten(adapters):
    """SQS sends and deletes ten messages a request: a redrive of more moves every one it took,
    and no more than its limit."""
    for n in range(25):
        adapters.queue.dead_letter(JobMessage(f"job-{n}", 3), priority="low", reason={})
    assert adapters.queue_operations.redrive("low", 12) == {"moved": 12, "failed": 0}
    assert depth(adapters, "low") == {"visible": 12, "in_flight": 0, "delayed": 0, "dead_lettered": 13}
    assert adapters.queue_operations.redrive("low", 20) == {"moved": 13, "failed": 0}
    assert depth(adapters, "low") == {"visible": 25, "in_flight": 0, "delayed": 0, "dead_lettered": 0}


def test_peeked_dead_letters_are_deleted_as_the_peek_returned_them(adapters):
    """The reconciler deletes the letters of jobs that no longer exist: those named go, the
    others stay; a letter already gone is not counted."""
    for job_id in ("job-1", "job-2", "job-3"):
        adapters.queue.dead_letter(JobMessage(job_id, 3), priority="low", reason={})
    peeked = {m.body["job_id"]: m for m in adapters.queue_operations.peek_dead_letters("low", 10)}
    operations = adapters.queue_operations
    assert operations.delete_dead_letters("low", [peeked["job-1"], peeked["job-3"]]) == 2
    assert [m.body["job_id"] for m in operations.peek_dead_letters("low", 10)] == ["job-2"]
    assert depth(adapters, "low")["dead_lettered"] == 1
    assert operations.delete_dead_letters("low", []) == 0
    # a receipt SQS does not take (stale, made up) deletes nothing and is not counted
    made_up = dataclasses.replace(peeked["job-2"], receipt="not-a-receipt")
    assert operations.delete_dead_letters("low", [made_up]) == 0
    # nor does a letter without a receipt (not one a peek returned): skipped, not an error
    assert operations.delete_dead_letters("low", [dataclasses.replace(peeked["job-2"], receipt=None)]) == 0
    assert depth(adapters, "low")["dead_lettered"] == 1


def test_a_dead_letter_received_and_not_yet_deleted_is_still_counted(adapters):
    """A letter someone is looking at (received, hidden for a while) is still on its queue:
    the dead-letter depth counts it with the visible ones."""
    adapters.queue.dead_letter(JobMessage("job-1", 3), priority="low", reason={})
    adapters.queue.dead_letter(JobMessage("job-2", 3), priority="low", reason={})
    if adapters.kind == "aws":
        import boto3

        sqs = boto3.client("sqs")
        url = sqs.get_queue_url(QueueName="jobs-low-dlq")["QueueUrl"]
        assert len(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)["Messages"]) == 1
    assert depth(adapters, "low")["dead_lettered"] == 2


def test_a_body_that_is_no_job_message_is_parked_as_it_came_and_never_redriven(adapters):
    adapters.queue.dead_letter_body("not json", priority="high", reason="not a job message")
    adapters.queue.dead_letter_body('{"detail": "from another system"}', priority="high", reason="not a job message")
    assert depth(adapters, "high")["dead_lettered"] == 2 and depth(adapters, "normal")["dead_lettered"] == 0
    peeked = adapters.queue_operations.peek_dead_letters("high", 10)
    assert sorted(map(str, (m.body for m in peeked))) == sorted(map(str, (
        {"raw": "not json"}, {"detail": "from another system"})))
    assert [m.reason for m in peeked] == ["not a job message"] * 2  # why, for the operator
    # no worker could take them: a redrive leaves them for an operator
    assert adapters.queue_operations.redrive("high", 10) == {"moved": 0, "failed": 2}
    assert depth(adapters, "high")["visible"] == 0


def test_letters_a_redrive_cannot_move_are_listed_again_at_once(adapters):
    """A redrive receives what it moves; a letter it leaves (no worker could take it) used to keep
    the receive's visibility timeout on SQS and vanish from the listing for 30 s, the DLQ's
    depth still counting it: it is put back visible at once, as a peek does."""
    adapters.queue.dead_letter_body("not json", priority="high", reason="not a job message")
    adapters.queue.dead_letter(JobMessage("job-1", 3), priority="high", reason={})
    assert adapters.queue_operations.redrive("high", 10) == {"moved": 1, "failed": 1}
    assert [m.body for m in adapters.queue_operations.peek_dead_letters("high", 10)] == [{"raw": "not json"}]
    assert adapters.queue_operations.redrive("high", 10) == {"moved": 0, "failed": 1}


def test_operations_refuse_an_unknown_priority(adapters):
    with pytest.raises(InvalidRequestError):
        adapters.queue_operations.peek_dead_letters("urgent", 10)
    with pytest.raises(InvalidRequestError):
        adapters.queue_operations.redrive("urgent", 10)
    with pytest.raises(InvalidRequestError):
        adapters.queue_operations.queue_depth("urgent")
    with pytest.raises(InvalidRequestError):
        adapters.queue_operations.dead_letter_depth("urgent")


def test_health_has_one_entry_per_queue_and_dead_letter_queue(adapters):
    adapters.queue.send(JobMessage("job-1", 1), priority="high")
    adapters.queue.dead_letter(JobMessage("job-2", 3), priority="low", reason={})
    checks = adapters.queue_operations.health()
    assert sorted((c["priority"], c["kind"]) for c in checks) == sorted(
        (p, kind) for p in PRIORITIES for kind in ("queue", "dlq")
    )
    assert all(c["ok"] and c["name"] for c in checks)
    (high,) = [c for c in checks if c["priority"] == "high" and c["kind"] == "queue"]
    assert high["visible"] == 1
    (low_dlq,) = [c for c in checks if c["priority"] == "low" and c["kind"] == "dlq"]
    assert low_dlq["visible"] == 1


def test_received_messages_are_shown_again_ten_to_a_request(adapters):
    for n in range(12):
        adapters.queue.send(JobMessage(f"job-{n}", 1), priority="normal")
    if adapters.receive is None:  # the in-memory queue hands out no receipt handles: it records them
        handles = [f"handle-{n}" for n in range(12)]
    else:
        handles = []
        while len(handles) < 12:
            handles += [m["ReceiptHandle"] for m in adapters.receive("normal")]
        assert depth(adapters, "normal")["in_flight"] == 12
    arn = "arn:aws:sqs:us-east-1:123456789012:jobs-normal"
    assert adapters.queue.set_visibility_many(arn, handles, 0) == 0
    if adapters.receive is None:
        assert [adapters.queue.visibility[h] for h in handles] == [0] * 12
    else:
        assert depth(adapters, "normal")["visible"] == 12


def test_an_acknowledged_message_leaves_its_queue_before_its_batch_answers(adapters):
    adapters.queue.send(JobMessage("job-1", 1), priority="normal")
    arn = "arn:aws:sqs:us-east-1:123456789012:jobs-normal"
    if adapters.receive is None:  # the in-memory queue hands out no receipt handles: it records them
        adapters.queue.acknowledge(arn, "handle-1")
        assert adapters.queue.acknowledged == ["handle-1"]
        return
    (received,) = adapters.receive("normal")
    adapters.queue.acknowledge(arn, received["ReceiptHandle"])
    assert depth(adapters, "normal") == {"visible": 0, "in_flight": 0, "delayed": 0, "dead_lettered": 0}


def test_received_messages_are_acknowledged_ten_to_a_request(adapters):
    """The originals of a batch's handed-back messages leave their queue at once, in one request
    per ten, before the batch answers."""
    for n in range(12):
        adapters.queue.send(JobMessage(f"job-{n}", 1), priority="normal")
    arn = "arn:aws:sqs:us-east-1:123456789012:jobs-normal"
    if adapters.receive is None:  # the in-memory queue hands out no receipt handles: it records them
        handles = [f"handle-{n}" for n in range(12)]
        assert adapters.queue.acknowledge_many(arn, handles) == 0
        assert adapters.queue.acknowledged == handles
        return
    handles = []
    while len(handles) < 12:
        handles += [m["ReceiptHandle"] for m in adapters.receive("normal")]
    assert adapters.queue.acknowledge_many(arn, handles) == 0
    assert depth(adapters, "normal") == {"visible": 0, "in_flight": 0, "delayed": 0, "dead_lettered": 0}


def test_a_message_handed_back_is_on_its_queue_again_as_a_new_message_with_its_count(adapters):
    """A worker batch hands back the batch-mates a long job holds up: each is sent again, a
    fresh message (one receive, however often the original was received) that carries the count
    it is given (the deliveries it replaces); the worker deletes the original (acknowledge_many)."""
    from chalicelib.ports import HANDBACKS_ATTRIBUTE

    arn = "arn:aws:sqs:us-east-1:123456789012:jobs-normal"
    bodies = [('{"job_id": "job-1", "attempt": 1}', 1), ('{"job_id": "job-2", "attempt": 2}', 3)]
    if adapters.receive is None:
        assert adapters.queue.hand_back(arn, bodies) == set()
        assert adapters.queue.handed_back == [(arn, body, n) for body, n in bodies]
        return
    adapters.queue.send(JobMessage("job-1", 1), priority="normal")
    adapters.receive("normal")  # the original, in flight
    assert adapters.queue.hand_back(arn, bodies) == set()
    copies = sorted(adapters.receive("normal"), key=lambda m: m["Body"])
    assert [(m["Body"], int(m["MessageAttributes"][HANDBACKS_ATTRIBUTE]["StringValue"])) for m in copies] == bodies
    assert [m["Attributes"]["ApproximateReceiveCount"] for m in copies] == ["1", "1"]
    assert depth(adapters, "normal")["in_flight"] == 3


def test_a_hold_past_what_sqs_takes_hides_the_message_as_long_as_it_may(adapters):
    """SQS hides a received message at most 12 hours from its receive, in all: a hold asked for
    longer (a redriven message of a job scheduled days ahead) is cut to SQS_MAX_HOLD_S, which a
    hold set within the invocation that received it stays inside. 12 hours from the hold itself
    is past that limit, and SQS refuses the whole call."""
    from chalicelib.defaults import SQS_MAX_HOLD_S

    adapters.queue.send(JobMessage("job-1", 1), priority="normal")
    arn = "arn:aws:sqs:us-east-1:123456789012:jobs-normal"
    if adapters.receive is None:
        handles = ["handle-1", "handle-2"]
    else:
        adapters.queue.send(JobMessage("job-2", 1), priority="normal")
        handles = []
        while len(handles) < 2:
            handles += [m["ReceiptHandle"] for m in adapters.receive("normal")]
    adapters.queue.set_visibility(arn, handles[0], 2 * 24 * 3600)
    assert adapters.queue.set_visibility_many(arn, handles[1:], 2 * 24 * 3600) == 0
    if adapters.receive is None:
        assert [adapters.queue.visibility[h] for h in handles] == [SQS_MAX_HOLD_S] * 2
    else:
        assert depth(adapters, "normal") == {"visible": 0, "in_flight": 2, "delayed": 0, "dead_lettered": 0}
    assert 3600 <= 12 * 3600 - SQS_MAX_HOLD_S  # room for the invocation that received it


# A receipt handle SQS refuses (an expired one, or one it never gave out): SQS tells it itself,
# the in-memory queue is told (`refuse`).
STALE = "handle-stale"


def handles_with_a_stale_one(adapters, n: int) -> list[str]:
    """The receipt handles of `n` messages received from `normal`, a stale one second."""
    for i in range(n):
        adapters.queue.send(JobMessage(f"job-{i}", 1), priority="normal")
    if adapters.receive is None:
        adapters.queue.refuse.add(STALE)
        handles = [f"handle-{i}" for i in range(n)]
    else:
        handles = []
        while len(handles) < n:
            handles += [m["ReceiptHandle"] for m in adapters.receive("normal")]
    return [handles[0], STALE, *handles[1:]]


def test_a_visibility_change_refused_for_some_messages_counts_them_and_changes_the_others(adapters):
    """The worker shortens its batch-mates' leases in one call and logs how many it could not:
    SQS refuses an entry on its own (a stale receipt handle) and changes the rest."""
    handles = handles_with_a_stale_one(adapters, 2)
    arn = "arn:aws:sqs:us-east-1:123456789012:jobs-normal"
    assert adapters.queue.set_visibility_many(arn, handles, 0) == 1
    if adapters.receive is None:
        assert adapters.queue.visibility == {"handle-0": 0, "handle-1": 0}
    else:
        assert depth(adapters, "normal")["visible"] == 2


def test_an_acknowledgement_refused_for_some_messages_counts_them_and_deletes_the_others(adapters):
    """The worker deletes the originals of the batch-mates it handed back in one call and logs
    how many stayed: SQS refuses an entry on its own and deletes the rest."""
    handles = handles_with_a_stale_one(adapters, 2)
    arn = "arn:aws:sqs:us-east-1:123456789012:jobs-normal"
    assert adapters.queue.acknowledge_many(arn, handles) == 1
    if adapters.receive is None:
        assert adapters.queue.acknowledged == ["handle-0", "handle-1"]
    else:
        assert depth(adapters, "normal") == {"visible": 0, "in_flight": 0, "delayed": 0, "dead_lettered": 0}


class RefusesBodies:
    """An SQS client whose SendMessageBatch refuses the entries with one of `bodies`, as SQS
    answers an entry it refuses (under `Failed`), and sends the others. Other calls pass through."""

    def __init__(self, client, bodies: set[str]) -> None:
        self._client = client
        self._bodies = bodies

    def send_message_batch(self, *, QueueUrl, Entries):  # noqa: N803 (boto3's names)
        kept = [e for e in Entries if e["MessageBody"] not in self._bodies]
        sent = self._client.send_message_batch(QueueUrl=QueueUrl, Entries=kept) if kept else {}
        refused = [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "refused"}
                   for e in Entries if e["MessageBody"] in self._bodies]
        return {"Successful": sent.get("Successful", []), "Failed": [*sent.get("Failed", []), *refused]}

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.mark.parametrize("count, refused", [(3, {1}), (12, {1, 11})])
def test_a_hand_back_refused_for_some_messages_names_their_positions_and_sends_the_others(adapters, count, refused):
    """The worker runs a batch-mate whose copy was refused in its own batch, and answers the
    others as done: which were not sent is the answer it relies on. A batch of more than ten
    goes in requests of ten: an entry refused in the second request is named by its place in
    the whole batch, and the first request's refusals are kept."""
    arn = "arn:aws:sqs:us-east-1:123456789012:jobs-normal"
    bodies = [(f'{{"job_id": "job-{i}", "attempt": 1}}', 1) for i in range(count)]
    refused_bodies = {bodies[i][0] for i in refused}
    if adapters.receive is None:
        queue = adapters.queue
        queue.refuse |= refused_bodies
    else:
        from chalicelib.adapters.sqs import SqsJobQueue

        plain = adapters.queue
        queue = SqsJobQueue(RefusesBodies(plain._sqs, refused_bodies), plain._urls, plain._dead)
    assert queue.hand_back(arn, bodies) == refused
    sent = [(body, n) for i, (body, n) in enumerate(bodies) if i not in refused]
    if adapters.receive is None:
        assert queue.handed_back == [(arn, body, n) for body, n in sent]
    else:
        received: list[str] = []
        for _ in range(5):
            received += [m["Body"] for m in adapters.receive("normal")]
        assert sorted(received) == sorted(body for body, _ in sent)


OTHERS = ("erp_webhook", "event_delivery", "stream_failure")


@pytest.fixture
def stack_dead_letters(adapters):
    """The stack's other dead-letter queues beside the jobs ones, as the composition root wires
    them: erp_webhook redriven to its subscriber's queue, event_delivery each to the queue its
    TARGET_ARN names (erp-webhook only), stream_failure never. Yields (operations,
    park(name, body, reason=None, target_arn=None, error=None), arrived(queue name) -> bodies;
    `error` (ERROR_CODE, ERROR_MESSAGE) as EventBridge gives them)."""
    if adapters.kind == "memory":
        from chalicelib.adapters.memory import InMemoryDeadLetterQueue, InMemoryQueueOperations

        dead = {name: InMemoryDeadLetterQueue() for name in OTHERS}
        webhook: list[str] = []
        operations = InMemoryQueueOperations(
            adapters.queue, {"erp_webhook": (dead["erp_webhook"], webhook), "event_delivery": (dead["event_delivery"], None),
                             "stream_failure": (dead["stream_failure"], None)},
            targeted={"event_delivery": {"erp-webhook": webhook}})

        def park(name, body, reason=None, target_arn=None, error=None):
            dead[name].park(body, reason) if reason else dead[name].put(body, target_arn=target_arn, error=error)

        yield operations, park, lambda queue: list({"erp-webhook": webhook}[queue])
        return
    import boto3

    from chalicelib.adapters.sqs_operations import SqsQueueOperations

    sqs = boto3.client("sqs")
    url = {name: sqs.create_queue(QueueName=name)["QueueUrl"]
           for name in ("erp-webhook", "erp-webhook-dlq", "event-delivery-dlq", "stream-failures")}
    operations = SqsQueueOperations(
        sqs, {p: sqs.get_queue_url(QueueName=f"jobs-{p}")["QueueUrl"] for p in PRIORITIES},
        {p: sqs.get_queue_url(QueueName=f"jobs-{p}-dlq")["QueueUrl"] for p in PRIORITIES},
        {"erp_webhook": (url["erp-webhook-dlq"], url["erp-webhook"]), "event_delivery": (url["event-delivery-dlq"], None),
         "stream_failure": (url["stream-failures"], None)},
        targeted={"event_delivery": [url["erp-webhook"]]})
    dead_url = {"erp_webhook": url["erp-webhook-dlq"], "event_delivery": url["event-delivery-dlq"],
                "stream_failure": url["stream-failures"]}

    def park(name, body, reason=None, target_arn=None, error=None):
        code, message = error or (None, None)
        attributes = {"reason": reason, "TARGET_ARN": target_arn, "ERROR_CODE": code, "ERROR_MESSAGE": message}
        sqs.send_message(QueueUrl=dead_url[name], MessageBody=body, MessageAttributes={
            k: {"DataType": "String", "StringValue": v} for k, v in attributes.items() if v})

    def arrived(queue):
        messages = sqs.receive_message(QueueUrl=url[queue], MaxNumberOfMessages=10).get("Messages", [])
        return [m["Body"] for m in messages]

    yield operations, park, arrived


def test_every_dead_letter_queue_of_the_stack_is_listed_the_jobs_ones_first(stack_dead_letters):
    """The operators' listing, stats and redrive-all walk this list: a DLQ not in it is never seen."""
    operations, _, _ = stack_dead_letters
    assert operations.dead_letter_queues() == [*PRIORITIES, *OTHERS]
    assert [operations.dead_letter_depth(name) for name in OTHERS] == [0, 0, 0]


def test_a_subscribers_dead_letters_are_read_with_their_reason_and_redriven_to_its_queue_as_they_came(
        stack_dead_letters):
    operations, park, arrived = stack_dead_letters
    bodies = ['{"detail": {"event_id": "e-1"}}', '{"detail": {"event_id": "e-2"}}']
    for body in bodies:
        park("erp_webhook", body, reason="HTTP 503")
    assert operations.dead_letter_depth("erp_webhook") == 2
    peeked = operations.peek_dead_letters("erp_webhook", 10)
    assert sorted((json.dumps(m.body), m.reason) for m in peeked) == [(b, "HTTP 503") for b in bodies]
    assert operations.redrive("erp_webhook", 1) == {"moved": 1, "failed": 0}  # no more than asked
    assert operations.dead_letter_depth("erp_webhook") == 1
    assert operations.redrive("erp_webhook", 10) == {"moved": 1, "failed": 0}
    assert sorted(arrived("erp-webhook")) == bodies
    assert operations.dead_letter_depth("erp_webhook") == 0


def test_a_subscribers_letter_that_is_no_event_stays_and_is_listed_again_at_once(stack_dead_letters):
    """No subscriber can take it: sent back, it would fail every delivery until parked again."""
    operations, park, arrived = stack_dead_letters
    ours = '{"detail": {"event_id": "e-1"}}'
    for body in (ours, "hand-made", '{"detail": {"no": "event id"}}', "[1, 2]"):
        park("erp_webhook", body)
    park("event_delivery", "hand-made", target_arn="arn:aws:sqs:us-east-1:123456789012:erp-webhook")
    assert operations.redrive("erp_webhook", 10) == {"moved": 1, "failed": 3}
    assert operations.redrive("event_delivery", 10) == {"moved": 0, "failed": 1}
    assert arrived("erp-webhook") == [ours]
    assert sorted(json.dumps(m.body) for m in operations.peek_dead_letters("erp_webhook", 10)) == sorted(
        ['{"detail": {"no": "event id"}}', '{"raw": "hand-made"}', '{"raw": "[1, 2]"}'])


def test_a_dead_letter_queue_of_failure_descriptions_is_read_and_deleted_but_never_redriven(stack_dead_letters):
    """The stream's failed batches are descriptions the reconciler replays, not messages: the
    API answers a redrive of them 409 `not_redrivable`, and a redrive of every queue skips them."""
    operations, park, _ = stack_dead_letters
    park("stream_failure", '{"DDBStreamBatchInfo": {"shardId": "shard-0"}}')
    with pytest.raises(NotRedrivableError) as raised:
        operations.redrive("stream_failure", 10)
    assert (raised.value.code, raised.value.details) == ("not_redrivable", {"queue": "stream_failure"})
    assert raised.value.message == ("messages on the stream_failure dead-letter queue cannot be sent again as "
                                    "they are; see docs/reliability.md")
    (letter,) = operations.peek_dead_letters("stream_failure", 10)
    assert (letter.body, letter.reason) == ({"DDBStreamBatchInfo": {"shardId": "shard-0"}}, None)
    assert operations.delete_dead_letters("stream_failure", [letter]) == 1
    assert operations.dead_letter_depth("stream_failure") == 0


def test_an_undelivered_event_goes_back_to_the_queue_it_names_and_one_naming_no_queue_of_the_stack_stays(
        stack_dead_letters):
    operations, park, arrived = stack_dead_letters
    ours = '{"detail": {"event_id": "e-1"}}'
    theirs = '{"detail": {"event_id": "e-2"}}'
    park("event_delivery", ours, target_arn="arn:aws:sqs:us-east-1:123456789012:erp-webhook")
    park("event_delivery", theirs, target_arn="arn:aws:sqs:us-east-1:123456789012:another-stacks-queue")
    # a function's, not a queue's, though its name is the queue's
    to_function = '{"detail": {"event_id": "e-3"}}'
    park("event_delivery", to_function, target_arn="arn:aws:lambda:us-east-1:123456789012:function:erp-webhook")
    assert operations.redrive("event_delivery", 10) == {"moved": 1, "failed": 2}
    assert arrived("erp-webhook") == [ours]
    # left for an operator, and listed again at once
    left = [m.body for m in operations.peek_dead_letters("event_delivery", 10)]
    assert sorted(left, key=str) == sorted([json.loads(theirs), json.loads(to_function)], key=str)


def test_an_undelivered_events_letter_says_where_it_was_going_and_what_eventbridge_said(stack_dead_letters):
    """EventBridge parks an event it could not deliver with the target it was for and why
    (TARGET_ARN, ERROR_CODE, ERROR_MESSAGE): the letter's reason says both, or an operator could
    not tell which subscriber missed it, nor why (a queue policy, a deleted queue)."""
    operations, park, _ = stack_dead_letters
    target = "arn:aws:sqs:us-east-1:123456789012:erp-webhook"
    park("event_delivery", '{"detail": {"event_id": "e-1"}}', target_arn=target,
         error=("SDK_CLIENT_ERROR", "Failed to send message to the queue"))
    park("event_delivery", '{"detail": {"event_id": "e-2"}}', target_arn=target)  # no error given
    park("event_delivery", '{"detail": {"event_id": "e-3"}}')  # nor a target
    reasons = {m.body["detail"]["event_id"]: m.reason for m in operations.peek_dead_letters("event_delivery", 10)}
    assert reasons == {
        "e-1": f"EventBridge could not deliver it to {target}: SDK_CLIENT_ERROR: Failed to send message to the queue",
        "e-2": f"EventBridge could not deliver it to {target}", "e-3": None}


def test_a_dead_letter_queue_the_stack_does_not_have_is_refused_naming_those_it_has(stack_dead_letters):
    operations, _, _ = stack_dead_letters
    for call in (operations.redrive, operations.peek_dead_letters):
        with pytest.raises(InvalidRequestError, match="^queue must be one of high, normal, low, erp_webhook, "
                                                      "event_delivery, stream_failure$"):
            call("erp_outbound", 10)
    with pytest.raises(InvalidRequestError, match="^priority must be one of high, normal, low$"):
        operations.queue_depth("erp_webhook")  # the other DLQs have no jobs queue to count


def test_a_single_visibility_change_or_acknowledgement_sqs_refuses_is_an_error(adapters):
    """One message's hold or delete that SQS refuses (a stale receipt handle) raises
    QueueUnavailableError, as the batch calls count it: the caller logs it and the message
    comes back when its lease ends."""
    handles = handles_with_a_stale_one(adapters, 1)
    arn = "arn:aws:sqs:us-east-1:123456789012:jobs-normal"
    with pytest.raises(QueueUnavailableError):
        adapters.queue.set_visibility(arn, STALE, 0)
    with pytest.raises(QueueUnavailableError):
        adapters.queue.acknowledge(arn, STALE)
    adapters.queue.set_visibility(arn, handles[0], 0)
    adapters.queue.acknowledge(arn, handles[0])


def test_the_longest_delay_sqs_takes_is_taken(adapters):
    """SQS delays a message at most 15 minutes (SQS_MAX_DELAY_S): that delay itself is taken."""
    from chalicelib.defaults import SQS_MAX_DELAY_S

    adapters.queue.send(JobMessage("job-1", 1), priority="normal", delay_seconds=SQS_MAX_DELAY_S)
    assert depth(adapters, "normal") == {"visible": 0, "in_flight": 0, "delayed": 1, "dead_lettered": 0}


class RecordsHolds:
    """An SQS client that notes the VisibilityTimeout each receipt handle is given, and passes
    every call through."""

    def __init__(self, client) -> None:
        self._client = client
        self.holds: dict[str, int] = {}

    def change_message_visibility(self, **request):
        self.holds[request["ReceiptHandle"]] = request["VisibilityTimeout"]
        return self._client.change_message_visibility(**request)

    def change_message_visibility_batch(self, **request):
        self.holds.update({e["ReceiptHandle"]: e["VisibilityTimeout"] for e in request["Entries"]})
        return self._client.change_message_visibility_batch(**request)

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.mark.parametrize("asked, given", [(-30, 0), (0, 0), (1, 1), (2 * 24 * 3600, "max")])
def test_a_hold_is_kept_between_none_and_the_longest_sqs_takes(adapters, asked, given):
    """A hold worked out from a time already past (a late invocation) shows the message again at
    once; one past SQS_MAX_HOLD_S is cut to it; one within is given as asked: on one message as
    on many."""
    from chalicelib.defaults import SQS_MAX_HOLD_S

    given = SQS_MAX_HOLD_S if given == "max" else given
    arn = "arn:aws:sqs:us-east-1:123456789012:jobs-normal"
    if adapters.receive is None:
        queue, handles = adapters.queue, ["handle-1", "handle-2"]
        holds = queue.visibility
    else:
        from chalicelib.adapters.sqs import SqsJobQueue

        for n in range(2):
            adapters.queue.send(JobMessage(f"job-{n}", 1), priority="normal")
        handles = []
        while len(handles) < 2:
            handles += [m["ReceiptHandle"] for m in adapters.receive("normal")]
        plain = adapters.queue
        client = RecordsHolds(plain._sqs)
        queue, holds = SqsJobQueue(client, plain._urls, plain._dead), client.holds
    queue.set_visibility(arn, handles[0], asked)
    assert queue.set_visibility_many(arn, handles[1:], asked) == 0
    assert [holds[h] for h in handles] == [given] * 2
    if adapters.receive is not None and given == 0:
        assert depth(adapters, "normal")["visible"] == 2


def test_a_body_parked_as_it_came_has_its_reason_cut_and_an_empty_one_said(adapters):
    """The `reason` attribute SQS takes: at most DEAD_LETTER_REASON_CHARS, "unreadable" when
    there is none, as the operator reads it."""
    from chalicelib.defaults import DEAD_LETTER_REASON_CHARS

    adapters.queue.dead_letter_body("not json", priority="high", reason="x" * (DEAD_LETTER_REASON_CHARS + 500))
    adapters.queue.dead_letter_body("nor this", priority="high", reason="")
    peeked = adapters.queue_operations.peek_dead_letters("high", 10)
    assert sorted((m.body["raw"], m.reason) for m in peeked) == [
        ("nor this", "unreadable"), ("not json", "x" * DEAD_LETTER_REASON_CHARS)]


def test_a_held_peek_hides_its_letters_from_other_peeks_until_it_shows_them_again(adapters):
    operations = adapters.queue_operations
    for job_id in ("job-1", "job-2"):
        adapters.queue.dead_letter(JobMessage(job_id, 1), priority="low", reason={"code": "boom", "message": "x"})
    held = operations.peek_dead_letters("low", 1, hold_s=60)
    assert len(held) == 1
    others = operations.peek_dead_letters("low", 10)
    assert [m.body["job_id"] for m in others] == [m.body["job_id"] for m in operations.peek_dead_letters("low", 10)]
    assert {m.body["job_id"] for m in others} == {"job-1", "job-2"} - {held[0].body["job_id"]}
    assert operations.dead_letter_depth("low") == 2  # held, still there
    operations.show_dead_letters("low", held)
    assert sorted(m.body["job_id"] for m in operations.peek_dead_letters("low", 10)) == ["job-1", "job-2"]
