"""How jobs and runs are laid out as DynamoDB items (keys, attribute values, claim-checks)."""
from __future__ import annotations

import functools
import json
import zlib
from decimal import Decimal
from typing import Any, Callable, Collection, Optional

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from chalicelib.domain.errors import InvalidRequestError
from chalicelib.domain.job import Job, JobErrorInfo, Progress, Run, known_fields
from chalicelib.domain.status import JobStatus
from chalicelib.ports import CLAIM_CHECKED, claim_checked_value

_serializer = TypeSerializer()
deserializer = TypeDeserializer()

# A claim-checked field's attribute: its JSON text in the item, or where its object is in S3.
JSON_FIELDS = {field: f"{field}_json" for field in CLAIM_CHECKED}
BLOB_REFS = {field: f"{field}_ref" for field in CLAIM_CHECKED}
FINISHED_SHARDS = 8
# The sparse by_due index spreads unfinished jobs over this many partitions, so neither a
# burst of submissions nor the reconciler's queries meet one hot partition.
DUE_SHARDS = 8
GSI_KEYS = tuple(f"gsi{i}{part}" for i in range(1, 6) for part in ("pk", "sk"))
# The id of the last status, dispatch or cancel write to a job's item (JobStore.apply): a write
# whose answer was lost knows its own effect by it when botocore's retry is refused. The
# adapter's bookkeeping, never a field of the job.
WRITE_ID = "write_id"
# Set on a job's item when its purge starts (FinishedJobs.purge), which deletes the item last:
# a job whose purge was cut off is read as removed (never a record without its objects) and
# stays in the finished-day index for the clean-up's next run to finish. Bookkeeping too.
PURGING = "purging"


def is_purging(item: dict[str, Any]) -> bool:
    """Whether `item` (a job's, as DynamoDB returns it) belongs to a job being purged."""
    return PURGING in item


# Every key of the jobs table is built here, from parts that cannot hold the separator: a
# value with "#" (or a control character) could otherwise name a key inside another tenant's,
# job's or scope's prefix (a tenant "a#Y#x" listing as tenant "a"'s jobs of type "x").
SEPARATOR = "#"
JOB_PREFIX, RUN_PREFIX, ARTIFACT_PREFIX = "JOB#", "RUN#", "ART#"
CACHE_PREFIX, TASK_PREFIX = "CACHE#", "TASK#"
# The sort key of a job's own item in its partition (its runs and artifacts sort after it).
JOB_SORT_KEY = "JOB"


class InvalidKeyPartError(InvalidRequestError):
    """A value that would not stay inside its own part of a key."""


def key_part(value: str) -> str:
    """`value` unchanged; raises InvalidKeyPartError if it is empty or holds the separator or a
    control character."""
    if not isinstance(value, str) or not value or SEPARATOR in value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidKeyPartError("a name or id holds a character it may not: '#' or a control character",
                                  details={"value": str(value)[:128]})
    return value


def job_partition(job_id: str) -> str:
    return f"{JOB_PREFIX}{key_part(job_id)}"


def job_id_of(partition: str) -> str:
    return partition[len(JOB_PREFIX):]


def job_key(job_id: str) -> dict[str, Any]:
    return {"pk": {"S": job_partition(job_id)}, "sk": {"S": JOB_SORT_KEY}}


def run_key(job_id: str, attempt: int) -> dict[str, Any]:
    return {"pk": {"S": job_partition(job_id)}, "sk": {"S": f"{RUN_PREFIX}{int(attempt):04d}"}}


def artifact_key(job_id: str, name: str) -> dict[str, Any]:
    return {"pk": {"S": job_partition(job_id)}, "sk": {"S": f"{ARTIFACT_PREFIX}{key_part(name)}"}}


def tenant_partition(tenant: str) -> str:
    """gsi1pk: the tenant's listing."""
    return f"T#{key_part(tenant)}"


def _status_suffix(status: str) -> str:
    return f"{SEPARATOR}S{SEPARATOR}{key_part(status)}"


def status_key(tenant: str, status: str) -> str:
    """gsi2pk: the tenant's jobs in one status."""
    return f"{tenant_partition(tenant)}{_status_suffix(status)}"


# The value placeholder an UpdateItem uses for a new gsi2pk: a write that moves a job into
# another status always carries it (dynamodb_writes.py), and only such a write does.
STATUS_KEY_VALUE = ":gsi2pk"


def moves_into(update: dict[str, Any], status: str) -> bool:
    """Whether an UpdateItem request (its keyword arguments) moves a job into `status`, whatever
    the tenant: the fault injection's way to recognise a claim (status `running`)."""
    value = update.get("ExpressionAttributeValues", {}).get(STATUS_KEY_VALUE, {}).get("S", "")
    return value.endswith(_status_suffix(status))


def type_partition(tenant: str, job_type: str) -> str:
    """gsi3pk: the tenant's jobs of one type."""
    return f"{tenant_partition(tenant)}#Y#{key_part(job_type)}"


def scope_partition(tenant: str, scope: str) -> str:
    return f"SCOPE#{key_part(tenant)}#{key_part(scope)}"


def cache_sort_key(namespace: str) -> str:
    return f"{CACHE_PREFIX}{key_part(namespace)}"


def task_sort_key(job_type: str) -> str:
    return f"{TASK_PREFIX}{key_part(job_type)}"


def tenant_counter_key(tenant: str) -> str:
    """The stats table's item counting the tenant's unfinished jobs."""
    return f"TENANT#{key_part(tenant)}"


