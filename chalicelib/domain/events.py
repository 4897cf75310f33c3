"""The events jobpipe publishes (source `jobpipe`) and how their ids are derived."""
from __future__ import annotations

import json
import uuid
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict

from chalicelib.defaults import MAX_EVENT_ID_CHARS, MAX_EVENT_TEXT_CHARS
from chalicelib.domain.job import Percent, known_fields

SOURCE = "jobpipe"
STATUS_CHANGED = "job.status.changed"
# Milestone progress is a status event (seed 002): its `job.status.` prefix is what the ERP
# rules route; `job.status.changed` stays one per transition.
PROGRESS_CHANGED = "job.status.progress"
CACHE_INVALIDATED = "cache.invalidated"


_EVENT_NAMESPACE = uuid.UUID("6f1d3a52-8a8e-4b8e-9a53-3c1f2f7d5b10")


def event_detail(body: str) -> dict[str, Any]:
    """The `detail` of the EventBridge envelope an event rule put on a subscriber's queue (or a
    bare detail); raises ValueError for a body that is no jobpipe event, one whose `event_id` is
    no text of at most MAX_EVENT_ID_CHARS included: no subscriber can take it (it fails alone,
    never in its batch's ledger request), and a dead-letter queue's redrive leaves it there."""
    try:
        envelope = json.loads(body)
    except ValueError:
        envelope = None
    detail = envelope.get("detail", envelope) if isinstance(envelope, dict) else None
    event_id = detail.get("event_id") if isinstance(detail, dict) else None
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID_CHARS:
        raise ValueError(f"not a jobpipe event: {body[:200]!r}")
    return detail


def event_id_for(job_id: str, version: int, kind: str = "job") -> str:
    """Deterministic: the same job write always yields the same id, so a re-publish is
    recognisable by every consumer."""
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{kind}:{job_id}:{version}"))


def clip(text: Optional[str], limit: int = MAX_EVENT_TEXT_CHARS) -> Optional[str]:
    """`text` cut to `limit` characters, marked with an ellipsis when cut."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


class JobEvent(BaseModel):
    """`detail` of job.status.changed (a transition) and job.status.progress (a milestone)."""

    model_config = ConfigDict(extra="forbid")

    event_id: str
    event_type: Literal["job.status.changed", "job.status.progress"]
    timestamp: str
    job_id: str
    status: str
    progress: Percent
    attempt: int
    previous_status: Optional[str]
    previous_progress: Optional[Percent]
    step: Optional[str] = None
    message: Optional[str] = None
    tenant: str
    type: str
    scope: Optional[str] = None
    version: int
    error: Optional[dict[str, Any]] = None
    # When the job ended, as its record says (terminal statuses only). `timestamp` is when the
    # write reached the stream: on AWS DynamoDB Streams' ApproximateCreationDateTime, rounded
    # down to the second, so it can read up to a second earlier than `finished_at` (or later).
    finished_at: Optional[str] = None

    @property
    def detail_type(self) -> str:
        return self.event_type

    @classmethod
    def read(cls, detail: dict[str, Any]) -> "JobEvent":
        """A subscriber's reading of an event's `detail`: fields this version does not know (an
        event a newer version published, waiting on a queue when an update is rolled back) are
        left out, not refused, so the event is still handled instead of failing until it is
        dead-lettered. Publishing builds the model itself, which refuses unknown fields."""
        return cls.model_validate(known_fields(detail, cls))


class CacheInvalidatedEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: str
    event_type: Literal["cache.invalidated"] = CACHE_INVALIDATED
    timestamp: str
    tenant: str
    scope: str
    namespaces: list[str]
    job_id: str
    type: str

    @property
    def detail_type(self) -> str:
        return self.event_type

