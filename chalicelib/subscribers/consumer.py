"""A subscriber's consumption of one SQS batch, over ports only: each record's effect run once per
event id on a delivery ledger (chalicelib/subscribers/delivery.py: 2 requests per batch), or
every time when the effect is safe to repeat. A failed record is hidden for an exponential
backoff (or the longer wait its answer asked for, Retry-After) before its next delivery, and
dead-lettered by the queue's redrive policy; an event refused for good (WebhookRefusedError) is
parked on the subscriber's dead-letter queue at once. Returns the batch item failures."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Optional

from chalicelib.defaults import DELIVERY_LEASE_S, WEBHOOK_RETRY_AFTER_MAX_S
from chalicelib.domain.errors import JobpipeError, WebhookRefusedError, describe
from chalicelib.domain.events import event_detail
from chalicelib.observability import logger
from chalicelib.ports import DeadLetterQueue, DeliveryLedger, JobQueue

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

# effect(detail, seconds left in the invocation or None)
Effect = Callable[[dict[str, Any], Optional[float]], Any]


def _event_ids(records: list[dict[str, Any]]) -> list[str]:
    """The event ids of the batch's readable records (the others fail on their own)."""
    ids = []
    for record in records:
        try:
            ids.append(str(event_detail(record.get("body", ""))["event_id"]))
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
    """The backoff, or the wait the failure's answer asked for (Retry-After) when longer, at
    most WEBHOOK_RETRY_AFTER_MAX_S: an absurd one (hundreds of digits read as infinity, a date
    centuries away) is bounded like any long one; one that is no number (NaN) is ignored."""
    details = getattr(exc, "details", None)
    asked = details.get("retry_after_s") if isinstance(details, dict) else None
    if not isinstance(asked, (int, float)) or math.isnan(asked):
        return backoff
    return max(backoff, math.ceil(min(WEBHOOK_RETRY_AFTER_MAX_S, asked)))  # bounded first: ceil(inf) raises


class Consumer:
    """A subscriber's queue consumer: `effect(detail, seconds_left)` per record, once per event
    id on `ledger()` (the subscriber's delivery ledger) when given, else every time (an effect
    that is safe to repeat). A record whose effect was refused for good (WebhookRefusedError)
    is parked on `dead_letters()` as it came, with why, and succeeds; if it cannot be parked
    (or `dead_letters` is None or gives None: none configured) it is retried like any failure,
    hidden on `queue()` for `redelivery_wait_s(receives)`.

    Each port is taken when first needed, as the composition root builds it on first use: a
    batch with no failure and no refusal takes no queue, one with no refusal no dead-letter
    queue."""

    def __init__(self, name: str, effect: Effect, *, queue: Callable[[], JobQueue],
                 redelivery_wait_s: Callable[[int], int],
                 ledger: Optional[Callable[[], DeliveryLedger]] = None,
                 dead_letters: Optional[Callable[[], Optional[DeadLetterQueue]]] = None) -> None:
        self._name = name
        self._effect = effect
        self._queue = queue
        self._redelivery_wait_s = redelivery_wait_s
        self._ledger = ledger
        self._dead_letters = dead_letters

    def _retry_later(self, record: SQSRecord, detail: dict[str, Any], exc: Exception) -> None:
        """Hide a failed record for its backoff (or the wait its answer asked for). A hold SQS
        refuses is logged: the record still fails and comes back when its lease ends."""
        receives = int(record.attributes.approximate_receive_count or 1)
        backoff = _wait_s(exc, self._redelivery_wait_s(receives))
        where = {"event_id": detail.get("event_id"), "job_id": detail.get("job_id"), "receive_count": receives}
        logger.warning(f"{self._name} failed; retrying in {backoff} s", extra={**where, "error": describe(exc)[:500]})
        try:
            self._queue().set_visibility(record.event_source_arn, record.receipt_handle, backoff)
        except JobpipeError as refused:
            logger.warning(f"{self._name} could not hold a failed event back",
                           extra={**where, "error": describe(refused)[:500]})

    def _park(self, record: SQSRecord, detail: dict[str, Any], refusal: WebhookRefusedError) -> bool:
        """Put a refused record on the dead-letter queue; whether it is there (its message then
        leaves its queue at once, `_acknowledge`). Its delivery record (if any) is forgotten
        like a failed one's, so a redrive delivers it. With a delivery ledger the message is
        parked once: recorded parked, a later delivery of it (its delete and its batch's answer
        both lost) is not parked again; a redriven copy is a new message."""
        queue = self._dead_letters() if self._dead_letters is not None else None
        extra = {"event_id": detail.get("event_id"), "status": refusal.details.get("status"), "reason": refusal.message}
        if queue is None:
            logger.warning(f"{self._name} refused for good, and no dead-letter queue is configured", extra=extra)
            return False
        ledger = self._ledger() if self._ledger is not None else None
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

    def _acknowledge(self, record: SQSRecord, event_id: str) -> None:
        """Delete a parked event's message (or a batch duplicate's) from its queue now."""
        try:
            self._queue().acknowledge(record.event_source_arn, record.receipt_handle)
        except JobpipeError as exc:  # the batch's answer deletes it, as it would have
            logger.warning(f"{self._name} could not delete a parked event's message",
                           extra={"event_id": event_id, "error": describe(exc)})

    def consume(self, event: dict[str, Any], lambda_context: Any) -> dict[str, Any]:
        """Run every record of the SQS batch `event` (its JSON, decoded) within the invocation
        `lambda_context`; returns the batch item failures (`batchItemFailures`)."""
        # Imported on the first batch: every function loads app.py; only the SQS consumers batch.
        from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

        from chalicelib.subscribers.delivery import DeliveryRound

        batch = None
        if self._ledger is not None:
            batch = DeliveryRound(self._ledger(), _event_ids(event.get("Records", [])), _lease_s(lambda_context))

        # Event ids of this batch parked: a duplicate of one is not parked twice. A parked
        # event's messages leave the queue at once, not with the batch's answer: a batch that
        # came back before its answer (an invocation that died, an answer lost) would park it again.
        parked: set[str] = set()

        def handle(record: SQSRecord) -> None:
            try:
                detail = event_detail(record.body)
            except ValueError as exc:  # fails until the redrive policy parks it on the DLQ
                logger.warning(f"{self._name} received a message that is no jobpipe event",
                               extra={"message_id": record.message_id, "error": describe(exc)[:500],
                                      "receive_count": int(record.attributes.approximate_receive_count or 1)})
                raise
            event_id = str(detail["event_id"])
            try:
                if batch is None:
                    self._effect(detail, _seconds_left(lambda_context))
                else:
                    batch.run(event_id, lambda: self._effect(detail, _seconds_left(lambda_context)))
            except WebhookRefusedError as exc:
                if event_id in parked or self._park(record, detail, exc):
                    parked.add(event_id)
                    self._acknowledge(record, event_id)
                    return
                self._retry_later(record, detail, exc)
                raise
            except Exception as exc:
                self._retry_later(record, detail, exc)
                raise

        response = process_partial_response(
            event=event,
            record_handler=handle,
            processor=BatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False),
            context=lambda_context,
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
