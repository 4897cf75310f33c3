"""Stream records of a moto table, recorded from the writes themselves (old image read before,
new image after each write), in DynamoDB Streams' record shape; a table's real stream read back
(moto, the local stack); and the description Lambda gives of a stream batch it gave up on."""
from __future__ import annotations

import itertools
import json
import time
from typing import Any

_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems")


class StreamRecorder:
    def __init__(self, writer_client: Any, reader_client: Any, table: str) -> None:
        self.records: list[dict[str, Any]] = []
        self._reader = reader_client
        self._table = table
        self._sequence = itertools.count(1)
        self._old: dict[str, Any] = {}
        for op in _WRITES:
            writer_client.meta.events.register(f"before-parameter-build.dynamodb.{op}", self._before)
            writer_client.meta.events.register(f"after-call.dynamodb.{op}", self._after)

    def _keys(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if "TransactItems" in params:
            keys = []
            for item in params["TransactItems"]:
                (action,) = item.values()
                if action.get("TableName") == self._table:
                    keys.append(action.get("Key") or {k: action["Item"][k] for k in ("pk", "sk")})
            return keys
        if params.get("TableName") != self._table:
            return []
        return [params.get("Key") or {k: params["Item"][k] for k in ("pk", "sk")}]

    def _read(self, key: dict[str, Any]) -> Any:
        return self._reader.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")

    def _before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["stream_keys"] = [(key, self._read(key)) for key in self._keys(params)]

    def _after(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if http_response.status_code >= 300:
            return
        for key, old in context.get("stream_keys", []):
            new = self._read(key)
            if old == new:
                continue
            data: dict[str, Any] = {
                "Keys": key,
                "SequenceNumber": str(next(self._sequence)).zfill(21),
                "ApproximateCreationDateTime": time.time(),
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            }
            if old:
                data["OldImage"] = old
            if new:
                data["NewImage"] = new
            name = "INSERT" if not old else ("REMOVE" if not new else "MODIFY")
            self.records.append({"eventName": name, "eventSource": "aws:dynamodb", "dynamodb": data,
                                 "eventSourceARN": f"arn:aws:dynamodb:us-east-1:123456789012:table/{self._table}/stream/x"})


def on_failure_record(stream_arn: str, shard_id: str, first: str, last: str, size: int) -> str:
    """The body Lambda sends a DynamoDB stream mapping's on-failure destination once a batch's
    retries are spent: where the batch is on the stream (`DDBStreamBatchInfo`), not its records."""
    return json.dumps({
        "requestContext": {"requestId": "r1", "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:ep",
                           "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 21},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0", "timestamp": "2026-01-01T00:00:00.000Z",
        "DDBStreamBatchInfo": {"shardId": shard_id, "streamArn": stream_arn, "batchSize": size,
                               "startSequenceNumber": first, "endSequenceNumber": last,
                               "approximateArrivalOfFirstRecord": "2026-01-01T00:00:00Z",
                               "approximateArrivalOfLastRecord": "2026-01-01T00:00:00Z"}})


def read_stream(ddb: Any, streams: Any, table: str) -> tuple[str, str, list[dict[str, Any]]]:
    """A table's stream ARN, its (first) shard and every record on it, as GetRecords returns
    them, read page by page from the oldest."""
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records: list[dict[str, Any]] = []
    while iterator:
        page = streams.get_records(ShardIterator=iterator, Limit=1000)
        if not page["Records"]:
            break
        records += page["Records"]
        iterator = page.get("NextShardIterator")
    return arn, shard, records
