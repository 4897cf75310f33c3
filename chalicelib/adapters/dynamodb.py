"""DynamoDB adapter of the JobStore port.

Key design (one table, see README "Data model"):

    job      pk=JOB#<id>  sk=JOB          get by id: one GetItem; poll 100: one BatchGetItem
    run      pk=JOB#<id>  sk=RUN#<0001>   a job's runs: one Query on pk, begins_with(sk, RUN#)
    artifact pk=JOB#<id>  sk=ART#<name>   a job's artifacts: one Query on pk, begins_with(sk, ART#)

    GSI by_tenant  gsi1pk=T#<tenant>            gsi1sk=<created_at>#<id>   newest first
    GSI by_status  gsi2pk=T#<tenant>#S#<status> gsi2sk=<created_at>#<id>   status filter
    GSI by_type    gsi3pk=T#<tenant>#Y#<type>   gsi3sk=<created_at>#<id>   type filter

    GSI by_finished_day  gsi4pk=FIN#<yyyy-mm-dd>#<shard>  gsi4sk=<finished_at>#<id>   sparse: finished jobs only

by_finished_day lets clean-up find old finished jobs across tenants without a Scan: one
Query per (day, shard) partition, oldest first. The shard (0-7, from the id) spreads a busy
day's finishes over eight partitions.

Claim-check: a payload or result whose JSON exceeds `inline_limit` is written to S3
(`jobs/<id>/payload.json`, `result.json`) and the item keeps `payload_ref`/`result_ref`; get()
reads it back, so callers never see the difference. Listings (get_many) do not fetch those
objects: they show `{"claim_check": {"bytes": n}}` in place of the value, and GET /jobs/<id>
returns it whole. Runs get `expires_at` too, so TTL removes a job's whole partition.

The indexes project keys only: progress writes (the most frequent write) change no indexed
attribute, so they cost one write unit, not four. A listing is one Query plus one
BatchGetItem of the page. Only job items carry gsi keys, so runs and artifacts stay out of
the indexes. `expires_at` is the table's TTL attribute. Nothing on a request path scans.
"""
from __future__ import annotations

import base64
import json
import time
import zlib
from decimal import Decimal
from typing import Any, Callable, Iterable, Optional

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from chalicelib.domain.errors import (
    InvalidRequestError,
    ProgressRejectedError,
    StaleJobError,
    StoreUnavailableError,
)
from chalicelib.domain.job import Job, Progress, Run
from chalicelib.domain.status import JobStatus
from chalicelib.ports import REMOVE, BlobStore, ChangeSet, JobPage, JobQuery

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

_INDEXES = {
    None: ("by_tenant", "gsi1pk", "gsi1sk"),
    "status": ("by_status", "gsi2pk", "gsi2sk"),
    "type": ("by_type", "gsi3pk", "gsi3sk"),
}
_JSON_FIELDS = {"payload": "payload_json", "result": "result_json"}
_REFS = {"payload": "payload_ref", "result": "result_ref"}
_BATCH_GET_MAX = 100
FINISHED_SHARDS = 8
# Runs are written while a job runs; they outlive its record by this margin.
_RUN_EXPIRY_MARGIN_S = 24 * 3600
_UNPROCESSED_RETRIES = 6


def job_key(job_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "JOB"}}


def run_key(job_id: str, attempt: int) -> dict[str, Any]:
    return {"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": f"RUN#{attempt:04d}"}}


