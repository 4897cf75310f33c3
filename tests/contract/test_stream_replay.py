"""ChangeStream and FailedStreamBatches: a failed batch's description is taken, hidden, held and
settled; its records are read back by sequence number, from the jobs table's stream only. Run
against the in-memory twins and the AWS adapters on moto (DynamoDB Streams, SQS)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import boto3
import pytest

from chalicelib.adapters.dynamodb_items import job_key, job_to_item
from chalicelib.adapters.dynamodb_stream import job_change
from chalicelib.domain.errors import StreamBatchUnreadableError
from chalicelib.domain.job import Job
from tests.contract.conftest import each_kind
from tests.support.infra import create_table
from tests.support.stream import read_stream

MEMORY_STREAM = "arn:aws:dynamodb:us-east-1:123456789012:table/jobs/stream/2026-01-01T00:00:00.000"


def a_job(n: int) -> Job:
    return Job(id=f"job-{n:04d}", tenant="acme", user="ann", type="demo.steps", payload={},
               created_at="2026-01-01T00:00:00.000000Z")


@dataclass
class Ports:
    stream: Any
    failures: Any
    # Write jobs (one stream record each); returns their sequence numbers in stream order.
    write: Callable[[list[Job]], list[str]]
    # Describe a failed batch the way the mapping's on-failure destination does.
    describe: Callable[..., None]
    stream_arn: str
    shard_id: str


def _memory() -> Ports:
    from chalicelib.adapters.memory_stream import InMemoryChangeStream, InMemoryFailedStreamBatches

    stream = InMemoryChangeStream(MEMORY_STREAM)
    failures = InMemoryFailedStreamBatches()
    counter = iter(range(1000, 10**6))

    def write(jobs: list[Job]) -> list[str]:
        sequences = []
        for job in jobs:
            sequence = str(next(counter))
            stream.append({"eventName": "INSERT", "dynamodb": {
                "Keys": job_key(job.id), "NewImage": job_to_item(job), "SequenceNumber": sequence,
                "ApproximateCreationDateTime": 1_767_225_600.0}})
            sequences.append(sequence)
        return sequences

    def describe(first: str, last: str, size: int, stream_arn: str = MEMORY_STREAM, shard_id: str = "shard-0") -> None:
        failures.put(stream_arn, shard_id, first, last, size)

    return Ports(stream, failures, write, describe, MEMORY_STREAM, "shard-0")


def _aws() -> Ports:
    from chalicelib.adapters.dynamodb_stream import DynamoChangeStream
    from chalicelib.adapters.sqs_stream_failures import SqsFailedStreamBatches

    ddb, sqs, streams = boto3.client("dynamodb"), boto3.client("sqs"), boto3.client("dynamodbstreams")
    create_table(ddb, "JobsTable", "jobs")
    stream_arn, shard_id, _ = read_stream(ddb, streams, "jobs")
    url = sqs.create_queue(QueueName="stream-failures")["QueueUrl"]
    seen: list[str] = []

    def write(jobs: list[Job]) -> list[str]:
        for job in jobs:
            ddb.put_item(TableName="jobs", Item=job_to_item(job))
        every = [r["dynamodb"]["SequenceNumber"] for r in read_stream(ddb, streams, "jobs")[2]]
        new = [s for s in every if s not in seen]
        seen.extend(new)
        return new

    def describe(first: str, last: str, size: int, stream_arn: str = stream_arn, shard_id: str = shard_id) -> None:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({
            "requestContext": {"requestId": "r1", "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:f",
                               "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 21},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0", "timestamp": "2026-01-01T00:00:00.000Z",
            "DDBStreamBatchInfo": {"shardId": shard_id, "startSequenceNumber": first, "endSequenceNumber": last,
                                   "approximateArrivalOfFirstRecord": "2026-01-01T00:00:00Z",
                                   "approximateArrivalOfLastRecord": "2026-01-01T00:00:00Z",
                                   "batchSize": size, "streamArn": stream_arn}}))

    return Ports(DynamoChangeStream(streams, "jobs"), SqsFailedStreamBatches(sqs, url), write, describe,
                 stream_arn, shard_id)


@pytest.fixture(params=["memory", "aws"])
def ports(request, monkeypatch) -> Ports:
    yield from each_kind(request, monkeypatch, _memory, _aws)


def test_a_failed_batch_is_taken_with_where_its_records_are(ports):
    first, _, last = ports.write([a_job(n) for n in range(3)])
    ports.describe(first, last, 3)
    (batch,) = ports.failures.take(10, 60)
    assert (batch.stream_arn, batch.shard_id, batch.first_sequence, batch.last_sequence, batch.size,
            batch.condition, batch.receives) == (ports.stream_arn, ports.shard_id, first, last, 3,
                                                 "RetryAttemptsExhausted", 1)


def test_a_taken_batch_is_hidden_until_held_otherwise_and_gone_once_settled(ports):
    (sequence,) = ports.write([a_job(1)])
    ports.describe(sequence, sequence, 1)
    (batch,) = ports.failures.take(10, 60)
    assert ports.failures.take(10, 60) == []
    ports.failures.hold(batch, 0)
    (again,) = ports.failures.take(10, 60)
    assert again.receives == 2 and again.first_sequence == sequence
    ports.failures.settle(again)
    assert ports.failures.take(10, 0) == []


def test_a_batch_is_read_back_first_to_last_in_stream_order(ports):
    sequences = ports.write([a_job(n) for n in range(5)])
    ports.describe(sequences[1], sequences[3], 3)
    (batch,) = ports.failures.take(10, 60)
    records = ports.stream.records(batch)
    changes = [job_change(r) for r in records]
    assert [c.sequence_number for c in changes] == sequences[1:4]
    assert [c.new.id for c in changes] == ["job-0001", "job-0002", "job-0003"]
    assert all(c.old is None and c.timestamp.startswith("20") for c in changes)


def test_a_batch_of_another_table_is_not_read(ports):
    (sequence,) = ports.write([a_job(1)])
    ports.describe(sequence, sequence, 1, stream_arn=ports.stream_arn.replace("table/jobs/", "table/other/"))
    (batch,) = ports.failures.take(10, 60)
    with pytest.raises(StreamBatchUnreadableError):
        ports.stream.records(batch)


def _parked(sequence: str, status: str = "paused") -> dict:
    """A job's stream record as the function receives it, its new image holding a status this
    version does not know."""
    item = {**job_to_item(a_job(7)), "status": {"S": status}}
    return {"eventID": "e1", "eventName": "MODIFY", "eventSourceARN": MEMORY_STREAM,
            "dynamodb": {"Keys": job_key("job-0007"), "NewImage": item, "SequenceNumber": sequence,
                         "ApproximateCreationDateTime": 1_767_225_600.0, "note": "caf\u00e9 \U0001f600"}}


def test_a_parked_record_is_taken_back_whole_and_read_from_its_message(ports):
    record = _parked("4200")
    ports.failures.park(record, "the new image is no job this version reads")
    (batch,) = ports.failures.take(10, 60)
    assert (batch.first_sequence, batch.last_sequence, batch.size, batch.condition, batch.stream_arn) == (
        "4200", "4200", 1, "RecordUnreadable", MEMORY_STREAM)
    assert batch.records == (record,), "carried as it was received, whatever its characters"
    assert ports.failures.take(10, 60) == [], "hidden while taken, as a description is"
    ports.failures.hold(batch, 0)
    (again,) = ports.failures.take(10, 60)
    assert again.receives == 2 and again.records == (record,)
    ports.failures.settle(again)
    assert ports.failures.take(10, 0) == []


def test_a_record_too_large_for_one_message_is_refused_and_nothing_is_parked(ports):
    from chalicelib.defaults import PARKED_RECORD_MAX_BYTES
    from chalicelib.domain.errors import StreamRecordTooLargeError

    record = _parked("4201")
    record["dynamodb"]["NewImage"]["progress_message"] = {"S": "x" * PARKED_RECORD_MAX_BYTES}
    with pytest.raises(StreamRecordTooLargeError):
        ports.failures.park(record, "unreadable")
    assert ports.failures.take(10, 0) == []


def test_a_description_carries_no_records(ports):
    (sequence,) = ports.write([a_job(1)])
    ports.describe(sequence, sequence, 1)
    (batch,) = ports.failures.take(10, 60)
    assert batch.records is None, "read back from the stream"
