"""Admission at submit: a bound on each tenant's unfinished jobs, so one tenant's flood cannot
queue every other tenant's jobs behind it. The count comes from the stats recorder (change
data capture on the jobs table), so this reads one item and writes nothing — and, while a
tenant is far from its bound, not even that on every submit (see `TenantQuota.admit`).

The counter is only as right as the changes it was fed: a stream batch that exhausted its
retries (sent to StreamFailureQueue) leaves it off for good. So a refusal is never decided by
the counter alone: the tenant's jobs are counted in the status index first, and a tenant
below its bound is admitted whatever the counter says (and the gap is logged)."""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional

from chalicelib.defaults import QUOTA_RECHECK_S, QUOTA_REMEMBERED_TENANTS, QUOTA_RETRY_AFTER_S
from chalicelib.domain.errors import QuotaExceededError
from chalicelib.domain.numbers import shown_number
from chalicelib.observability import logger
from chalicelib.ports import StatsStore


@dataclass
class _Reading:
    unfinished: int
    read_at: float
    admitted_since: int = 0
    counted: bool = False  # from the status index, not the counter


class TenantQuota:
    def __init__(self, stats: StatsStore, max_unfinished: int, *, retry_after_s: int = QUOTA_RETRY_AFTER_S,
                 recheck_s: float = QUOTA_RECHECK_S, clock: Callable[[], float] = time.monotonic,
                 recount: Optional[Callable[[str, int], int]] = None) -> None:
        """`recount(tenant, at_most)`: the tenant's unfinished jobs as the job store's status
        index holds them (JobStore.count_unfinished), checked before any refusal."""
        self._stats = stats
        self._recount = recount
        self._max = max_unfinished
        self._retry_after_s = retry_after_s
        self._recheck_s = recheck_s
        self._clock = clock
        self._readings: OrderedDict[str, _Reading] = OrderedDict()

    def admit(self, tenant: str, *, pending: int = 0) -> None:
        """Returns if `tenant` may submit one more job; raises QuotaExceededError if it already
        has `max_unfinished` jobs queued, running or retrying.

        `pending`: jobs the caller itself added lately that the counter may not count yet (a
        handler spawning in a loop, faster than the stream's lag): counted on top of the counter,
        never of the status index's count, which a refusal rests on. Counted twice once the
        counter has them, they only make the refusal check the index sooner.

        The count is read (one GetItem) unless this process read it under `recheck_s` ago and
        that count plus what it admitted since stays below half the bound: a burst far from the
        bound then costs one read a second per process instead of one per submit, and near the
        bound every submit reads. The count already lags the jobs by the stream's delay (about a
        second), so the bound was never exact under a burst; this adds at most `recheck_s` of
        that lag, and only while the tenant is below half of its bound."""
        now = self._clock()
        reading = self._readings.get(tenant)
        if reading is None or now - reading.read_at >= self._recheck_s \
                or 2 * (reading.unfinished + reading.admitted_since + pending + 1) > self._max:
            reading = _Reading(self._stats.unfinished(tenant), now)
        if reading.unfinished + reading.admitted_since + pending >= self._max:
            reading = self._counted(tenant, reading, self._readings.get(tenant), now)
        self._remember(tenant, reading)
        unfinished = reading.unfinished + reading.admitted_since + (0 if reading.counted else pending)
        if unfinished >= self._max:
            raise QuotaExceededError(
                f"tenant has {shown_number(unfinished)} unfinished jobs, the most it may have is "
                f"{shown_number(self._max)}; retry after {shown_number(self._retry_after_s)} s or when some finish",
                retry_after_s=self._retry_after_s,
                details={"unfinished": unfinished, "limit": self._max},
            )
        reading.admitted_since += 1

    def _counted(self, tenant: str, reading: _Reading, last: Optional[_Reading], now: float) -> _Reading:
        """The reading a refusal may rest on: the status index's count (jobs this process
        admitted are in it already), or the last such count if taken under `recheck_s` ago."""
        if self._recount is None or reading.counted:
            return reading
        if last is not None and last.counted and now - last.read_at < self._recheck_s:
            return last
        counted = _Reading(self._recount(tenant, self._max), now, counted=True)
        if counted.unfinished < reading.unfinished:
            logger.warning("tenant's unfinished counter is above its unfinished jobs; admitting by the jobs",
                           extra={"tenant": tenant, "counter": reading.unfinished, "jobs": counted.unfinished,
                                  "limit": self._max})
        return counted

    def _remember(self, tenant: str, reading: _Reading) -> None:
        self._readings[tenant] = reading
        self._readings.move_to_end(tenant)
        while len(self._readings) > QUOTA_REMEMBERED_TENANTS:
            self._readings.popitem(last=False)
