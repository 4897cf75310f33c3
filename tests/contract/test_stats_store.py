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


def test_each_tenants_unfinished_jobs_are_counted_once_per_change(adapters):
    created = [StatDelta(f"a-{i}#1", status={"queued": 1}, tenant="a", unfinished=1) for i in range(3)]
    created.append(StatDelta("b-0#1", status={"queued": 1}, tenant="b", unfinished=1))
    assert adapters.stats.record_batch(created) == 4
    finished = StatDelta("a-0#3", status={"running": -1, "completed": 1}, tenant="a", unfinished=-1)
    assert adapters.stats.record_batch([finished, created[0]]) == 1  # the creation was counted already
    assert adapters.stats.record_batch([finished]) == 0
    assert (adapters.stats.unfinished("a"), adapters.stats.unfinished("b"), adapters.stats.unfinished("c")) == (2, 1, 0)


def test_a_batch_touching_many_tenants_stays_within_one_transactions_limits(adapters):
    deltas = [StatDelta(f"t{i}-job#1", status={"queued": 1}, tenant=f"t{i}", unfinished=1) for i in range(150)]
    assert adapters.stats.record_batch(deltas) == 150
    assert [adapters.stats.unfinished(f"t{i}") for i in (0, 75, 149)] == [1, 1, 1]


def test_every_hour_asked_for_is_read_back_past_one_read_of_keys(adapters):
    """A window longer than one BatchGetItem takes (BATCH_GET_MAX keys) is read in several: each
    hour's counts come back, in the order asked, none of them left behind between two reads."""
    hours = [f"2026-01-0{1 + h // 24}T{h % 24:02d}" for h in range(120)]
    deltas = [StatDelta(f"job-{h}#1", hour=hour, events={"submitted": h + 1}) for h, hour in enumerate(hours)]
    assert adapters.stats.record_batch(deltas) == 120
    assert adapters.stats.hourly(hours) == [{"submitted": h + 1} for h in range(120)]
