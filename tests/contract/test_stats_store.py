"""StatsStore: counters applied once per change."""
from __future__ import annotations

from chalicelib.domain.stats import StatDelta


def test_a_delta_is_counted_once_and_counters_add_up(adapters):
    first = StatDelta("job-1#1", status={"queued": 1}, hour="2026-01-01T10", events={"submitted": 1, "t:demo:submitted": 1})
    assert adapters.stats.record_batch([first]) == 1
    assert adapters.stats.record_batch([first]) == 0  # a redelivered stream record
    second = StatDelta("job-1#2", status={"queued": -1, "running": 1}, hour="2026-01-01T10", events={"started": 1})
    third = StatDelta("job-2#1", status={"queued": 1}, hour="2026-01-01T11", events={"submitted": 1})
    assert adapters.stats.record_batch([first, second, third]) == 2  # a batch replayed in part
    assert adapters.stats.record_batch([StatDelta("job-3#2")]) == 1  # nothing to count is still recorded once
    assert adapters.stats.record_batch([StatDelta("job-3#2")]) == 0
    counts = adapters.stats.status_counts()
    assert {k: v for k, v in counts.items() if v} == {"queued": 1, "running": 1}
    assert adapters.stats.hourly(["2026-01-01T09", "2026-01-01T10", "2026-01-01T11"]) == [
        {},
        {"submitted": 1, "t:demo:submitted": 1, "started": 1},
        {"submitted": 1},
    ]
    assert adapters.stats.hourly(["2026-01-01T11", "2026-01-01T11"]) == [{"submitted": 1}] * 2


def test_no_counts_before_anything_happened(adapters):
    assert {k: v for k, v in adapters.stats.status_counts().items() if v} == {}
    assert adapters.stats.hourly([]) == []
    assert adapters.stats.hourly([f"2026-01-0{d}T{h:02d}" for d in range(1, 6) for h in range(24)]) == [{}] * 120
