"""A worker batch: up to WORKER_BATCH_SIZE jobs per invocation, run one after another.

Under a backlog, a tenth of the invocations (and of the emulator's dispatch passes). A job that
kills its process (out of memory, a crash) must not strand its batch-mates, so the records
after the first are hidden for BATCH_MATE_LEASE_S only, not the queue's visibility timeout: if
the process dies they are delivered again that soon. Nor may a long job hold them back: the
batch-mates that have not started once the batch has run BATCH_MATE_WAIT_S are handed back
(JobQueue.hand_back), each sent to its queue again as a new message for another invocation, its
original deleted then (before its short lease could bring it back beside its copy) and answered
as done. A copy starts at one receive: waiting in line behind long jobs never brings a message to
the redrive policy's maxReceiveCount (which a message made visible again would count towards, and
a backlog of long jobs would then dead-letter jobs that never ran); the deliveries of the
messages it replaces ride along and count with its receives when a batch is ordered, the records
delivered most often first. A batch-mate is claimed only while its short lease holds (its message
is then hidden for the attempt's lease); one whose turn comes later (its hand-back failed) is
handed back untouched. The first record needs no change: the queue's visibility timeout (90 min)
outlasts any attempt, and a dead worker's job is taken over by the reconciler once its lease
ends. All of this timing reads the batch's Clock (`BatchServices.clock`), and nothing else.

The Lambda functions (chalicelib/worker/handlers.py) build the batch's services from the
container and answer Powertools' batchItemFailures; everything else about a batch is here.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from chalicelib.defaults import BATCH_MATE_LEASE_S, BATCH_MATE_WAIT_S, BATCH_TURN_MARGIN_S
from chalicelib.domain.errors import (
    DeadLetterOwedError, NextAttemptUnsentError, QueueUnavailableError, StoreUnavailableError, describe,
)
from chalicelib.observability import logger, tracer
from chalicelib.ports import HANDBACKS_ATTRIBUTE, Clock, DeliveryLedger, JobMessage, JobQueue, Timer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from chalicelib.worker.runner import DeferredDelivery, JobRunner


@dataclass(frozen=True)
class BatchServices:
    """What a batch runs on. `queue`: the jobs queues; `clock`: every timing of the batch;
    `runner()`: the worker's JobRunner and `unreadable_ledger()`: the delivery ledger on which a
    message that is no job message is parked once, each asked for when a record first needs it
    (a batch of such messages builds no runner, a batch of job messages no ledger);
    `redelivery_wait_s(receives)`: the wait before a failed delivery comes back."""

    queue: JobQueue
    clock: Clock
    runner: Callable[[], JobRunner]
    unreadable_ledger: Callable[[], DeliveryLedger]
    redelivery_wait_s: Callable[[int], int]


@contextmanager
def job_batch(records: list[dict[str, Any]], services: BatchServices, *,
              time_left_s: Callable[[], Optional[float]], priority: str = "normal",
              started: Optional[float] = None) -> Iterator[tuple[list[dict[str, Any]], RecordRunner]]:
    """The batch of `records` (an SQS event's, as dicts) of `priority`'s queue: yields them in
    the order they run, those delivered most often first, and the record handler that runs
    each in its turn within `time_left_s()`. On entry the batch-mates are hidden for their short
    lease and the wait after which those not started are handed back begins; on exit no
    hand-back is under way or can start. `started`: when the invocation began, on
    `services.clock` (read now when not given): the batch's timings count from it."""
    started = services.clock.monotonic() if started is None else started
    ordered = sorted(records, key=_deliveries, reverse=True)
    mates = ordered[1:]
    if mates:
        _shorten_waits(services.queue, mates)
    waiting = _WaitingMates(services.queue, mates, BATCH_MATE_WAIT_S, services.clock)
    try:
        yield ordered, RecordRunner(services, time_left_s=time_left_s, mates=frozenset(r["messageId"] for r in mates),
                                    started=started, priority=priority, waiting=waiting)
    finally:
        waiting.stop()


def _shorten_waits(queue: JobQueue, mates: list[dict[str, Any]]) -> None:
    """Hide the batch-mates for BATCH_MATE_LEASE_S instead of the queue's visibility timeout."""
    try:
        refused = queue.set_visibility_many(
            mates[0]["eventSourceARN"], [r["receiptHandle"] for r in mates], BATCH_MATE_LEASE_S)
    except QueueUnavailableError:  # they keep the queue's timeout; the reconciler resends them
        logger.warning("could not shorten the batch-mates' visibility", extra={"records": len(mates)})
        return
    if refused:
        logger.warning("some batch-mates' visibility was not shortened", extra={"refused": refused})


class _WaitingMates:
    """The batch-mates not started yet, handed back together once the batch has run
    `wait_s` on `clock`; `take(message_id)` before running one says whether this invocation
    still may."""

    def __init__(self, queue: JobQueue, mates: list[dict[str, Any]], wait_s: float, clock: Clock) -> None:
        self._queue = queue
        self._waiting = {r["messageId"]: r for r in mates}
        self._handed_back: set[str] = set()
        self._lock = threading.Lock()
        self._timer = clock.timer(wait_s, self._hand_back)
        if mates:
            self._timer.start()

    def take(self, message_id: str) -> bool:
        with self._lock:
            self._waiting.pop(message_id, None)
            return message_id not in self._handed_back

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:  # a hand-back under way ends before the batch answers
            self._waiting.clear()

    def _hand_back(self) -> None:
        with self._lock:
            records = list(self._waiting.values())
            if not records:
                return
            try:
                refused = self._queue.hand_back(records[0]["eventSourceARN"],
                                                [(r["body"], _deliveries(r)) for r in records])
            except QueueUnavailableError:  # they wait their turn in this batch, as they would have
                logger.warning("could not hand back the batch-mates a long job holds up",
                               extra={"records": len(records)})
                return
            sent = [r for i, r in enumerate(records) if i not in refused]
            self._handed_back |= {r["messageId"] for r in sent}
            self._waiting.clear()
            logger.info("batch-mates handed back: a job ahead of them runs long",
                        extra={"handed_back": len(sent), "refused": len(refused)})
            self._delete_originals(sent)

    def _delete_originals(self, sent: list[dict[str, Any]]) -> None:
        """The originals leave the queue now, not with the batch's answer: their short lease ends
        while the long job runs, and delivered again each would run beside its copy, be handed
        back once more (another copy) and count receives towards the redrive policy."""
        if not sent:
            return
        try:
            undeleted = self._queue.acknowledge_many(sent[0]["eventSourceARN"], [r["receiptHandle"] for r in sent])
        except QueueUnavailableError:  # each comes back after its short lease: a duplicate its claim sees
            logger.warning("could not delete the handed-back batch-mates' originals", extra={"records": len(sent)})
            return
        if undeleted:
            logger.warning("some handed-back batch-mates' originals were not deleted", extra={"undeleted": undeleted})


class _LeaseExtension:
    """A claimed batch-mate's lease, taken when its short lease is about to end (`due_at`, on
    `clock`) and only if the attempt is still running then; its end is where a hold at the
    claim would have put it. `cancel()` returns once no extension can happen any more."""

    def __init__(self, hold: Callable[[int], None], due_at: float, clock: Clock) -> None:
        self._hold = hold
        self._due_at = due_at
        self._clock = clock
        self._lock = threading.Lock()
        self._timer: Optional[Timer] = None
        self._done = False

    def schedule(self, seconds: int) -> None:
        claimed = self._clock.monotonic()

        def extend() -> None:
            with self._lock:
                if self._done:
                    return
                self._done = True
                # Refused, it reappears after its short lease: a harmless duplicate.
                _hold_or_say(self._hold, max(1, round(seconds - (self._clock.monotonic() - claimed))),
                             "could not hide a claimed batch-mate for its lease")

        self._timer = self._clock.timer(max(0.0, self._due_at - claimed), extend)
        self._timer.start()

    def cancel(self) -> None:
        with self._lock:
            self._done = True
        if self._timer is not None:
            self._timer.cancel()


def _hold_or_say(hold: Callable[[int], None], seconds: int, refused: str) -> None:
    """`hold(seconds)`; a queue that refuses it leaves the message to the hold it has, said in
    the warning `refused`."""
    try:
        hold(seconds)
    except QueueUnavailableError:
        logger.warning(refused)


class RecordRunner:
    """Runs one SQS record of a batch within the invocation's remaining time (`time_left_s()`,
    None when unknown); `mates`, the message ids after the first, only within their short lease
    counted from `started` (on `services.clock`)."""

    def __init__(self, services: BatchServices, *, time_left_s: Callable[[], Optional[float]] = lambda: None,
                 mates: frozenset[str] = frozenset(), started: float = 0.0, priority: str = "normal",
                 waiting: Optional[_WaitingMates] = None) -> None:
        """`priority`: the queue's, whose dead-letter queue takes a body that is no job message;
        `waiting`: the batch-mates a long job may hand back before their turn."""
        self._priority = priority
        self._waiting = waiting
        self._time_left_s = time_left_s
        self._services = services
        self._mates = mates
        self._started = started
        self._clock = services.clock

    @tracer.capture_method
    def __call__(self, record: SQSRecord) -> None:
        # The runner (job context, progress, timeouts) is the workers' alone: not in app.py's imports.
        from chalicelib.worker.runner import DeferredDelivery, parse_message

        if self._waiting is not None and not self._waiting.take(record.message_id):
            return  # sent again as a new message, this one deleted then: answered as done
        queue = self._services.queue

        def hold(seconds: int) -> None:
            queue.set_visibility(record.event_source_arn, record.receipt_handle, seconds)

        try:
            message = parse_message(record.body)
        except ValueError as exc:
            self._park_unreadable(record, str(exc), hold)
            return

        lease = self._lease_of(record, hold)
        logger.append_keys(job_id=message.job_id, attempt=message.attempt, message_id=record.message_id)
        try:
            self._run_in_turn(message, lease)
        except DeferredDelivery as deferred:
            self._defer(deferred, hold)
            raise
        except Exception as exc:
            self._retry_soon(record, exc, hold)
            raise
        finally:
            logger.remove_keys(["job_id", "attempt", "message_id"])

    def _lease_of(self, record: SQSRecord, hold: Callable[[int], None]) -> Optional[_LeaseExtension]:
        """A batch-mate's lease extension, due as its short lease is about to end; None for the
        first record, which the queue's visibility timeout covers."""
        if record.message_id not in self._mates:
            return None
        return _LeaseExtension(hold, self._started + BATCH_MATE_LEASE_S - BATCH_TURN_MARGIN_S, self._clock)

    def _run_in_turn(self, message: JobMessage, lease: Optional[_LeaseExtension]) -> None:
        """Run the message's attempt; a batch-mate's (one with a `lease`) only while its short
        lease holds, its lease extended if the attempt outlives that. Raises DeferredDelivery
        for a batch-mate whose turn came too late, and whatever the runner raises."""
        from chalicelib.worker.runner import DeferredDelivery

        if lease and self._clock.monotonic() - self._started > BATCH_MATE_LEASE_S - BATCH_TURN_MARGIN_S:
            # Its short lease is (nearly) over: it may already be running elsewhere.
            raise DeferredDelivery("its turn in the batch came after its short lease", None)
        try:
            left = self._services.runner().run(message, time_left_s=self._time_left_s(),
                                               hold=lease.schedule if lease else None)
        finally:
            if lease:
                lease.cancel()  # before any hold below: a late extension must not undo it
        if left is None:  # acknowledged: nothing can run it, and the operator hears of it
            logger.warning("job message skipped", extra={"reason": "job does not exist"})

    @staticmethod
    def _defer(deferred: DeferredDelivery, hold: Callable[[int], None]) -> None:
        """Hide a deferred delivery for the wait it asks for, if any, and say why."""
        logger.info("delivery deferred", extra={"reason": str(deferred)})
        if deferred.retry_after_s is not None:  # refused, it comes back when its lease ends, deferred again if need be
            _hold_or_say(hold, deferred.retry_after_s, "could not hide the deferred delivery for its wait")

    def _retry_soon(self, record: SQSRecord, exc: Exception, hold: Callable[[int], None]) -> None:
        """A delivery that failed before the handler's outcome was written (throttling, a store
        or blob error), or whose job failed with its dead letter owed, comes back after its
        redelivery wait rather than after the queue's visibility timeout."""
        receives = _receives(record)
        wait = self._services.redelivery_wait_s(receives)
        extra = {"error": f"{type(exc).__name__}: {exc}"[:500], "retry_in_s": wait, "receive_count": receives}
        if isinstance(exc, DeadLetterOwedError):  # not run again: the message comes back to park the letter
            logger.warning("job failed; its dead letter is owed (the dead-letter queue did not answer) "
                           "and is parked when this message comes back", extra=extra)
        elif isinstance(exc, NextAttemptUnsentError):  # the message comes back to start the next attempt
            logger.warning("job retried; its next attempt's message was not sent (the queue did not answer) "
                           "and this message starts that attempt when it comes back", extra=extra)
        else:
            logger.warning("delivery failed; retrying", extra=extra)
        try:
            hold(wait)
        except Exception:  # the queue is unreachable too: its visibility timeout applies
            logger.warning("could not shorten the failed delivery's visibility")

    def _park_unreadable(self, record: SQSRecord, reason: str, hold: Callable[[int], None]) -> None:
        """A body no worker can ever run goes to the dead-letter queue now, as it came, and is
        acknowledged: failed, it would wait the queue's visibility timeout on every delivery
        (about 15 hours) before the redrive policy parked it. Its message leaves its queue as
        soon as it is parked, not with the batch's answer: a batch that came back before its
        answer (an invocation that died, an answer lost) would park it again. It is parked once
        on the worker's delivery ledger (`BatchServices.unreadable_ledger`, two Puts per such
        message, none on a job's path): recorded parked, a later delivery of it (its delete and
        its batch's answer both lost) is acknowledged, not parked again; a redriven copy is a new
        message. If it cannot be parked (or the ledger does not answer) it fails and comes back
        after the usual redelivery wait, to be parked then."""
        where = {"message_id": record.message_id, "reason": reason[:500]}
        ledger = self._services.unreadable_ledger()
        try:
            if not ledger.begin_parking(record.message_id):
                logger.warning("a message that is no job message was parked before: its message is deleted",
                               extra=where)
                self._acknowledge_parked(record, where)
                return
            self._services.queue.dead_letter_body(record.body, priority=self._priority, reason=reason)
        except (QueueUnavailableError, StoreUnavailableError) as exc:
            wait = self._services.redelivery_wait_s(_receives(record))
            logger.warning("could not dead-letter a message that is no job message; retrying",
                           extra={**where, "retry_in_s": wait, "error": describe(exc)[:500]})
            # The queue unreachable too, its visibility timeout applies.
            _hold_or_say(hold, wait, "could not shorten the failed delivery's visibility")
            raise
        logger.error("message is no job message: dead-lettered", extra={**where, "priority": self._priority})
        try:
            ledger.parked(record.message_id)
        except StoreUnavailableError as exc:  # parked: only a delete and an answer both lost would park it again
            logger.warning("could not record a parked message that is no job message",
                           extra={**where, "error": describe(exc)[:500]})
        self._acknowledge_parked(record, where)

    def _acknowledge_parked(self, record: SQSRecord, where: dict[str, Any]) -> None:
        """Delete a parked message from its jobs queue now."""
        try:
            self._services.queue.acknowledge(record.event_source_arn, record.receipt_handle)
        except QueueUnavailableError:  # the batch's answer deletes it, as it would have
            logger.warning("could not delete a dead-lettered message that is no job message", extra=where)


def _receives(record: SQSRecord) -> int:
    """How many times the record's job message was delivered, this delivery included, as if it
    had not been handed back: a copy counts its originals' deliveries less the one it stands for
    (the receive that handed it back ran nothing), so a failed delivery's wait goes on doubling
    from where its original's had got to instead of starting over."""
    own, handbacks = _counts(record.raw_event)
    return own + max(0, handbacks - 1)


def _deliveries(record: dict[str, Any]) -> int:
    """How many times the record's job message was delivered, this delivery included: its own
    receives, and those of the messages it was handed back from (HANDBACKS_ATTRIBUTE), so a
    copy keeps the place its original had earned in line."""
    return sum(_counts(record))


def _counts(record: dict[str, Any]) -> tuple[int, int]:
    """The record's own receives and its HANDBACKS_ATTRIBUTE (0 on a message never handed back)."""
    value = ((record.get("messageAttributes") or {}).get(HANDBACKS_ATTRIBUTE) or {}).get("stringValue")
    receives = (record.get("attributes") or {}).get("ApproximateReceiveCount") or "1"
    return (int(receives) if receives.isdigit() else 1), (int(value) if value and value.isdigit() else 0)
