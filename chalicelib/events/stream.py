"""The jobs table's stream consumer: each batch of job writes, decoded once, is counted for the
statistics operators read (GET /api/system/stats) and published as status events.

Change data capture keeps the lifecycle unaware of both. One consumer of the stream, not two:
every stream invocation runs on the mapping's poller. Counting is one small transaction per
batch; a failure raises, the batch is delivered again, and the per-(job, version) marker keeps
counts exact. Events go out before the batch is counted: the counters are the operators'
bookkeeping, the events the subscribers' contract, so a stats table that refuses (an outage, a
grant taken away) holds back no event; its batch, delivered again, publishes them again under
the same ids, which subscribers drop.

A record this version cannot read (a newer version's status met during a rollback, an item
edited by hand) would fail its batch at every delivery, and hold every event behind it until the
stream gives up on the batch (hours on AWS; never on an emulator that retries without end). It is
parked instead: put on StreamFailureQueue whole, its alarm raised, and the rest of the batch
counted and published. The reconciler's replay publishes it once a version that reads it runs
(events/replay.py); its event then arrives after the job's later ones, as after any replay:
consumers order a job's events by `version` (docs/events.md)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Optional, Sequence

from chalicelib.domain.errors import StreamRecordUnreadableError
from chalicelib.domain.job import parse_time, utcnow
from chalicelib.domain.stats import delta_for
from chalicelib.events.publishing import publish_changes
from chalicelib.ports import EventPublisher, JobChange, StatsStore

# A stream record -> the job write it carries, or None for other items (the stream adapter's);
# raises StreamRecordUnreadableError for a job record this version cannot read.
Decode = Callable[[dict[str, Any]], Optional[JobChange]]
# Puts an unreadable record on StreamFailureQueue, with why (FailedStreamBatches.park).
Park = Callable[[dict[str, Any], str], None]
# Told of each record parked: (its sequence number, why).
OnParked = Callable[[str, str], None]


def record_changes(changes: Sequence[JobChange], stats: StatsStore) -> int:
    """Count every status change of a batch, in one write per shared counter item for the whole
    batch; returns how many changes were new. A change without a time of its own (a start, a
    retry) counts in the hour the stream recorded it: a replayed batch is counted hours late."""
    now = utcnow()
    deltas = [d for d in (delta_for(c.old, c.new, _recorded_at(c, now)) for c in changes) if d is not None]
    return stats.record_batch(deltas) if deltas else 0


def _recorded_at(change: JobChange, fallback: datetime) -> datetime:
    try:
        return parse_time(change.timestamp)
    except (TypeError, ValueError):
        return fallback


class StreamConsumer:
    def __init__(self, decode: Decode, publisher: EventPublisher, stats: Optional[StatsStore] = None,
                 park: Optional[Park] = None, on_parked: OnParked = lambda sequence, reason: None) -> None:
        """`stats` None: no statistics are kept (no stats table configured). `park` None: no
        StreamFailureQueue configured, and an unreadable record fails its batch."""
        self._decode = decode
        self._publisher = publisher
        self._stats = stats
        self._park = park
        self._on_parked = on_parked

    def consume(self, records: Sequence[dict[str, Any]], *, parking: bool = True) -> Optional[str]:
        """Publish the events of the batch's job writes in stream order, then count its status
        changes (exactly once, whatever the redeliveries; counted even when publishing stopped).
        Returns None when all went out, else the sequence number of the first change whose
        events may not have (see publish_changes); raises what the stats store raises. A record
        this version cannot read is parked first (`parking` False, or nowhere to park it:
        StreamRecordUnreadableError raised); a park that fails raises, and the batch is
        delivered again."""
        changes = [c for c in (self._readable(r, parking) for r in records) if c is not None]
        failed_at = publish_changes(changes, self._publisher)
        if self._stats is not None:
            record_changes(changes, self._stats)
        return failed_at

    def _readable(self, record: dict[str, Any], parking: bool) -> Optional[JobChange]:
        try:
            return self._decode(record)
        except StreamRecordUnreadableError as exc:
            if not parking or self._park is None:
                raise
            self._park(record, exc.message)
            self._on_parked(str((record.get("dynamodb") or {}).get("SequenceNumber")), exc.message)
            return None
