"""The stats recorder: a DynamoDB-stream consumer on the jobs table that keeps the counters
operators read (GET /api/system/stats), by comparing each job item's old and new image.
Change data capture keeps the lifecycle unaware of statistics. It runs on the stream's
poller, so it does one small transaction per status change and nothing else; a failure
raises, the batch is delivered again, and the per-(job, version) marker keeps counts exact."""
from __future__ import annotations

from typing import Any, Optional

from boto3.dynamodb.types import TypeDeserializer
from chalice import Blueprint

from chalicelib.composition import container
from chalicelib.domain.job import utcnow
from chalicelib.domain.stats import delta_for
from chalicelib.observability import logger

stats_stream = Blueprint(__name__)

# Placeholder: the deployment template binds the function to the jobs table's stream.
JOBS_TABLE_STREAM = "arn:aws:dynamodb:us-east-1:000000000000:table/jobpipe-jobs/stream/placeholder"

_deserializer = TypeDeserializer()
# Only these attributes matter for counting; the rest of the image is not decoded.
_FIELDS = ("sk", "id", "tenant", "type", "status", "version", "created_at", "finished_at")


def _image(raw: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    if not raw:
        return None
    return {k: _deserializer.deserialize(raw[k]) for k in _FIELDS if k in raw}


def record_changes(records: list[dict[str, Any]], stats: Any) -> int:
    """Count every status change in a batch of stream records; returns how many were new."""
    now = utcnow()
    counted = 0
    for record in records:
        change = record.get("dynamodb", {})
        delta = delta_for(_image(change.get("OldImage")), _image(change.get("NewImage")), now)
        if delta is not None and stats.record(delta):
            counted += 1
    return counted


@stats_stream.on_dynamodb_record(
    stream_arn=JOBS_TABLE_STREAM, batch_size=100, starting_position="TRIM_HORIZON", name="stats_recorder"
)
def stats_recorder(event: Any) -> None:
    records = event.to_dict().get("Records", [])
    counted = record_changes(records, container().stats)
    logger.debug("stats recorded", extra={"records": len(records), "counted": counted})
