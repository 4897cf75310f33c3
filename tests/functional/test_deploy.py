"""The deploy script on moto: botocore accepts every call as made (owner checks included); the
code upload's bucket is created once per account and region, and the zip is there; the TTL an
emulator's CloudFormation leaves out is turned on."""
from __future__ import annotations

import boto3
from moto import mock_aws

from scripts.deploy import _upload, artifact_bucket_name, ensure_artifact_bucket
from scripts.local_stack import apply_time_to_live
from tests.support.infra import create_table, resources


def test_the_code_zip_goes_to_the_accounts_own_bucket(tmp_path, monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    zip_path = tmp_path / "deployment.zip"
    zip_path.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    with mock_aws():
        session = boto3.session.Session(region_name="eu-west-1")
        account = session.client("sts").get_caller_identity()["Account"]
        s3 = session.client("s3")
        uploads = []
        for _ in range(2):  # a second deploy finds the bucket
            bucket = ensure_artifact_bucket(s3, account, "eu-west-1")
            uploads.append(_upload(s3, bucket, account, zip_path, "jobpipe"))
        first, again = uploads
        assert bucket == artifact_bucket_name(account, "eu-west-1")
        assert first == again and first.startswith(f"s3://{bucket}/jobpipe/")
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [bucket]
        assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"
        key = first.split("/", 3)[3]
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == zip_path.read_bytes()


def test_a_deploy_to_an_emulator_turns_on_the_ttl_each_table_declares(monkeypatch):
    """ministack's CloudFormation makes the tables without their TimeToLiveSpecification, so on
    the local stack no record would ever expire (finished jobs, once-only markers, idempotency
    keys): the deploy turns it on for each table the template declares it for, on the declared
    attribute, and a second deploy finds nothing to do."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    template = {"Resources": resources()}
    declared = {logical: resource["Properties"]["TimeToLiveSpecification"]["AttributeName"]
                for logical, resource in template["Resources"].items()
                if resource.get("Type") == "AWS::DynamoDB::Table"
                and "TimeToLiveSpecification" in resource["Properties"]}
    assert set(declared) >= {"JobsTable", "StatsTable", "IdempotencyTable"}
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        tables = {}
        for logical in declared:
            tables[logical] = name = f"jobpipe-{logical}-1"
            create_table(dynamodb, logical, name, with_ttl=False)
        dynamodb.update_time_to_live(TableName=tables["StatsTable"], TimeToLiveSpecification={
            "Enabled": True, "AttributeName": declared["StatsTable"]})  # one already right is left alone

        turned_on = apply_time_to_live(dynamodb, tables, template)

        assert sorted(turned_on) == sorted(name for logical, name in tables.items() if logical != "StatsTable")
        for logical, name in tables.items():
            assert dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"] == {
                "TimeToLiveStatus": "ENABLED", "AttributeName": declared[logical]}
        assert apply_time_to_live(dynamodb, tables, template) == []
