"""The subscribers' functions: the ERP bridge and cache invalidation, each consuming the queue an
EventBridge rule fills through a `Consumer` (chalicelib/subscribers/consumer.py: backoff,
Retry-After, parking on the dead-letter queue, the batch item failures) built per invocation on
the container's ports. The ERP bridge delivers each event once, on a per-batch delivery ledger
(chalicelib/subscribers/delivery.py: 2 requests per SQS batch), or at least once with no ledger
when the ERP deduplicates on the signed body's event_id (ERP_RECEIVER_DEDUPLICATES), and parks
an event the ERP refused for good (WebhookRefusedError) on its dead-letter queue at once; cache
invalidation is safe to repeat and keeps no ledger."""
from __future__ import annotations

from functools import partial
from typing import Any, Optional

from chalice import Blueprint

from chalicelib.composition import Container, container
from chalicelib.defaults import DELIVERY_CLOSE_MARGIN_S
from chalicelib.invocation import entry_point
from chalicelib.subscribers.consumer import Consumer

subscribers = Blueprint(__name__)

# Placeholders: the deployment template binds each function to its real queue.
ERP_WEBHOOK_QUEUE = "jobpipe-erp-webhook"
CACHE_INVALIDATION_QUEUE = "jobpipe-cache-invalidation"
# The consumers' names: their log lines' and, for the ERP bridge, its delivery ledger's
# (records DELIVERY#erp_bridge#* in the idempotency table).
ERP_BRIDGE = "erp_bridge"
CACHE_INVALIDATION = "cache_invalidation"


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


def erp_consumer(services: Container) -> Consumer:
    """The ERP bridge's consumer, on the ledger `DELIVERY#erp_bridge#*`, parking on
    ErpWebhookDeadLetterQueue. An ERP that deduplicates on the signed body's event_id makes the
    ledger's guarantee its own: the bridge then delivers at least once (a redelivered or
    re-published event is POSTed again, with the same id) at no request and no write a batch."""
    exactly_once = not services.settings.erp_receiver_deduplicates
    return Consumer(ERP_BRIDGE, partial(deliver_to_erp, services), queue=lambda: services.queue,
                    redelivery_wait_s=services.settings.redelivery_wait_s,
                    ledger=(lambda: services.delivery_ledger(ERP_BRIDGE)) if exactly_once else None,
                    dead_letters=lambda: services.erp_dead_letters)


def cache_consumer(services: Container) -> Consumer:
    """No ledger: invalidation is safe to repeat (docs/performance.md). Recording the completion
    is a conditional update that never moves back in time; the invalidation leaves alone what
    the last completion's own write invalidated and is conditional on this job not having done
    the rest; the `cache.invalidated` announcement carries the same event id each
    time, which its consumers deduplicate on, as on every jobpipe event (the bus delivers at
    least once). Nothing is parked at once: a failure is retried until the queue's redrive policy
    dead-letters it."""
    return Consumer(CACHE_INVALIDATION, partial(invalidate_caches, services), queue=lambda: services.queue,
                    redelivery_wait_s=services.settings.redelivery_wait_s)


# 10 deliveries x the sender's 5 s timeout stay inside the function's 60 s (and whatever the
# ledger's requests took, a POST is cut to end DELIVERY_CLOSE_MARGIN_S before it); the ledger's
# two requests are per batch, so a fuller batch costs fewer of them (and fewer invocations).
@subscribers.on_sqs_message(queue=ERP_WEBHOOK_QUEUE, batch_size=10, name=ERP_BRIDGE)
@entry_point
def erp_bridge(event: Any) -> dict[str, Any]:
    return erp_consumer(container()).consume(event.to_dict(), event.context)


@subscribers.on_sqs_message(queue=CACHE_INVALIDATION_QUEUE, batch_size=10, name=CACHE_INVALIDATION)
@entry_point
def cache_invalidation(event: Any) -> dict[str, Any]:
    return cache_consumer(container()).consume(event.to_dict(), event.context)
