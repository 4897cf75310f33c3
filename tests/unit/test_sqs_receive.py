"""The SQS dead-letter loops: receive_up_to against a queue that hands out the same messages
again (received with no visibility timeout, or theirs ran out), and a redrive whose sends or
deletes SQS refuses for some entries (answered inside a 200, as its batch calls do); and what
a letter received reads as: its id, body, send time and reason from what SQS hands out."""
from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.adapters.sqs_operations import SqsQueueOperations, receive_up_to
from chalicelib.defaults import DEAD_LETTER_REASON_CHARS
from chalicelib.ports import JobMessage


class _ShowsItsMessagesAgain:
    """An SQS queue of two messages whose every receive returns both again."""

    def __init__(self) -> None:
        self.receives = 0

    def receive_message(self, **request: Any) -> dict[str, Any]:
        self.receives += 1
        assert self.receives <= 5, "receive_up_to kept receiving the same messages"
        messages = [{"MessageId": f"m-{n}", "ReceiptHandle": f"r-{n}-{self.receives}", "Body": "{}"} for n in (1, 2)]
        return {"Messages": messages[: request["MaxNumberOfMessages"]]}


def test_a_receive_that_brings_only_messages_already_taken_ends_the_loop():
    client = _ShowsItsMessagesAgain()
    messages = receive_up_to(client, "https://sqs.example/1/dlq", 10, 0)
    assert sorted(m["MessageId"] for m in messages) == ["m-1", "m-2"]
    assert client.receives == 4  # the three after the first brought nothing new


def _refuse_if_empty(entries: list[dict[str, Any]], operation: str) -> None:
    if not entries:
        raise ClientError({"Error": {"Code": "AWS.SimpleQueueService.EmptyBatchRequest"}}, operation)


class _DeadLetters:
    """A dead-letter queue of job messages and the queue they go back to, as SQS answers: each
    message received once, batch sends and deletes refusing the entries of `refuse_send`'s
    bodies and `refuse_delete`'s messages in their `Failed`, taking the others, and a batch of
    no entries refused whole (EmptyBatchRequest)."""

    def __init__(self, count: int, refuse_send: set[str] = frozenset(), refuse_delete: set[str] = frozenset()):
        self.letters = {f"m-{n:02d}": json.dumps(JobMessage(f"job-{n:02d}", 3).to_body()) for n in range(count)}
        self.refuse_send, self.refuse_delete = refuse_send, refuse_delete
        self.received: set[str] = set()
        self.sent: list[str] = []

    def receive_message(self, *, MaxNumberOfMessages: int, **_: Any) -> dict[str, Any]:
        fresh = [i for i in self.letters if i not in self.received][:MaxNumberOfMessages]
        self.received.update(fresh)
        return {"Messages": [{"MessageId": i, "ReceiptHandle": i, "Body": self.letters[i]} for i in fresh]}

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        _refuse_if_empty(Entries, "SendMessageBatch")
        ok = [e for e in Entries if e["MessageBody"] not in self.refuse_send]
        self.sent += [e["MessageBody"] for e in ok]
        return {"Successful": [{"Id": e["Id"]} for e in ok],
                "Failed": [{"Id": e["Id"], "Code": "InternalError"} for e in Entries if e not in ok]}

    def delete_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        _refuse_if_empty(Entries, "DeleteMessageBatch")
        ok = [e for e in Entries if e["ReceiptHandle"] not in self.refuse_delete]
        for e in ok:
            del self.letters[e["ReceiptHandle"]]
        return {"Successful": [{"Id": e["Id"]} for e in ok],
                "Failed": [{"Id": e["Id"], "Code": "ReceiptHandleIsInvalid"} for e in Entries if e not in ok]}

    def change_message_visibility_batch(self, **_: Any) -> dict[str, Any]:
        return {}


def _operations(client: _DeadLetters) -> SqsQueueOperations:
    return SqsQueueOperations(client, {"normal": "https://sqs.example/1/jobs"}, {"normal": "https://sqs.example/1/dlq"})


