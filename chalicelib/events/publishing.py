"""Publish the events of a batch of job writes, in order, reporting where publishing stopped."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from chalicelib.defaults import PUT_EVENTS_MAX_BYTES, PUT_EVENTS_MAX_ENTRIES
from chalicelib.domain.errors import EventPublishError
from chalicelib.domain.events import SOURCE
from chalicelib.events.changes import events_for_change
from chalicelib.observability import logger
from chalicelib.ports import EventPublisher, JobChange

# Entries of several records and jobs share a PutEvents call, up to its limits (defaults.py).


def entry_size(event: Any) -> int:
    return len(SOURCE) + len(event.detail_type.encode()) + len(event.model_dump_json().encode())


def chunks(pending: Sequence[tuple[str, Any]]) -> list[list[tuple[str, Any]]]:
    """Consecutive groups of (sequence number, event) that fit one PutEvents call each."""
    groups: list[list[tuple[str, Any]]] = []
    size = 0
    for item in pending:
        item_size = entry_size(item[1])
        if not groups or len(groups[-1]) == PUT_EVENTS_MAX_ENTRIES or size + item_size > PUT_EVENTS_MAX_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(item)
        size += item_size
    return groups


def publish_changes(changes: Sequence[JobChange], publisher: EventPublisher) -> Optional[str]:
    """Publish every event of `changes` in stream order. Returns None when all went out, else
    the sequence number of the first change whose events may not have: the stream is retried
    from there (events already out are published again with the same event_id)."""
    pending = [(change.sequence_number, event) for change in changes
               for event in events_for_change(change.old, change.new, change.timestamp)]
    for chunk in chunks(pending):
        try:
            publisher.publish([event for _, event in chunk])
        except EventPublishError as exc:
            failed = set(exc.unpublished)
            stopped = next((sequence_number for sequence_number, event in chunk
                            if not failed or event.event_id in failed), chunk[0][0])
            # Where it stopped is the caller's to say (a stream retry, a replay); why is said here.
            logger.warning("events not published", extra={
                "sequence_number": stopped, "unpublished": len(failed) or len(chunk),
                "error": f"{exc.code}: {exc.message}"[:500]})
            return stopped
    return None
