"""EventBridge adapter of the EventPublisher port."""
from __future__ import annotations

import time
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.defaults import PUT_EVENTS_MAX_ENTRIES, PUT_EVENTS_RETRIES
from chalicelib.domain.errors import EventPublishError
from chalicelib.domain.events import SOURCE


class EventBridgePublisher:
    def __init__(self, client: Any, bus_name: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._events = client
        self._bus = bus_name
        self._sleep = sleep

    def publish(self, events: list[Any]) -> None:
        """PutEvents in chunks of 10; entries reported failed (FailedEntryCount), and calls
        refused or unanswered (a timeout, a lost connection), are retried with backoff, and
        EventPublishError lists those that never went through: the failed chunk's, and every
        event after it, which is not sent."""
        for start in range(0, len(events), PUT_EVENTS_MAX_ENTRIES):
            try:
                self._publish_chunk(events[start : start + PUT_EVENTS_MAX_ENTRIES])
            except EventPublishError as exc:
                rest = [e.event_id for e in events[start + PUT_EVENTS_MAX_ENTRIES :]]
                raise EventPublishError(exc.message, unpublished=exc.unpublished + rest) from exc.__cause__

    def _entry(self, event: Any) -> dict[str, Any]:
        return {
            "Source": SOURCE,
            "DetailType": event.detail_type,
            "Detail": event.model_dump_json(),
            "EventBusName": self._bus,
        }

    def _publish_chunk(self, chunk: list[Any]) -> None:
        pending = list(chunk)
        for attempt in range(PUT_EVENTS_RETRIES + 1):
            try:
                response = self._events.put_events(Entries=[self._entry(e) for e in pending])
            except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
                if attempt == PUT_EVENTS_RETRIES:
                    raise EventPublishError(
                        f"PutEvents failed: {exc}", unpublished=[e.event_id for e in pending]
                    ) from exc
            else:
                if not response.get("FailedEntryCount"):
                    return
                # Entries answer in request order; an entry with an ErrorCode was not accepted.
                refusals = [(e, r) for e, r in zip(pending, response["Entries"]) if r.get("ErrorCode")]
                pending = [e for e, _ in refusals]
                if attempt == PUT_EVENTS_RETRIES:
                    said = sorted({f"{r['ErrorCode']}: {r.get('ErrorMessage', '')}".rstrip(": ") for _, r in refusals})
                    raise EventPublishError(
                        f"{len(pending)} events were refused by EventBridge ({'; '.join(said)[:300]})",
                        unpublished=[e.event_id for e in pending],
                    )
            self._sleep(min(2.0, 0.1 * (2**attempt)))