def test_a_redrive_whose_first_ten_sends_are_all_refused_still_moves_the_next_ten():
    """Ten letters no queue took have nothing to delete: no delete is asked for them (SQS
    refuses a batch of none, which would fail the whole redrive), and the next ten move."""
    client = _DeadLetters(20)
    client.refuse_send = set(list(client.letters.values())[:10])
    assert _operations(client).redrive("normal", 20) == {"moved": 10, "failed": 10}
    assert sorted(client.letters) == [f"m-{n:02d}" for n in range(10)]  # the refused stay parked


def test_a_redriven_letter_sent_but_not_deleted_is_counted_failed_not_moved():
    client = _DeadLetters(12, refuse_delete={"m-03"})
    assert _operations(client).redrive("normal", 12) == {"moved": 11, "failed": 1}
    assert list(client.letters) == ["m-03"] and len(client.sent) == 12


class _SamplesSomeServers(_DeadLetters):
    """A dead-letter queue of a few letters as SQS's short polling answers it: a receive asks a
    sample of SQS's servers, and with few messages a sample may hold none of them (AWS: "you
    might not receive any messages in a particular ReceiveMessage response. If this happens,
    repeat the request"). Here the first `misses` receives answer empty."""

    def __init__(self, count: int, misses: int) -> None:
        super().__init__(count)
        self.misses = misses
        self.receives = 0

    def receive_message(self, **request: Any) -> dict[str, Any]:
        self.receives += 1
        if self.receives <= self.misses:
            return {}
        return super().receive_message(**request)


def test_an_empty_answer_of_a_short_poll_is_asked_again_before_the_queue_is_taken_for_dry():
    """One empty answer stopped the loop: a DLQ of three letters could be listed empty beside a
    `total` of 3, and its redrive move none of them."""
    client = _SamplesSomeServers(3, misses=1)
    assert sorted(m["MessageId"] for m in receive_up_to(client, "https://sqs.example/1/dlq", 10, 30)) == [
        "m-00", "m-01", "m-02"]
    client = _SamplesSomeServers(3, misses=2)
    assert _operations(client).redrive("normal", 10) == {"moved": 3, "failed": 0}
    assert client.letters == {}


def test_a_dry_queue_costs_three_receives():
    client = _SamplesSomeServers(0, misses=0)
    assert receive_up_to(client, "https://sqs.example/1/dlq", 10, 30) == []
    assert client.receives == 3


def test_each_receive_asks_for_as_many_as_sqs_gives_hides_them_as_asked_and_waits_for_none():
    """Each receive asks for ten letters, the most SQS gives (fewer cost a receive more per
    ninety), or the few still wanted; a peek held for `hide_s` (no other peek returns those
    letters meanwhile) asks SQS to hide each for that long, not the queue's own visibility
    timeout; and none long-polls: an operator's listing of a dry queue answers at once."""
    client = _SamplesSomeServers(12, misses=1)
    requests: list[dict[str, Any]] = []
    receive = client.receive_message
    client.receive_message = lambda **request: requests.append(request) or receive(**request)
    assert len(receive_up_to(client, "https://sqs.example/1/dlq", 12, 45)) == 12
    assert [(r["MaxNumberOfMessages"], r["VisibilityTimeout"], r["WaitTimeSeconds"]) for r in requests] == [
        (10, 45, 0), (10, 45, 0), (2, 45, 0)]


class _Holds:
    """A dead-letter queue holding `messages` as SQS hands them out: each received once, with
    only the system and message attributes the receive asked for."""

    def __init__(self, *messages: dict[str, Any]) -> None:
        self.messages = list(messages)

    def receive_message(self, *, MessageSystemAttributeNames: list[str], MessageAttributeNames: list[str],
                        **_: Any) -> dict[str, Any]:
        handed, self.messages = self.messages, []
        return {"Messages": [{
            **m, "ReceiptHandle": f"receipt-of-{m['MessageId']}",
            "Attributes": {k: v for k, v in m.get("Attributes", {}).items() if k in MessageSystemAttributeNames},
            "MessageAttributes": {k: v for k, v in m.get("MessageAttributes", {}).items() if k in MessageAttributeNames},
        } for m in handed]}

    def change_message_visibility_batch(self, **_: Any) -> dict[str, Any]:
        return {}


