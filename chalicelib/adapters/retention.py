"""DynamoDB adapter of the FinishedJobs port: find finished jobs by day through the sparse
`by_finished_day` index and delete a job's whole partition (job, runs, artifacts) and its S3
objects. Used by the clean-up task in the worker, never on a request path."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Optional

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.dynamodb_batch import batch_write, query_items
from chalicelib.adapters.dynamodb_items import (
    FINISHED_SHARDS,
    JOB_SORT_KEY,
    PURGING,
    blob_prefix,
    finished_partition,
    job_id_of,
    job_key,
    job_partition,
)
from chalicelib.defaults import BATCH_WRITE_MAX
from chalicelib.domain.errors import StoreUnavailableError
from chalicelib.domain.job import isoformat
from chalicelib.ports import BlobStore, FinishedPage


_END_OF_TIME = datetime(9999, 1, 1, tzinfo=timezone.utc)


class DynamoFinishedJobs:
    def __init__(self, client: Any, table_name: str, blobs: Optional[BlobStore] = None) -> None:
        self._ddb = client
        self._table = table_name
        self._blobs = blobs

    def finished_before(self, cutoff: datetime, *, since: datetime, page_size: int = 100) -> Iterator[FinishedPage]:
        day = since.astimezone(timezone.utc).date()
        last_day = cutoff.astimezone(timezone.utc).date()
        upper = isoformat(cutoff)
        while day <= last_day:
            for shard in range(FINISHED_SHARDS):
                for ids in self._query_partition(finished_partition(day.isoformat(), shard), upper, page_size):
                    yield FinishedPage(day, ids)
            day += timedelta(days=1)

    def _query_partition(self, partition: str, upper: str, page_size: int) -> Iterator[list[str]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "by_finished_day",
            "KeyConditionExpression": "gsi4pk = :pk AND gsi4sk < :upper",
            "ExpressionAttributeValues": {":pk": {"S": partition}, ":upper": {"S": upper}},
            "Limit": page_size,
        }
        while True:
            try:
                response = self._ddb.query(**request)
            except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
                raise StoreUnavailableError("could not read the finished-jobs index") from exc
            # Yielded empty too: the port's one page per read (a cancel is checked after each).
            yield [job_id_of(i["pk"]["S"]) for i in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def purge(self, job_id: str) -> int:
        self._mark_purging(job_id)
        keys: list[dict[str, Any]] = []
        blob_keys: list[str] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": job_partition(job_id)}},
            "ProjectionExpression": "pk, sk, blob_key, payload_ref, result_ref",
        }
        try:
            for item in query_items(self._ddb, request):
                keys.append({"pk": item["pk"], "sk": item["sk"]})
                if "blob_key" in item:
                    blob_keys.append(item["blob_key"]["S"])
                for ref in ("payload_ref", "result_ref"):
                    if ref in item:
                        blob_keys.append(item[ref]["M"]["key"]["S"])
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError(f"could not read job {job_id} for deletion") from exc
        # Objects first: if the item deletes then fail, a later run still finds the job. Listed
        # too, for the results of attempts that lost the race to complete (keyed per attempt).
        if self._blobs is not None:
            for page in self._blobs.keys_older_than(blob_prefix(job_id), _END_OF_TIME):
                blob_keys.extend(page)
            if blob_keys:
                self._blobs.delete(sorted(set(blob_keys)))
        # The job item last, so an interrupted purge is found again through the index.
        keys.sort(key=lambda k: k["sk"]["S"] == JOB_SORT_KEY)
        for start in range(0, len(keys), BATCH_WRITE_MAX):
            self._batch_delete(keys[start : start + BATCH_WRITE_MAX])
        return len(keys)

    def _mark_purging(self, job_id: str) -> None:
        """Mark the job's item before anything of it goes: from then on every read takes the job
        for removed, and a purge cut off later leaves no record whose objects are gone. An item
        already gone (an earlier purge's last step, TTL) is left so: its rest is still purged."""
        try:
            self._ddb.update_item(TableName=self._table, Key=job_key(job_id),
                                  UpdateExpression="SET #purging = :true", ConditionExpression="attribute_exists(pk)",
                                  ExpressionAttributeNames={"#purging": PURGING},
                                  ExpressionAttributeValues={":true": {"BOOL": True}})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise StoreUnavailableError(f"could not mark job {job_id} for deletion") from exc
        except BotoCoreError as exc:
            raise StoreUnavailableError(f"could not mark job {job_id} for deletion") from exc

    def _batch_delete(self, keys: list[dict[str, Any]]) -> None:
        batch_write(self._ddb, self._table, [{"DeleteRequest": {"Key": k}} for k in keys],
                    error="could not delete job items")
