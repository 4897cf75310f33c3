"""When to poll next: every few seconds while jobs change, backing off while nothing does.

The schedule follows the job-queue polling strategy jobpipe's clients use: start at 2 s, keep
that pace while something changes, and stretch the interval by half each time nothing changed,
up to 30 s; any change brings it back to the start.

A poll that no URL answered (an outage: no connection, no answer in time, a throttle, a 5xx) is
asked again sooner, after 1 s, doubling up to 10 s (longer when the API's `Retry-After` asks),
until an answer comes or the polls have failed for `give_up_after` seconds in a row. The default
bound, a minute, outlasts what interrupts an API for a moment (a redeploy, a cold start, a
gateway's 502/504, a store failing over, a laptop changing networks) and still reports a real
outage within about a minute."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from jobpipe_client.errors import JobpipeUnavailableError

FINAL_STATUSES = frozenset({"completed", "failed", "canceled", "not_found"})
DEFAULT_GIVE_UP_AFTER_S = 60.0  # of polls failing in a row before a wait gives up
RECONNECT_FIRST_S = 1.0  # pause after the first failed poll of an outage
RECONNECT_MAX_S = 10.0  # the longest pause of the backoff (a Retry-After may ask for more)
RETRY_AFTER_MAX_S = 600.0  # a longer Retry-After is taken as this (a bad header cannot stall a wait)


def is_final(job: Optional[dict[str, Any]]) -> bool:
    """True when a job (as the API shows it) will not change any more."""
    return job is not None and job.get("status") in FINAL_STATUSES


def changed(before: Optional[dict[str, Any]], after: Optional[dict[str, Any]]) -> bool:
    """True when `after` shows a new state of the job: every write bumps its version. A lower
    version than `before` is an older state, never a change: polls are eventually consistent
    reads, and one may come from a replica that a write seen by an earlier poll has not reached."""
    if before is None or after is None:
        return before is not after
    old, new = before.get("version"), after.get("version")
    if isinstance(old, int) and isinstance(new, int) and new < old:
        return False
    return (new, after.get("status")) != (old, before.get("status"))


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


@dataclass(frozen=True)
class Outage:
    """What a wait's `on_outage` sees: after each poll no URL answered (`ended` false), and once
    when a poll is answered again (`ended` true). `error` is the last failure, `failures` the
    polls failed in a row, `since_s` the seconds since the first of them was sent, `retry_in_s`
    the pause before the next poll (0 once ended), `give_up_after_s` the bound (None: none)."""

    error: "JobpipeUnavailableError"
    failures: int
    since_s: float
    retry_in_s: float
    give_up_after_s: Optional[float]
    ended: bool = False


class OutageClock:
    """The polls failing in a row since `started` (the clock when the first of them was sent):
    the pause before the next, and whether the wait should give up."""

    def __init__(self, started: float, give_up_after: Optional[float]) -> None:
        self.started = started
        self.give_up_after = give_up_after
        self.failures = 0
        self.error: JobpipeUnavailableError
        self.retry_in_s = 0.0
        self._backoff = Backoff(initial_s=RECONNECT_FIRST_S, maximum_s=RECONNECT_MAX_S, factor=2)

    def since_s(self, now: float) -> float:
        return max(0.0, now - self.started)

    def failed(self, error: JobpipeUnavailableError, now: float) -> None:
        self.failures += 1
        self.error = error
        pause = self._backoff.next_delay(self.failures == 1)
        if error.retry_after_s is not None:
            pause = max(pause, min(error.retry_after_s, RETRY_AFTER_MAX_S))
        if self.give_up_after is not None:  # the last try comes at the bound, never past it
            pause = min(pause, self.give_up_after - self.since_s(now))
        self.retry_in_s = pause

    def over(self, now: float) -> bool:
        return self.give_up_after is not None and self.since_s(now) >= self.give_up_after

    def report(self, now: float, ended: bool = False) -> Outage:
        return Outage(self.error, self.failures, self.since_s(now), 0.0 if ended else self.retry_in_s,
                      self.give_up_after, ended)
