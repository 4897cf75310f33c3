"""S3 adapter of the BlobStore port: the jobs bucket holds large payloads, results and
artifacts under `jobs/<id>/`, and scratch objects under `tmp/`. The bucket's lifecycle rules
expire both prefixes (see infra/resources.json), so nothing here is the only clean-up."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator, Optional

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.defaults import DELETE_OBJECTS_MAX_KEYS
from chalicelib.domain.errors import BlobNotFoundError, StoreUnavailableError


class S3BlobStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self._s3 = client
        self._bucket = bucket

    def put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
            raise StoreUnavailableError(f"could not write object {key}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise BlobNotFoundError(f"object {key} no longer exists") from exc
            raise StoreUnavailableError(f"could not read object {key}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailableError(f"could not read object {key}") from exc

    def delete(self, keys: list[str]) -> int:
        for start in range(0, len(keys), DELETE_OBJECTS_MAX_KEYS):
            chunk = keys[start : start + DELETE_OBJECTS_MAX_KEYS]
            try:
                response = self._s3.delete_objects(
                    Bucket=self._bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
                )
            except (ClientError, BotoCoreError) as exc:
                raise StoreUnavailableError("could not delete objects") from exc
            errors = response.get("Errors") or []
            if errors:  # DeleteObjects reports failures per key inside a 200
                raise StoreUnavailableError(
                    f"could not delete {len(errors)} objects",
                    details=[{"key": e.get("Key"), "code": e.get("Code")} for e in errors[:10]],
                )
        return len(keys)

    def presigned_url(self, key: str, expires_s: int, *, content_disposition: Optional[str] = None) -> str:
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": key}
        if content_disposition is not None:
            params["ResponseContentDisposition"] = content_disposition  # signed: the URL cannot drop it
        return self._s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)

    def keys_older_than(self, prefix: str, before: datetime) -> Iterator[list[str]]:
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
                # Yielded empty too: the port's one page per page listed (a cancel is checked after each).
                yield [o["Key"] for o in page.get("Contents", []) if o["LastModified"] < before]
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError(f"could not list objects under {prefix}") from exc