def _peek(*messages: dict[str, Any]) -> list[Any]:
    return _operations(_Holds(*messages)).peek_dead_letters("normal", 10)


def _said(**values: str) -> dict[str, dict[str, str]]:
    return {name: {"DataType": "String", "StringValue": value} for name, value in values.items()}


_SOURCE = "arn:aws:sqs:us-east-1:123456789012:jobs-normal"


def test_a_letter_sqs_moved_by_itself_says_from_which_queue_how_often_it_was_received_and_since_when():
    """A job message the queue's redrive policy moved carries no reason of its own: what SQS
    keeps of it (the queue it came from, its receive count, its first receive) is the reason
    shown, the queue by its name; the letter is named by SQS's message id, not by the receipt
    that deletes it."""
    [letter] = _peek({"MessageId": "m-1", "Body": '{"job_id": "job-1", "attempt": 1}', "Attributes": {
        "DeadLetterQueueSourceArn": _SOURCE, "ApproximateReceiveCount": "11",
        "ApproximateFirstReceiveTimestamp": "1796167374273", "SentTimestamp": "1796167300000"}})
    assert (letter.message_id, letter.sent_at, letter.receipt) == ("m-1", "2026-12-01T23:21:40.000Z", "receipt-of-m-1")
    assert letter.reason == (
        "moved here by SQS from jobs-normal after the receives its redrive policy allows, none handled; "
        "received 11 times in all, looks at this dead-letter queue included; first received 2026-12-01T23:22:54.273Z")


def test_a_moved_letter_says_only_what_sqs_kept_of_it_and_a_reason_of_its_own_comes_first():
    """Without its receive count or first receive (a zero time is none) the reason says no
    more than where the letter came from; a letter that carries its own `reason` shows that."""
    bare, unreceived, own = _peek(
        {"MessageId": "m-1", "Body": "{}", "Attributes": {"DeadLetterQueueSourceArn": _SOURCE}},
        {"MessageId": "m-2", "Body": "{}", "Attributes": {
            "DeadLetterQueueSourceArn": _SOURCE, "ApproximateFirstReceiveTimestamp": "0"}},
        {"MessageId": "m-3", "Body": "{}", "Attributes": {"DeadLetterQueueSourceArn": _SOURCE},
         "MessageAttributes": _said(reason="HTTP 503")})
    moved = "moved here by SQS from jobs-normal after the receives its redrive policy allows, none handled"
    assert (bare.reason, unreceived.reason, own.reason) == (moved, moved, "HTTP 503")


def test_a_letter_without_a_send_time_shows_none():
    [letter] = _peek({"MessageId": "m-1", "Body": "{}"})
    assert (letter.sent_at, letter.reason) == (None, None)


def test_a_body_that_is_no_json_object_is_shown_as_its_first_2000_characters():
    [letter] = _peek({"MessageId": "m-1", "Body": "x" * 1999 + "yz"})
    assert letter.body == {"raw": "x" * 1999 + "y"}


def test_an_undelivered_events_reason_is_cut_to_what_a_reason_may_hold():
    """EventBridge's ERROR_MESSAGE can be long: the reason it makes is cut, like every other."""
    target = "arn:aws:sqs:us-east-1:123456789012:erp-webhook"
    [letter] = _peek({"MessageId": "m-1", "Body": "{}", "MessageAttributes": _said(
        TARGET_ARN=target, ERROR_CODE="SDK_CLIENT_ERROR", ERROR_MESSAGE="z" * DEAD_LETTER_REASON_CHARS)})
    said = f"EventBridge could not deliver it to {target}: SDK_CLIENT_ERROR: "
    assert letter.reason == said + "z" * (DEAD_LETTER_REASON_CHARS - len(said))
