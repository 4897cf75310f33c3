"""The subscribers' ports: scope caches (`CacheStore`), the delivery ledger (`DeliveryLedger`),
a subscriber's dead-letter queue (`DeadLetterQueue`), the ERP webhook (`WebhookSender`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol, Sequence


@dataclass(frozen=True)
class CacheEntry:
    namespace: str
    generation: int
    value: Any = None
    hit: bool = False
    cached_at: Optional[str] = None
    invalidated_at: Optional[str] = None
    invalidated_by: Optional[str] = None


@dataclass(frozen=True)
class TaskCompletion:
    type: str
    completed_at: str
    job_id: str
    # The cache namespaces the completion's own write invalidated, kept with it on the scope's
    # record of its type; empty where the completion is recorded from its event.
    namespaces: tuple[str, ...] = ()


class CacheStore(Protocol):
    def put(self, tenant: str, scope: str, namespace: str, value: Any, at: str,
            expected_generation: Optional[int] = None) -> CacheEntry:
        """Store `value` for the namespace's current generation; with `expected_generation`,
        raises CacheGenerationChangedError (its details the current generation) unless the
        namespace is still at that generation."""

    def get(self, tenant: str, scope: str, namespace: str) -> CacheEntry:
        """The entry, read strongly consistent; `hit` is False when nothing is stored for the
        current generation."""

    def invalidate(self, tenant: str, scope: str, namespace: str, job_id: str, at: str) -> int:
        """Bump the generation (one write) unless `job_id` already did at `at`, or the namespace
        was invalidated later than `at` (a completion's own write invalidates the namespaces its
        rules name, so its event finds that done; a late event of an older completion finds a
        newer one); returns the generation."""

    def record_completion(self, tenant: str, scope: str, completion: TaskCompletion) -> tuple[str, ...]:
        """Remember when a task of `completion.type` last completed for the scope (kept only if
        no later completion is). Returns the namespaces the record named before: those the last
        completion of the type to land invalidated in its own write, which landed no earlier
        than the completion's own (each completion's write replaces the record): invalidated
        after it whatever their times say."""

    def completions(self, tenant: str, scope: str) -> list[TaskCompletion]:
        """The scope's last completion of each task type, by type."""


@dataclass(frozen=True)
class LedgerOpening:
    """How `DeliveryLedger.begin` left each event id of a batch: `opened` ones are this
    process's to deliver (and then to `finish`), `done` ones were delivered before (skip them),
    `busy` ones are being delivered elsewhere under an unexpired lease (retry them later)."""

    opened: tuple[str, ...] = ()
    done: tuple[str, ...] = ()
    busy: tuple[str, ...] = ()


class DeliveryLedger(Protocol):
    """A subscriber's record of which events it delivered: one request to open a batch's
    events, one to close them, whatever the batch's size (up to an SQS batch)."""

    def begin(self, event_ids: Sequence[str], lease_s: float) -> LedgerOpening:
        """Open an in-progress record per distinct event id, lasting `lease_s` (the time a
        delivery has to finish: after it, an unfinished record may be taken over, so a process
        that died mid-delivery does not hold the event for ever). Ids already done, or in
        progress under an unexpired lease, are left as they are and reported so. Raises
        StoreUnavailableError (nothing is opened then)."""

    def finish(self, delivered: Sequence[str], failed: Sequence[str]) -> None:
        """Mark `delivered` done (kept for the ledger's time to live, so a later duplicate is
        skipped) and forget `failed` (so their next delivery delivers). Raises
        StoreUnavailableError; records not closed then stay in progress until their lease ends."""

    def begin_parking(self, message_id: str) -> bool:
        """Whether the queue message `message_id` (SQS's id: the same on each of its deliveries,
        a new one for a redriven copy) is still to be parked: False once `parked` recorded it.
        One conditional write. Raises StoreUnavailableError."""

    def parked(self, message_id: str) -> None:
        """Record the message parked, for the ledger's time to live (longer than the message
        can stay on its queue): a later delivery of it is not parked again. Raises
        StoreUnavailableError."""


@dataclass(frozen=True)
class WebhookAnswer:
    """A webhook's answer: its HTTP status, the wait its Retry-After asked for (seconds; None
    without one), for a 4xx the status line's reason phrase and the start of the body (what
    the receiver said was wrong), and for a 3xx where it redirects (its Location, not followed)."""

    status: int
    retry_after_s: Optional[float] = None
    reason: str = ""
    text: str = ""
    location: str = ""


class DeadLetterQueue(Protocol):
    """A subscriber's dead-letter queue, where it parks a message that must not be retried."""

    def park(self, body: str, reason: str) -> None:
        """Put `body` on the queue as it came (a redrive sends it back as it is), with `reason`
        (cut to 1,000 characters) in its `reason` attribute. Raises QueueUnavailableError."""


class WebhookSender(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: Optional[float] = None) -> WebhookAnswer:
        """POST and return the answer (any status: a redirect is not followed). Raises WebhookDeliveryError when no answer came, or none whole (status line
        and headers) within `timeout_s` seconds of wall clock, connecting included (at most the
        sender's own timeout)."""
