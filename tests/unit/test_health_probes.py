"""The health probes ask only what the roles that run them are granted: the bucket is probed by
a listing under a prefix, which an `s3:prefix` condition on `s3:ListBucket` allows, never by a
HeadBucket (a ListBucket naming no prefix)."""
from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.adapters.health import bucket_probe, event_bus_probe, table_probe
from chalicelib.domain.errors import StoreUnavailableError


class S3:
    """An S3 client that records its calls and answers them (or refuses every one)."""

    def __init__(self, refusal: str = "") -> None:
        self.refusal = refusal
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, operation: str):
        def call(**params: Any) -> dict[str, Any]:
            self.calls.append((operation, params))
            if self.refusal:
                raise ClientError({"Error": {"Code": self.refusal, "Message": "no"}}, operation)
            return {"KeyCount": 0}

        return call


def test_the_bucket_probe_lists_one_key_under_its_prefix():
    s3 = S3()
    assert bucket_probe(s3, "jobs-bucket", "tmp/")() == {"ok": True, "name": "jobs-bucket"}
    assert s3.calls == [("list_objects_v2", {"Bucket": "jobs-bucket", "Prefix": "tmp/", "MaxKeys": 1})]


def test_a_bucket_the_probe_cannot_list_is_named_with_the_refusal():
    with pytest.raises(StoreUnavailableError, match=r"^bucket jobs-bucket: NoSuchBucket$") as raised:
        bucket_probe(S3("NoSuchBucket"), "jobs-bucket", "tmp/")()
    assert isinstance(raised.value.__cause__, ClientError)


class Tables:
    """DescribeTable and DescribeTimeToLive of one table, as DynamoDB answers them."""

    def __init__(self, status="ACTIVE", indexes=None, ttl=("ENABLED", "expires_at"), error=None):
        self.status, self.indexes, self.ttl, self.error = status, indexes or {}, ttl, error

    def describe_table(self, TableName):
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "no"}}, "DescribeTable")
        table = {"TableName": TableName, "TableStatus": self.status}
        if self.indexes:
            table["GlobalSecondaryIndexes"] = [{"IndexName": n, "IndexStatus": s} for n, s in self.indexes.items()]
        return {"Table": table}

    def describe_time_to_live(self, TableName):
        status, attribute = self.ttl
        return {"TimeToLiveDescription": {"TimeToLiveStatus": status, "AttributeName": attribute}}


@pytest.mark.parametrize("tables, ok, expiring", [
    (Tables(indexes={"by_status": "ACTIVE"}), True, True),
    (Tables(ttl=("ENABLING", "expires_at")), True, True),  # being turned on: records will expire
    (Tables(status="UPDATING"), False, True),
    (Tables(indexes={"by_status": "ACTIVE", "by_finished_day": "CREATING"}), False, True),
    (Tables(ttl=("DISABLED", "expires_at")), False, False),
    (Tables(ttl=("ENABLED", "ttl")), False, False),  # on, but by another attribute than records carry
])
def test_a_table_is_healthy_only_active_with_its_indexes_and_ttl_on_its_expiry(tables, ok, expiring):
    """A table being updated, an index being built or TTL off (records would never expire) is
    not healthy; what each part said is reported so an operator sees which one."""
    checked = table_probe(tables, "jobs")()
    assert checked["ok"] is ok and checked["name"] == "jobs"
    assert (checked["status"], checked["indexes"]) == (tables.status, tables.indexes)
    assert checked["expiry"] == {"status": tables.ttl[0], "attribute": tables.ttl[1]}
    assert ("error" in checked) is not expiring, "an error says why records would never expire"


def test_a_table_that_cannot_be_described_fails_the_probe_naming_it_and_the_error():
    """The health check records the failure's message: which table, and DynamoDB's error code."""
    with pytest.raises(StoreUnavailableError) as failed:
        table_probe(Tables(error="ResourceNotFoundException"), "jobs")()
    assert str(failed.value) == "table jobs: ResourceNotFoundException"


class EventBridge:
    """DescribeEventBus of one bus, or a refusal of it."""

    def __init__(self, refusal: str = "") -> None:
        self.refusal = refusal

    def describe_event_bus(self, Name):
        if self.refusal:
            raise ClientError({"Error": {"Code": self.refusal, "Message": "no"}}, "DescribeEventBus")
        return {"Name": Name, "Arn": f"arn:aws:events:us-east-1:123456789012:event-bus/{Name}"}


def test_the_event_bus_probe_names_the_bus_it_found_or_fails_naming_the_refusal():
    """A bus that answers is healthy under its name; one that does not is a failed probe whose
    message names it and EventBridge's error code (the health check records it as a problem)."""
    assert event_bus_probe(EventBridge(), "jobpipe-job-events")() == {"ok": True, "name": "jobpipe-job-events"}
    with pytest.raises(StoreUnavailableError, match=r"^event bus gone: ResourceNotFoundException$"):
        event_bus_probe(EventBridge("ResourceNotFoundException"), "gone")()
