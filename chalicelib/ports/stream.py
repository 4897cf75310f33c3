"""The jobs table's change stream: a job write as it reports it (`JobChange`), the events made
of them (`EventPublisher`), the batches the event publisher gave up on, read back
(`FailedStreamBatches`, `ChangeStream`), and operators' drops of parked records
(`ParkedRecordDrops`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol

from chalicelib.domain.job import Job


class EventPublisher(Protocol):
    def publish(self, events: list[Any]) -> None:
        """Publish every event or raise EventPublishError naming what was not published.
        Events carry a deterministic `event_id`; consumers use it to drop re-publishes."""


@dataclass(frozen=True)
class JobChange:
    """One write to a job as the change stream reports it (the stream adapter decodes records
    into these; the event publisher and the stats recorder read them)."""

    sequence_number: str
    old: Optional[Job]
    new: Optional[Job]
    timestamp: str


@dataclass(frozen=True)
class FailedStreamBatch:
    """A batch of the jobs table's stream that the change-stream function gave up on (retries
    exhausted, or too old), as the mapping's on-failure destination describes it: where its
    records are on the stream, not the records themselves. Or one record the function could
    not read and parked itself (`condition` RECORD_UNREADABLE): that record carried whole in
    `records`, read from there and not from the stream (`shard_id` empty)."""

    handle: str  # settles or holds it (the queue message's receipt handle)
    message_id: str
    stream_arn: str
    shard_id: str
    first_sequence: str
    last_sequence: str
    size: int
    condition: str  # RetryAttemptsExhausted, MaxRecordAgeExceeded
    receives: int = 1  # how often this description was taken, this time included
    records: Optional[tuple[dict[str, Any], ...]] = None  # a parked record, carried whole


class FailedStreamBatches(Protocol):
    """Where the change-stream function's failed batches are described (StreamFailureQueue)."""

    def take(self, limit: int, hold_s: int) -> list[FailedStreamBatch]:
        """Up to `limit` failed batches, each hidden from the next take for `hold_s` seconds
        (until settled or held longer). Messages that describe no stream batch are not
        returned; they stay for operators, hidden from the passes between looks hours apart
        (the adapter names each as it hides it)."""

    def settle(self, batch: FailedStreamBatch) -> None:
        """The batch was replayed: its description is removed."""

    def hold(self, batch: FailedStreamBatch, seconds: int) -> None:
        """Hide the batch's description for `seconds` (at most 12 hours) before it is taken again."""

    def park(self, record: dict[str, Any], reason: str) -> None:
        """Put one stream record this version cannot read on the queue, whole, as the change-stream
        function received it: taken back as a FailedStreamBatch carrying it (`records`), which the
        replay publishes once a version that reads it runs. Raises StreamRecordTooLargeError when
        it does not fit one message, QueueUnavailableError when the queue refused it or did not answer."""


class ParkedRecordDrops(Protocol):
    """Operators' requests to give up a parked stream record (FailedStreamBatch with `records`)
    while the reconciler holds it hidden: SQS deletes only what it hands out, and it hands out no
    hidden message. One entry per parked record the reconciler took, by its message id, kept
    PARKED_RECORD_KEEP_S past its latest take. `taken` and `request` raise StoreUnavailableError
    when the store does not answer."""

    def taken(self, message_id: str) -> bool:
        """The reconciler took the parked record `message_id` (hidden now until its next try):
        recorded, so that a drop may be requested while it is hidden. True when a drop was
        requested: the record is to be deleted, not replayed."""

    def request(self, message_id: str) -> bool:
        """Ask that the parked record `message_id` be deleted at its next take instead of
        replayed. True when recorded; False when no parked record of that id was taken and is
        still on its queue as far as the entries know (never taken by the reconciler, replayed
        or deleted already, or its entry expired)."""

    def removed(self, message_id: str) -> None:
        """The parked record `message_id` left its queue (replayed or deleted): a later request
        for it is refused. Nothing is written for a record never taken. Never raises: a removal
        the store did not take is harmless (the record is gone; a later request for it is kept
        and deletes nothing), so no caller waits on it."""


class ChangeStream(Protocol):
    def records(self, batch: FailedStreamBatch) -> list[dict[str, Any]]:
        """The batch's stream records, first to last sequence number in stream order, shaped as
        the change-stream function receives them. Raises StreamBatchUnreadableError when the
        stream no longer holds them (or the batch names another stream), its
        StreamBatchPartlyHeldError with the later records when it no longer holds the first ones
        only, ChangeStreamUnavailableError when the stream cannot be read now."""
