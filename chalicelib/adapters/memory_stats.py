"""In-memory twins of the StatsStore and ReconcilerLog ports (same items as the stats table)."""
from __future__ import annotations

from collections import Counter
from typing import Any, Optional

from chalicelib.domain.stats import combine


class InMemoryStatsStore:
    """Same items as the DynamoDB adapter; `writes` counts the writes per item key, so tests can
    see which items run hot."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.status: dict[str, int] = {}
        self.hours: dict[str, dict[str, int]] = {}
        self.tenants: dict[str, int] = {}
        self.writes: Counter[str] = Counter()

    def record_batch(self, deltas: Any) -> int:
        new = [d for d in {d.dedupe_key: d for d in deltas}.values() if d.dedupe_key not in self.seen]
        totals = combine(new)
        for delta in new:
            self.seen.add(delta.dedupe_key)
            self.writes[f"SEEN#{delta.dedupe_key}"] += 1
        if totals.status:
            self.writes["STATUS"] += 1
        for name, value in totals.status.items():
            self.status[name] = self.status.get(name, 0) + value
        for hour_key, events in totals.hours.items():
            self.writes[f"HOUR#{hour_key}"] += 1
            hour = self.hours.setdefault(hour_key, {})
            for name, value in events.items():
                hour[name] = hour.get(name, 0) + value
        for tenant, value in totals.tenants.items():
            self.writes[f"TENANT#{tenant}"] += 1
            self.tenants[tenant] = self.tenants.get(tenant, 0) + value
        return len(new)

    def unfinished(self, tenant: str) -> int:
        return max(0, self.tenants.get(tenant, 0))

    def status_counts(self) -> dict[str, int]:
        return dict(self.status)

    def hourly(self, hours: list[str]) -> list[dict[str, int]]:
        return [dict(self.hours.get(h, {})) for h in hours]


class InMemoryReconcilerLog:
    def __init__(self) -> None:
        self.last_pass: Optional[dict[str, Any]] = None
        self.totals: dict[str, int] = {}

    def record(self, started_at: str, counts: dict[str, int]) -> None:
        self.last_pass = {"started_at": started_at, "counts": dict(counts)}
        self.totals["passes"] = self.totals.get("passes", 0) + 1
        for name, value in counts.items():
            self.totals[name] = self.totals.get(name, 0) + value

    def summary(self) -> dict[str, Any]:
        return {"last_pass": self.last_pass, "totals": dict(self.totals)}
