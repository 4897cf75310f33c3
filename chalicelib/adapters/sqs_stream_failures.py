"""SQS adapter of the FailedStreamBatches port: StreamFailureQueue, where the change-stream
function's event source mapping describes each batch it gave up on (Lambda's on-failure record
for a DynamoDB stream: `DDBStreamBatchInfo` with the shard and the sequence range), and where the
function parks a record it cannot read, whole (`parked_stream_record`, with the job it names)."""
from __future__ import annotations

import json
from typing import Any, Callable, Optional

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chalicelib.adapters.dynamodb_items import JOB_PREFIX, job_id_of
from chalicelib.adapters.sqs import park
from chalicelib.adapters.sqs_operations import receive_up_to
from chalicelib.defaults import FOREIGN_BODY_SHOWN_CHARS, PARKED_RECORD_MAX_BYTES, RECORD_UNREADABLE, SQS_MAX_HOLD_S
from chalicelib.domain.errors import DeadLetterUnavailableError, StreamRecordTooLargeError
from chalicelib.ports import FailedStreamBatch

_SEQUENCE = r"^[0-9]{1,40}$"


class _BatchInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    shardId: str = Field(min_length=28, max_length=65)  # DynamoDB Streams' bounds
    startSequenceNumber: str = Field(pattern=_SEQUENCE)
    endSequenceNumber: str = Field(pattern=_SEQUENCE)
    batchSize: int = Field(default=0, ge=0)
    streamArn: str = Field(min_length=1)


class _FailureRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    DDBStreamBatchInfo: _BatchInfo
    requestContext: dict[str, Any] = Field(default_factory=dict)


class _StreamData(BaseModel):
    model_config = ConfigDict(extra="allow")

    SequenceNumber: str = Field(pattern=_SEQUENCE)


class _StreamRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    dynamodb: _StreamData
    eventSourceARN: str = ""


class _ParkedRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    parked_stream_record: _StreamRecord


def parked_body(record: dict[str, Any]) -> str:
    """The body a parked record travels in: the record as the function received it, and the job
    it names (`job_id`: GET /api/system/dlq shows that job beside it)."""
    partition = ((record.get("dynamodb") or {}).get("Keys") or {}).get("pk", {}).get("S", "")
    job_id = job_id_of(partition) if isinstance(partition, str) and partition.startswith(JOB_PREFIX) else None
    return json.dumps({"job_id": job_id, "parked_stream_record": record}, ensure_ascii=True, separators=(",", ":"))


def failed_batch_of(message: dict[str, Any]) -> Optional[FailedStreamBatch]:
    """The failed batch a StreamFailureQueue message describes (or the parked record it carries),
    or None for any other body."""
    try:
        record = _FailureRecord.model_validate_json(message["Body"])
    except ValidationError:
        return _parked_of(message)
    info = record.DDBStreamBatchInfo
    if int(info.endSequenceNumber) < int(info.startSequenceNumber):
        return None
    return FailedStreamBatch(
        handle=message["ReceiptHandle"],
        message_id=message["MessageId"],
        stream_arn=info.streamArn,
        shard_id=info.shardId,
        first_sequence=info.startSequenceNumber,
        last_sequence=info.endSequenceNumber,
        size=info.batchSize,
        condition=str(record.requestContext.get("condition") or "unknown"),
        receives=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
    )


def _parked_of(message: dict[str, Any]) -> Optional[FailedStreamBatch]:
    try:
        body = json.loads(message["Body"])  # read once: checked, and its record carried as it is
        parked = _ParkedRecord.model_validate(body).parked_stream_record
    except (ValueError, ValidationError):
        return None
    sequence = parked.dynamodb.SequenceNumber
    return FailedStreamBatch(
        handle=message["ReceiptHandle"],
        message_id=message["MessageId"],
        stream_arn=parked.eventSourceARN,
        shard_id="",
        first_sequence=sequence,
        last_sequence=sequence,
        size=1,
        condition=RECORD_UNREADABLE,
        receives=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
        records=(body["parked_stream_record"],),  # as it was received
    )


# Told of a message that describes no batch, as it is hidden: (its id, its body's start, seconds).
OnForeign = Callable[[str, str, int], None]


class SqsFailedStreamBatches:
    def __init__(self, client: Any, queue_url: str,
                 on_foreign: OnForeign = lambda message_id, body, held_s: None) -> None:
        self._sqs = client
        self._url = queue_url
        self._on_foreign = on_foreign

    def take(self, limit: int, hold_s: int) -> list[FailedStreamBatch]:
        batches: list[FailedStreamBatch] = []
        try:
            for message in receive_up_to(self._sqs, self._url, limit, min(hold_s, SQS_MAX_HOLD_S)):
                batch = failed_batch_of(message)
                if batch is not None:
                    batches.append(batch)
                else:  # an operator's, not every pass's: hidden, so named where an operator sees it
                    self._sqs.change_message_visibility(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"],
                                                        VisibilityTimeout=SQS_MAX_HOLD_S)
                    self._on_foreign(message["MessageId"], str(message.get("Body", ""))[:FOREIGN_BODY_SHOWN_CHARS],
                                     SQS_MAX_HOLD_S)
        except (ClientError, BotoCoreError) as exc:
            raise DeadLetterUnavailableError("could not read StreamFailureQueue") from exc
        return batches

    def park(self, record: dict[str, Any], reason: str) -> None:
        body = parked_body(record)
        if len(body) > PARKED_RECORD_MAX_BYTES:  # ASCII: characters are bytes
            raise StreamRecordTooLargeError(
                f"stream record {record.get('dynamodb', {}).get('SequenceNumber')} takes {len(body)} bytes, "
                f"more than one StreamFailureQueue message carries ({PARKED_RECORD_MAX_BYTES})")
        park(self._sqs, self._url, body, reason, failure="could not park a stream record on StreamFailureQueue")

    def settle(self, batch: FailedStreamBatch) -> None:
        try:
            self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=batch.handle)
        except (ClientError, BotoCoreError) as exc:
            raise DeadLetterUnavailableError("could not remove a replayed batch from StreamFailureQueue") from exc

    def hold(self, batch: FailedStreamBatch, seconds: int) -> None:
        try:
            self._sqs.change_message_visibility(QueueUrl=self._url, ReceiptHandle=batch.handle,
                                                VisibilityTimeout=max(0, min(seconds, SQS_MAX_HOLD_S)))
        except (ClientError, BotoCoreError) as exc:
            raise DeadLetterUnavailableError("could not hold a batch on StreamFailureQueue") from exc
