"""Health probes of the resources the pipeline needs besides its queues: a probe returns
`{"ok": True, ...}` or raises; the health-check task records what it says."""
from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from chalicelib.domain.errors import StoreUnavailableError


def _failure(what: str, exc: ClientError) -> StoreUnavailableError:
    code = exc.response.get("Error", {}).get("Code", "error")
    return StoreUnavailableError(f"{what}: {code}")


def table_probe(client: Any, table_name: str):
    def probe() -> dict[str, Any]:
        try:
            table = client.describe_table(TableName=table_name)["Table"]
        except ClientError as exc:
            raise _failure(f"table {table_name}", exc) from exc
        status = table.get("TableStatus")
        indexes = {i["IndexName"]: i.get("IndexStatus") for i in table.get("GlobalSecondaryIndexes", [])}
        ok = status == "ACTIVE" and all(s in (None, "ACTIVE") for s in indexes.values())
        return {"ok": ok, "name": table_name, "status": status, "indexes": indexes}

    return probe


def bucket_probe(client: Any, bucket: str, prefix: str):
    """A probe that lists at most one key under `prefix`; raises StoreUnavailableError naming
    the bucket. Not HeadBucket: it needs `s3:ListBucket` on the whole bucket, a listing under a
    prefix only there (infra/resources.json grants it by prefix)."""
    def probe() -> dict[str, Any]:
        try:
            client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except ClientError as exc:
            raise _failure(f"bucket {bucket}", exc) from exc
        return {"ok": True, "name": bucket}

    return probe


def event_bus_probe(client: Any, bus: str):
    def probe() -> dict[str, Any]:
        try:
            described = client.describe_event_bus(Name=bus)
        except ClientError as exc:
            raise _failure(f"event bus {bus}", exc) from exc
        return {"ok": True, "name": described.get("Name", bus)}

    return probe
