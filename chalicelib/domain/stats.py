"""Counters operators read, derived from job changes (change data capture on the jobs table).

`delta_for(old, new)` turns one change of a job into counter increments; it is pure, so the
stream consumer and the tests agree on what counts. Counters are kept
per status (jobs currently in each status) and per hour (events, per type, and a histogram
of completion times), so a window's numbers are a handful of item reads, never a scan."""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping, Optional

from chalicelib.domain.job import Job
from chalicelib.domain.status import JobStatus

# Upper bounds (seconds) of the completion-time histogram buckets; the last is open-ended.
BUCKETS_S: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400,
)
EVENTS = ("submitted", "started", "retried", "completed", "failed", "canceled")
# Transition into a status -> the hourly event it counts as.
_EVENT_FOR = {
    JobStatus.RUNNING.value: "started",
    JobStatus.RETRYING.value: "retried",
    JobStatus.COMPLETED.value: "completed",
    JobStatus.FAILED.value: "failed",
    JobStatus.CANCELED.value: "canceled",
}


@dataclass(frozen=True)
class StatDelta:
    """What one job change adds to the counters. `dedupe_key` is unique per (job, version,
    kind of change), so recording the same stream record twice is detected."""

    dedupe_key: str
    status: dict[str, int] = field(default_factory=dict)  # status -> +1/-1
    hour: Optional[str] = None  # yyyy-mm-ddThh of the event
    events: dict[str, int] = field(default_factory=dict)  # counter name -> increment
    tenant: Optional[str] = None
    unfinished: int = 0  # the tenant's unfinished jobs: +1 created, -1 finished or removed unfinished


@dataclass(frozen=True)
class StatTotals:
    """The sum of several deltas: what one write per shared counter item applies."""

    status: dict[str, int]
    hours: dict[str, dict[str, int]]
    tenants: dict[str, int] = field(default_factory=dict)  # tenant -> change of its unfinished jobs


def combine(deltas: Iterable[StatDelta]) -> StatTotals:
    """Add up deltas, so a batch of changes touches `STATUS` and each hour's item once (a
    shared item written per change is a hot partition at scale). Zero sums are dropped."""
    status: dict[str, int] = {}
    hours: dict[str, dict[str, int]] = {}
    tenants: dict[str, int] = {}
    for delta in deltas:
        if delta.tenant and delta.unfinished:
            tenants[delta.tenant] = tenants.get(delta.tenant, 0) + delta.unfinished
        for name, value in delta.status.items():
            status[name] = status.get(name, 0) + value
        if delta.hour and delta.events:
            hour = hours.setdefault(delta.hour, {})
            for name, value in delta.events.items():
                hour[name] = hour.get(name, 0) + value
    return StatTotals(
        status={k: v for k, v in status.items() if v},
        hours={h: c for h, c in hours.items() if c},
        tenants={t: n for t, n in tenants.items() if n},
    )


def hour_of(timestamp: Optional[str], fallback: datetime) -> str:
    return (timestamp or fallback.strftime("%Y-%m-%dT%H"))[:13]


def bucket_for(seconds: float) -> int:
    return bisect.bisect_left(BUCKETS_S, seconds)


def _parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def delta_for(old: Optional[Job], new: Optional[Job], now: datetime) -> Optional[StatDelta]:
    """The counter changes for a job going from `old` to `new` (None: absent); None when
    nothing countable changed (a progress write)."""
    if new is None:
        if old is None:
            return None
        # deleted: TTL, clean-up, or a refused submission
        return StatDelta(f"{old.id}#{old.version}#removed", status={old.status.value: -1},
                         tenant=old.tenant, unfinished=0 if old.status.is_terminal else -1)
    before = old.status.value if old else None
    after = new.status.value
    if before == after:
        return None
    status = {after: 1}
    if before is not None:
        status[before] = -1
    if before is None:
        event, at = "submitted", new.created_at
    else:
        event = _EVENT_FOR.get(after)
        at = new.finished_at if after in ("completed", "failed", "canceled") else None
    events: dict[str, int] = {}
    if event:
        events[event] = 1
        events[f"t:{new.type}:{event}"] = 1
    if after == JobStatus.COMPLETED.value and new.created_at and new.finished_at:
        seconds = (_parse(new.finished_at) - _parse(new.created_at)).total_seconds()
        events[f"d:{bucket_for(seconds)}"] = 1
    if old is None:
        unfinished = 0 if new.status.is_terminal else 1
    else:
        unfinished = -1 if new.status.is_terminal and not old.status.is_terminal else 0
    return StatDelta(f"{new.id}#{new.version}", status=status, hour=hour_of(at, now), events=events,
                     tenant=new.tenant, unfinished=unfinished)


def hours_back(now: datetime, hours: int) -> list[str]:
    """The `hours` hour keys ending with the current one."""
    now = now.astimezone(timezone.utc)
    return [(now - timedelta(hours=h)).strftime("%Y-%m-%dT%H") for h in range(hours)]


def percentile(histogram: Mapping[int, int], p: float) -> Optional[float]:
    """Upper bound (s) of the bucket holding the p-th percentile; None without data. The last,
    open-ended bucket reports its lower bound."""
    total = sum(histogram.values())
    if not total:
        return None
    rank, seen = p / 100 * total, 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return BUCKETS_S[index] if index < len(BUCKETS_S) else BUCKETS_S[-1]
    return BUCKETS_S[-1]


def summarize(status_counts: Mapping[str, int], hourly: Iterable[Mapping[str, int]],
              window_hours: int) -> dict[str, Any]:
    """Jobs by status now, plus the window's events, per type, completion p50/p95 and failure rate."""
    totals: dict[str, int] = {}
    for counters in hourly:
        for name, value in counters.items():
            totals[name] = totals.get(name, 0) + int(value)
    events = {e: totals.get(e, 0) for e in EVENTS}
    by_type: dict[str, dict[str, int]] = {}
    histogram: dict[int, int] = {}
    for name, value in totals.items():
        if name.startswith("t:"):
            job_type, event = name[2:].rsplit(":", 1)
            by_type.setdefault(job_type, {e: 0 for e in EVENTS})[event] = value
        elif name.startswith("d:"):
            histogram[int(name[2:])] = value
    finished = events["completed"] + events["failed"]
    return {
        "window_hours": window_hours,
        "jobs_by_status": {s.value: max(0, int(status_counts.get(s.value, 0))) for s in JobStatus},
        "events": events,
        "by_type": {
            t: {**c, "failure_rate": _rate(c["failed"], c["completed"] + c["failed"])}
            for t, c in sorted(by_type.items())
        },
        "completion_time_s": {"p50": percentile(histogram, 50), "p95": percentile(histogram, 95),
                              "samples": sum(histogram.values())},
        "failure_rate": _rate(events["failed"], finished),
    }


def _rate(part: int, whole: int) -> Optional[float]:
    return round(part / whole, 4) if whole else None
