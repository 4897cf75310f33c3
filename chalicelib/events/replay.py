"""Failed stream batches, counted and published again from the stream itself.

The change-stream function fails a batch whose events it could not publish (or whose counts it
could not record); the stream retries it, bisected, and then gives up on it: the mapping's
on-failure destination (StreamFailureQueue) gets a description of the batch, its shard and
sequence range but not its records, and the stream moves on. Left there, the batch's status
events would never reach a subscriber and its status changes would never be counted (a tenant's
`unfinished` counter would stay high).

So the reconciler replays each description while the stream still holds its records (24 hours):
it reads them back, runs them through the same StreamConsumer, and removes the description once
everything went out. A repeat is harmless: events keep their ids (subscribers drop duplicates)
and the counters' per-(job, version) markers count a change once. A replay that fails waits a
minute, doubling per try up to an hour; a batch the stream no longer holds stays on the queue,
for an operator (its description looked at again twice a day; `StreamFailureQueueHeldAlarm`
stays on while it is there). Of a batch whose first records the stream no longer holds, the
records it still holds are counted and published each time, and the description stays too.

A record parked whole (one the change-stream function could not read) is published from its
message instead. An operator may give one up (DELETE /api/system/dlq/letters/{id}) while it is
hidden between its tries, where SQS cannot hand it out to be deleted: the request is kept
(ParkedRecordDrops), and the take that finds it deletes the record instead of publishing it."""
from __future__ import annotations

from typing import Any, Optional

from chalicelib.defaults import (
    REPLAY_BATCHES_PER_PASS,
    REPLAY_RETRY_BASE_S,
    REPLAY_RETRY_MAX_S,
    UNREADABLE_HOLD_S,
    redelivery_wait_s,
)
from chalicelib.domain.errors import (
    EventPublishError,
    JobpipeError,
    StreamBatchPartlyHeldError,
    StreamBatchUnreadableError,
)
from chalicelib.events.stream import StreamConsumer
from chalicelib.ports import ChangeStream, FailedStreamBatch, FailedStreamBatches, ParkedRecordDrops


# What a pass counts for a batch: replayed, left for an operator, or a parked record an operator
# gave up, deleted.
REPLAYED = "stream_batch_replayed"
UNREADABLE = "stream_batch_unreadable"
DROPPED = "stream_record_dropped"


class StreamReplay:
    def __init__(self, failures: FailedStreamBatches, stream: ChangeStream, consumer: StreamConsumer,
                 drops: Optional[ParkedRecordDrops] = None) -> None:
        self._failures = failures
        self._stream = stream
        self._consumer = consumer
        self._drops = drops

    def take(self, limit: int = REPLAY_BATCHES_PER_PASS, hold_s: int = REPLAY_RETRY_BASE_S) -> list[FailedStreamBatch]:
        """Failed batches to replay now, each hidden meanwhile for `hold_s`, at least a first
        retry's wait: what its taker has left to replay them in, so no other takes them too."""
        return self._failures.take(limit, max(REPLAY_RETRY_BASE_S, hold_s))

    def replay(self, batch: FailedStreamBatch) -> str:
        """Count and publish the batch's records again, then remove its description: REPLAYED.
        A parked record an operator gave up is deleted instead, unpublished: DROPPED. Raises
        StreamBatchUnreadableError when the stream no longer holds them (the description kept,
        hidden for UNREADABLE_HOLD_S); else what the stream, the stats store or the publisher
        raised (or, for a parked record, the drops' store), the description then hidden for the
        next try's wait."""
        if batch.records is not None:  # a parked record: read from its message, never parked again
            if self._dropped(batch):
                self._failures.settle(batch)
                self._removed(batch)
                return DROPPED
            self._publish(batch, list(batch.records), parking=False)
            self._failures.settle(batch)
            self._removed(batch)
            return REPLAYED
        try:
            records = self._stream.records(batch)
        except StreamBatchPartlyHeldError as partly:
            # What the stream still holds goes out; what it lost is the operator's to know.
            self._publish(batch, partly.held)
            self._failures.hold(batch, UNREADABLE_HOLD_S)
            raise StreamBatchUnreadableError(
                f"{partly.message}, nor the batch's others before record "
                f"{partly.held[0]['dynamodb']['SequenceNumber']}: the {len(partly.held)} from there on "
                "were counted and published") from partly
        except StreamBatchUnreadableError:
            self._failures.hold(batch, UNREADABLE_HOLD_S)
            raise
        except Exception:  # the stream throttled or away: the same waits as a failed publish
            self._hold_for_retry(batch)
            raise
        self._publish(batch, records)
        self._failures.settle(batch)
        return REPLAYED

    def _dropped(self, batch: FailedStreamBatch) -> bool:
        """Whether an operator gave up the parked record `batch`, its take recorded so that one
        may while it is hidden. A store that does not answer: held for the next try's wait and
        raised, never published on a guess (it may have been given up)."""
        if self._drops is None:
            return False
        try:
            return self._drops.taken(batch.message_id)
        except Exception:
            self._hold_for_retry(batch)
            raise

    def _removed(self, batch: FailedStreamBatch) -> None:
        if self._drops is not None:
            self._drops.removed(batch.message_id)

    def _publish(self, batch: FailedStreamBatch, records: list[dict[str, Any]], parking: bool = True) -> None:
        """Count and publish `records`; on any failure the description is held for the next
        try's wait and the failure raised."""
        try:
            failed_at = self._consumer.consume(records, parking=parking)
            if failed_at is not None:
                raise EventPublishError(f"events from stream record {failed_at} on were not published")
        except Exception:
            self._hold_for_retry(batch)
            raise

    def _hold_for_retry(self, batch: FailedStreamBatch) -> None:
        try:
            self._failures.hold(batch, redelivery_wait_s(batch.receives, REPLAY_RETRY_BASE_S, REPLAY_RETRY_MAX_S))
        except JobpipeError:
            pass  # it comes back once the take's hold ends instead; the replay's own error is the one to report
