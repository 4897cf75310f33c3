"""What every part of the DynamoDB JobStore shares: the client, the jobs table and the keys
table (`JobTable`), a large payload or result checked out to S3 and read back, and what a
refused or failed request's answer says (`error_code`, `lost_race`, `too_large`, `not_written`)."""
from __future__ import annotations

from typing import Any, Callable, Optional

from botocore.exceptions import ClientError

from chalicelib.adapters.dynamodb_items import blob_key
from chalicelib.defaults import INLINE_LIMIT_BYTES
from chalicelib.domain.errors import StoreUnavailableError
from chalicelib.ports import BlobStore


class JobTable:
    """The jobs table's client and names, and the S3 objects a job's large values are kept in."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        blobs: Optional[BlobStore] = None,
        inline_limit: int = INLINE_LIMIT_BYTES,
        keys_table: Optional[str] = None,
        on_unreadable: Callable[[str, Exception], None] = lambda job_id, exc: None,
    ) -> None:
        """Without `blobs`, payloads and results always stay in the item (max 400 KB in all).
        `keys_table`: where submissions' Idempotency-Key records live (adapters/dynamodb_keys.py).
        `on_unreadable(job_id, error)`: told of a job item a page read leaves out (JobStore.get_many)."""
        self._on_unreadable = on_unreadable
        self._ddb = client
        self._table = table_name
        self._keys_table = keys_table
        self._blobs = blobs
        self._inline_limit = inline_limit

    def _check_out(self, job_id: str, field: str, text: str, attempt: Optional[int] = None) -> Optional[dict[str, Any]]:
        """Write `text` to S3 if it is too large for the item; returns the ref to keep, or None."""
        data = text.encode()
        if self._blobs is None or len(data) <= self._inline_limit:
            return None
        key = blob_key(job_id, field, attempt)
        self._blobs.put(key, data, "application/json")
        return {"key": key, "bytes": len(data)}

    def _fetch(self, key: str) -> bytes:
        if self._blobs is None:
            raise StoreUnavailableError(f"job data is in S3 ({key}) but no bucket is configured")
        return self._blobs.get(key)


def answer(exc: Exception) -> dict[str, Any]:
    """What AWS answered with a refusal (ClientError.response); {} for a timeout or a lost
    connection (a BotoCoreError: a read timeout carries `response=None`)."""
    return (exc.response or {}) if isinstance(exc, ClientError) else {}


def error_code(exc: Exception) -> str:
    """The AWS error code of a refusal; "" for a timeout or lost connection (BotoCoreError)."""
    return answer(exc).get("Error", {}).get("Code", "")


def not_written(exc: Optional[BaseException]) -> bool:
    """Whether a failed write's answer proves it wrote nothing: DynamoDB refused its one and only
    try (a 4xx). A timeout, a lost connection or a 5xx may come after the write was applied, and
    a refused retry may follow a try that was (botocore retries both)."""
    if not isinstance(exc, ClientError):
        return False
    meta = answer(exc).get("ResponseMetadata", {})
    return meta.get("HTTPStatusCode", 500) < 500 and not meta.get("RetryAttempts")


def lost_race(exc: ClientError) -> bool:
    code = error_code(exc)
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = answer(exc).get("CancellationReasons") or []
        if any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
            return True
        return "ConditionalCheckFailed" in str(exc)
    return False


def too_large(exc: Exception) -> bool:
    """DynamoDB refused the write because the item would pass 400 KB (alone or in a transaction)."""
    code = error_code(exc)
    if code == "TransactionCanceledException":
        reasons = answer(exc).get("CancellationReasons") or []
        return any(r.get("Code") == "ValidationException" and "size" in str(r.get("Message", "")).lower()
                   for r in reasons) or ("ValidationException" in str(exc) and "size" in str(exc).lower())
    return code == "ValidationException" and "size" in str(exc).lower()
