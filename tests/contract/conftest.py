"""Contract tests: each port's behaviour written once and run against every adapter of it, the
in-memory twin and the AWS adapter on moto (`adapters` is parametrized over both), so the twins
cannot drift unseen. Tables, bucket and queues come from the same infra template as AWS."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Optional

import boto3
import pytest
from moto import mock_aws

from tests.support.infra import create_table
from tests.support.fast_moto import botocore_models_read_once, moto_transactions_keep_what_they_touch  # noqa: F401 - fixtures
from tests.support.moto_fidelity import (  # noqa: F401 - fixtures
    moto_batch_writes_over_25_are_refused,
    moto_updates_too_large_are_refused_whole,
)

TABLE, STATS_TABLE, KEYS_TABLE, BUCKET = "jobs", "stats", "idempotency", "jobs-bucket"
PRIORITIES = ("high", "normal", "low")
# Small, so tests can cross it with small payloads.
INLINE_LIMIT = 256


@dataclass
class Adapters:
    """One adapter of each port, all of the same kind (`memory` or `aws`), wired together the
    way the composition root wires them."""

    kind: str
    store: Any
    blobs: Any
    artifacts: Any
    finished: Any
    stats: Any
    queue: Any
    queue_operations: Any
    cache: Any
    reconciler_log: Any
    # The AWS side needs a receipt handle to hide a message; None on the in-memory side.
    receive: Optional[Callable[[str], list[dict[str, Any]]]] = None


def _memory() -> Adapters:
    from chalicelib.adapters import memory
    from chalicelib.adapters import memory_stats
    from chalicelib.adapters import memory_events
    from chalicelib.adapters import memory_blobs

    blobs = memory_blobs.InMemoryBlobStore()
    store = memory.InMemoryJobStore(blobs=blobs, inline_limit=INLINE_LIMIT)
    artifacts = memory_blobs.InMemoryArtifactStore(blobs, inline_limit=INLINE_LIMIT, jobs=store)
    queue = memory.InMemoryJobQueue(PRIORITIES)
    return Adapters(
        kind="memory",
        store=store,
        blobs=blobs,
        artifacts=artifacts,
        finished=memory.InMemoryFinishedJobs(store, artifacts, blobs),
        stats=memory_stats.InMemoryStatsStore(),
        queue=queue,
        queue_operations=memory.InMemoryQueueOperations(queue),
        cache=memory_events.InMemoryCacheStore(),
        reconciler_log=memory_stats.InMemoryReconcilerLog(),
    )


class PagesLikeDynamoDB:
    """A DynamoDB client that ends Query pages as DynamoDB does. moto ends a page that fills its
    `Limit` with the last matching item without a LastEvaluatedKey; DynamoDB returns one
    whenever a page stops at `Limit`, whether or not anything follows (the next page is then
    empty). Everything else goes to moto as it is."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._index_keys: dict[tuple[str, str], list[str]] = {}

    def query(self, **request: Any) -> dict[str, Any]:
        response = self._client.query(**request)
        items = response.get("Items") or []
        if items and len(items) == request.get("Limit") and "LastEvaluatedKey" not in response:
            names = ["pk", "sk", *self._keys_of(request["TableName"], request.get("IndexName"))]
            response["LastEvaluatedKey"] = {n: items[-1][n] for n in names if n in items[-1]}
        return response

    def _keys_of(self, table: str, index: Optional[str]) -> list[str]:
        if index is None:
            return []
        if (table, index) not in self._index_keys:
            described = self._client.describe_table(TableName=table)["Table"]
            for gsi in described.get("GlobalSecondaryIndexes", []):
                self._index_keys[(table, gsi["IndexName"])] = [k["AttributeName"] for k in gsi["KeySchema"]]
        return self._index_keys[(table, index)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _aws() -> Adapters:
    from chalicelib.adapters.artifacts import DynamoArtifactStore
    from chalicelib.adapters.dynamodb import DynamoJobStore
    from chalicelib.adapters.dynamodb_cache import DynamoCacheStore
    from chalicelib.adapters.reconciler_log import DynamoReconcilerLog
    from chalicelib.adapters.retention import DynamoFinishedJobs
    from chalicelib.adapters.s3 import S3BlobStore
    from chalicelib.adapters.sqs import SqsJobQueue
    from chalicelib.adapters.sqs_operations import SqsQueueOperations
    from chalicelib.adapters.stats import DynamoStatsStore

    ddb, sqs, s3 = PagesLikeDynamoDB(boto3.client("dynamodb")), boto3.client("sqs"), boto3.client("s3")
    create_table(ddb, "JobsTable", TABLE)
    create_table(ddb, "StatsTable", STATS_TABLE)
    create_table(ddb, "IdempotencyTable", KEYS_TABLE)
    s3.create_bucket(Bucket=BUCKET)
    queues, dead = {}, {}
    for priority in PRIORITIES:
        dead[priority] = sqs.create_queue(QueueName=f"jobs-{priority}-dlq")["QueueUrl"]
        queues[priority] = sqs.create_queue(QueueName=f"jobs-{priority}")["QueueUrl"]
    blobs = S3BlobStore(s3, BUCKET)

    def receive(priority: str) -> list[dict[str, Any]]:
        return sqs.receive_message(QueueUrl=queues[priority], MaxNumberOfMessages=10, AttributeNames=["All"],
                                   MessageAttributeNames=["All"]).get("Messages", [])

    return Adapters(
        kind="aws",
        store=DynamoJobStore(ddb, TABLE, blobs=blobs, inline_limit=INLINE_LIMIT, keys_table=KEYS_TABLE),
        blobs=blobs,
        artifacts=DynamoArtifactStore(ddb, TABLE, blobs, inline_limit=INLINE_LIMIT),
        finished=DynamoFinishedJobs(ddb, TABLE, blobs),
        stats=DynamoStatsStore(ddb, STATS_TABLE),
        queue=SqsJobQueue(sqs, queues, dead),
        queue_operations=SqsQueueOperations(sqs, queues, dead),
        cache=DynamoCacheStore(ddb, TABLE),
        reconciler_log=DynamoReconcilerLog(ddb, STATS_TABLE),
        receive=receive,
    )


class EpochClock:
    """A clock for adapters that take one returning epoch seconds: `now`, moved by the test."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fake_aws_credentials(monkeypatch) -> None:
    """What boto3 needs under moto: a region and fake keys, and no endpoint of a real emulator."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    # botocore sends DynamoDB Streams requests to an account's own endpoint, which moto does not serve.
    monkeypatch.setenv("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")


def expire(adapters: Any, now: int) -> None:
    """What DynamoDB's TTL may have done by `now` (epoch seconds): every item of the jobs table
    whose `expires_at` is past, deleted (records and cache items only: S3 objects stay)."""
    if adapters.kind == "memory":
        adapters.store.expire(now)
        adapters.artifacts.expire(now)
        adapters.cache.expire(now)
        return
    ddb = boto3.client("dynamodb")
    for page in ddb.get_paginator("scan").paginate(TableName=TABLE):
        for item in page["Items"]:
            if "expires_at" in item and int(item["expires_at"]["N"]) < now:
                ddb.delete_item(TableName=TABLE, Key={"pk": item["pk"], "sk": item["sk"]})


def each_kind(request, monkeypatch, memory: Callable[[], Any], aws: Callable[[], Any]):
    """For a fixture parametrized over ["memory", "aws"]: yields memory(), or aws() under moto."""
    if request.param == "memory":
        yield memory()
        return
    fake_aws_credentials(monkeypatch)
    with mock_aws():
        yield aws()


@pytest.fixture(params=["memory", "aws"])
def adapters(request, monkeypatch) -> Adapters:
    yield from each_kind(request, monkeypatch, _memory, _aws)


def body_of(message: dict[str, Any]) -> dict[str, Any]:
    return json.loads(message["Body"])
