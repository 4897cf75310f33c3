"""A stream batch the event publisher gave up on (the bus refused it through every retry) is
published and counted by the reconciler from moto's real stream: its events reach the bus once
more with their ids, its counts are not doubled, and its description leaves StreamFailureQueue."""
from __future__ import annotations

import copy
import json
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib import composition
from chalicelib.adapters.dynamodb_items import job_key
from chalicelib.adapters.dynamodb_stream import as_delivered, job_change
from chalicelib.adapters.eventbridge import EventBridgePublisher
from chalicelib.domain.errors import EventPublishError, StreamRecordUnreadableError
from chalicelib.events import replay
from chalicelib.events.stream import StreamConsumer
from tests.functional.conftest import LambdaContext, TimingOut, receive_all, submit_job
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


def _as_a_newer_version_reads(record: dict[str, Any]) -> Any:
    """A decode that knows the status `paused` (a newer version's, read as running here)."""
    record = copy.deepcopy(record)
    for image in ("OldImage", "NewImage"):
        item = record["dynamodb"].get(image)
        if item and item.get("status") == {"S": "paused"}:
            item["status"] = {"S": "running"}
    return job_change(record)


def test_a_record_this_version_cannot_read_is_parked_and_the_rest_of_its_batch_goes_out(
        failures, app, client, aws, tap, monkeypatch, caplog):
    """An item edited by hand, or a newer version's status met during a rollback: its record
    would fail every delivery of its batch and hold every event behind it. It is parked on
    StreamFailureQueue whole, the rest goes out, and it is published once a version that reads
    it runs; until then each replay fails and it stays."""
    monkeypatch.setattr(replay, "redelivery_wait_s", lambda *args: 0)
    edited, other = submit_job(client, STEPS), submit_job(client, STEPS)
    aws["ddb"].update_item(TableName="jobs", Key=job_key(edited["id"]), UpdateExpression="SET #s = :s, version = :v",
                           ExpressionAttributeNames={"#s": "status"},
                           ExpressionAttributeValues={":s": {"S": "paused"}, ":v": {"N": "2"}})
    later = submit_job(client, STEPS)
    _, _, records = stream_of_jobs_table()
    caplog.clear()
    answer = app.handler_map["event_publisher"]({"Records": [as_delivered(r) for r in records]}, LambdaContext(60))

    assert answer == {"batchItemFailures": []}, "the batch is not failed for one record"
    assert sorted(e["detail"]["job_id"] for e in tap()) == sorted([edited["id"], other["id"], later["id"]])
    (line,) = [r for r in caplog.records if r.getMessage().startswith("stream record unreadable")]
    assert line.levelname == "ERROR" and line.sequence_number == records[2]["dynamodb"]["SequenceNumber"]
    listing = client.http.get("/api/system/dlq?queue=stream_failure", headers=operator_headers()).json_body
    (letter,) = listing["dead_letters"]["stream_failure"]
    assert letter["body"]["job_id"] == edited["id"]
    assert letter["body"]["parked_stream_record"]["dynamodb"]["SequenceNumber"] == records[2]["dynamodb"]["SequenceNumber"]
    assert "the new image is no job this version reads" in letter["reason"]

    pass_ = reconcile(app)
    assert pass_["counts"] == {"errors": 1}, "still unreadable: held, tried again later"
    assert "stream_record_unreadable" in pass_["errors"][0]
    assert tap() == []

    composition.use(None)  # a version that reads it is deployed
    container = composition.container()
    container.stream_consumer = StreamConsumer(_as_a_newer_version_reads, container.publisher, container.stats)
    assert reconcile(app)["counts"] == {"stream_batch_replayed": 1}
    (event,) = [envelope["detail"] for envelope in tap()]
    assert (event["job_id"], event["previous_status"], event["status"], event["version"]) == (
        edited["id"], "queued", "running", 2)
    assert receive_all(aws, "stream_failures") == []
    stats = client.http.get("/api/system/stats", headers=operator_headers()).json_body
    assert (stats["jobs_by_status"]["queued"], stats["jobs_by_status"]["running"]) == (2, 1), \
        "each change counted once, the parked one late"


