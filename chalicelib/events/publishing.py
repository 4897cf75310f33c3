"""Publish the events of a batch of job writes, in order, reporting where publishing stopped."""
from __future__ import annotations

from typing import Optional, Sequence

from chalicelib.domain.errors import EventPublishError
from chalicelib.events.changes import JobChange, events_for_change
from chalicelib.ports import EventPublisher

CHUNK = 10


def publish_changes(changes: Sequence[JobChange], publisher: EventPublisher) -> Optional[str]:
    """Publish every event of `changes` in stream order. Returns None when all went out, else
    the sequence number of the first change whose events may not have: the stream is retried
    from there (events already out are published again with the same event_id)."""
    pending = [(change.sequence_number, event) for change in changes
               for event in events_for_change(change.old, change.new, change.timestamp)]
    for start in range(0, len(pending), CHUNK):
        chunk = pending[start : start + CHUNK]
        try:
            publisher.publish([event for _, event in chunk])
        except EventPublishError as exc:
            failed = set(exc.unpublished)
            for sequence_number, event in chunk:
                if not failed or event.event_id in failed:
                    return sequence_number
            return chunk[0][0]
    return None
