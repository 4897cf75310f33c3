"""SqsQueueOperations as the composition root wires it: a dead-letter queue of the stack whose
URL is not configured (empty) is not one it offers."""
from __future__ import annotations

import pytest

from chalicelib.adapters.sqs_operations import SqsQueueOperations
from chalicelib.domain.errors import InvalidRequestError


def test_a_dead_letter_queue_without_a_url_is_neither_listed_nor_read():
    operations = SqsQueueOperations(
        object(), {"normal": "https://sqs.example/1/jobs"}, {"normal": "https://sqs.example/1/jobs-dlq"},
        {"erp_webhook": ("", "https://sqs.example/1/erp-webhook"), "stream_failure": ("https://sqs.example/1/sf", None)})
    assert operations.dead_letter_queues() == ["normal", "stream_failure"]
    with pytest.raises(InvalidRequestError, match="queue must be one of normal, stream_failure$"):
        operations.dead_letter_depth("erp_webhook")
