"""The stats recorder: keeps the counters operators read (GET /api/system/stats) from the jobs
table's stream, by comparing each job item's old and new image. Change data capture keeps
the lifecycle unaware of statistics. It runs inside the event publisher (one consumer of
the stream, not two: every stream invocation runs on the mapping's poller) as one small
transaction per stream batch; a failure raises, the batch is delivered again, and the
per-(job, version) marker keeps counts exact."""
from __future__ import annotations

from typing import Any, Optional

from boto3.dynamodb.types import TypeDeserializer
from chalicelib.domain.job import utcnow
from chalicelib.domain.stats import delta_for

_deserializer = TypeDeserializer()
# Only these attributes matter for counting; the rest of the image is not decoded.
_FIELDS = ("sk", "id", "tenant", "type", "status", "version", "created_at", "finished_at")


def _image(raw: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    if not raw:
        return None
    return {k: _deserializer.deserialize(raw[k]) for k in _FIELDS if k in raw}


def record_changes(records: list[dict[str, Any]], stats: Any) -> int:
    """Count every status change in a batch of stream records, in one write per shared counter
    item for the whole batch; returns how many changes were new."""
    now = utcnow()
    deltas = []
    for record in records:
        change = record.get("dynamodb", {})
        delta = delta_for(_image(change.get("OldImage")), _image(change.get("NewImage")), now)
        if delta is not None:
            deltas.append(delta)
    return stats.record_batch(deltas) if deltas else 0
