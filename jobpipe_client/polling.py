"""When to poll next: every few seconds while jobs change, backing off while nothing does.

The schedule follows the job-queue polling strategy jobpipe's clients use: start at 2 s, keep
that pace while something changes, and stretch the interval by half each time nothing changed,
up to 30 s; any change brings it back to the start."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

FINAL_STATUSES = frozenset({"completed", "failed", "canceled", "not_found"})


def is_final(job: Optional[dict[str, Any]]) -> bool:
    """True when a job (as the API shows it) will not change any more."""
    return job is not None and job.get("status") in FINAL_STATUSES


def changed(before: Optional[dict[str, Any]], after: Optional[dict[str, Any]]) -> bool:
    """True when `after` shows a new state of the job: every write bumps its version."""
    if before is None or after is None:
        return before is not after
    return (after.get("version"), after.get("status")) != (before.get("version"), before.get("status"))


@dataclass
class Backoff:
    initial_s: float = 2.0
    maximum_s: float = 30.0
    factor: float = 1.5

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.maximum_s or self.factor < 1:
            raise ValueError("need 0 < initial_s <= maximum_s and factor >= 1")
        self._delay = self.initial_s

    def next_delay(self, something_changed: bool) -> float:
        """Seconds to wait before the next poll, given whether the last poll saw a change."""
        if something_changed:
            self._delay = self.initial_s
        else:
            self._delay = min(self.maximum_s, self._delay * self.factor)
        return self._delay
