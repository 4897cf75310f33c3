"""A stream batch the event publisher gave up on (the bus refused it through every retry) is
published and counted by the reconciler from moto's real stream: its events reach the bus once
more with their ids, its counts are not doubled, and its description leaves StreamFailureQueue."""
from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib import composition
from chalicelib.adapters.dynamodb_stream import as_delivered
from chalicelib.adapters.eventbridge import EventBridgePublisher
from chalicelib.domain.errors import EventPublishError
from chalicelib.events import replay
from tests.functional.conftest import LambdaContext, receive_all, submit_job
from tests.functional.test_reconciler import STEPS, operator_headers, reconcile
from tests.support.stream import on_failure_record, read_stream


class BusOutage:
    """The bus refusing every PutEvents while `down`."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.down = True

    def put_events(self, **kwargs: Any) -> dict[str, Any]:
        if self.down:
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "PutEvents")
        return self._client.put_events(**kwargs)


@pytest.fixture
def failures(aws, monkeypatch) -> str:
    url = aws["sqs"].create_queue(QueueName="stream-failures")["QueueUrl"]
    aws["stream_failures"] = url
    monkeypatch.setenv("JOBPIPE_STREAM_FAILURE_QUEUE_URL", url)
    composition.use(None)
    return url


def stream_of_jobs_table() -> tuple[str, str, list[dict[str, Any]]]:
    return read_stream(boto3.client("dynamodb"), boto3.client("dynamodbstreams"), "jobs")


def described(arn: str, shard: str, records: list[dict[str, Any]]) -> str:
    return on_failure_record(arn, shard, records[0]["dynamodb"]["SequenceNumber"],
                             records[-1]["dynamodb"]["SequenceNumber"], len(records))


def test_a_batch_the_bus_refused_for_good_is_published_and_counted_by_the_reconciler(failures, app, client, aws, tap,
                                                                                      monkeypatch):
    monkeypatch.setattr(replay, "redelivery_wait_s", lambda *args: 0)  # no waiting out a retry's minute here
    outage = BusOutage(boto3.client("events"))
    composition.container().publisher = EventBridgePublisher(outage, "job-events", sleep=lambda s: None)
    job = submit_job(client, STEPS)
    arn, shard, records = stream_of_jobs_table()
    with pytest.raises(EventPublishError):  # every delivery of the batch fails the same way
        app.handler_map["event_publisher"]({"Records": [as_delivered(r) for r in records]}, LambdaContext(60))
    aws["sqs"].send_message(QueueUrl=failures, MessageBody=described(arn, shard, records))
    assert tap() == []

    pass_ = reconcile(app)
    assert pass_["counts"] == {"errors": 1}, "the bus is still down: held and tried later"
    assert "event_publish_failed" in pass_["errors"][0]
    outage.down = False

    assert reconcile(app)["counts"] == {"stream_batch_replayed": 1}
    (event,) = [envelope["detail"] for envelope in tap()]
    assert (event["job_id"], event["status"], event["previous_status"]) == (job["id"], "queued", None)
    assert receive_all(aws, "stream_failures") == []
    assert reconcile(app)["counts"] == {}
    stats = client.http.get("/api/system/stats", headers=operator_headers()).json_body
    assert stats["jobs_by_status"]["queued"] == 1, "counted once: by the failed delivery, not again by the replay"
    assert stats["reconciler"]["totals"]["stream_batch_replayed"] == 1


def test_a_description_the_stream_cannot_serve_stays_on_the_queue_for_an_operator(failures, app, client, aws):
    submit_job(client, STEPS)
    arn, shard, records = stream_of_jobs_table()
    other = arn.replace("table/jobs/", "table/elsewhere/")
    aws["sqs"].send_message(QueueUrl=failures, MessageBody=described(other, shard, records))
    aws["sqs"].send_message(QueueUrl=failures, MessageBody=json.dumps({"note": "put here by hand"}))
    pass_ = reconcile(app)
    assert pass_["counts"] == {"stream_batch_unreadable": 1}
    assert pass_["errors"][0].endswith("is not the stream of table jobs")
    assert reconcile(app)["counts"] == {}, "held for hours, not read every pass"
    stats = client.http.get("/api/system/stats", headers=operator_headers()).json_body
    assert stats["dead_letter_queues"]["stream_failure"] == 2, "both still there for an operator"


def test_a_message_that_describes_no_batch_is_named_in_the_reconcilers_log(failures, app, aws, caplog):
    """Held for hours like an unreadable batch, it is not in GET /api/system/dlq (SQS hands out
    no hidden message) and no pass counts it: its line is where an operator learns of it."""
    sent = aws["sqs"].send_message(QueueUrl=failures, MessageBody=json.dumps({"note": "put here by hand"}))
    caplog.clear()
    assert reconcile(app)["counts"] == {}
    (line,) = [r for r in caplog.records if r.getMessage().startswith("StreamFailureQueue message")]
    assert line.levelname == "WARNING"
    assert line.message_id == sent["MessageId"] and line.body == '{"note": "put here by hand"}'
    assert line.held_s == 11 * 3600
    caplog.clear()
    assert reconcile(app)["counts"] == {}
    assert not [r for r in caplog.records if r.getMessage().startswith("StreamFailureQueue message")], \
        "named once per look, not every pass"
