"""DynamoDB adapter of the CacheStore port, in the jobs table.

    cache entry   pk=SCOPE#<tenant>#<scope>  sk=CACHE#<namespace>   value, value_gen, generation
    completion    pk=SCOPE#<tenant>#<scope>  sk=TASK#<job type>     completed_at, job_id

A value is a hit only while `value_gen` equals `generation`; invalidation is one UpdateItem
(ADD generation 1) per namespace. A scope's completions are one Query. A completion writes its
invalidations and its task record in its own transaction (`invalidation_write`,
`completion_write`); the event path repeats both, conditionally."""
from __future__ import annotations

import json
from typing import Any, Optional

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.dynamodb_items import TASK_PREFIX, cache_sort_key, scope_partition, task_sort_key
from chalicelib.domain.caches import expiry, generation_changed
from chalicelib.domain.errors import StoreUnavailableError
from chalicelib.ports import CacheEntry, TaskCompletion

_deserialize = TypeDeserializer().deserialize


def _key(tenant: str, scope: str, sort_key: str) -> dict[str, Any]:
    return {"pk": {"S": scope_partition(tenant, scope)}, "sk": {"S": sort_key}}


def invalidation_write(table: str, tenant: str, scope: str, namespace: str, job_id: str, at: str) -> dict[str, Any]:
    """The write that invalidates a namespace (ADD generation 1), as a TransactWriteItems
    entry: the job store puts it in a completion's own transaction."""
    return {
        "Update": {
            "TableName": table,
            "Key": _key(tenant, scope, cache_sort_key(namespace)),
            "UpdateExpression": (
                "ADD generation :one SET invalidated_at = :at, invalidated_by = :job, expires_at = :expires"
            ),
            "ExpressionAttributeValues": {
                ":one": {"N": "1"},
                ":at": {"S": at},
                ":job": {"S": job_id},
                ":expires": {"N": str(expiry(at))},
            },
        }
    }


def _completion_item(tenant: str, scope: str, completion: TaskCompletion) -> dict[str, Any]:
    """The item that records a task's completion for its scope, with the namespaces its own
    write invalidated."""
    return {
        **_key(tenant, scope, task_sort_key(completion.type)),
        "type": {"S": completion.type},
        "completed_at": {"S": completion.completed_at},
        "job_id": {"S": completion.job_id},
        "namespaces": {"L": [{"S": namespace} for namespace in completion.namespaces]},
    }


def completion_write(table: str, tenant: str, scope: str, completion: TaskCompletion) -> dict[str, Any]:
    """The write that records a task's completion for its scope, as a TransactWriteItems entry:
    the job store puts it in the completion's own transaction. Unconditional (a refused
    condition would refuse the completion with it): it is written as the job completes, so it
    is the scope's latest completion of its type."""
    return {"Put": {"TableName": table, "Item": _completion_item(tenant, scope, completion)}}


class DynamoCacheStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._ddb = client
        self._table = table_name

    def put(self, tenant: str, scope: str, namespace: str, value: Any, at: str,
            expected_generation: Optional[int] = None) -> CacheEntry:
        condition = {}
        values = {
            ":value": {"S": json.dumps(value, separators=(",", ":"))},
            ":at": {"S": at},
            ":zero": {"N": "0"},
            ":expires": {"N": str(expiry(at))},
        }
        if expected_generation is not None:
            never_invalidated = "attribute_not_exists(generation) OR " if expected_generation == 0 else ""
            condition = {"ConditionExpression": never_invalidated + "generation = :expected"}
            values[":expected"] = {"N": str(expected_generation)}
        try:
            response = self._ddb.update_item(
                TableName=self._table,
                Key=_key(tenant, scope, cache_sort_key(namespace)),
                UpdateExpression=(
                    "SET #value = :value, cached_at = :at, expires_at = :expires, "
                    "value_gen = if_not_exists(generation, :zero)"
                ),
                ExpressionAttributeNames={"#value": "value"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                # Refused, the stored item comes back with the refusal: its generation, to say.
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **condition,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                current = self._entry(namespace, exc.response.get("Item") or {}).generation
                raise generation_changed(namespace, expected_generation or 0, current) from exc
            raise StoreUnavailableError("could not store the cache value") from exc
        except BotoCoreError as exc:  # a timeout or lost connection
            raise StoreUnavailableError("could not store the cache value") from exc
        return self._entry(namespace, response["Attributes"])

    def get(self, tenant: str, scope: str, namespace: str) -> CacheEntry:
        try:
            # Strongly consistent: a read after a completion sees the generation it bumped.
            item = self._ddb.get_item(
                TableName=self._table, Key=_key(tenant, scope, cache_sort_key(namespace)), ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
            raise StoreUnavailableError("could not read the cache") from exc
        return self._entry(namespace, item or {})

    def invalidate(self, tenant: str, scope: str, namespace: str, job_id: str, at: str) -> int:
        """Bump the generation unless this job's invalidation, or one at a later time, already
        did (the completion's own write does): a late event never makes a value stored after a
        newer invalidation a miss."""
        write = invalidation_write(self._table, tenant, scope, namespace, job_id, at)["Update"]
        try:
            response = self._ddb.update_item(
                **write,
                ConditionExpression=("attribute_not_exists(invalidated_at) OR invalidated_at < :at"
                                     " OR (invalidated_at = :at AND invalidated_by <> :job)"),
                ReturnValues="UPDATED_NEW",
                # Refused (the usual case: the completion's own write invalidated), the stored
                # item comes back with the refusal: no GetItem, which the consumer may not send.
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return self._entry(namespace, exc.response.get("Item") or {}).generation
            raise StoreUnavailableError("could not invalidate the cache") from exc
        except BotoCoreError as exc:  # a timeout or lost connection
            raise StoreUnavailableError("could not invalidate the cache") from exc
        return int(response["Attributes"]["generation"]["N"])

    def record_completion(self, tenant: str, scope: str, completion: TaskCompletion) -> tuple[str, ...]:
        try:
            before = self._ddb.update_item(
                TableName=self._table,
                Key=_key(tenant, scope, task_sort_key(completion.type)),
                # The namespaces stay those of the last completion's own write.
                UpdateExpression="SET #type = :type, completed_at = :at, job_id = :job",
                # A late, older completion never replaces a newer one.
                ConditionExpression="attribute_not_exists(completed_at) OR completed_at <= :at",
                ExpressionAttributeNames={"#type": "type"},
                ExpressionAttributeValues={":type": {"S": completion.type}, ":at": {"S": completion.completed_at},
                                           ":job": {"S": completion.job_id}},
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ).get("Attributes") or {}
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise StoreUnavailableError("could not record the task completion") from exc
            before = exc.response.get("Item") or {}
        except BotoCoreError as exc:  # a timeout or lost connection
            raise StoreUnavailableError("could not record the task completion") from exc
        return tuple(n["S"] for n in before.get("namespaces", {}).get("L", []) if "S" in n)

    def completions(self, tenant: str, scope: str) -> list[TaskCompletion]:
        try:
            # Strongly consistent, like a cache read: a read after a completion sees its record.
            items = self._ddb.query(
                TableName=self._table,
                ConsistentRead=True,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :task)",
                ExpressionAttributeValues={":pk": {"S": scope_partition(tenant, scope)}, ":task": {"S": TASK_PREFIX}},
            ).get("Items", [])
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError("could not read the scope's tasks") from exc
        return [
            TaskCompletion(i["type"]["S"], i["completed_at"]["S"], i["job_id"]["S"]) for i in items
        ]

    @staticmethod
    def _entry(namespace: str, item: dict[str, Any]) -> CacheEntry:
        data = {k: _deserialize(v) for k, v in item.items()}
        generation = int(data.get("generation", 0))
        hit = "value" in data and int(data.get("value_gen", -1)) == generation
        return CacheEntry(
            namespace=namespace,
            generation=generation,
            value=json.loads(data["value"]) if hit else None,
            hit=hit,
            cached_at=data.get("cached_at") if hit else None,
            invalidated_at=data.get("invalidated_at"),
            invalidated_by=data.get("invalidated_by"),
        )
