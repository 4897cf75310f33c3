"""DeadLetterQueue: a subscriber parks a message as it came, with why, where an operator reads
it and a redrive sends it back as it is. Run against the in-memory twin and SQS on moto."""
from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from chalicelib.domain.errors import QueueUnavailableError
from tests.contract.conftest import fake_aws_credentials


@pytest.fixture(params=["memory", "aws"])
def dead_letters(request, monkeypatch):
    """(the queue, parked() -> [(body, reason)], break_it())."""
    if request.param == "memory":
        from chalicelib.adapters.memory import InMemoryDeadLetterQueue

        queue = InMemoryDeadLetterQueue()
        yield queue, lambda: list(queue.parked), lambda: setattr(queue, "fail", True)
        return
    from chalicelib.adapters.sqs import SqsDeadLetterQueue

    fake_aws_credentials(monkeypatch)
    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="erp-webhook-dlq")["QueueUrl"]

        def parked():
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                           MessageAttributeNames=["All"]).get("Messages", [])
            return [(m["Body"], m["MessageAttributes"]["reason"]["StringValue"]) for m in messages]

        yield SqsDeadLetterQueue(sqs, url), parked, lambda: sqs.delete_queue(QueueUrl=url)


def test_a_parked_body_stays_as_it_came_with_its_reason(dead_letters):
    queue, parked, _ = dead_letters
    body = '{"detail": {"event_id": "e-1", "note": "caf\\u00e9"}}'
    queue.park(body, "ERP webhook refused event e-1: HTTP 422 Unprocessable Entity")
    assert parked() == [(body, "ERP webhook refused event e-1: HTTP 422 Unprocessable Entity")]


def test_a_long_reason_is_cut_and_an_empty_one_said(dead_letters):
    queue, parked, _ = dead_letters
    queue.park("a", "x" * 5000)
    queue.park("b", "")
    assert sorted(parked()) == [("a", "x" * 1000), ("b", "unreadable")]


def test_a_queue_that_does_not_answer_raises_queue_unavailable(dead_letters):
    queue, _, break_it = dead_letters
    break_it()
    with pytest.raises(QueueUnavailableError):
        queue.park("a", "why")


def test_a_reason_holding_characters_sqs_refuses_is_parked_with_them_escaped(dead_letters):
    # An attribute's text has the body's character rules: SendMessage refuses a NUL, an ESC or
    # U+FFFE in it, and a refusal the ERP explained with one would never be parked.
    queue, parked, _ = dead_letters
    queue.park("a", "HTTP 400 Bad Request: bad\x00input\x1b[2J\ufffe\tend\ncaf\u00e9 \U0001f600")
    [(body, reason)] = parked()
    assert reason == "HTTP 400 Bad Request: bad\\x00input\\x1b[2J\\ufffe\tend\ncaf\u00e9 \U0001f600"