def _plain(value: Any) -> Any:
    """Python value -> what TypeSerializer accepts (floats as Decimal, models as dicts)."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, JobStatus):
        return value.value
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _av(value: Any) -> dict[str, Any]:
    return _serializer.serialize(_plain(value))


def _from_ddb(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_ddb(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_ddb(v) for v in value]
    return value


def finished_keys(job_id: str, finished_at: str) -> tuple[str, str]:
    """(gsi4pk, gsi4sk) of a finished job in the by_finished_day index."""
    shard = zlib.crc32(job_id.encode()) % FINISHED_SHARDS
    return f"FIN#{finished_at[:10]}#{shard}", f"{finished_at}#{job_id}"


def blob_key(job_id: str, field: str) -> str:
    return f"jobs/{job_id}/{field}.json"


def _status_key(tenant: str, status: str) -> str:
    return f"T#{tenant}#S#{status}"


def job_to_item(job: Job) -> dict[str, Any]:
    data = job.model_dump(mode="json", exclude_none=True)
    sort_key = f"{job.created_at}#{job.id}"
    item: dict[str, Any] = {
        "pk": f"JOB#{job.id}",
        "sk": "JOB",
        "gsi1pk": f"T#{job.tenant}",
        "gsi1sk": sort_key,
        "gsi2pk": _status_key(job.tenant, job.status.value),
        "gsi2sk": sort_key,
        "gsi3pk": f"T#{job.tenant}#Y#{job.type}",
        "gsi3sk": sort_key,
    }
    if job.finished_at:
        item["gsi4pk"], item["gsi4sk"] = finished_keys(job.id, job.finished_at)
    for name, value in data.items():
        if name in _JSON_FIELDS:
            item[_JSON_FIELDS[name]] = json.dumps(value, separators=(",", ":"))
        else:
            item[name] = value
    return {k: _av(v) for k, v in item.items()}


def _claim_check_placeholder(size: int) -> dict[str, Any]:
    return {"claim_check": {"bytes": size}}


def item_to_job(item: dict[str, Any], fetch: Optional[Callable[[str], bytes]] = None) -> Job:
    """`fetch(key)` reads a claim-checked payload/result; without it they show as placeholders."""
    data = {k: _from_ddb(_deserializer.deserialize(v)) for k, v in item.items()}
    for name, stored in _JSON_FIELDS.items():
        if stored in data:
            data[name] = json.loads(data.pop(stored))
        ref = data.pop(_REFS[name], None)
        if ref is not None:
            key, size = ref["key"], ref["bytes"]
            data[name] = json.loads(fetch(key)) if fetch else _claim_check_placeholder(size)
    for key in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk", "gsi4pk", "gsi4sk"):
        data.pop(key, None)
    return Job.model_validate(data)


def item_to_run(item: dict[str, Any]) -> Run:
    data = {k: _from_ddb(_deserializer.deserialize(v)) for k, v in item.items()}
    for key in ("pk", "sk", "expires_at"):
        data.pop(key, None)
    return Run.model_validate(data)


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


class DynamoJobStore:
    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        blobs: Optional[BlobStore] = None,
        inline_limit: int = 64 * 1024,
        retention_s: Optional[int] = None,
    ) -> None:
        """Without `blobs`, payloads and results always stay in the item (max 400 KB in all)."""
        self._ddb = client
        self._table = table_name
        self._blobs = blobs
        self._inline_limit = inline_limit
        self._retention_s = retention_s

    def _check_out(self, job_id: str, field: str, text: str) -> Optional[dict[str, Any]]:
        """Write `text` to S3 if it is too large for the item; returns the ref to keep, or None."""
        data = text.encode()
        if self._blobs is None or len(data) <= self._inline_limit:
            return None
        key = blob_key(job_id, field)
        self._blobs.put(key, data, "application/json")
        return {"key": key, "bytes": len(data)}

    # -- writes -----------------------------------------------------------------------------

    def create(self, job: Job) -> None:
        item = job_to_item(job)
        ref = self._check_out(job.id, "payload", item["payload_json"]["S"])
        if ref is not None:
            del item["payload_json"]
            item["payload_ref"] = _av(ref)
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                raise StaleJobError(f"job {job.id} already exists") from exc
            if ref is not None:
                self._blobs.delete([ref["key"]])
            raise StoreUnavailableError("could not store the job") from exc

    def discard(self, job_id: str) -> None:
        try:
            self._ddb.delete_item(TableName=self._table, Key=job_key(job_id))
        except ClientError as exc:
            raise StoreUnavailableError(f"could not remove job {job_id}") from exc
        if self._blobs is not None:
            self._blobs.delete([blob_key(job_id, "payload")])

    def apply(self, job: Job, expected_status: JobStatus, changes: ChangeSet) -> Job:
        names = {"#status": "status", "#version": "version"}
        values = {
            ":expected": _av(expected_status.value),
            ":version": _av(job.version),
            ":next": _av(job.version + 1),
        }
        sets, removes = ["#version = :next"], []
        for i, (field, value) in enumerate(changes.fields.items()):
            attr = _JSON_FIELDS.get(field, field)
            names[f"#f{i}"] = attr
            if value is REMOVE or value is None:
                removes.append(f"#f{i}")
                continue
            if field in _JSON_FIELDS:
                value = json.dumps(value, separators=(",", ":"))
                names[f"#r{i}"] = _REFS[field]
                ref = self._check_out(job.id, field, value)
                if ref is not None:  # the value goes to S3, the item keeps where
                    names[f"#f{i}"], names[f"#r{i}"] = _REFS[field], attr
                    value = ref
                removes.append(f"#r{i}")
            sets.append(f"#f{i} = :v{i}")
            values[f":v{i}"] = _av(value)
        if changes.fields.get("finished_at"):
            names["#gsi4pk"], names["#gsi4sk"] = "gsi4pk", "gsi4sk"
            values[":gsi4pk"], values[":gsi4sk"] = map(_av, finished_keys(job.id, changes.fields["finished_at"]))
            sets += ["#gsi4pk = :gsi4pk", "#gsi4sk = :gsi4sk"]
        if "status" in changes.fields:
            names["#gsi2pk"] = "gsi2pk"
            values[":gsi2pk"] = _av(_status_key(job.tenant, JobStatus(changes.fields["status"]).value))
            sets.append("#gsi2pk = :gsi2pk")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        update = {
            "TableName": self._table,
            "Key": job_key(job.id),
            "UpdateExpression": expression,
            "ConditionExpression": "#status = :expected AND #version = :version",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        try:
            if changes.run is None:
                self._ddb.update_item(**update)
            else:
                self._ddb.transact_write_items(
                    TransactItems=[{"Update": update}, self._run_write(changes.run)]
                )
        except ClientError as exc:
            if _lost_race(exc):
                raise StaleJobError(
                    f"job {job.id} is no longer {expected_status.value} at version {job.version}"
                ) from exc
            raise StoreUnavailableError(f"could not update job {job.id}") from exc
        fields = {k: (None if v is REMOVE else v) for k, v in changes.fields.items()}
        return job.model_copy(update={**fields, "version": job.version + 1})

    def _run_write(self, run: Run) -> dict[str, Any]:
        expiry = {}
        if self._retention_s is not None:
            expiry = {"expires_at": int(time.time()) + self._retention_s + _RUN_EXPIRY_MARGIN_S}
        if run.started_at is not None:
            item = {**run_key(run.job_id, run.attempt), **{
                k: _av(v) for k, v in {**_plain(run), **expiry}.items()
            }}
            return {"Put": {"TableName": self._table, "Item": item}}
        data = {**_plain(run.model_copy(update={"job_id": None, "attempt": None})), **expiry}
        names = {f"#r{i}": k for i, k in enumerate(data)}
        values = {f":r{i}": _av(v) for i, v in enumerate(data.values())}
        return {
            "Update": {
                "TableName": self._table,
                "Key": run_key(run.job_id, run.attempt),
                "UpdateExpression": "SET " + ", ".join(f"#r{i} = :r{i}" for i in range(len(data))),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def record_progress(self, job_id: str, attempt: int, progress: Progress) -> Job:
        try:
            response = self._ddb.update_item(
                TableName=self._table,
                Key=job_key(job_id),
                UpdateExpression="SET #progress = :progress ADD #version :one",
                ConditionExpression=(
                    "#status = :running AND #attempts = :attempt AND #progress.#percent <= :percent"
                ),
                ExpressionAttributeNames={
                    "#progress": "progress",
                    "#percent": "percent",
                    "#status": "status",
                    "#attempts": "attempts",
                    "#version": "version",
                },
                ExpressionAttributeValues={
                    ":progress": _av(progress),
                    ":running": _av(JobStatus.RUNNING.value),
                    ":attempt": _av(attempt),
                    ":percent": _av(progress.percent),
                    ":one": _av(1),
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                raise self._progress_refusal(job_id, attempt, progress) from exc
            raise StoreUnavailableError(f"could not record progress of job {job_id}") from exc
        return item_to_job(response["Attributes"])

    def _progress_refusal(self, job_id: str, attempt: int, progress: Progress) -> ProgressRejectedError:
        current = self.get(job_id, consistent=True)
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

    # -- reads ------------------------------------------------------------------------------

    def get(self, job_id: str, *, consistent: bool = True) -> Optional[Job]:
        try:
            response = self._ddb.get_item(
                TableName=self._table, Key=job_key(job_id), ConsistentRead=consistent
            )
        except ClientError as exc:
            raise StoreUnavailableError(f"could not read job {job_id}") from exc
        item = response.get("Item")
        return item_to_job(item, self._fetch) if item else None

    def _fetch(self, key: str) -> bytes:
        if self._blobs is None:
            raise StoreUnavailableError(f"job data is in S3 ({key}) but no bucket is configured")
        return self._blobs.get(key)

    def get_many(self, job_ids: Iterable[str]) -> dict[str, Job]:
        ids = list(dict.fromkeys(job_ids))
        found: dict[str, Job] = {}
        for start in range(0, len(ids), _BATCH_GET_MAX):
            keys = [job_key(i) for i in ids[start : start + _BATCH_GET_MAX]]
            for item in self._batch_get(keys):
                job = item_to_job(item)
                found[job.id] = job
        return found

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """BatchGetItem with UnprocessedKeys retried (botocore does not retry those)."""
        items: list[dict[str, Any]] = []
        request = {self._table: {"Keys": keys}}
        for attempt in range(_UNPROCESSED_RETRIES + 1):
            try:
                response = self._ddb.batch_get_item(RequestItems=request)
            except ClientError as exc:
                raise StoreUnavailableError("could not read jobs") from exc
            items.extend(response.get("Responses", {}).get(self._table, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return items
            time.sleep(min(1.0, 0.05 * (2**attempt)))
        raise StoreUnavailableError("the jobs table kept throttling a batch read")

    def list_jobs(self, query: JobQuery) -> JobPage:
        index_kind = "status" if query.status else ("type" if query.type else None)
        index, pk_attr, _ = _INDEXES[index_kind]
        if query.status:
            partition = _status_key(query.tenant, query.status.value)
        elif query.type:
            partition = f"T#{query.tenant}#Y#{query.type}"
        else:
            partition = f"T#{query.tenant}"
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
            request["ExclusiveStartKey"] = _decode_cursor(query.cursor, pk_attr, partition)
        try:
            response = self._ddb.query(**request)
        except ClientError as exc:
            raise StoreUnavailableError("could not list jobs") from exc
        ids = [_deserializer.deserialize(i["pk"])[len("JOB#") :] for i in response.get("Items", [])]
        by_id = self.get_many(ids)
        jobs = [by_id[i] for i in ids if i in by_id]
        if query.status and query.type:
            jobs = [j for j in jobs if j.type == query.type]
        last = response.get("LastEvaluatedKey")
        return JobPage(jobs, _encode_cursor(last) if last else None)

    def add_child(self, parent_id: str, child_id: str) -> None:
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=job_key(parent_id),
                UpdateExpression="SET #children = list_append(if_not_exists(#children, :empty), :child) ADD #version :one",
                ConditionExpression="attribute_exists(pk) AND NOT contains(#children, :child_id)",
                ExpressionAttributeNames={"#children": "children", "#version": "version"},
                ExpressionAttributeValues={
                    ":empty": {"L": []},
                    ":child": {"L": [{"S": child_id}]},
                    ":child_id": {"S": child_id},
                    ":one": {"N": "1"},
                },
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return  # already listed
            raise StoreUnavailableError(f"could not link child {child_id} to job {parent_id}") from exc

    def runs(self, job_id: str) -> list[Run]:
        try:
            response = self._ddb.query(
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :run)",
                ExpressionAttributeValues={":pk": {"S": f"JOB#{job_id}"}, ":run": {"S": "RUN#"}},
                ConsistentRead=True,
            )
        except ClientError as exc:
            raise StoreUnavailableError(f"could not read runs of job {job_id}") from exc
        return [item_to_run(i) for i in response.get("Items", [])]


def _lost_race(exc: ClientError) -> bool:
    code = _error_code(exc)
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = exc.response.get("CancellationReasons") or []
        if any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
            return True
        return "ConditionalCheckFailed" in str(exc)
    return False


def _encode_cursor(key: dict[str, Any]) -> str:
    plain = {k: _deserializer.deserialize(v) for k, v in key.items()}
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode()


def _decode_cursor(cursor: str, pk_attr: str, partition: str) -> dict[str, Any]:
    """A cursor is the page's LastEvaluatedKey; it must belong to the same listing (tenant and
    filter), so a cursor can never be used to read another tenant's index partition."""
    try:
        plain = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(plain, dict) or plain.get(pk_attr) != partition:
            raise ValueError("cursor belongs to another listing")
        if not all(isinstance(v, str) for v in plain.values()) or len(plain) != 4:
            raise ValueError("cursor has unexpected fields")
        return {k: {"S": v} for k, v in plain.items()}
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError(
            "cursor is not valid for this listing; start again without it",
            details={"cursor": cursor[:200]},
        ) from exc
