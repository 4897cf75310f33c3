"""DynamoDB adapter of the JobStore port.

Key design (one table, see docs/data-model.md):

    job      pk=JOB#<id>  sk=JOB          get by id: one GetItem; poll 100: one BatchGetItem
    run      pk=JOB#<id>  sk=RUN#<0001>   a job's runs: one Query on pk, begins_with(sk, RUN#)
    artifact pk=JOB#<id>  sk=ART#<name>   a job's artifacts: one Query on pk, begins_with(sk, ART#)

    GSI by_tenant  gsi1pk=T#<tenant>            gsi1sk=<created_at>#<id>   newest first
    GSI by_status  gsi2pk=T#<tenant>#S#<status> gsi2sk=<created_at>#<id>   status filter
    GSI by_type    gsi3pk=T#<tenant>#Y#<type>   gsi3sk=<created_at>#<id>   type filter

    GSI by_finished_day  gsi4pk=FIN#<yyyy-mm-dd>#<shard>  gsi4sk=<finished_at>#<id>   sparse: finished jobs only
    GSI by_due           gsi5pk=DUE#<shard>               gsi5sk=<due_at>#<id>        sparse: unfinished jobs only

by_finished_day lets clean-up find old finished jobs across tenants without a Scan: one
Query per (day, shard) partition, oldest first. The shard (0-7, from the id) spreads a busy
day's finishes over eight partitions. by_due is how the reconciler finds, with one Query per
shard, the queued jobs no worker claimed in time, held jobs whose start is near, and running
jobs past their lease; a job leaves it when it finishes.

Claim-check: a payload or result whose JSON exceeds `inline_limit` is written to S3
(`jobs/<id>/payload.json`, `result-0001.json` per attempt) and the item keeps `payload_ref`/`result_ref`; get()
reads it back, so callers never see the difference. Listings (get_many) do not fetch those
objects: they show `{"claim_check": {"bytes": n}}` in place of the value, and GET /jobs/<id>
returns it whole. Runs get `expires_at` too, so TTL removes a job's whole partition.

The indexes project keys only: progress writes (the most frequent write) change no indexed
attribute, so they cost one write unit, not four. A listing is one Query plus one
BatchGetItem of the page. Only job items carry gsi keys, so runs and artifacts stay out of
the indexes. `expires_at` is the table's TTL attribute. Nothing on a request path scans.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Collection, Iterable, Optional

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.cursors import check_position, read_cursor, write_cursor
from chalicelib.adapters.dynamodb_batch import batch_get, transact_write
from chalicelib.adapters.dynamodb_items import (
    BLOB_REFS,
    JOB_PREFIX,
    JOB_SORT_KEY,
    JSON_FIELDS,
    RUN_PREFIX,
    WRITE_ID,
    attribute_value,
    blob_key,
    deserializer,
    due_keys,
    due_partition,
    DUE_SHARDS,
    finished_keys,
    item_to_job,
    item_to_run,
    is_purging,
    job_id_of,
    job_key,
    job_partition,
    job_to_item,
    plain_value,
    run_key,
    STATUS_KEY_VALUE,
    status_key,
    tenant_partition,
    type_partition,
)
from chalicelib.domain.errors import (
    AttemptEndedError,
    JobCancelledError,
    JobNotFoundError,
    JobpipeError,
    ProgressRejectedError,
    RecordTooLargeError,
    StaleJobError,
    StoreUnavailableError,
)
from chalicelib.adapters.dynamodb_cache import completion_write, invalidation_write
from chalicelib.adapters.dynamodb_keys import item_to_key, key_id, key_put
from chalicelib.defaults import (
    BATCH_GET_MAX,
    CONFLICT_RETRIES,
    FILTERED_LISTING_READS,
    INLINE_LIMIT_BYTES,
    RECORD_PART_EXPIRY_S,
)
from chalicelib.domain.events import clip
from chalicelib.domain.job import Job, Progress, Run, answer_bytes, isoformat, utcnow
from chalicelib.domain.status import UNFINISHED, JobStatus
from chalicelib.ports import (
    CLAIM_CHECKED,
    REMOVE,
    BlobStore,
    ChangeSet,
    Expectation,
    ExpectedWrite,
    JobPage,
    JobQuery,
    SubmissionKey,
)

_INDEXES = {
    None: ("by_tenant", "gsi1pk", "gsi1sk"),
    "status": ("by_status", "gsi2pk", "gsi2sk"),
    "type": ("by_type", "gsi3pk", "gsi3sk"),
}


def _answer(exc: Exception) -> dict[str, Any]:
    """What AWS answered with a refusal (ClientError.response); {} for a timeout or a lost
    connection (a BotoCoreError: a read timeout carries `response=None`)."""
    return (exc.response or {}) if isinstance(exc, ClientError) else {}


def _error_code(exc: Exception) -> str:
    """The AWS error code of a refusal; "" for a timeout or lost connection (BotoCoreError)."""
    return _answer(exc).get("Error", {}).get("Code", "")


class DynamoJobStore:
    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        blobs: Optional[BlobStore] = None,
        inline_limit: int = INLINE_LIMIT_BYTES,
        retention_s: Optional[int] = None,
        keys_table: Optional[str] = None,
    ) -> None:
        """Without `blobs`, payloads and results always stay in the item (max 400 KB in all).
        `keys_table`: where submissions' Idempotency-Key records live (adapters/dynamodb_keys.py)."""
        self._ddb = client
        self._table = table_name
        self._keys_table = keys_table
        self._blobs = blobs
        self._inline_limit = inline_limit
        self._retention_s = retention_s

    def _check_out(self, job_id: str, field: str, text: str, attempt: Optional[int] = None) -> Optional[dict[str, Any]]:
        """Write `text` to S3 if it is too large for the item; returns the ref to keep, or None."""
        data = text.encode()
        if self._blobs is None or len(data) <= self._inline_limit:
            return None
        key = blob_key(job_id, field, attempt)
        self._blobs.put(key, data, "application/json")
        return {"key": key, "bytes": len(data)}

    # -- writes -----------------------------------------------------------------------------

    def _new_item(self, job: Job) -> tuple[dict[str, Any], Optional[dict[str, Any]]]:
        """The item of a new job and the ref of its payload when that went to S3."""
        item = job_to_item(job)
        ref = self._check_out(job.id, "payload", item["payload_json"]["S"])
        if ref is not None:
            del item["payload_json"]
            item["payload_ref"] = attribute_value(ref)
        return item, ref

    def create(self, job: Job) -> None:
        item, ref = self._new_item(job)
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except (ClientError, BotoCoreError) as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                if self._is_stored(item, _answer(exc).get("Item")):
                    return  # botocore's retry of a write that landed, its answer lost: this job
                raise StaleJobError(f"job {job.id} already exists") from exc
            if ref is not None and _not_written(exc):
                self._blobs.delete([ref["key"]])
            raise StoreUnavailableError("could not store the job") from exc

    def _is_stored(self, item: dict[str, Any], stored: Optional[dict[str, Any]]) -> bool:
        """Whether `stored`, what refused a new job's item, is that same job: an earlier try of
        the same write (with a job's fresh id and millisecond `created_at`, nothing else can be)."""
        if stored is None:  # a store that returns no ALL_OLD item
            stored = self._ddb.get_item(TableName=self._table, Key={k: item[k] for k in ("pk", "sk")},
                                        ConsistentRead=True).get("Item")
        return stored is not None and item_to_job(stored) == item_to_job(item)

    def create_keyed(self, job: Job, key: SubmissionKey, *, now: int) -> Optional[SubmissionKey]:
        if self._keys_table is None:
            raise StoreUnavailableError("no table is configured for Idempotency-Key records")
        item, ref = self._new_item(job)
        transaction = [
            key_put(self._keys_table, key, now),
            {"Put": {"TableName": self._table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
        ]
        try:
            first = self._write_keyed(transaction, job.id, key, now)
        except StoreUnavailableError as exc:
            if ref is not None and _not_written(exc.__cause__):
                self._blobs.delete([ref["key"]])
            raise
        if first is not None and ref is not None:  # a replay wrote no job: its payload object goes
            self._blobs.delete([ref["key"]])
        return first

    def _write_keyed(self, transaction: list[dict[str, Any]], job_id: str, key: SubmissionKey,
                     now: int) -> Optional[SubmissionKey]:
        """Run the keyed submit's transaction; the key's stored record when it was refused on
        the key. Tried again when a concurrent transaction on the key cancelled it
        (TransactionConflict): the retry finds that one's record."""
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                self._ddb.transact_write_items(TransactItems=transaction)
                return None
            except (ClientError, BotoCoreError) as exc:
                reasons = [r.get("Code") for r in _answer(exc).get("CancellationReasons") or []]
                retry = attempt < CONFLICT_RETRIES
                if reasons[:1] == ["ConditionalCheckFailed"]:  # the key has a record: a replay
                    stored = exc.response["CancellationReasons"][0].get("Item")
                    first = item_to_key(stored, key.key, now) if stored else self.submission_key(
                        key.tenant, key.key, now=now)  # a store that returns no ALL_OLD item
                    if first is not None:
                        return first
                    if retry:  # expired or deleted between the refusal and the read
                        continue
                elif reasons[1:2] == ["ConditionalCheckFailed"]:
                    raise StaleJobError(f"job {job_id} already exists") from exc
                elif "TransactionConflict" in reasons and retry:
                    continue
                raise StoreUnavailableError("could not store the job and its Idempotency-Key") from exc
        raise StoreUnavailableError("the Idempotency-Key kept changing while the job was stored; try again")

    def submission_key(self, tenant: str, key: str, *, now: int) -> Optional[SubmissionKey]:
        if self._keys_table is None:
            return None
        try:
            item = self._ddb.get_item(TableName=self._keys_table, Key=key_id(tenant, key),
                                      ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError("could not read the Idempotency-Key") from exc
        return item_to_key(item, key, now) if item else None

    def apply(self, job: Job, expected_status: JobStatus, changes: ChangeSet) -> Job:
        write_id = uuid.uuid4().hex  # this write's own: botocore's retry of it carries the same
        names = {"#status": "status", "#version": "version", "#write_id": WRITE_ID}
        values = {
            ":expected": attribute_value(expected_status.value),
            ":version": attribute_value(job.version),
            ":next": attribute_value(job.version + 1),
            ":write_id": attribute_value(write_id),
        }
        expression = self._update_expression(job.id, job.tenant, job.attempts, changes, names, values,
                                             ["#version = :next", "#write_id = :write_id"])
        update = {
            "TableName": self._table,
            "Key": job_key(job.id),
            "UpdateExpression": expression,
            "ConditionExpression": "#status = :expected AND #version = :version",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        also = [self._run_write(changes.run)] if changes.run is not None else []
        also += [invalidation_write(self._table, job.tenant, job.scope or "", namespace, job.id,
                                    changes.fields.get("finished_at") or isoformat(utcnow()))
                 for namespace in changes.invalidate_caches]
        if changes.task_completion is not None:
            also.append(completion_write(self._table, job.tenant, job.scope or "", changes.task_completion))
        try:
            if not also:
                self._ddb.update_item(**update, ReturnValuesOnConditionCheckFailure="ALL_OLD")
            else:
                transact_write(self._ddb, [{"Update": update}, *also])
        except (ClientError, BotoCoreError) as exc:
            stored = _answer(exc).get("Item")
            if not also and (_wrote(stored, write_id) or _shows(stored, changes, version=job.version + 1)):
                pass  # refused by what its earlier try wrote, that try's answer lost: written
            elif _lost_race(exc):
                raise StaleJobError(
                    f"job {job.id} is no longer {expected_status.value} at version {job.version}"
                ) from exc
            elif _too_large(exc):
                raise RecordTooLargeError(f"job {job.id}'s record has no room for this write (400 KB)") from exc
            else:
                raise StoreUnavailableError(f"could not update job {job.id}") from exc
        return changes.written_on(job)

    def cut_progress_message(self, job: Job, expected_status: JobStatus, limit: int) -> Job:
        cut = clip(job.progress.message, limit)
        try:  # the message alone (a nested path): the write never grows the item
            self._ddb.update_item(
                TableName=self._table,
                Key=job_key(job.id),
                UpdateExpression="SET #progress.#message = :cut ADD #version :one",
                ConditionExpression="#status = :expected AND #version = :version",
                ExpressionAttributeNames={"#progress": "progress", "#message": "message",
                                          "#status": "status", "#version": "version"},
                ExpressionAttributeValues={":cut": attribute_value(cut), ":one": attribute_value(1),
                                           ":expected": attribute_value(expected_status.value),
                                           ":version": attribute_value(job.version)},
            )
        except (ClientError, BotoCoreError) as exc:
            if _lost_race(exc):
                raise StaleJobError(f"job {job.id} is no longer {expected_status.value} at version {job.version}") from exc
            raise StoreUnavailableError(f"could not update job {job.id}") from exc
        return ChangeSet({"progress": job.progress.model_copy(update={"message": cut})}).written_on(job)

    def apply_expected(self, job_id: str, tenant: str, expected: Expectation, changes: ChangeSet, *,
                       mark_gone: bool = False) -> ExpectedWrite:
        changes.check_unread()
        names = {"#version": "version", "#tenant": "tenant"}
        values = {":one": attribute_value(1), ":tenant": attribute_value(tenant)}
        conditions = ["#tenant = :tenant"]
        for kind, checks in (("eq", expected.equal), ("in", expected.one_of), ("le", expected.absent_or_at_most)):
            for i, (field, value) in enumerate(checks.items()):
                name = f"#{kind}{i}"
                names[name] = field
                if kind == "eq" and value is None:
                    conditions.append(f"attribute_not_exists({name})")
                elif kind == "eq":
                    values[f":{kind}{i}"] = attribute_value(value)
                    conditions.append(f"{name} = :{kind}{i}")
                elif kind == "in":
                    options = [f":{kind}{i}_{j}" for j in range(len(value))]
                    values.update({o: attribute_value(v) for o, v in zip(options, value)})
                    conditions.append(f"{name} IN ({', '.join(options)})")
                else:
                    values[f":{kind}{i}"] = attribute_value(value)
                    conditions.append(f"(attribute_not_exists({name}) OR {name} <= :{kind}{i})")
        expression = self._update_expression(job_id, tenant, None, changes, names, values, [])
        expression = f"{expression} ADD #version :one".strip()
        try:
            response = self._ddb.update_item(
                TableName=self._table,
                Key=job_key(job_id),
                UpdateExpression=expression,
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except (ClientError, BotoCoreError) as exc:
            if _too_large(exc):
                raise RecordTooLargeError(f"job {job_id}'s record has no room for this write (400 KB)") from exc
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise StoreUnavailableError(f"could not update job {job_id}") from exc
            stored = exc.response.get("Item")
            # A claim refused by what its earlier try wrote (that try's answer lost): written.
            written = stored is not None and stored.get("tenant", {}).get("S") == tenant and _shows(stored, changes)
            return ExpectedWrite(written, item_to_job(stored, self._fetch, mark_gone=mark_gone) if stored else None)
        return ExpectedWrite(True, item_to_job(response["Attributes"], self._fetch, mark_gone=mark_gone))

    def _update_expression(self, job_id: str, tenant: str, attempts: Optional[int], changes: ChangeSet,
                           names: dict[str, str], values: dict[str, Any], sets: list[str]) -> str:
        """The SET/REMOVE expression writing `changes` and the index keys they move, its names
        and values added to `names` and `values`; `attempts` keys a claim-checked result."""
        sets, removes = list(sets), []
        for i, (field, value) in enumerate(changes.fields.items()):
            attr = JSON_FIELDS.get(field, field)
            names[f"#f{i}"] = attr
            if value is REMOVE or value is None:
                removes.append(f"#f{i}")
                if field in JSON_FIELDS:  # the value in S3 too: its ref would be read back
                    names[f"#r{i}"] = BLOB_REFS[field]
                    removes.append(f"#r{i}")
                continue
            if field in JSON_FIELDS:
                value = json.dumps(value, separators=(",", ":"))
                names[f"#r{i}"] = BLOB_REFS[field]
                ref = self._check_out(job_id, field, value, attempts if field == "result" else None)
                if ref is not None:  # the value goes to S3, the item keeps where
                    names[f"#f{i}"], names[f"#r{i}"] = BLOB_REFS[field], attr
                    value = ref
                removes.append(f"#r{i}")
            sets.append(f"#f{i} = :v{i}")
            values[f":v{i}"] = attribute_value(value)
        if changes.fields.get("finished_at"):
            names["#gsi4pk"], names["#gsi4sk"] = "gsi4pk", "gsi4sk"
            values[":gsi4pk"], values[":gsi4sk"] = map(attribute_value, finished_keys(job_id, changes.fields["finished_at"]))
            sets += ["#gsi4pk = :gsi4pk", "#gsi4sk = :gsi4sk"]
        if "due_at" in changes.fields:
            names["#gsi5pk"], names["#gsi5sk"] = "gsi5pk", "gsi5sk"
            due_at = changes.fields["due_at"]
            if due_at is REMOVE or due_at is None:
                removes += ["#gsi5pk", "#gsi5sk"]
            else:
                values[":gsi5pk"], values[":gsi5sk"] = map(attribute_value, due_keys(job_id, due_at))
                sets += ["#gsi5pk = :gsi5pk", "#gsi5sk = :gsi5sk"]
        if "status" in changes.fields:
            names["#gsi2pk"] = "gsi2pk"
            values[STATUS_KEY_VALUE] = attribute_value(status_key(tenant, JobStatus(changes.fields["status"]).value))
            sets.append(f"#gsi2pk = {STATUS_KEY_VALUE}")
        return ("SET " + ", ".join(sets) if sets else "") + (" REMOVE " + ", ".join(removes) if removes else "")

    def _run_write(self, run: Run) -> dict[str, Any]:
        expiry = {}
        if self._retention_s is not None:
            expiry = {"expires_at": int(time.time()) + self._retention_s + RECORD_PART_EXPIRY_S}
        if run.started_at is not None:
            item = {**run_key(run.job_id, run.attempt), **{
                k: attribute_value(v) for k, v in {**plain_value(run), **expiry}.items()
            }}
            return {"Put": {"TableName": self._table, "Item": item}}
        data = {**plain_value(run.model_copy(update={"job_id": None, "attempt": None})), **expiry}
        names = {f"#r{i}": k for i, k in enumerate(data)}
        values = {f":r{i}": attribute_value(v) for i, v in enumerate(data.values())}
        return {
            "Update": {
                "TableName": self._table,
                "Key": run_key(run.job_id, run.attempt),
                "UpdateExpression": "SET " + ", ".join(f"#r{i} = :r{i}" for i in range(len(data))),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def record_progress(self, job_id: str, attempt: int, progress: Progress, *, announce: bool = False) -> Job:
        announced = ", #event_percent = :percent" if announce else ""
        names = {"#event_percent": "event_percent"} if announce else {}
        try:
            response = self._ddb.update_item(
                TableName=self._table,
                Key=job_key(job_id),
                UpdateExpression=f"SET #progress = :progress{announced} ADD #version :one",
                ConditionExpression=(
                    "#status = :running AND #attempts = :attempt AND #progress.#percent <= :percent"
                    " AND (attribute_not_exists(#cancel) OR #cancel = :false)"
                ),
                ExpressionAttributeNames={
                    "#progress": "progress",
                    "#percent": "percent",
                    "#status": "status",
                    "#attempts": "attempts",
                    "#version": "version",
                    "#cancel": "cancel_requested",
                    **names,
                },
                ExpressionAttributeValues={
                    ":progress": attribute_value(progress),
                    ":running": attribute_value(JobStatus.RUNNING.value),
                    ":attempt": attribute_value(attempt),
                    ":percent": attribute_value(progress.percent),
                    ":one": attribute_value(1),
                    ":false": attribute_value(False),
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except (ClientError, BotoCoreError) as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                stored = _answer(exc).get("Item")
                current = item_to_job(stored) if stored is not None else self.get(job_id, consistent=True)
                if current is not None and current.cancel_requested and current.status == JobStatus.RUNNING \
                        and current.attempts == attempt:
                    return current  # a cancel was requested: nothing written, the caller stops
                raise _progress_refusal(job_id, attempt, progress, current) from exc
            if _too_large(exc):
                raise ProgressRejectedError(  # the report is what is wrong, not the store
                    f"progress of job {job_id} does not fit its record (400 KB with its payload): "
                    "send a shorter message or smaller details") from exc
            raise StoreUnavailableError(f"could not record progress of job {job_id}") from exc
        return item_to_job(response["Attributes"])

    # -- reads ------------------------------------------------------------------------------

    def get(self, job_id: str, *, consistent: bool = True, tenant: Optional[str] = None,
            fetch: Collection[str] = CLAIM_CHECKED, mark_gone: bool = False) -> Optional[Job]:
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

    def _fetch(self, key: str) -> bytes:
        if self._blobs is None:
            raise StoreUnavailableError(f"job data is in S3 ({key}) but no bucket is configured")
        return self._blobs.get(key)

    def get_many(self, job_ids: Iterable[str]) -> dict[str, Job]:
        ids = list(dict.fromkeys(job_ids))
        found: dict[str, Job] = {}
        for start in range(0, len(ids), BATCH_GET_MAX):
            keys = [job_key(i) for i in ids[start : start + BATCH_GET_MAX]]
            for item in self._batch_get(keys):
                if is_purging(item):
                    continue
                job = item_to_job(item)
                found[job.id] = job
        return found

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return batch_get(self._ddb, self._table, keys, error="could not read jobs")

    def list_jobs(self, query: JobQuery) -> JobPage:
        index_kind = "status" if query.status else ("type" if query.type else None)
        index, pk_attr, sk_attr = _INDEXES[index_kind]
        if query.status:
            partition = status_key(query.tenant, query.status.value)
        elif query.type:
            partition = type_partition(query.tenant, query.type)
        else:
            partition = tenant_partition(query.tenant)
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": index,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": pk_attr},
            "ExpressionAttributeValues": {":pk": {"S": partition}},
            "ScanIndexForward": False,
            "Limit": query.limit,
        }
        if query.cursor:
            request["ExclusiveStartKey"] = _decode_cursor(query.cursor, pk_attr, sk_attr, partition)
        wanted = (lambda job: job.type == query.type) if query.status and query.type else None
        jobs: list[Job] = []
        spent, shown = 0, None  # the answer's bytes so far; the index key of the page's last job
        # One key more than a page: DynamoDB ends a page that fills its Limit with a
        # LastEvaluatedKey whether or not anything follows, and the key past the page tells.
        request["Limit"] = query.limit + 1
        for _ in range(FILTERED_LISTING_READS if wanted else 1):
            try:
                response = self._ddb.query(**request)
            except (ClientError, BotoCoreError) as exc:
                raise StoreUnavailableError("could not list jobs") from exc
            read = response.get("Items", [])
            keys = read[: query.limit]
            more = len(read) > len(keys) or "LastEvaluatedKey" in response
            ids = [job_id_of(deserializer.deserialize(k["pk"])) for k in keys]
            by_id = self.get_many(ids)
            for n, (key, job_id) in enumerate(zip(keys, ids), 1):
                job = by_id.get(job_id)
                if job is None or (wanted and not wanted(job)):
                    continue
                size = answer_bytes(job.public())
                if jobs and spent + size > query.answer_bytes:  # the answer is full: go on from the last job
                    return JobPage(jobs, _encode_cursor(shown))
                spent, shown = spent + size, _start_key(key, pk_attr, sk_attr)
                jobs.append(job)
                if len(jobs) == query.limit and wanted:  # full: the next page starts after this job
                    follows = n < len(keys) or more
                    return JobPage(jobs, _encode_cursor(_start_key(key, pk_attr, sk_attr)) if follows else None)
            if not more:
                return JobPage(jobs, None)
            last = _start_key(keys[-1], pk_attr, sk_attr) if len(read) > len(keys) else response["LastEvaluatedKey"]
            request["ExclusiveStartKey"] = last
        return JobPage(jobs, _encode_cursor(last))

    def due(self, now: str, limit: int, after: Optional[str] = None) -> JobPage:
        # One Query per shard, each from the cursor on: the `limit` earliest of their union are
        # the index's `limit` earliest, whichever shards they sit in.
        places: list[tuple[str, str]] = []
        more = False
        for shard in range(DUE_SHARDS):
            values = {":pk": {"S": due_partition(shard)}, ":upper": {"S": f"{now}#~"}}
            condition = "#pk = :pk AND #sk < :upper"
            if after is not None:  # BETWEEN takes its ends: the cursor's own entry is dropped below
                values[":after"] = {"S": after}
                condition = "#pk = :pk AND #sk BETWEEN :after AND :upper"
            try:
                response = self._ddb.query(
                    TableName=self._table,
                    IndexName="by_due",
                    KeyConditionExpression=condition,
                    ExpressionAttributeNames={"#pk": "gsi5pk", "#sk": "gsi5sk"},
                    ExpressionAttributeValues=values,
                    Limit=limit + 1,
                )
            except (ClientError, BotoCoreError) as exc:
                raise StoreUnavailableError("could not read the due jobs") from exc
            read = [(item["gsi5sk"]["S"], job_id_of(item["pk"]["S"])) for item in response.get("Items", [])]
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

    def create_child(self, child: Job, attempt: int) -> None:
        item, ref = self._new_item(child)
        link = self._link(child.parent_id or "", child.id, attempt, listed_already_fails=False, canceled_fails=True)
        transaction = [
            {"Put": {"TableName": self._table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Update": link},
        ]
        try:  # a TransactionConflict is the parent's own progress write, at the same moment: tried again
            transact_write(self._ddb, transaction)
        except (ClientError, BotoCoreError) as exc:
            reasons = [r.get("Code") for r in _answer(exc).get("CancellationReasons") or []]
            if reasons[:1] == ["ConditionalCheckFailed"]:  # its payload object is the existing child's
                raise StaleJobError(f"job {child.id} already exists") from exc
            if ref is not None and _not_written(exc):  # after a lost answer the child may be stored
                self._blobs.delete([ref["key"]])
            if reasons[1:2] == ["ConditionalCheckFailed"]:
                raise self._not_linked(child.parent_id or "", child.id, attempt) from exc
            if _too_large(exc):
                raise RecordTooLargeError(
                    f"job {child.parent_id}'s record has no room to list child {child.id} (400 KB)") from exc
            raise StoreUnavailableError(f"could not spawn child {child.id} of job {child.parent_id}") from exc

    def add_child(self, parent_id: str, child_id: str, attempt: int) -> None:
        try:
            self._ddb.update_item(**self._link(parent_id, child_id, attempt, listed_already_fails=True))
        except (ClientError, BotoCoreError) as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise StoreUnavailableError(f"could not link child {child_id} to job {parent_id}") from exc
            parent = self.get(parent_id)  # the rare path: tell a listed child from a refusal
            if parent is None or child_id not in parent.children:
                raise self._not_linked(parent_id, child_id, attempt, parent) from exc

    def _link(self, parent_id: str, child_id: str, attempt: int, *, listed_already_fails: bool,
              canceled_fails: bool = False) -> dict[str, Any]:
        """The update appending `child_id` to the parent's children while `attempt` runs (and,
        `canceled_fails`, while no cancel was requested: a new child of a canceled fan-out)."""
        condition = "#status = :running AND #attempts = :attempt"
        names = {"#children": "children", "#version": "version", "#status": "status", "#attempts": "attempts"}
        values = {":empty": {"L": []}, ":child": {"L": [{"S": child_id}]}, ":one": {"N": "1"},
                  ":running": attribute_value(JobStatus.RUNNING.value), ":attempt": attribute_value(attempt)}
        if listed_already_fails:
            condition += " AND NOT contains(#children, :child_id)"
            values[":child_id"] = {"S": child_id}
        if canceled_fails:
            condition += " AND (attribute_not_exists(#cancel) OR #cancel = :false)"
            names["#cancel"] = "cancel_requested"
            values[":false"] = {"BOOL": False}
        return {
            "TableName": self._table,
            "Key": job_key(parent_id),
            "UpdateExpression": "SET #children = list_append(if_not_exists(#children, :empty), :child) ADD #version :one",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    def _not_linked(self, parent_id: str, child_id: str, attempt: int, parent: Optional[Job] = None) -> JobpipeError:
        """Why the parent refused to list the child: it does not exist, `attempt` is over, or
        its cancel was requested."""
        parent = parent or self.get(parent_id)
        if parent is None:
            return JobNotFoundError(f"job {parent_id} does not exist; cannot list child {child_id}")
        if parent.status == JobStatus.RUNNING and parent.attempts == attempt and parent.cancel_requested:
            return JobCancelledError(f"job {parent_id} was canceled: child {child_id} is not spawned")
        return AttemptEndedError.refusing(parent_id, attempt, f"child {child_id} is not spawned")

    def runs(self, job_id: str) -> list[Run]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :run)",
            "ExpressionAttributeValues": {":pk": {"S": job_partition(job_id)}, ":run": {"S": RUN_PREFIX}},
            "ConsistentRead": True,
        }
        items: list[dict[str, Any]] = []
        try:
            while True:  # a Query answers 1 MB at most: a job with hundreds of failed attempts has more
                response = self._ddb.query(**request)
                items.extend(response.get("Items", []))
                if "LastEvaluatedKey" not in response:
                    break
                request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError(f"could not read runs of job {job_id}") from exc
        return [item_to_run(i) for i in items]


def _progress_refusal(job_id: str, attempt: int, progress: Progress, current: Optional[Job]) -> ProgressRejectedError:
    """Why a progress write was refused, from the job as stored when it was."""
    if current is None:
        return ProgressRejectedError(f"job {job_id} does not exist")
    if current.status != JobStatus.RUNNING or current.attempts != attempt:
        return ProgressRejectedError(
            f"attempt {attempt} of job {job_id} is not running (job is {current.status.value})",
            details={"status": current.status.value, "attempt": current.attempts},
        )
    return ProgressRejectedError(
        f"progress cannot decrease from {current.progress.percent:g} to {progress.percent:g}",
        details={"current": current.progress.percent, "requested": progress.percent},
    )


def _wrote(stored: Optional[dict[str, Any]], write_id: str) -> bool:
    """Whether `stored`, the item an `apply` was refused on, carries that write's own id:
    botocore tried the write again after DynamoDB applied it and its answer was lost, and the
    retry was refused by the write itself (a cancel by the job now canceled, a dispatch by its
    own version). Contents cannot tell: two reconciler passes releasing one held job write the
    same due time and count, and only the one whose write landed may send the message."""
    return stored is not None and stored.get(WRITE_ID, {}).get("S") == write_id


def _shows(stored: Optional[dict[str, Any]], changes: ChangeSet, *, version: Optional[int] = None) -> bool:
    """Whether `stored`, the item a claim's conditional write was refused on, holds every change
    of that claim (at `version`, when given): ChangeSet.claim_landed_in, whichever request made
    it (the port's contract, which the in-memory store keeps too)."""
    if stored is None or "claim_id" not in changes.fields:
        return False
    current = item_to_job(stored)
    return (version is None or current.version == version) and changes.claim_landed_in(current)


def _not_written(exc: Optional[BaseException]) -> bool:
    """Whether a failed write's answer proves it wrote nothing: DynamoDB refused its one and only
    try (a 4xx). A timeout, a lost connection or a 5xx may come after the write was applied, and
    a refused retry may follow a try that was (botocore retries both)."""
    if not isinstance(exc, ClientError):
        return False
    meta = _answer(exc).get("ResponseMetadata", {})
    return meta.get("HTTPStatusCode", 500) < 500 and not meta.get("RetryAttempts")


def _lost_race(exc: ClientError) -> bool:
    code = _error_code(exc)
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = _answer(exc).get("CancellationReasons") or []
        if any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
            return True
        return "ConditionalCheckFailed" in str(exc)
    return False


def _too_large(exc: Exception) -> bool:
    """DynamoDB refused the write because the item would pass 400 KB (alone or in a transaction)."""
    code = _error_code(exc)
    if code == "TransactionCanceledException":
        reasons = _answer(exc).get("CancellationReasons") or []
        return any(r.get("Code") == "ValidationException" and "size" in str(r.get("Message", "")).lower()
                   for r in reasons) or ("ValidationException" in str(exc) and "size" in str(exc).lower())
    return code == "ValidationException" and "size" in str(exc).lower()


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
