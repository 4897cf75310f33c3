"""SqsQueueOperations and SqsJobQueue as the composition root wires them: a dead-letter queue of
the stack whose URL is not configured (empty) is not one it offers; a dead-lettered event goes
back only to a queue its TARGET_ARN names as an SQS ARN; a queue a worker names by its ARN is
reached at the URL it was configured with, or else where SQS forms it; a count SQS leaves out
of a queue's attributes is none."""
from __future__ import annotations

import json
from typing import Any, Optional

import pytest

from chalicelib.adapters.sqs import SqsJobQueue
from chalicelib.adapters.sqs_operations import SqsQueueOperations, target_queue_name
from chalicelib.domain.errors import InvalidRequestError


def test_a_dead_letter_queue_without_a_url_is_neither_listed_nor_read():
    operations = SqsQueueOperations(
        object(), {"normal": "https://sqs.example/1/jobs"}, {"normal": "https://sqs.example/1/jobs-dlq"},
        {"erp_webhook": ("", "https://sqs.example/1/erp-webhook"), "stream_failure": ("https://sqs.example/1/sf", None)})
    assert operations.dead_letter_queues() == ["normal", "stream_failure"]
    with pytest.raises(InvalidRequestError, match="queue must be one of normal, stream_failure$"):
        operations.dead_letter_depth("erp_webhook")


@pytest.mark.parametrize("arn, name", [
    ("arn:aws:sqs:us-east-1:123456789012:erp-webhook", "erp-webhook"),
    ("arn:aws:lambda:us-east-1:123456789012:function:erp-webhook", None),  # a function of the queue's name
    ("queue:sqs:erp-webhook", None),  # reads like the end of a queue's ARN, but is no ARN
    ("arnold:sqs:erp-webhook", None),  # nor is this
    ("arn:aws:lambda:us-east-1:123456789012:function:erp-sqs-relay", None),  # a function named for a queue
    ("erp-webhook", None),
    ("", None),  # no TARGET_ARN attribute
])
def test_a_dead_lettered_events_target_names_a_queue_only_as_an_sqs_arn(arn, name):
    assert target_queue_name(arn) == name


class _EventDeliveryLetters:
    """A dead-letter queue of one event EventBridge could not deliver to the queue `target`
    (its TARGET_ARN), taking every send and delete; records where each send went."""

    def __init__(self, target: str) -> None:
        self.letters = [{"MessageId": "m-1", "ReceiptHandle": "r-1", "Body": json.dumps({"detail": {"event_id": "e-1"}}),
                         "MessageAttributes": {"TARGET_ARN": {"DataType": "String", "StringValue": target}}}]
        self.sent_to: list[str] = []

    def receive_message(self, **_: Any) -> dict[str, Any]:
        handed, self.letters = self.letters, []
        return {"Messages": handed}

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.sent_to += [QueueUrl] * len(Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    def delete_message_batch(self, *, Entries: list[dict[str, Any]], **_: Any) -> dict[str, Any]:
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    def change_message_visibility_batch(self, **_: Any) -> dict[str, Any]:
        return {}


def test_an_undelivered_event_goes_back_to_its_queue_configured_with_a_trailing_slash():
    """A stack output may give a queue's URL with a trailing '/': the queue a dead-lettered
    event's TARGET_ARN names is still found among those a redrive may return it to."""
    client = _EventDeliveryLetters("arn:aws:sqs:us-east-1:123456789012:erp-webhook")
    operations = SqsQueueOperations(
        client, {}, {}, {"event_delivery": ("https://sqs.example/1/event-delivery-dlq", None)},
        {"event_delivery": ["https://sqs.example/1/erp-webhook/"]})
    assert operations.redrive("event_delivery", 10) == {"moved": 1, "failed": 0}
    assert client.sent_to == ["https://sqs.example/1/erp-webhook/"]


class _Counts:
    """An SQS client whose GetQueueAttributes answers `attributes` (None: no `Attributes` key)."""

    def __init__(self, attributes: Optional[dict[str, str]]) -> None:
        self.attributes = attributes

    def get_queue_attributes(self, **_: Any) -> dict[str, Any]:
        return {} if self.attributes is None else {"Attributes": self.attributes}


@pytest.mark.parametrize("attributes, depth", [
    ({"ApproximateNumberOfMessages": "3"}, {"visible": 3, "in_flight": 0, "delayed": 0}),
    (None, {"visible": 0, "in_flight": 0, "delayed": 0}),
])
def test_a_count_sqs_leaves_out_of_its_answer_is_none(attributes, depth):
    """A queue's depth is read from the counts SQS gives: one it leaves out (an emulator may
    not keep delayed messages' count) is none, not a failed read of the queue."""
    operations = SqsQueueOperations(_Counts(attributes), {"normal": "https://sqs.example/1/jobs"},
                                    {"normal": "https://sqs.example/1/jobs-dlq"})
    assert operations.queue_depth("normal") == depth
    assert operations.dead_letter_depth("normal") == depth["visible"]


class _DeletesAt:
    """An SQS client at `endpoint` that records the queue URL of each delete."""

    def __init__(self, endpoint: str) -> None:
        self.meta = type("Meta", (), {"endpoint_url": endpoint})()
        self.deleted_at: list[str] = []

    def delete_message(self, *, QueueUrl: str, ReceiptHandle: str) -> dict:
        self.deleted_at.append(QueueUrl)
        return {}


@pytest.mark.parametrize("arn, url", [
    # configured (as a stack output may give it, with a trailing '/'): that URL, whatever the endpoint
    ("arn:aws:sqs:us-east-1:123456789012:jobs-high", "https://queues.example/123456789012/jobs-high/"),
    ("arn:aws:sqs:us-east-1:123456789012:jobs-normal-dlq", "https://queues.example/123456789012/jobs-normal-dlq"),
    # none configured: the client's endpoint, the ARN's account, its name
    ("arn:aws:sqs:us-east-1:210987654321:jobs-other", "https://sqs.us-east-1.amazonaws.com/210987654321/jobs-other"),
], ids=["configured with a trailing slash", "a configured dead-letter queue", "not configured"])
def test_a_queue_named_by_its_arn_is_reached_at_its_configured_url_or_where_sqs_forms_it(arn, url):
    """A worker acknowledges a message on the queue its event names by ARN, with no GetQueueUrl
    call (the consumers' roles need not allow it): a queue of the stack at the URL it was
    configured with, any other at the endpoint, account and name SQS forms its URL from. A
    wrong URL deletes nothing, and the message is run again."""
    client = _DeletesAt("https://sqs.us-east-1.amazonaws.com/")
    queue = SqsJobQueue(client, {"high": "https://queues.example/123456789012/jobs-high/",
                                 "normal": "https://queues.example/123456789012/jobs-normal"},
                        {"normal": "https://queues.example/123456789012/jobs-normal-dlq"})
    queue.acknowledge(arn, "r-1")
    assert client.deleted_at == [url]
