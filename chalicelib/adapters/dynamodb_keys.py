"""Records of submissions' `Idempotency-Key`s, written by the job store in the same transaction
as the job they made.

They live in the idempotency table, not the jobs table: an item there feeds no stream (in the
jobs table each keyed submit would add a record that the stream consumer reads, decodes and
drops, and on AWS could wake it on a shard of its own), no index to keep keys out of, and the
table's TTL attribute (`expiration`) already removes old records. The API's role writes (and,
for a submit refused by the quota, reads) these items only.

    key  id=submit#<tenant>#<key>  job_id, request_hash, taken_hash (absent from records
                                   written before it was kept), expiration (epoch seconds)

A tenant name holds no `#` (`key_part` refuses one), so the first `#` after the prefix ends it
and two tenants' keys never share an id. The table's other items, the subscribers' delivery
records, have ids starting `DELIVERY#`.
"""
from __future__ import annotations

from typing import Any, Optional

from chalicelib.adapters.dynamodb_items import key_part
from chalicelib.ports import SubmissionKey

KEY_PREFIX = "submit#"
TTL_ATTRIBUTE = "expiration"  # the idempotency table's TimeToLiveSpecification


def key_id(tenant: str, key: str) -> dict[str, Any]:
    return {"id": {"S": f"{KEY_PREFIX}{key_part(tenant)}#{key}"}}


def key_put(table: str, record: SubmissionKey, now: int) -> dict[str, Any]:
    """The transaction member writing `record` unless an unexpired record of its key exists
    (DynamoDB's TTL deletes expired items up to days late, so the condition reads the expiry
    itself); a refusal returns the stored record."""
    item = {
        **key_id(record.tenant, record.key),
        "tenant": {"S": record.tenant},
        "job_id": {"S": record.job_id},
        "request_hash": {"S": record.request_hash},
        TTL_ATTRIBUTE: {"N": str(record.expires_at)},
    }
    if record.taken_hash is not None:
        item["taken_hash"] = {"S": record.taken_hash}
    return {
        "Put": {
            "TableName": table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(#id) OR #expires < :now",
            "ExpressionAttributeNames": {"#id": "id", "#expires": TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {":now": {"N": str(now)}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def item_to_key(item: dict[str, Any], key: str, now: int) -> Optional[SubmissionKey]:
    """The record an item holds, or None when it expired at `now` (not yet deleted by TTL)."""
    expires_at = int(item[TTL_ATTRIBUTE]["N"])
    if expires_at < now:
        return None
    return SubmissionKey(
        tenant=item["tenant"]["S"],
        key=key,
        job_id=item["job_id"]["S"],
        request_hash=item["request_hash"]["S"],
        expires_at=expires_at,
        taken_hash=item["taken_hash"]["S"] if "taken_hash" in item else None,
    )
