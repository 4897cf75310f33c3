"""Exactly-once delivery of one SQS batch's events, on a DeliveryLedger: one request opens the
batch's records, each opened event is delivered, one request closes them. Per event the
outcome is the same as if each were guarded alone: done before -> skipped, being delivered
elsewhere -> DeliveryInProgressError (retried later), delivered here -> done, failed -> its
record removed so the next delivery delivers."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from chalicelib.domain.errors import DeliveryInProgressError, JobpipeError
from chalicelib.ports import DeliveryLedger, LedgerOpening


class DeliveryRound:
    def __init__(self, ledger: DeliveryLedger, event_ids: Sequence[str], lease_s: float) -> None:
        """Opens the records of `event_ids` (duplicates once). If the ledger cannot be reached,
        the round still exists and every `run` raises that error (each record fails alone)."""
        self._ledger = ledger
        self._unavailable: Optional[JobpipeError] = None
        self._outcomes: dict[str, Optional[Exception]] = {}  # event id -> None (delivered) or its failure
        try:
            self.opening = ledger.begin(list(event_ids), lease_s) if event_ids else LedgerOpening()
        except JobpipeError as exc:  # StoreUnavailableError: nothing was opened
            self.opening = LedgerOpening()
            self._unavailable = exc
        self._opened = set(self.opening.opened)
        self._done = set(self.opening.done)

    def run(self, event_id: str, deliver: Callable[[], Any]) -> bool:
        """Deliver the event if this round opened it and has not delivered it yet; returns
        whether `deliver` ran. Raises DeliveryInProgressError for an event held elsewhere,
        the ledger's error when it could not be reached, and a failed delivery's error (again
        for a duplicate of it in the batch)."""
        if self._unavailable is not None:
            raise self._unavailable
        if event_id in self._done:
            return False
        if event_id not in self._opened:
            raise DeliveryInProgressError(f"event {event_id} is being delivered elsewhere; retrying later")
        if event_id in self._outcomes:
            failure = self._outcomes[event_id]
            if failure is not None:
                raise failure
            return False
        try:
            deliver()
        except Exception as exc:
            self._outcomes[event_id] = exc
            raise
        self._outcomes[event_id] = None
        return True

    def close(self) -> None:
        """Mark the delivered events done and forget the failed ones (and the opened ones that
        no record reached). Raises the ledger's StoreUnavailableError."""
        delivered = [e for e, failure in self._outcomes.items() if failure is None]
        failed = [e for e in self.opening.opened if e not in self._outcomes or self._outcomes[e] is not None]
        if delivered or failed:
            self._ledger.finish(delivered, failed)
