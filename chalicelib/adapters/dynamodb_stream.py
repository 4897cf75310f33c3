"""Reading job writes out of the jobs table's DynamoDB stream records."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from chalicelib.adapters.dynamodb_items import JOB_SORT_KEY, item_to_job
from chalicelib.domain.job import isoformat
from chalicelib.ports import JobChange


def job_change(record: dict[str, Any]) -> Optional[JobChange]:
    """The job write a stream record carries, or None for other items (runs, caches, ...)."""
    data = record.get("dynamodb") or {}
    keys = data.get("Keys") or {}
    if keys.get("sk", {}).get("S") != JOB_SORT_KEY:
        return None
    old_image, new_image = data.get("OldImage"), data.get("NewImage")
    created = data.get("ApproximateCreationDateTime")
    moment = datetime.fromtimestamp(float(created), timezone.utc) if created else datetime.now(timezone.utc)
    return JobChange(
        sequence_number=str(data.get("SequenceNumber", "")),
        old=item_to_job(old_image) if old_image else None,
        new=item_to_job(new_image) if new_image else None,
        timestamp=isoformat(moment),
    )
