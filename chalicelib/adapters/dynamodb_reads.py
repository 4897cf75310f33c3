"""The DynamoDB JobStore's reads: a job by id (its claim-checked values read back), jobs by the
page (BatchGetItem), a tenant's listings on the by_tenant, by_status and by_type indexes with
their cursors, the due jobs across by_due's shards, a tenant's unfinished count, a job's runs."""
from __future__ import annotations

from typing import Any, Collection, Iterable, Optional

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.cursors import check_position, fill_page, listed_index, read_cursor, write_cursor
from chalicelib.adapters.dynamodb_batch import batch_get, query_items
from chalicelib.adapters.dynamodb_items import (
    JOB_PREFIX,
    JOB_SORT_KEY,
    RUN_PREFIX,
    deserializer,
    due_partition,
    DUE_SHARDS,
    item_to_job,
    item_to_run,
    is_purging,
    job_id_of,
    job_key,
    job_partition,
    status_key,
)
from chalicelib.adapters.dynamodb_table import JobTable
from chalicelib.defaults import BATCH_GET_MAX
from chalicelib.domain.errors import StoreUnavailableError
from chalicelib.domain.job import Job, Run
from chalicelib.domain.status import UNFINISHED
from chalicelib.ports import CLAIM_CHECKED, JobPage, JobQuery


_INDEXES = {
    None: ("by_tenant", "gsi1pk", "gsi1sk"),
    "status": ("by_status", "gsi2pk", "gsi2sk"),
    "type": ("by_type", "gsi3pk", "gsi3sk"),
}


class JobReads(JobTable):
    """A job by id, jobs by the page, a tenant's listings, the due jobs, a job's runs."""

    def get(self, job_id: str, *, consistent: bool = True, tenant: Optional[str] = None,
            fetch: Collection[str] = CLAIM_CHECKED, mark_gone: bool) -> Optional[Job]:
        try:
            response = self._ddb.get_item(
                TableName=self._table, Key=job_key(job_id), ConsistentRead=consistent
            )
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError(f"could not read job {job_id}") from exc
        item = response.get("Item")
        if not item or is_purging(item) or (tenant is not None and item.get("tenant", {}).get("S") != tenant):
            return None
        return item_to_job(item, self._fetch, fetch, mark_gone=mark_gone)

    def get_many(self, job_ids: Iterable[str], *, consistent: bool = False,
                 tenant: Optional[str] = None) -> dict[str, Job]:
        """Jobs by id, as the port says. An item this code cannot read (a status or a shape a
        later version wrote, met during a rollback; an item edited by hand) is left out, and
        `on_unreadable` told of it: a listing, a batch poll or the reconciler's due page reads
        the jobs beside it rather than failing on it every time."""
        ids = list(dict.fromkeys(job_ids))
        found: dict[str, Job] = {}
        for start in range(0, len(ids), BATCH_GET_MAX):
            keys = [job_key(i) for i in ids[start : start + BATCH_GET_MAX]]
            for item in self._batch_get(keys, consistent=consistent):
                if is_purging(item) or (tenant is not None and item.get("tenant", {}).get("S") != tenant):
                    continue
                try:
                    job = item_to_job(item)
                except (ValueError, KeyError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
                    self._on_unreadable(job_id_of(item["pk"]["S"]), exc)
                    continue
                found[job.id] = job
        return found

    def _batch_get(self, keys: list[dict[str, Any]], *, consistent: bool = False) -> list[dict[str, Any]]:
        return batch_get(self._ddb, self._table, keys, error="could not read jobs", consistent=consistent)

    def list_jobs(self, query: JobQuery) -> JobPage:
        """A page of the query's index (cursors.fill_page says which jobs it shows), newest
        first; its cursor is the index key the next page starts after."""
        kind, partition = listed_index(query)
        index, pk_attr, sk_attr = _INDEXES[kind]
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": index,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": pk_attr},
            "ExpressionAttributeValues": {":pk": {"S": partition}},
            "ScanIndexForward": False,
            # One key more than a page: DynamoDB ends a page that fills its Limit with a
            # LastEvaluatedKey whether or not anything follows, and the key past the page tells.
            "Limit": query.limit + 1,
        }
        start = _decode_cursor(query.cursor, pk_attr, sk_attr, partition) if query.cursor else None

        def read_after(after: Optional[dict[str, Any]]) -> tuple[list[tuple[dict[str, Any], Optional[Job]]],
                                                               Optional[dict[str, Any]]]:
            if after is not None:
                request["ExclusiveStartKey"] = after
            return self._index_page(request, query.limit, pk_attr, sk_attr)

        jobs, last = fill_page(query, read_after, start)
        return JobPage(jobs, _encode_cursor(last) if last is not None else None)

    def _index_page(self, request: dict[str, Any], limit: int, pk_attr: str,
                    sk_attr: str) -> tuple[list[tuple[dict[str, Any], Optional[Job]]], Optional[dict[str, Any]]]:
        """One Query of a listing's index: up to `limit` (start key, job or None when it is gone
        or cannot be read) in the index's order, and the start key the listing goes on after,
        None when nothing follows. Raises StoreUnavailableError."""
        try:
            response = self._ddb.query(**request)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError("could not list jobs") from exc
        read = response.get("Items", [])
        keys = read[:limit]
        ids = [job_id_of(deserializer.deserialize(k["pk"])) for k in keys]
        by_id = self.get_many(ids)
        entries = [(_start_key(key, pk_attr, sk_attr), by_id.get(job_id)) for key, job_id in zip(keys, ids)]
        if len(read) > len(keys):  # the key past the page: more follows the page's last key
            return entries, entries[-1][0]
        return entries, response.get("LastEvaluatedKey")

    def due(self, now: str, limit: int, after: Optional[str] = None) -> JobPage:
        # One Query per shard, each from the cursor on: the `limit` earliest of their union are
        # the index's `limit` earliest, whichever shards they sit in. A Query that stopped short
        # of its Limit (its 1 MB read) is read on from where it stopped: the shard's first
        # `limit` are needed whole, or a job after them in its shard but before the page's last
        # in another would be passed by.
        places: list[tuple[str, str]] = []
        more = False
        for shard in range(DUE_SHARDS):
            values = {":pk": {"S": due_partition(shard)}, ":upper": {"S": f"{now}#~"}}
            condition = "#pk = :pk AND #sk < :upper"
            if after is not None:  # BETWEEN takes its ends: the cursor's own entry is dropped below
                values[":after"] = {"S": after}
                condition = "#pk = :pk AND #sk BETWEEN :after AND :upper"
            request: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": "by_due",
                "KeyConditionExpression": condition,
                "ExpressionAttributeNames": {"#pk": "gsi5pk", "#sk": "gsi5sk"},
                "ExpressionAttributeValues": values,
            }
            read: list[tuple[str, str]] = []
            while True:
                try:
                    response = self._ddb.query(**request, Limit=limit + 1 - len(read))
                except (ClientError, BotoCoreError) as exc:
                    raise StoreUnavailableError("could not read the due jobs") from exc
                read += [(item["gsi5sk"]["S"], job_id_of(item["pk"]["S"])) for item in response.get("Items", [])]
                if "LastEvaluatedKey" not in response or len(read) > limit:
                    break
                request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
            read = [place for place in read if place[0] != after]
            more = more or len(read) > limit or "LastEvaluatedKey" in response
            places.extend(read[:limit])
        places.sort()
        chosen = places[:limit]
        follows = len(places) > limit or (more and len(chosen) == limit)
        by_id = self.get_many([job_id for _, job_id in chosen])
        return JobPage([by_id[i] for _, i in chosen if i in by_id], chosen[-1][0] if chosen and follows else None)

    def count_unfinished(self, tenant: str, at_most: int) -> int:
        counted = 0
        pages = self._ddb.get_paginator("query")
        try:
            for status in UNFINISHED:
                for page in pages.paginate(
                    TableName=self._table,
                    IndexName="by_status",
                    KeyConditionExpression="gsi2pk = :pk",
                    ExpressionAttributeValues={":pk": {"S": status_key(tenant, status.value)}},
                    Select="COUNT",
                ):
                    counted += page["Count"]
                    if counted >= at_most:
                        return at_most
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError("could not count the tenant's unfinished jobs") from exc
        return counted

    def runs(self, job_id: str) -> list[Run]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :run)",
            "ExpressionAttributeValues": {":pk": {"S": job_partition(job_id)}, ":run": {"S": RUN_PREFIX}},
            "ConsistentRead": True,
        }
        try:  # paged: a job with hundreds of failed attempts has more than a Query's 1 MB
            items = list(query_items(self._ddb, request))
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError(f"could not read runs of job {job_id}") from exc
        return [item_to_run(i) for i in items]