def _held(aws) -> int:
    """Messages on StreamFailureQueue, shown or hidden."""
    attributes = aws["sqs"].get_queue_attributes(QueueUrl=aws["stream_failures"], AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_an_operator_gives_up_a_parked_record_the_reconciler_holds_hidden(failures, app, client, aws, tap,
                                                                          monkeypatch, caplog):
    """SQS deletes only what it hands out, and the reconciler hides a parked record between its
    tries: the delete is kept (202 drop_requested), and the pass that takes the record next
    deletes it, unpublished, even where a version that reads it runs by then. Nothing else can
    be dropped: a hidden batch description, an id never parked, a record already gone are 404."""
    monkeypatch.setattr(replay, "redelivery_wait_s", lambda *args: 2)  # hidden two seconds, not a minute
    edited = submit_job(client, STEPS)
    aws["ddb"].update_item(TableName="jobs", Key=job_key(edited["id"]), UpdateExpression="SET #s = :s, version = :v",
                           ExpressionAttributeNames={"#s": "status"},
                           ExpressionAttributeValues={":s": {"S": "paused"}, ":v": {"N": "2"}})
    arn, shard, records = stream_of_jobs_table()
    app.handler_map["event_publisher"]({"Records": [as_delivered(r) for r in records]}, LambdaContext(60))
    operator = operator_headers()
    (letter,) = client.http.get("/api/system/dlq?queue=stream_failure", headers=operator).json_body[
        "dead_letters"]["stream_failure"]
    parked = letter["message_id"]
    description = aws["sqs"].send_message(QueueUrl=failures, MessageBody=described(
        arn.replace("table/jobs/", "table/other/"), shard, records))["MessageId"]
    assert reconcile(app)["counts"] == {"errors": 1, "stream_batch_unreadable": 1}, "both taken, both hidden"
    tap()

    def delete(message_id: str) -> Any:
        return client.http.delete(f"/api/system/dlq/letters/{message_id}?queue=stream_failure", headers=operator)

    listed = client.http.get("/api/system/dlq?queue=stream_failure", headers=operator).json_body
    assert listed["dead_letters"]["stream_failure"] == [] and listed["total"]["stream_failure"] == 2
    drops = composition.container().parked_record_drops
    ddb = drops._ddb
    drops._ddb = TimingOut(ddb, "update_item")  # the stats table not answering: said, nothing kept
    unanswered = delete(parked)
    assert unanswered.status_code == 503 and unanswered.json_body["error"]["code"] == "store_unavailable"
    drops._ddb = ddb
    response = delete(parked)
    assert response.status_code == 202, response.body
    assert response.json_body == {"drop_requested": parked, "queue": "stream_failure"}
    declared = client.http.get("/openapi.json").json_body["paths"]["/api/system/dlq/letters/{message_id}"]["delete"]
    assert declared["responses"]["202"]["content"]["application/json"]["schema"]["required"] == [
        "drop_requested", "queue"]
    # A hidden batch description was never a parked record: no drop of it is kept, nor of an id never seen.
    for message_id in (description, "00000000-0000-0000-0000-000000000000"):
        missing = delete(message_id)
        assert missing.status_code == 404 and missing.json_body["error"]["code"] == "letter_not_found"

    composition.use(None)  # a version that reads it is deployed: the record is still given up
    container = composition.container()
    container.stream_consumer = StreamConsumer(_as_a_newer_version_reads, container.publisher, container.stats)
    caplog.clear()
    counts: dict = {}
    for _ in range(40):  # until its two seconds' wait ends
        counts = reconcile(app)["counts"]
        if counts:
            break
        time.sleep(0.25)
    assert counts == {"stream_record_dropped": 1}
    (line,) = [r for r in caplog.records if r.getMessage().startswith("parked stream record dropped")]
    assert line.message_id == parked
    assert [e for e in tap() if e["detail"]["job_id"] == edited["id"]] == [], "its event given up"
    assert _held(aws) == 1, "the batch description stays, hidden for an operator"
    again = delete(parked)
    assert again.status_code == 404 and again.json_body["error"]["code"] == "letter_not_found"


def test_without_stream_failure_queue_an_unreadable_record_fails_its_batch(app, client, aws, tap):
    """Nowhere to park it: the batch fails and the stream delivers it again, as before."""
    edited = submit_job(client, STEPS)
    aws["ddb"].update_item(TableName="jobs", Key=job_key(edited["id"]), UpdateExpression="SET #s = :s",
                           ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": "paused"}})
    _, _, records = stream_of_jobs_table()
    with pytest.raises(StreamRecordUnreadableError):
        app.handler_map["event_publisher"]({"Records": [as_delivered(r) for r in records]}, LambdaContext(60))
