"""Reading job writes out of the jobs table's DynamoDB stream records, and reading a failed
batch's records back from the stream."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.dynamodb_items import JOB_SORT_KEY, item_to_job
from chalicelib.defaults import DEAD_LETTER_REASON_CHARS, STREAM_MAX_PAGES_PER_BATCH
from chalicelib.domain.errors import (
    ChangeStreamUnavailableError,
    StreamBatchPartlyHeldError,
    StreamBatchUnreadableError,
    StreamRecordUnreadableError,
    describe,
)
from chalicelib.domain.job import Job, isoformat
from chalicelib.ports import FailedStreamBatch, JobChange


def job_change(record: dict[str, Any]) -> Optional[JobChange]:
    """The job write a stream record carries, or None for other items (runs, caches, ...).
    Timed by the record's ApproximateCreationDateTime; a record without one by the latest time
    the new image names (`Job.last_recorded_time`): what the events' `timestamp` and the
    statistics' hour of a start or retry rest on must not move with when a batch is read (a
    replay hours later); a deletion, which names no time of its own, by now. Raises
    StreamRecordUnreadableError when either image is no job this version can read."""
    data = record.get("dynamodb") or {}
    keys = data.get("Keys") or {}
    if keys.get("sk", {}).get("S") != JOB_SORT_KEY:
        return None
    old_image, new_image = data.get("OldImage"), data.get("NewImage")
    new = _job_of(data, new_image, "new")
    created = data.get("ApproximateCreationDateTime")
    if created:
        timestamp = isoformat(datetime.fromtimestamp(float(created), timezone.utc))
    else:  # an emulator's record: the write's own time, the same on every delivery and replay
        timestamp = (new.last_recorded_time() if new else None) or isoformat(datetime.now(timezone.utc))
    return JobChange(
        sequence_number=str(data.get("SequenceNumber", "")),
        old=_job_of(data, old_image, "old"),
        new=new,
        timestamp=timestamp,
    )


def _job_of(data: dict[str, Any], image: Optional[dict[str, Any]], which: str) -> Optional[Job]:
    if not image:
        return None
    try:
        return item_to_job(image)
    except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as exc:  # pydantic's, the deserializer's
        raise StreamRecordUnreadableError(
            f"stream record {data.get('SequenceNumber')}: the {which} image is no job this version reads: "
            f"{describe(exc)}"[:DEAD_LETTER_REASON_CHARS]) from exc


_GONE = {"TrimmedDataAccessException", "ResourceNotFoundException"}


class DynamoChangeStream:
    """The ChangeStream port on DynamoDB Streams: a failed batch's records read back by their
    sequence numbers, from the jobs table's stream only."""

    def __init__(self, client: Any, table_name: str) -> None:
        """`client`: a boto3 `dynamodbstreams` client."""
        self._streams = client
        self._table = table_name

    def _is_jobs_stream(self, stream_arn: str) -> bool:
        table_arn, _, label = stream_arn.partition("/stream/")
        return bool(label) and table_arn.startswith("arn:") and table_arn.endswith(f":table/{self._table}")

    def records(self, batch: FailedStreamBatch) -> list[dict[str, Any]]:
        if not self._is_jobs_stream(batch.stream_arn):
            raise StreamBatchUnreadableError(f"{batch.stream_arn} is not the stream of table {self._table}")
        first, last = int(batch.first_sequence), int(batch.last_sequence)
        try:
            try:
                iterator = self._iterator(batch, "AT_SEQUENCE_NUMBER")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TrimmedDataAccessException":
                    raise
                # The first record passed the stream's 24 hours: its later ones may not have yet.
                iterator = self._iterator(batch, "TRIM_HORIZON")
            found: list[dict[str, Any]] = []
            trimmed = False  # the batch's first record is not on the stream any more
            for _ in range(STREAM_MAX_PAGES_PER_BATCH):
                page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                for record in page.get("Records", []):
                    sequence = int(record["dynamodb"]["SequenceNumber"])
                    if sequence < first:
                        continue
                    if sequence > last:
                        return _held(batch, found, trimmed)
                    trimmed = trimmed or (not found and sequence != first)
                    found.append(as_delivered(record))
                    if sequence == last:
                        return _held(batch, found, trimmed)
                iterator = page.get("NextShardIterator")
                if not iterator:  # a closed shard, read to its end
                    return _held(batch, found, trimmed)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _GONE:
                raise StreamBatchUnreadableError(
                    f"the stream no longer holds records {batch.first_sequence}-{batch.last_sequence}") from exc
            raise ChangeStreamUnavailableError("could not read the jobs table's stream") from exc
        except BotoCoreError as exc:  # a timeout, a lost connection
            raise ChangeStreamUnavailableError("could not read the jobs table's stream") from exc
        raise ChangeStreamUnavailableError(
            f"record {batch.last_sequence} not reached in {STREAM_MAX_PAGES_PER_BATCH} pages; tried again later")

    def _iterator(self, batch: FailedStreamBatch, kind: str) -> str:
        at = {"SequenceNumber": batch.first_sequence} if kind == "AT_SEQUENCE_NUMBER" else {}
        return self._streams.get_shard_iterator(StreamArn=batch.stream_arn, ShardId=batch.shard_id,
                                                ShardIteratorType=kind, **at)["ShardIterator"]


def _held(batch: FailedStreamBatch, found: list[dict[str, Any]], trimmed: bool) -> list[dict[str, Any]]:
    """`found`, the batch's records read back, when they are the whole batch (from its first);
    else StreamBatchPartlyHeldError with them, or StreamBatchUnreadableError when there are none."""
    if not found:
        raise StreamBatchUnreadableError(f"the stream no longer holds record {batch.first_sequence}")
    if trimmed:
        raise StreamBatchPartlyHeldError(f"the stream no longer holds record {batch.first_sequence}", held=found)
    return found


def as_delivered(record: dict[str, Any]) -> dict[str, Any]:
    """A GetRecords record as the stream function receives it: the creation time in epoch
    seconds (boto3 parses it into a datetime)."""
    data = dict(record.get("dynamodb") or {})
    created = data.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        data["ApproximateCreationDateTime"] = created.timestamp()
    return {**record, "dynamodb": data}
