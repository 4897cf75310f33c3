"""The deploy script's code upload on moto: botocore accepts every call as made (owner checks
included), the bucket is created once per account and region, and the zip is there."""
from __future__ import annotations

import boto3
from moto import mock_aws

from scripts.deploy import _upload, artifact_bucket_name, ensure_artifact_bucket


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