def _start_key(key: dict[str, Any], pk_attr: str, sk_attr: str) -> dict[str, Any]:
    """The ExclusiveStartKey that continues an index's listing after `key` (one of its items)."""
    return {k: key[k] for k in ("pk", "sk", pk_attr, sk_attr)}


def _encode_cursor(key: dict[str, Any]) -> str:
    return write_cursor({k: deserializer.deserialize(v) for k, v in key.items()})


def _decode_cursor(cursor: str, pk_attr: str, sk_attr: str, partition: str) -> dict[str, Any]:
    """A cursor is the page's LastEvaluatedKey; it must belong to the same listing (tenant and
    filter), so a cursor can never be used to read another tenant's index partition, and name
    a job's item by exactly the index's and the table's keys (anything else would reach
    DynamoDB as a malformed ExclusiveStartKey)."""

    def start_key(plain: Any) -> dict[str, Any]:
        if not isinstance(plain, dict) or plain.get(pk_attr) != partition:
            raise ValueError("cursor belongs to another listing")
        if set(plain) != {"pk", "sk", pk_attr, sk_attr} or not all(isinstance(v, str) and v for v in plain.values()):
            raise ValueError("cursor has unexpected fields")
        if not plain["pk"].startswith(JOB_PREFIX) or plain["sk"] != JOB_SORT_KEY:
            raise ValueError("cursor names no job")
        created_at, _, job_id = plain[sk_attr].partition("#")
        if job_id != job_id_of(plain["pk"]):
            raise ValueError("cursor's index key names another job than its table key")
        check_position(created_at, job_id)
        return {k: {"S": v} for k, v in plain.items()}

    return read_cursor(cursor, start_key)
