"""receive_up_to: the dead-letter peek's and redrive's receive loop, against an SQS queue that
hands out the same messages again (received with no visibility timeout, or theirs ran out)."""
from __future__ import annotations

from typing import Any

from chalicelib.adapters.sqs_operations import receive_up_to


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
    assert client.receives == 2  # the second brought nothing new
