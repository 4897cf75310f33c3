"""In-memory twins of the ChangeStream, FailedStreamBatches and ParkedRecordDrops ports (contract:
tests/contract/test_stream_replay.py, tests/contract/test_parked_record_drops.py)."""
from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any, Callable, Optional

from chalicelib.defaults import PARKED_RECORD_KEEP_S, PARKED_RECORD_MAX_BYTES, RECORD_UNREADABLE, SQS_MAX_HOLD_S
from chalicelib.domain.errors import StreamBatchPartlyHeldError, StreamBatchUnreadableError, StreamRecordTooLargeError
from chalicelib.ports import FailedStreamBatch


class InMemoryChangeStream:
    """One shard of stream records, oldest first; `trim` drops the oldest as the 24 hours do."""

    def __init__(self, stream_arn: str, shard_id: str = "shard-0") -> None:
        self.stream_arn = stream_arn
        self.shard_id = shard_id
        self._records: list[dict[str, Any]] = []

    def append(self, record: dict[str, Any]) -> None:
        self._records.append(record)

    def trim(self, count: int) -> None:
        del self._records[:count]

    def records(self, batch: FailedStreamBatch) -> list[dict[str, Any]]:
        if batch.stream_arn != self.stream_arn or batch.shard_id != self.shard_id:
            raise StreamBatchUnreadableError(f"{batch.stream_arn} {batch.shard_id} is not this stream's shard")
        first, last = int(batch.first_sequence), int(batch.last_sequence)
        sequences = [int(r["dynamodb"]["SequenceNumber"]) for r in self._records]
        held = [r for r, s in zip(self._records, sequences) if first <= s <= last]
        if first not in sequences:
            if held:
                raise StreamBatchPartlyHeldError(f"the stream no longer holds record {batch.first_sequence}", held=held)
            raise StreamBatchUnreadableError(f"the stream no longer holds record {batch.first_sequence}")
        return held


class InMemoryFailedStreamBatches:
    """StreamFailureQueue: descriptions of failed batches and parked records, hidden while taken
    or held."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._handles = itertools.count(1)
        # message id -> [batch, visible at, receives]
        self._messages: dict[str, list[Any]] = {}
        self.reasons: dict[str, str] = {}  # a parked record's message id -> why it was parked

    def put(self, stream_arn: str, shard_id: str, first: str, last: str, size: int = 1,
            condition: str = "RetryAttemptsExhausted") -> str:
        """What the mapping's on-failure destination does; returns the message id."""
        message_id = f"failure-{next(self._handles)}"
        batch = FailedStreamBatch("", message_id, stream_arn, shard_id, first, last, size, condition)
        with self._lock:
            self._messages[message_id] = [batch, 0.0, 0]
        return message_id

    def park(self, record: dict[str, Any], reason: str) -> None:
        body = json.dumps(record, ensure_ascii=True, separators=(",", ":"))
        if len(body) > PARKED_RECORD_MAX_BYTES:
            raise StreamRecordTooLargeError(f"stream record takes {len(body)} bytes, more than one message carries")
        sequence = str(record["dynamodb"]["SequenceNumber"])
        message_id = f"failure-{next(self._handles)}"
        batch = FailedStreamBatch("", message_id, str(record.get("eventSourceARN", "")), "", sequence, sequence, 1,
                                  RECORD_UNREADABLE, records=(json.loads(body),))
        with self._lock:
            self._messages[message_id] = [batch, 0.0, 0]
            self.reasons[message_id] = reason

    def waiting(self) -> list[str]:
        """Message ids still on the queue, hidden or not."""
        with self._lock:
            return list(self._messages)

    def take(self, limit: int, hold_s: int) -> list[FailedStreamBatch]:
        now = self._clock()
        taken: list[FailedStreamBatch] = []
        with self._lock:
            for message_id, entry in self._messages.items():
                if len(taken) == limit:
                    break
                batch, visible_at, receives = entry
                if visible_at > now:
                    continue
                entry[1], entry[2] = now + hold_s, receives + 1
                handle = f"{message_id}#{next(self._handles)}"
                taken.append(FailedStreamBatch(handle, message_id, batch.stream_arn, batch.shard_id,
                                               batch.first_sequence, batch.last_sequence, batch.size,
                                               batch.condition, receives + 1, batch.records))
        return taken

    def _entry(self, batch: FailedStreamBatch) -> Optional[list[Any]]:
        return self._messages.get(batch.handle.split("#", 1)[0])

    def settle(self, batch: FailedStreamBatch) -> None:
        with self._lock:
            self._messages.pop(batch.handle.split("#", 1)[0], None)

    def hold(self, batch: FailedStreamBatch, seconds: int) -> None:
        with self._lock:
            entry = self._entry(batch)
            if entry is not None:
                entry[1] = self._clock() + min(seconds, SQS_MAX_HOLD_S)  # as SQS caps it


class InMemoryParkedRecordDrops:
    """The entries of the parked records the reconciler took, by message id: as the stats
    table's `PARKED#` items hold them."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.entries: dict[str, dict[str, float]] = {}

    def taken(self, message_id: str) -> bool:
        now = self._clock()
        with self._lock:
            entry = self.entries.setdefault(message_id, {})
            entry.pop("removed_at", None)
            entry.update(taken_at=now, expires_at=now + PARKED_RECORD_KEEP_S)
            return "drop_requested_at" in entry

    def request(self, message_id: str) -> bool:
        now = self._clock()
        with self._lock:
            entry = self.entries.get(message_id)
            if entry is None or "removed_at" in entry or entry["expires_at"] <= now:
                return False
            entry["drop_requested_at"] = now
            return True

    def removed(self, message_id: str) -> None:
        with self._lock:
            if message_id in self.entries:
                self.entries[message_id]["removed_at"] = self._clock()
