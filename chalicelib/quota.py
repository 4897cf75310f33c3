"""Admission at submit: a bound on each tenant's unfinished jobs, so one tenant's flood cannot
queue every other tenant's jobs behind it. The count comes from the stats recorder (change
data capture on the jobs table), so this reads one item and writes nothing."""
from __future__ import annotations

from chalicelib.domain.errors import QuotaExceededError
from chalicelib.ports import StatsStore

# What a refused client is told to wait: jobs finish in seconds to minutes, and asking again
# sooner only costs a read.
RETRY_AFTER_S = 10


class TenantQuota:
    def __init__(self, stats: StatsStore, max_unfinished: int, *, retry_after_s: int = RETRY_AFTER_S) -> None:
        self._stats = stats
        self._max = max_unfinished
        self._retry_after_s = retry_after_s

    def admit(self, tenant: str) -> None:
        """Returns if `tenant` may submit one more job; raises QuotaExceededError if it already
        has `max_unfinished` jobs queued, running or retrying."""
        unfinished = self._stats.unfinished(tenant)
        if unfinished >= self._max:
            raise QuotaExceededError(
                f"tenant has {unfinished} unfinished jobs, the most it may have is {self._max}; "
                f"retry after {self._retry_after_s} s or when some finish",
                retry_after_s=self._retry_after_s,
                details={"unfinished": unfinished, "limit": self._max},
            )
