"""The DynamoDB JobStore's job writes: a new job's item (alone, or with its Idempotency-Key in
one transaction), and each conditional write that changes a job (`apply` against the status
and version read, `apply_expected` against what it requires), with the index keys it moves,
its attempt's run record and a completion's cache writes in the same transaction. A refusal
by the write's own earlier try, its answer lost, is the write landing once."""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Optional

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.dynamodb_batch import query_items, transact_write
from chalicelib.adapters.dynamodb_cache import completion_write, invalidation_write
from chalicelib.adapters.dynamodb_items import (
    BLOB_REFS,
    JSON_FIELDS,
    WRITE_ID,
    attribute_value,
    due_keys,
    finished_keys,
    item_to_job,
    JOB_SORT_KEY,
    job_key,
    job_partition,
    job_to_item,
    plain_value,
    run_key,
    STATUS_KEY_VALUE,
    status_key,
)
from chalicelib.adapters.dynamodb_keys import item_to_key, key_id, key_put
from chalicelib.adapters.dynamodb_table import JobTable, answer, error_code, lost_race, not_written, too_large
from chalicelib.defaults import CONFLICT_RETRIES, RECORD_PART_KEEP_S
from chalicelib.domain.errors import RecordTooLargeError, StaleJobError, StoreUnavailableError
from chalicelib.domain.events import clip
from chalicelib.domain.job import Job, Run, isoformat, parse_time, utcnow
from chalicelib.domain.status import JobStatus
from chalicelib.ports import REMOVE, ChangeSet, Expectation, ExpectedWrite, SubmissionKey


class JobWrites(JobTable):
    """A new job's item (with its Idempotency-Key), and the conditional writes that change a job."""

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
            if error_code(exc) == "ConditionalCheckFailedException":
                if self._is_stored(item, answer(exc).get("Item")):
                    return  # botocore's retry of a write that landed, its answer lost: this job
                raise StaleJobError(f"job {job.id} already exists") from exc
            if ref is not None and not_written(exc):
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
            if ref is not None and not_written(exc.__cause__):
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
                reasons = [r.get("Code") for r in answer(exc).get("CancellationReasons") or []]
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
            stored = answer(exc).get("Item")
            if not also and (_wrote(stored, write_id) or _shows(stored, changes, version=job.version + 1)):
                pass  # refused by what its earlier try wrote, that try's answer lost: written
            elif lost_race(exc):
                raise StaleJobError(
                    f"job {job.id} is no longer {expected_status.value} at version {job.version}"
                ) from exc
            elif too_large(exc):
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
            if lost_race(exc):
                raise StaleJobError(f"job {job.id} is no longer {expected_status.value} at version {job.version}") from exc
            raise StoreUnavailableError(f"could not update job {job.id}") from exc
        return ChangeSet({"progress": job.progress.model_copy(update={"message": cut})}).written_on(job)

    def apply_expected(self, job_id: str, tenant: str, expected: Expectation, changes: ChangeSet, *,
                       mark_gone: bool) -> ExpectedWrite:
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
            if too_large(exc):
                raise RecordTooLargeError(f"job {job_id}'s record has no room for this write (400 KB)") from exc
            if error_code(exc) != "ConditionalCheckFailedException":
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

    def keep_parts(self, job_id: str, until: int) -> int:
        """One Query of the job's partition (keys and expiries), paged, and an update per part
        that expires before `until`, on the condition that it is still there (an update of a
        deleted part would write it again) and still expires before (a concurrent end's move).
        Read eventually consistent: a part written too lately to be read was written with an
        expiry past any end's `until` (RECORD_PART_KEEP_S)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": job_partition(job_id)}},
            "ProjectionExpression": "pk, sk, expires_at",
        }
        moved = 0
        try:
            for item in query_items(self._ddb, request):
                if item["sk"]["S"] != JOB_SORT_KEY and int(item.get("expires_at", {}).get("N", "0")) < until:
                    moved += self._keep_part({"pk": item["pk"], "sk": item["sk"]}, until)
            return moved
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError(f"could not keep the runs and artifacts of job {job_id}") from exc

    def _keep_part(self, key: dict[str, Any], until: int) -> int:
        try:
            self._ddb.update_item(
                TableName=self._table, Key=key, UpdateExpression="SET #expires = :until",
                ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(#expires) OR #expires < :until)",
                ExpressionAttributeNames={"#expires": "expires_at"},
                ExpressionAttributeValues={":until": attribute_value(until)},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return 0
        return 1

    def _run_write(self, run: Run) -> dict[str, Any]:
        # RECORD_PART_KEEP_S from the attempt's end, on the clock that ended it
        written = parse_time(run.finished_at).timestamp() if run.finished_at else time.time()
        expiry = {"expires_at": int(written) + RECORD_PART_KEEP_S}
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
