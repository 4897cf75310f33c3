"""Operations: finished jobs' removal (`FinishedJobs`), the counters (`StatsStore`), the
reconciler's log (`ReconcilerLog`), the queues and their dead letters (`QueueOperations`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Iterator, Optional, Protocol, Sequence


# Retention: finding and removing finished jobs.
@dataclass(frozen=True)
class FinishedPage:
    """Ids of jobs that finished on `day` (UTC), one read of the finished-day index: how far a
    walk of the index has come is the day of its page."""

    day: date
    ids: list[str]


class FinishedJobs(Protocol):
    def finished_before(self, cutoff: datetime, *, since: datetime, page_size: int = 100) -> Iterator[FinishedPage]:
        """Pages of ids of jobs that finished in [since, cutoff), read from the sparse
        finished-day index (never a Scan), day by day (UTC) from `since`'s, each page naming
        its day; each page holds at most `page_size` ids. One page per read of the index, empty
        or not, and at least one per day of the window: most of a window is days with nothing
        to delete, and the caller's between-page work (a clean-up's cancel check) must run after
        each read, not only after those that found jobs. Yielding an empty page costs no
        request; the check itself reads the store at most once per poll interval
        (JobContext.cancelled), so a walk of the index adds a read a second at most, not one a
        page."""

    def purge(self, job_id: str) -> int:
        """Delete the job's item, runs and artifacts and its S3 objects; returns items deleted."""


class StatsStore(Protocol):
    def record_batch(self, deltas: Sequence[Any]) -> int:
        """Apply each StatDelta whose dedupe key was not seen before, exactly once, and return
        how many were new. The shared counter items (`STATUS`, each hour's) are written at most
        once per call (per transaction of up to ~90 deltas), never once per delta."""

    def status_counts(self) -> dict[str, int]:
        """Jobs currently in each status."""

    def unfinished(self, tenant: str) -> int:
        """The tenant's jobs not yet finished (as far as the recorder has seen)."""

    def hourly(self, hours: list[str]) -> list[dict[str, int]]:
        """The counters of each hour key given (missing hours are empty)."""


class ReconcilerLog(Protocol):
    def record(self, started_at: str, counts: dict[str, int]) -> None:
        """Keep one pass's counts: added to the totals, and as the last pass."""

    def summary(self) -> dict[str, Any]:
        """{"last_pass": {"started_at", "counts"} or None, "totals": {outcome: n}}."""


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    body: dict[str, Any]
    sent_at: Optional[str]
    reason: Optional[str] = None  # why it was parked: its `reason` attribute, EventBridge's error, or SQS's move
    # What deletes it (SQS's receipt handle of the peek that read it); never shown.
    receipt: Optional[str] = field(default=None, repr=False, compare=False)


class QueueOperations(Protocol):
    """Each queue is read on its own: one that does not answer raises DeadLetterUnavailableError
    for itself, and callers reading every queue go on to the others."""

    def dead_letter_queues(self) -> list[str]:
        """Names of the dead-letter queues: the jobs DLQs by priority, then any others."""

    def queue_depth(self, priority: str) -> dict[str, int]:
        """visible, in_flight, delayed on the priority's jobs queue."""

    def dead_letter_depth(self, name: str) -> int:
        """Messages on the named dead-letter queue (visible and in flight)."""

    def peek_dead_letters(self, priority: str, limit: int, hold_s: int = 0) -> list[DeadLetter]:
        """Up to `limit` messages of the priority's DLQ, left on it: visible again at once, or,
        with `hold_s`, held hidden that long (no other peek returns them meanwhile, so what the
        reader then deletes is its own to count) until `show_dead_letters` shows them."""

    def show_dead_letters(self, priority: str, letters: Sequence[DeadLetter]) -> None:
        """Make `letters`, as a held peek of the priority's DLQ returned them, visible again now.
        Raises DeadLetterUnavailableError (they show again when their hold ends)."""

    def delete_dead_letters(self, priority: str, letters: Sequence[DeadLetter]) -> int:
        """Delete `letters`, as a peek of the priority's DLQ returned them; how many went (a
        letter received again since, by a peek or a redrive, may stay: a later peek shows it).
        Raises DeadLetterUnavailableError."""

    def redrive(self, priority: str, limit: int) -> dict[str, int]:
        """Move up to `limit` DLQ messages back to the priority's queue; {"moved", "failed"}.
        Raises DeadLetterUnavailableError when SQS stops answering, its `details` what had gone
        by then: {queue, moved, moved_ids (the message ids moved), sent_ids (sent on, their
        delete not made: back on the DLQ once hidden no more, a copy on the queue)}."""

    def health(self) -> list[dict[str, Any]]:
        """One entry per queue and DLQ: name, ok, depth or error."""
