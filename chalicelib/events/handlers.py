"""Event functions: the change-stream consumer (status events and statistics) and the
subscribers' queue consumers."""
from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from chalice import Blueprint

from chalicelib.adapters.dynamodb_stream import job_change
from chalicelib.composition import container
from chalicelib.defaults import redelivery_wait_s
from chalicelib.domain.errors import EventPublishError
from chalicelib.domain.events import JobEvent
from chalicelib.events.publishing import publish_changes
from chalicelib.invocation import entry_point
from chalicelib.observability import logger, tracer
from chalicelib.subscribers.idempotent import once_per_event
from chalicelib.worker.stats_stream import record_changes

events = Blueprint(__name__)

# Placeholders: the deployment template binds each function to its real stream or queue.
JOBS_STREAM = "arn:aws:dynamodb:us-east-1:000000000000:table/jobpipe-jobs/stream/1970-01-01T00:00:00.000"
ERP_WEBHOOK_QUEUE = "jobpipe-erp-webhook"
CACHE_INVALIDATION_QUEUE = "jobpipe-cache-invalidation"


@tracer.capture_method
def publish_stream_batch(event: dict[str, Any]) -> dict[str, Any]:
    """Count the batch's status changes (exactly once, whatever the redeliveries), then publish
    the status events of its job writes. Raises EventPublishError when some
    could not go out after the publisher's retries: the invocation fails and the stream
    delivers the batch again (bisected on AWS), re-publishing with the same event ids.

    Failing the invocation rather than reporting the first unpublished record as a batch item
    failure: emulators (ministack) advance a stream past a batch whose function returned, so a
    checkpoint there would drop the events after it."""
    records = event.get("Records", [])
    services = container()
    if services.settings.stats_table_name:
        record_changes(records, services.stats)
    changes = [c for c in (job_change(r) for r in records) if c is not None]
    failed_at = publish_changes(changes, services.publisher)
    if failed_at is None:
        return {"batchItemFailures": []}
    logger.warning("event publishing stopped; the stream will retry the batch", extra={"sequence_number": failed_at})
    raise EventPublishError(f"events from stream record {failed_at} on were not published")


@events.on_dynamodb_record(stream_arn=JOBS_STREAM, batch_size=100, starting_position="TRIM_HORIZON",
                           name="event_publisher")
@entry_point
def event_publisher(event: Any) -> dict[str, Any]:
    return publish_stream_batch(event.to_dict())


def _detail(record: SQSRecord) -> dict[str, Any]:
    """The `detail` of the EventBridge envelope an event rule put on the queue."""
    envelope = json.loads(record.body)
    detail = envelope.get("detail", envelope)
    if not isinstance(detail, dict) or "event_id" not in detail:
        raise ValueError(f"not a jobpipe event: {record.body[:200]!r}")
    return detail


class _Consumer:
    """Runs an idempotent effect per record; a failed record is hidden for an exponential
    backoff before its next delivery, and dead-lettered by the queue's redrive policy."""

    def __init__(self, name: str, effect: Any) -> None:
        self._name = name
        self._effect = effect
        self._built_for: Any = None
        self._once: Any = None
        self.lambda_context: Any = None

    def __call__(self, record: SQSRecord) -> None:
        services = container()
        if self._built_for is not services:  # built once per process (per container in tests)
            self._once = once_per_event(self._name, services.idempotency_persistence(), self._effect)
            self._built_for = services
        detail = _detail(record)
        try:
            self._once(detail, self.lambda_context)
        except Exception:
            receives = int(record.attributes.approximate_receive_count or 1)
            backoff = redelivery_wait_s(receives, services.settings.redelivery_base_s)
            container().queue.set_visibility(record.event_source_arn, record.receipt_handle, backoff)
            logger.warning(f"{self._name} failed; retrying in {backoff} s",
                           extra={"event_id": detail.get("event_id"), "receive_count": receives})
            raise


def deliver_to_erp(detail: dict[str, Any]) -> int:
    return container().erp_bridge.deliver(detail)


def invalidate_caches(detail: dict[str, Any]) -> Any:
    announcement = container().cache_invalidator.handle(JobEvent.model_validate(detail))
    return announcement.model_dump() if announcement else None


_erp = _Consumer("erp_bridge", deliver_to_erp)
_cache = _Consumer("cache_invalidation", invalidate_caches)


def consume(event: Any, consumer: _Consumer) -> dict[str, Any]:
    consumer.lambda_context = event.context
    return process_partial_response(
        event=event.to_dict(),
        record_handler=consumer,
        processor=BatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False),
        context=event.context,
    )


# 5 deliveries x the sender's 5 s timeout stay well inside the function's 60 s.
@events.on_sqs_message(queue=ERP_WEBHOOK_QUEUE, batch_size=5, name="erp_bridge")
@entry_point
def erp_bridge(event: Any) -> dict[str, Any]:
    return consume(event, _erp)


@events.on_sqs_message(queue=CACHE_INVALIDATION_QUEUE, batch_size=10, name="cache_invalidation")
@entry_point
def cache_invalidation(event: Any) -> dict[str, Any]:
    return consume(event, _cache)
