"""The subscribers' functions: the ERP bridge and cache invalidation, each consuming the queue an
EventBridge rule fills. Each record runs its effect once per event id; a failed record is
hidden for an exponential backoff before its next delivery, and dead-lettered by the queue's
redrive policy."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from chalice import Blueprint

from chalicelib.composition import Container, container
from chalicelib.invocation import entry_point
from chalicelib.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

subscribers = Blueprint(__name__)

# Placeholders: the deployment template binds each function to its real queue.
ERP_WEBHOOK_QUEUE = "jobpipe-erp-webhook"
CACHE_INVALIDATION_QUEUE = "jobpipe-cache-invalidation"


def _detail(record: SQSRecord) -> dict[str, Any]:
    """The `detail` of the EventBridge envelope an event rule put on the queue."""
    envelope = json.loads(record.body)
    detail = envelope.get("detail", envelope)
    if not isinstance(detail, dict) or "event_id" not in detail:
        raise ValueError(f"not a jobpipe event: {record.body[:200]!r}")
    return detail


class Consumer:
    """A subscriber's queue consumer: `effect(services, detail)` once per event."""

    def __init__(self, name: str, effect: Callable[[Container, dict[str, Any]], Any]) -> None:
        self._name = name
        self._effect = effect
        self._built_for: Any = None
        self._once: Any = None

    def _once_for(self, services: Container) -> Callable[..., Any]:
        if self._built_for is not services:  # built once per process (per container in tests)
            self._once = services.once_per_event(self._name, lambda detail: self._effect(services, detail))
            self._built_for = services
        return self._once

    def consume(self, event: Any, services: Container) -> dict[str, Any]:
        """Run every record of the SQS batch; returns the batch item failures."""
        # Imported on the first batch: every function loads app.py; only the SQS consumers batch.
        from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

        once = self._once_for(services)

        def handle(record: SQSRecord) -> None:
            detail = _detail(record)
            try:
                once(detail, event.context)
            except Exception:
                receives = int(record.attributes.approximate_receive_count or 1)
                backoff = services.settings.redelivery_wait_s(receives)
                services.queue.set_visibility(record.event_source_arn, record.receipt_handle, backoff)
                logger.warning(f"{self._name} failed; retrying in {backoff} s",
                               extra={"event_id": detail.get("event_id"), "receive_count": receives})
                raise

        return process_partial_response(
            event=event.to_dict(),
            record_handler=handle,
            processor=BatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False),
            context=event.context,
        )


def deliver_to_erp(services: Container, detail: dict[str, Any]) -> int:
    return services.erp_bridge.deliver(detail)


def invalidate_caches(services: Container, detail: dict[str, Any]) -> Any:
    from chalicelib.domain.events import JobEvent  # the event functions need it, not every import of app.py

    announcement = services.cache_invalidator.handle(JobEvent.model_validate(detail))
    return announcement.model_dump() if announcement else None


_erp = Consumer("erp_bridge", deliver_to_erp)
_cache = Consumer("cache_invalidation", invalidate_caches)


# 5 deliveries x the sender's 5 s timeout stay well inside the function's 60 s.
@subscribers.on_sqs_message(queue=ERP_WEBHOOK_QUEUE, batch_size=5, name="erp_bridge")
@entry_point
def erp_bridge(event: Any) -> dict[str, Any]:
    return _erp.consume(event, container())


@subscribers.on_sqs_message(queue=CACHE_INVALIDATION_QUEUE, batch_size=10, name="cache_invalidation")
@entry_point
def cache_invalidation(event: Any) -> dict[str, Any]:
    return _cache.consume(event, container())
