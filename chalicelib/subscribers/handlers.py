"""The subscribers' functions: the ERP bridge and cache invalidation, each consuming the queue an
EventBridge rule fills. The ERP bridge delivers each event once, on a per-batch delivery ledger
(chalicelib/subscribers/delivery.py: 2 requests per SQS batch), or at least once with no ledger
when the ERP deduplicates on the signed body's event_id (ERP_RECEIVER_DEDUPLICATES); cache invalidation
is safe to repeat and keeps no ledger. A failed record is hidden for an exponential backoff
before its next delivery, and dead-lettered by the queue's redrive policy; an event the ERP
refused for good (WebhookRefusedError) is parked on the bridge's dead-letter queue at once."""
from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Callable, Optional

from chalice import Blueprint

from chalicelib.composition import Container, container
from chalicelib.defaults import DELIVERY_CLOSE_MARGIN_S, DELIVERY_LEASE_S, WEBHOOK_RETRY_AFTER_MAX_S
from chalicelib.domain.errors import JobpipeError, WebhookRefusedError, describe
from chalicelib.invocation import entry_point
from chalicelib.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

subscribers = Blueprint(__name__)

# Placeholders: the deployment template binds each function to its real queue.
ERP_WEBHOOK_QUEUE = "jobpipe-erp-webhook"
CACHE_INVALIDATION_QUEUE = "jobpipe-cache-invalidation"


def _detail(body: str) -> dict[str, Any]:
    """The `detail` of the EventBridge envelope an event rule put on the queue."""
    try:
        envelope = json.loads(body)
    except ValueError:
        envelope = None
    detail = envelope.get("detail", envelope) if isinstance(envelope, dict) else None
    if not isinstance(detail, dict) or "event_id" not in detail:
        raise ValueError(f"not a jobpipe event: {body[:200]!r}")
    return detail


def _event_ids(records: list[dict[str, Any]]) -> list[str]:
    """The event ids of the batch's readable records (the others fail on their own)."""
    ids = []
    for record in records:
        try:
            ids.append(str(_detail(record.get("body", ""))["event_id"]))
        except ValueError:
            continue
    return ids


def _seconds_left(context: Any) -> Optional[float]:
    """What is left of the invocation, or None when the context does not say."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining() / 1000 if callable(remaining) else None


def _lease_s(context: Any) -> float:
    """What is left of the invocation: a delivery record in progress outlives its process by
    no more than that (so it is never taken over while this process still delivers)."""
    left = _seconds_left(context)
    return DELIVERY_LEASE_S if left is None else left


def _wait_s(exc: Exception, backoff: int) -> int:
    """The backoff, or the wait the failure's answer asked for (Retry-After) when longer."""
    details = getattr(exc, "details", None)
    asked = details.get("retry_after_s") if isinstance(details, dict) else None
    if not isinstance(asked, (int, float)):
        return backoff
    return max(backoff, min(WEBHOOK_RETRY_AFTER_MAX_S, math.ceil(asked)))


# effect(services, detail, seconds left in the invocation or None)
Effect = Callable[[Container, dict[str, Any], Optional[float]], Any]
# The consumer's dead-letter queue (a DeadLetterQueue), or None where none is configured.
DeadLetters = Callable[[Container], Any]


