"""Admission at submit: a bound on each tenant's unfinished jobs, so one tenant's flood cannot
queue every other tenant's jobs behind it.

Two counts serve it. The stats recorder keeps a counter per tenant (change data capture on the
jobs table): one GetItem, cheap, but behind the jobs by the stream's delay. The jobs table's
status index holds the tenant's unfinished jobs themselves: exact, but three Queries. So the
counter only tells a process that a tenant is far from its bound; from half of it on, every
decision rests on the index's count (see `TenantQuota.admit`).

The counter is also only as right as the changes it was fed: a stream batch that exhausted
its retries (sent to StreamFailureQueue) leaves it off for good. Read too high it costs an
index count, never a refusal; the gap is logged."""
from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable, Optional

from chalicelib.defaults import QUOTA_COUNTER_LAG_S, QUOTA_RECHECK_S, QUOTA_REMEMBERED_TENANTS, QUOTA_RETRY_AFTER_S
from chalicelib.domain.errors import QuotaExceededError
from chalicelib.domain.numbers import shown_number
from chalicelib.observability import logger
from chalicelib.ports import StatsStore


@dataclass
class _Reading:
    unfinished: int
    read_at: float
    admitted_since: int = 0

    @property
    def with_admitted(self) -> int:
        """The count read, and what this process admitted since it was read."""
        return self.unfinished + self.admitted_since


@dataclass
class _Tenant:
    """What one process knows of a tenant: its last counter reading, its last count of the
    status index, and the jobs it admitted lately, per whole second of the clock."""
    counter: Optional[_Reading] = None
    counted: Optional[_Reading] = None
    admitted: deque[list[float]] = field(default_factory=deque)  # [second, jobs], oldest first

    def admitted_after(self, since: float) -> int:
        """Jobs admitted from `since`'s second on (a few more than since `since`, never fewer);
        those admitted before it are forgotten."""
        start = since // 1
        while self.admitted and self.admitted[0][0] < start:
            self.admitted.popleft()
        return sum(jobs for _, jobs in self.admitted)

    def admit(self, now: float, lag_s: float) -> None:
        self.admitted_after(now - lag_s)
        second = now // 1
        if self.admitted and self.admitted[-1][0] == second:
            self.admitted[-1][1] += 1
        else:
            self.admitted.append([second, 1])
        if self.counted is not None:
            self.counted.admitted_since += 1


class TenantQuota:
    def __init__(self, stats: StatsStore, max_unfinished: int, *, recount: Callable[[str, int], int],
                 retry_after_s: int = QUOTA_RETRY_AFTER_S, recheck_s: float = QUOTA_RECHECK_S,
                 counter_lag_s: float = QUOTA_COUNTER_LAG_S, clock: Callable[[], float] = time.monotonic) -> None:
        """`recount(tenant, at_most)`: the tenant's unfinished jobs as the job store's status
        index holds them (JobStore.count_unfinished)."""
        self._stats = stats
        self._recount = recount
        self._max = max_unfinished
        self._retry_after_s = retry_after_s
        self._recheck_s = recheck_s
        self._lag_s = counter_lag_s
        self._clock = clock
        self._tenants: OrderedDict[str, _Tenant] = OrderedDict()

    def admit(self, tenant: str, *, pending: int = 0) -> None:
        """Returns if `tenant` may submit one more job; raises QuotaExceededError if it already
        has `max_unfinished` jobs queued, running or retrying.

        Far from the bound: the counter, read at most once per `recheck_s` (one GetItem a
        second per process in a burst), plus the jobs this process admitted in the last
        `counter_lag_s`, which the lagging counter may not have yet, plus `pending`: jobs the
        caller itself added lately (a handler spawning in a loop). Counted twice once the
        counter has them, they only bring the index's count sooner.

        From half the bound on (by that sum, or by an index count under `counter_lag_s` old):
        the status index's count, taken at most once per `recheck_s`, plus what this process
        admitted since. It holds every job already written, whichever process admitted it, so
        however far the stream lags, one process admits exactly up to the bound, and processes
        that all count pass it by at most what the others admit within `recheck_s`; a process
        that has not counted yet admits at most half the bound first. A refusal always rests
        on the index's count."""
        now = self._clock()
        known = self._tenants.get(tenant) or _Tenant()
        self._remember(tenant, known)
        counted = known.counted
        if counted is not None and now - counted.read_at < self._recheck_s:
            unfinished = counted.with_admitted
        else:
            near = counted is not None and now - counted.read_at < self._lag_s \
                and self._near(counted.with_admitted)
            if not near:
                unfinished = self._estimate(tenant, known, now, pending)
                near = self._near(unfinished)
            if near:
                known.counted = self._count(tenant, known, now)
                unfinished = known.counted.unfinished
        self._decide(unfinished)
        known.admit(now, self._lag_s)

    def _estimate(self, tenant: str, known: _Tenant, now: float, pending: int) -> int:
        """The counter (read afresh unless read under `recheck_s` ago), plus this process's
        admissions it may lack and `pending`."""
        reading = known.counter
        if reading is None or now - reading.read_at >= self._recheck_s:
            reading = known.counter = _Reading(self._stats.unfinished(tenant), now)
        return reading.unfinished + known.admitted_after(now - self._lag_s) + pending

    def _count(self, tenant: str, known: _Tenant, now: float) -> _Reading:
        counted = _Reading(self._recount(tenant, self._max), now)
        if known.counter is not None and known.counter.unfinished > counted.unfinished \
                and known.counter.unfinished >= self._max:
            logger.warning("tenant's unfinished counter is above its unfinished jobs; admitting by the jobs",
                           extra={"tenant": tenant, "counter": known.counter.unfinished,
                                  "jobs": counted.unfinished, "limit": self._max})
        return counted

    def _near(self, unfinished: int) -> bool:
        """At or past half the bound once one more job is admitted."""
        return 2 * (unfinished + 1) > self._max

    def _decide(self, unfinished: int) -> None:
        if unfinished >= self._max:
            raise QuotaExceededError(
                f"tenant has {shown_number(unfinished)} unfinished jobs, the most it may have is "
                f"{shown_number(self._max)}; retry after {shown_number(self._retry_after_s)} s or when some finish",
                retry_after_s=self._retry_after_s,
                details={"unfinished": unfinished, "limit": self._max},
            )

    def _remember(self, tenant: str, known: _Tenant) -> None:
        self._tenants[tenant] = known
        self._tenants.move_to_end(tenant)
        while len(self._tenants) > QUOTA_REMEMBERED_TENANTS:
            self._tenants.popitem(last=False)
