"""Health probes of the resources the pipeline needs besides its queues: a probe returns
`{"ok": True, ...}` or raises; the health-check task records what it says."""
from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from chalicelib.domain.errors import StoreUnavailableError

# The jobs and stats tables' TTL attribute (infra/resources.json: TimeToLiveSpecification).
EXPIRY_ATTRIBUTE = "expires_at"


def _failure(what: str, exc: ClientError) -> StoreUnavailableError:
    code = exc.response.get("Error", {}).get("Code", "error")
    return StoreUnavailableError(f"{what}: {code}")


def table_probe(client: Any, table_name: str, expires_on: str = EXPIRY_ATTRIBUTE):
    """A probe of the table and its indexes (active), and of its TTL: on, on `expires_on`. With
    TTL off (the table made by hand or by a tool that left it out, or turned off since) no record
    ever expires, so retention silently stops and the table grows without end."""
    def probe() -> dict[str, Any]:
        try:
            table = client.describe_table(TableName=table_name)["Table"]
            ttl = client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
        except ClientError as exc:
            raise _failure(f"table {table_name}", exc) from exc
        status = table.get("TableStatus")
        indexes = {i["IndexName"]: i.get("IndexStatus") for i in table.get("GlobalSecondaryIndexes", [])}
        expiry = {"status": ttl.get("TimeToLiveStatus"), "attribute": ttl.get("AttributeName")}
        expiring = expiry["status"] in ("ENABLED", "ENABLING") and expiry["attribute"] == expires_on
        ok = status == "ACTIVE" and all(s in (None, "ACTIVE") for s in indexes.values()) and expiring
        checked = {"ok": ok, "name": table_name, "status": status, "indexes": indexes, "expiry": expiry}
        if not expiring:
            checked["error"] = f"TTL is not on {expires_on}: the table's records never expire"
        return checked

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