def finished_partition(day: str, shard: int) -> str:
    """gsi4pk: one shard of one day's finished jobs (`day` is yyyy-mm-dd)."""
    return f"FIN#{key_part(day)}#{int(shard)}"


def stored_progress(progress: dict[str, Any]) -> dict[str, Any]:
    """A progress map as the item keeps it: its `details` (any JSON object a handler reported)
    as JSON text, like a payload. As a map, DynamoDB would refuse a number past 38 digits or
    its exponent range (1e300, 10**40) and `plain_value` would drop its nulls."""
    if progress.get("details") is None:
        return progress
    return {**progress, "details": json.dumps(progress["details"], separators=(",", ":"))}


def plain_value(value: Any) -> Any:
    """Python value -> what TypeSerializer accepts (floats as Decimal, models as dicts)."""
    if isinstance(value, Progress):
        value = stored_progress(value.model_dump(mode="json", exclude_none=True))
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, JobStatus):
        return value.value
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: plain_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    return value


def attribute_value(value: Any) -> dict[str, Any]:
    return _serializer.serialize(plain_value(value))


def from_dynamodb(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamodb(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamodb(v) for v in value]
    return value


def finished_keys(job_id: str, finished_at: str) -> tuple[str, str]:
    """(gsi4pk, gsi4sk) of a finished job in the by_finished_day index."""
    shard = zlib.crc32(job_id.encode()) % FINISHED_SHARDS
    return finished_partition(finished_at[:10], shard), f"{finished_at}#{key_part(job_id)}"


def due_partition(shard: int) -> str:
    return f"DUE#{int(shard)}"


def due_keys(job_id: str, due_at: str) -> tuple[str, str]:
    """(gsi5pk, gsi5sk) of an unfinished job in the by_due index: due time first, so one
    Query per shard returns what is due, oldest first."""
    return due_partition(zlib.crc32(job_id.encode()) % DUE_SHARDS), f"{due_at}#{key_part(job_id)}"


def blob_prefix(job_id: str) -> str:
    """Every S3 object of a job's own data lives under this prefix."""
    return f"jobs/{job_id}/"


def blob_key(job_id: str, field: str, attempt: Optional[int] = None) -> str:
    """A claim-checked field's object. A result is keyed by its attempt, so a late attempt that
    loses the race to complete cannot overwrite the winner's object before its write fails."""
    suffix = f"-{attempt:04d}" if attempt is not None else ""
    return f"{blob_prefix(job_id)}{field}{suffix}.json"


def job_to_item(job: Job) -> dict[str, Any]:
    data = job.model_dump(mode="json", exclude_none=True, exclude={"gone"})  # a read's, never stored
    sort_key = f"{job.created_at}#{job.id}"
    item: dict[str, Any] = {
        "pk": job_partition(job.id),
        "sk": JOB_SORT_KEY,
        "gsi1pk": tenant_partition(job.tenant),
        "gsi1sk": sort_key,
        "gsi2pk": status_key(job.tenant, job.status.value),
        "gsi2sk": sort_key,
        "gsi3pk": type_partition(job.tenant, job.type),
        "gsi3sk": sort_key,
    }
    if job.finished_at:
        item["gsi4pk"], item["gsi4sk"] = finished_keys(job.id, job.finished_at)
    if job.due_at:
        item["gsi5pk"], item["gsi5sk"] = due_keys(job.id, job.due_at)
    for name, value in data.items():
        if name in JSON_FIELDS:
            item[JSON_FIELDS[name]] = json.dumps(value, separators=(",", ":"))
        elif name == "progress":
            item[name] = stored_progress(value)
        else:
            item[name] = value
    return {k: attribute_value(v) for k, v in item.items()}


def item_to_job(item: dict[str, Any], fetch: Optional[Callable[[str], bytes]] = None,
                fields: Collection[str] = CLAIM_CHECKED, *, mark_gone: bool = False) -> Job:
    """`fetch(key)` reads the claim-checked `fields` of payload/result; without it, and those
    not in `fields`, show as placeholders. An object `fetch` finds gone raises its
    BlobNotFoundError, or with `mark_gone` reads as empty and is named in the job's `gone`."""
    data = {k: from_dynamodb(deserializer.deserialize(v)) for k, v in item.items()}
    gone: list[str] = []
    for name, stored in JSON_FIELDS.items():
        if stored in data:
            data[name] = json.loads(data.pop(stored))
        ref = data.pop(BLOB_REFS[name], None)
        if ref is not None:
            read = functools.partial(fetch, ref["key"]) if fetch and name in fields else None
            data[name] = claim_checked_value(name, ref["bytes"], read, mark_gone=mark_gone, gone=gone)
    data["gone"] = gone
    progress = data.get("progress")
    if isinstance(progress, dict) and isinstance(progress.get("details"), str):  # older items keep a map
        progress["details"] = json.loads(progress["details"])
    for key in ("pk", "sk", WRITE_ID, *GSI_KEYS):
        data.pop(key, None)
    if isinstance(progress, dict):
        data["progress"] = known_fields(progress, Progress)
    if isinstance(data.get("error"), dict):
        data["error"] = known_fields(data["error"], JobErrorInfo)
    return Job.model_validate(known_fields(data, Job))


def item_to_run(item: dict[str, Any]) -> Run:
    data = {k: from_dynamodb(deserializer.deserialize(v)) for k, v in item.items()}
    for key in ("pk", "sk", "expires_at"):
        data.pop(key, None)
    if isinstance(data.get("error"), dict):
        data["error"] = known_fields(data["error"], JobErrorInfo)
    return Run.model_validate(known_fields(data, Run))

