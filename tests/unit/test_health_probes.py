"""The health probes ask only what the roles that run them are granted: the bucket is probed by
a listing under a prefix, which an `s3:prefix` condition on `s3:ListBucket` allows, never by a
HeadBucket (a ListBucket naming no prefix)."""
from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.adapters.health import bucket_probe
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
