"""SqsQueueOperations as the composition root wires it: a dead-letter queue of the stack whose
URL is not configured (empty) is not one it offers; a dead-lettered event goes back only to a
queue its TARGET_ARN names as an SQS ARN."""
from __future__ import annotations

import pytest

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
