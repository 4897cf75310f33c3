"""The deploy script's artifact bucket: named after account and region, owner checked on every
call, created only when missing, one clear error otherwise."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from scripts.deploy import DeployError, artifact_bucket_name, ensure_artifact_bucket

ACCOUNT, REGION = "123456789012", "eu-west-1"


def client_error(code: str, status: int, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       operation)


class FakeS3:
    """S3 as seen by one account: `owners` maps bucket -> owning account."""

    def __init__(self, owners=None, create_error=None) -> None:
        self.owners = dict(owners or {})
        self.create_error = create_error
        self.calls: list[tuple[str, dict]] = []

    def head_bucket(self, **kwargs):
        self.calls.append(("head_bucket", kwargs))
        owner = self.owners.get(kwargs["Bucket"])
        if owner is None:
            raise client_error("404", 404, "HeadBucket")
        if owner != kwargs.get("ExpectedBucketOwner"):
            raise client_error("403", 403, "HeadBucket")  # what S3 answers to a wrong expected owner
        return {}

    def create_bucket(self, **kwargs):
        self.calls.append(("create_bucket", kwargs))
        if self.create_error:
            raise self.create_error
        self.owners[kwargs["Bucket"]] = ACCOUNT
        return {}


def test_the_name_carries_account_and_region():
    assert artifact_bucket_name(ACCOUNT, REGION) == "jobpipe-artifacts-123456789012-eu-west-1"


def test_a_missing_bucket_is_created_in_the_region_then_confirmed_as_ours():
    s3 = FakeS3()
    bucket = ensure_artifact_bucket(s3, ACCOUNT, REGION)
    assert bucket == artifact_bucket_name(ACCOUNT, REGION)
    assert [name for name, _ in s3.calls] == ["head_bucket", "create_bucket", "head_bucket"]
    assert s3.calls[1][1]["CreateBucketConfiguration"] == {"LocationConstraint": REGION}
    assert all(kwargs["ExpectedBucketOwner"] == ACCOUNT for name, kwargs in s3.calls if name != "create_bucket")


def test_us_east_1_takes_no_location_constraint():
    s3 = FakeS3()
    ensure_artifact_bucket(s3, ACCOUNT, "us-east-1")
    assert "CreateBucketConfiguration" not in s3.calls[1][1]


def test_an_existing_bucket_of_ours_is_used_as_is():
    s3 = FakeS3({artifact_bucket_name(ACCOUNT, REGION): ACCOUNT})
    ensure_artifact_bucket(s3, ACCOUNT, REGION)
    assert [name for name, _ in s3.calls] == ["head_bucket"]


def test_a_bucket_of_that_name_in_another_account_is_an_error():
    s3 = FakeS3({artifact_bucket_name(ACCOUNT, REGION): "999999999999"})
    with pytest.raises(DeployError, match="does not own it"):
        ensure_artifact_bucket(s3, ACCOUNT, REGION)
    assert "create_bucket" not in [name for name, _ in s3.calls]


def test_bucket_already_exists_on_create_is_not_swallowed():
    s3 = FakeS3(create_error=client_error("BucketAlreadyExists", 409, "CreateBucket"))
    with pytest.raises(DeployError, match="BucketAlreadyExists"):
        ensure_artifact_bucket(s3, ACCOUNT, REGION)


def test_losing_a_creation_race_to_ourselves_is_fine():
    s3 = FakeS3(create_error=client_error("BucketAlreadyOwnedByYou", 409, "CreateBucket"))
    original = s3.create_bucket

    def create(**kwargs):
        s3.owners[kwargs["Bucket"]] = ACCOUNT  # the other deploy created it
        return original(**kwargs)

    s3.create_bucket = create
    assert ensure_artifact_bucket(s3, ACCOUNT, REGION) == artifact_bucket_name(ACCOUNT, REGION)
