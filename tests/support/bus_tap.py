"""A test queue subscribed to every jobpipe event on a stack's bus, drained into a list."""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Callable


class BusTap:
    def __init__(self, session: Any, bus: str) -> None:
        self._sqs, events = session.client("sqs"), session.client("events")
        self._url = self._sqs.create_queue(QueueName=f"tap-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        rule = f"tap-{uuid.uuid4().hex[:8]}"
        events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": ["jobpipe"]}))
        events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "tap", "Arn": arn}])
        self.seen: list[dict[str, Any]] = []

    def _receive(self) -> int:
        messages = self._sqs.receive_message(QueueUrl=self._url, MaxNumberOfMessages=10,
                                             WaitTimeSeconds=1).get("Messages", [])
        self.seen.extend(json.loads(m["Body"]) for m in messages)
        if messages:
            self._sqs.delete_message_batch(QueueUrl=self._url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
        return len(messages)

    def drain(self, until: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 30) -> list[dict[str, Any]]:
        """Receive until `until(seen)` holds or the timeout passes; returns everything seen."""
        deadline = time.monotonic() + timeout_s
        while not until(self.seen) and time.monotonic() < deadline:
            self._receive()
        return self.seen

    def drain_quiet(self, quiet_s: float = 3, timeout_s: float = 60) -> list[dict[str, Any]]:
        """Receive until nothing arrived for `quiet_s` (or the timeout passes)."""
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while time.monotonic() - last < quiet_s and time.monotonic() < deadline:
            if self._receive():
                last = time.monotonic()
        return self.seen

    def status_events(self) -> list[dict[str, Any]]:
        """Distinct (by event_id) job.status.changed details seen."""
        unique = {e["detail"]["event_id"]: e["detail"] for e in self.seen if e["detail-type"] == "job.status.changed"}
        return list(unique.values())

