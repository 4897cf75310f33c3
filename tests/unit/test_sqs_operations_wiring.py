"""SqsQueueOperations and SqsJobQueue as the composition root wires them: a dead-letter queue of
the stack whose URL is not configured (empty) is not one it offers; a dead-lettered event goes
back only to a queue its TARGET_ARN names as an SQS ARN; a queue a worker names by its ARN is
reached at the URL it was configured with, or else where SQS forms it."""
from __future__ import annotations

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
    ("erp-webhook", None),
    ("", None),  # no TARGET_ARN attribute
])
def test_a_dead_lettered_events_target_names_a_queue_only_as_an_sqs_arn(arn, name):
    assert target_queue_name(arn) == name


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