class Consumer:
    """A subscriber's queue consumer: `effect(services, detail, seconds_left)` per record, once
    per event id on the consumer's delivery ledger when `exactly_once`, else every time (an
    effect that is safe to repeat). A record whose effect was refused for good
    (WebhookRefusedError) is parked on `dead_letters` as it came, with why, and succeeds; if it
    cannot be parked it is retried like any failure."""

    def __init__(self, name: str, effect: Effect, *, exactly_once: bool,
                 dead_letters: Optional[DeadLetters] = None) -> None:
        self._name = name
        self._effect = effect
        self._exactly_once = exactly_once
        self._dead_letters = dead_letters

    def _retry_later(self, services: Container, record: SQSRecord, detail: dict[str, Any], exc: Exception) -> None:
        """Hide a failed record for its backoff (or the wait its answer asked for)."""
        receives = int(record.attributes.approximate_receive_count or 1)
        backoff = _wait_s(exc, services.settings.redelivery_wait_s(receives))
        services.queue.set_visibility(record.event_source_arn, record.receipt_handle, backoff)
        logger.warning(f"{self._name} failed; retrying in {backoff} s",
                       extra={"event_id": detail.get("event_id"), "job_id": detail.get("job_id"),
                              "receive_count": receives, "error": describe(exc)[:500]})

    def _park(self, services: Container, record: SQSRecord, detail: dict[str, Any],
              refusal: WebhookRefusedError) -> bool:
        """Put a refused record on the dead-letter queue; whether it is there (its message then
        leaves its queue at once, `_acknowledge`). Its delivery record (if any) is forgotten
        like a failed one's, so a redrive delivers it. With a delivery ledger the message is
        parked once: recorded parked, a later delivery of it (its delete and its batch's answer
        both lost) is not parked again; a redriven copy is a new message."""
        queue = self._dead_letters(services) if self._dead_letters is not None else None
        extra = {"event_id": detail.get("event_id"), "status": refusal.details.get("status"), "reason": refusal.message}
        if queue is None:
            logger.warning(f"{self._name} refused for good, and no dead-letter queue is configured", extra=extra)
            return False
        ledger = services.delivery_ledger(self._name) if self._exactly_once else None
        try:
            if ledger is not None and not ledger.begin_parking(record.message_id):
                logger.warning(f"{self._name} refused an event parked before: its message is deleted",
                               extra={**extra, "message_id": record.message_id})
                return True
            queue.park(record.body, refusal.message)
        except JobpipeError as exc:  # no answer: the message comes back to be parked then
            logger.warning(f"{self._name} could not park a refused event", extra={**extra, "error": describe(exc)})
            return False
        logger.error(f"{self._name} refused for good: dead-lettered", extra=extra)
        if ledger is not None:
            try:
                ledger.parked(record.message_id)
            except JobpipeError as exc:  # parked: only a delete and an answer both lost would park it again
                logger.warning(f"{self._name} could not record a parked event",
                               extra={**extra, "message_id": record.message_id, "error": describe(exc)})
        return True

    def _acknowledge(self, services: Container, record: SQSRecord, event_id: str) -> None:
        """Delete a parked event's message (or a batch duplicate's) from its queue now."""
        try:
            services.queue.acknowledge(record.event_source_arn, record.receipt_handle)
        except JobpipeError as exc:  # the batch's answer deletes it, as it would have
            logger.warning(f"{self._name} could not delete a parked event's message",
                           extra={"event_id": event_id, "error": describe(exc)})

    def consume(self, event: Any, services: Container) -> dict[str, Any]:
        """Run every record of the SQS batch; returns the batch item failures."""
        # Imported on the first batch: every function loads app.py; only the SQS consumers batch.
        from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

        from chalicelib.subscribers.delivery import DeliveryRound

        raw = event.to_dict()
        batch = None
        if self._exactly_once:
            batch = DeliveryRound(services.delivery_ledger(self._name), _event_ids(raw.get("Records", [])),
                                  _lease_s(event.context))

        # Event ids of this batch parked: a duplicate of one is not parked twice. A parked
        # event's messages leave the queue at once, not with the batch's answer: a batch that
        # came back before its answer (an invocation that died, an answer lost) would park it again.
        parked: set[str] = set()

        def handle(record: SQSRecord) -> None:
            try:
                detail = _detail(record.body)
            except ValueError as exc:  # fails until the redrive policy parks it on the DLQ
                logger.warning(f"{self._name} received a message that is no jobpipe event",
                               extra={"message_id": record.message_id, "error": describe(exc)[:500],
                                      "receive_count": int(record.attributes.approximate_receive_count or 1)})
                raise
            event_id = str(detail["event_id"])
            try:
                if batch is None:
                    self._effect(services, detail, _seconds_left(event.context))
                else:
                    batch.run(event_id, lambda: self._effect(services, detail, _seconds_left(event.context)))
            except WebhookRefusedError as exc:
                if event_id in parked or self._park(services, record, detail, exc):
                    parked.add(event_id)
                    self._acknowledge(services, record, event_id)
                    return
                self._retry_later(services, record, detail, exc)
                raise
            except Exception as exc:
                self._retry_later(services, record, detail, exc)
                raise

        response = process_partial_response(
            event=raw,
            record_handler=handle,
            processor=BatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False),
            context=event.context,
        )
        if batch is not None:
            try:
                batch.close()
            except Exception:
                # The deliveries went out: their messages succeed rather than come back to be
                # delivered again once the lease ends. Their records stay in progress until
                # then; only a duplicate arriving after that would be delivered twice.
                logger.exception(f"{self._name} could not close its delivery records")
        return response


def deliver_to_erp(services: Container, detail: dict[str, Any], seconds_left: Optional[float]) -> int:
    """The POST ends DELIVERY_CLOSE_MARGIN_S before the invocation does, so the batch's delivery
    records are always closed: an invocation cut off by its timeout would leave the records of
    the events it delivered to lapse, and their redelivery would POST them again."""
    return services.erp_bridge.deliver(
        detail, within_s=None if seconds_left is None else seconds_left - DELIVERY_CLOSE_MARGIN_S)


def invalidate_caches(services: Container, detail: dict[str, Any], seconds_left: Optional[float]) -> Any:
    from chalicelib.domain.events import JobEvent  # the event functions need it, not every import of app.py

    announcement = services.cache_invalidator.handle(JobEvent.read(detail))
    return announcement.model_dump() if announcement else None


def _erp_dead_letters(services: Container) -> Any:
    return services.erp_dead_letters


_erp = Consumer("erp_bridge", deliver_to_erp, exactly_once=True, dead_letters=_erp_dead_letters)
# An ERP that deduplicates on the signed body's event_id makes the ledger's guarantee its own: the bridge
# then delivers at least once (a redelivered or re-published event is POSTed again, with the same
# id) at no request and no write a batch.
_erp_at_least_once = Consumer("erp_bridge", deliver_to_erp, exactly_once=False, dead_letters=_erp_dead_letters)
# No ledger: invalidation is safe to repeat (docs/performance.md). Recording the completion is
# a conditional put that never moves back in time; the invalidation is conditional on this job
# not having done it; the `cache.invalidated` announcement carries the same event id each time,
# which its consumers deduplicate on, as on every jobpipe event (the bus delivers at least once).
_cache = Consumer("cache_invalidation", invalidate_caches, exactly_once=False)


# 10 deliveries x the sender's 5 s timeout stay inside the function's 60 s (and whatever the
# ledger's requests took, a POST is cut to end DELIVERY_CLOSE_MARGIN_S before it); the ledger's
# two requests are per batch, so a fuller batch costs fewer of them (and fewer invocations).
@subscribers.on_sqs_message(queue=ERP_WEBHOOK_QUEUE, batch_size=10, name="erp_bridge")
@entry_point
def erp_bridge(event: Any) -> dict[str, Any]:
    services = container()
    return (_erp_at_least_once if services.settings.erp_receiver_deduplicates else _erp).consume(event, services)


@subscribers.on_sqs_message(queue=CACHE_INVALIDATION_QUEUE, batch_size=10, name="cache_invalidation")
@entry_point
def cache_invalidation(event: Any) -> dict[str, Any]:
    return _cache.consume(event, container())
