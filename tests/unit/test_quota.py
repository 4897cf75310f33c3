"""Admission at submit: each tenant's unfinished jobs, counted from job changes, bound what it
may submit."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib.adapters.memory_stats import InMemoryStatsStore
from chalicelib.defaults import QUOTA_COUNTER_LAG_S, QUOTA_RECHECK_S, QUOTA_RETRY_AFTER_S
from chalicelib.domain.errors import QuotaExceededError
from chalicelib.domain.job import Job
from chalicelib.domain.stats import delta_for
from chalicelib.quota import TenantQuota

NOW = datetime(2026, 1, 1, 12, 30, tzinfo=timezone.utc)


def image(job_id, status, version, tenant="a"):
    """The job as the stream's decoder hands it to the counters."""
    finished = "2026-01-01T12:10:00.000Z" if status in ("completed", "failed", "canceled") else None
    return Job(id=job_id, tenant=tenant, user="u", type="demo.steps", status=status, version=version,
               created_at="2026-01-01T12:00:00.000Z", finished_at=finished)


def record(stats, old, new):
    stats.record_batch([delta_for(old, new, NOW)])


@pytest.mark.parametrize("old, new, change", [
    (None, ("queued", 1), 1),
    (("queued", 1), ("running", 2), 0),
    (("running", 2), ("retrying", 3), 0),
    (("running", 2), ("completed", 3), -1),
    (("running", 2), ("failed", 3), -1),
    (("queued", 1), ("canceled", 2), -1),
    (("queued", 1), None, -1),  # a refused submission removed again
    (("completed", 3), None, 0),  # TTL or clean-up of a finished job
])
def test_each_change_moves_the_tenants_unfinished_count(old, new, change):
    delta = delta_for(image("j", *old) if old else None, image("j", *new) if new else None, NOW)
    assert (delta.tenant, delta.unfinished) == ("a", change)


def test_the_count_follows_jobs_through_their_lives_once_per_change():
    stats = InMemoryStatsStore()
    stats.record_batch([delta_for(None, image(f"j{i}", "queued", 1), NOW) for i in range(3)])  # one batch
    record(stats, image("j0", "queued", 1), image("j0", "running", 2))
    record(stats, image("j0", "running", 2), image("j0", "completed", 3))
    record(stats, image("j0", "running", 2), image("j0", "completed", 3))  # redelivered
    record(stats, None, image("k0", "queued", 1, tenant="b"))
    assert (stats.unfinished("a"), stats.unfinished("b"), stats.unfinished("c")) == (2, 1, 0)


class CountingStats(InMemoryStatsStore):
    def __init__(self):
        super().__init__()
        self.reads = 0

    def unfinished(self, tenant):
        self.reads += 1
        return super().unfinished(tenant)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Jobs:
    """The status index's count of a tenant's unfinished jobs (JobStore.count_unfinished)."""

    def __init__(self, **unfinished):
        self.unfinished = unfinished
        self.counts = 0

    def __call__(self, tenant, at_most):
        self.counts += 1
        return min(at_most, self.unfinished.get(tenant, 0))


def submitted(quota, stats, jobs, tenant="a", counted=True):
    """A submit as the API makes it: admitted, then its job written (and, once the stream
    delivers its change, counted by the stats recorder: at once unless `counted` is False)."""
    quota.admit(tenant)
    jobs.unfinished[tenant] = jobs.unfinished.get(tenant, 0) + 1
    if counted:
        record(stats, None, image(f"j{jobs.unfinished[tenant]}", "queued", 1, tenant=tenant))


def test_a_tenant_at_its_bound_is_refused_and_told_when_to_retry():
    stats, clock, jobs = InMemoryStatsStore(), Clock(), Jobs()
    quota = TenantQuota(stats, 2, recount=jobs, clock=clock)
    for _ in range(2):
        submitted(quota, stats, jobs)
    with pytest.raises(QuotaExceededError) as refused:
        quota.admit("a")
    assert refused.value.retry_after_s == QUOTA_RETRY_AFTER_S and refused.value.details == {"unfinished": 2, "limit": 2}
    quota.admit("b")  # other tenants are not affected
    record(stats, image("j1", "queued", 1), image("j1", "canceled", 2))
    jobs.unfinished["a"] = 1
    clock.now += QUOTA_RECHECK_S
    quota.admit("a")  # a finished job frees a slot, seen once the count is taken again


def test_far_from_the_bound_a_burst_reads_the_count_once_per_recheck_window():
    stats, clock, jobs = CountingStats(), Clock(), Jobs()
    quota = TenantQuota(stats, 1000, recount=jobs, recheck_s=1.0, clock=clock)
    for _ in range(50):
        quota.admit("a")
    assert stats.reads == 1
    quota.admit("b")  # each tenant its own count
    assert stats.reads == 2
    clock.now += 1.0
    quota.admit("a")
    assert (stats.reads, jobs.counts) == (3, 0)


def test_from_half_the_bound_the_index_decides_once_per_recheck_window_and_the_counter_is_not_read():
    stats, clock, jobs = CountingStats(), Clock(), Jobs()
    quota = TenantQuota(stats, 10, recount=jobs, recheck_s=1.0, clock=clock)
    for _ in range(5):  # the count read at the first (0) + 4 admitted lately + this one: half
        submitted(quota, stats, jobs)
    assert (stats.reads, jobs.counts) == (1, 0)
    submitted(quota, stats, jobs)  # 0 + 5 + this one: past half, so the index counts (5) and admits
    assert (stats.reads, jobs.counts) == (1, 1)
    for _ in range(4):
        submitted(quota, stats, jobs)
    with pytest.raises(QuotaExceededError) as refused:
        quota.admit("a")
    assert refused.value.details == {"unfinished": 10, "limit": 10}
    assert (stats.reads, jobs.counts) == (1, 1), "the index's count and what was admitted since stand in"
    clock.now += 1.0
    with pytest.raises(QuotaExceededError):
        quota.admit("a")
    assert (stats.reads, jobs.counts) == (1, 2), "near the bound the index is counted again, not the counter"


def test_a_counter_the_stream_has_not_fed_lets_one_process_admit_up_to_the_bound_not_past_it():
    """The stream lags the whole burst (the counter still reads 0): what this process admitted
    lately brings it to half the bound, and from there the index's count holds every job."""
    stats, clock, jobs = CountingStats(), Clock(), Jobs()
    quota = TenantQuota(stats, 50, recount=jobs, recheck_s=1.0, clock=clock)
    admitted = 0
    with pytest.raises(QuotaExceededError) as refused:
        for _ in range(300):
            submitted(quota, stats, jobs, counted=False)
            admitted += 1
            clock.now += 0.05  # 20 submits a second
    assert admitted == 50 and refused.value.details == {"unfinished": 50, "limit": 50}
    assert stats.unfinished("a") == 0


def test_processes_sharing_a_lagging_counter_each_admit_at_most_half_the_bound_before_the_index_decides():
    """Four API processes, one stream that counts nothing: each reaches half the bound on its
    own, and from there all decide by the index, which every process's jobs are in."""
    stats, clock, jobs = CountingStats(), Clock(), Jobs()
    processes = [TenantQuota(stats, 50, recount=jobs, recheck_s=1.0, clock=clock) for _ in range(4)]
    admitted = refused = 0
    for i in range(300):
        try:
            submitted(processes[i % 4], stats, jobs, counted=False)
            admitted += 1
        except QuotaExceededError:
            refused += 1
        clock.now += 0.05
    # Each process admitted 25 before it counted the index (100 jobs: past the bound), then none.
    assert (admitted, refused) == (100, 200) and jobs.unfinished["a"] == 100


def test_what_this_process_admitted_counts_towards_half_the_bound_before_the_stream_counts_it():
    stats, clock, jobs = CountingStats(), Clock(), Jobs()
    quota = TenantQuota(stats, 4, recount=jobs, recheck_s=60, clock=clock)
    quota.admit("a")  # read: 0
    quota.admit("a")  # 0 + 1 admitted + this one = 2, half the bound: the counter decides
    assert jobs.counts == 0
    quota.admit("a")  # 0 + 2 + 1 is past half: the index is counted, though the stream has counted nothing yet
    assert (stats.reads, jobs.counts) == (1, 1)


def test_what_a_process_admitted_longer_ago_than_the_counters_lag_is_left_to_the_counter():
    stats, clock, jobs = CountingStats(), Clock(), Jobs()
    quota = TenantQuota(stats, 10, recount=jobs, recheck_s=1.0, counter_lag_s=5.0, clock=clock)
    for _ in range(4):  # one a second: each second's admissions are forgotten, not only the oldest
        submitted(quota, stats, jobs, counted=False)
        clock.now += 1.0
    clock.now += 6.0
    for i in range(4):  # the stream delivers the four: 4 counted, none admitted lately
        record(stats, None, image(f"j{i + 1}", "queued", 1))
    submitted(quota, stats, jobs)
    assert jobs.counts == 0, "4 + this one is below half the bound"


@pytest.mark.parametrize("later, counted", [(QUOTA_COUNTER_LAG_S, 1), (QUOTA_COUNTER_LAG_S + 1, 0)])
def test_by_default_what_a_process_admitted_counts_for_the_counters_lag_as_the_defaults_give_it(later, counted):
    """Two jobs admitted (the stream has delivered neither) bring a bound of 4 to the index's
    count while their second lies within QUOTA_COUNTER_LAG_S; a second later they are the counter's."""
    stats, clock, jobs = InMemoryStatsStore(), Clock(), Jobs()
    quota = TenantQuota(stats, 4, recount=jobs, clock=clock)
    quota.admit("a")
    quota.admit("a")
    clock.now += later
    quota.admit("a")
    assert jobs.counts == counted


def test_jobs_admitted_within_the_counters_lag_count_whatever_part_of_a_second_they_fell_in():
    """Admissions are kept per whole second: those of the second `counter_lag_s` ago are kept
    with it (a few more than the lag, never fewer), so a job admitted 4.8 s ago still counts
    towards half the bound, and only those of older seconds are left to the counter."""
    stats, clock, jobs = CountingStats(), Clock(), Jobs()
    quota = TenantQuota(stats, 10, recount=jobs, recheck_s=1.0, counter_lag_s=5.0, clock=clock)
    clock.now = 100.8
    submitted(quota, stats, jobs, counted=False)
    clock.now = 101.3
    for _ in range(4):
        submitted(quota, stats, jobs, counted=False)
    assert jobs.counts == 0
    record(stats, None, image("elsewhere", "queued", 1))  # another process's job reaches the counter
    clock.now = 106.1  # 5.3 s after the first, 4.8 s after the four
    quota.admit("a")
    assert jobs.counts == 1, "1 counted + the 4 admitted within the lag + this one is past half the bound"


def near_by_the_index(jobs, clock, pending):
    """A quota whose first admission of tenant a came near half the bound by `pending`, so it
    counted the index (`jobs`), 1 s before `clock` reads now."""
    stats = CountingStats()
    quota = TenantQuota(stats, 10, recount=jobs, recheck_s=1.0, counter_lag_s=5.0, clock=clock)
    quota.admit("a", pending=pending)
    assert (stats.reads, jobs.counts) == (1, 1)
    clock.now += 1.0
    return quota, stats


def test_an_index_count_near_half_the_bound_decides_the_next_window_without_the_counter():
    """An index count under `counter_lag_s` old that, with what was admitted since, is near half
    the bound is taken again when the window ends: the counter, behind it, is not read."""
    clock, jobs = Clock(), Jobs(a=4)
    quota, stats = near_by_the_index(jobs, clock, pending=5)
    quota.admit("a")  # counted 4 + 1 admitted since + this one: past half, so the index counts again
    assert (stats.reads, jobs.counts) == (1, 2)


def test_an_index_count_far_from_half_the_bound_or_older_than_the_lag_leaves_the_decision_to_the_counter():
    """Only a recent index count near half the bound stands in for the counter: one that found
    the tenant far from it (a caller's `pending` brought it to the count), or one taken
    `counter_lag_s` ago or longer, leaves the next decision to the counter, one GetItem."""
    clock, jobs = Clock(), Jobs(a=1)
    quota, stats = near_by_the_index(jobs, clock, pending=5)
    quota.admit("a")  # counted 1 + 1 since: far, so the counter decides
    assert (stats.reads, jobs.counts) == (2, 1)
    clock, jobs = Clock(), Jobs(a=4)
    quota, stats = near_by_the_index(jobs, clock, pending=5)
    clock.now += 4.0
    quota.admit("a")  # counted 4 but `counter_lag_s` ago: the counter (0) decides
    assert (stats.reads, jobs.counts) == (2, 1)


def test_a_counter_left_high_by_lost_changes_never_refuses_a_tenant_below_its_bound(caplog):
    """A stream batch dropped after its retries leaves the counter off for good: the status
    index decides before any refusal, once per recheck window."""
    stats, clock, jobs = CountingStats(), Clock(), Jobs(a=3)
    for i in range(10):  # the counter saw ten jobs start, never their ends
        record(stats, None, image(f"j{i}", "queued", 1))
    quota = TenantQuota(stats, 10, recheck_s=1.0, clock=clock, recount=jobs)
    for _ in range(3):
        quota.admit("a")
    assert jobs.counts == 1, "the index's count stands in for the rest of the window"
    gap = next(r for r in caplog.records if "counter is above its unfinished jobs" in r.getMessage())
    assert (gap.levelname, gap.tenant, gap.counter, gap.jobs, gap.limit) == ("WARNING", "a", 10, 3, 10)
    clock.now += 1.0
    jobs.unfinished["a"] = 10  # now it is full for real
    with pytest.raises(QuotaExceededError) as refused:
        quota.admit("a")
    assert refused.value.details == {"unfinished": 10, "limit": 10} and jobs.counts == 2
    with pytest.raises(QuotaExceededError):
        quota.admit("a")
    assert jobs.counts == 2, "refusals within the window count once"


def test_a_tenant_at_its_bound_by_both_counts_is_refused(caplog):
    """The counter and the index agree: refused, and no gap between them is logged."""
    stats, jobs = InMemoryStatsStore(), Jobs(a=2)
    quota = TenantQuota(stats, 2, recount=jobs)
    for i in range(2):
        record(stats, None, image(f"j{i}", "queued", 1))
    with pytest.raises(QuotaExceededError):
        quota.admit("a")
    assert jobs.counts == 1 and "counter is above its unfinished jobs" not in caplog.text
    quota.admit("b")
    assert jobs.counts == 1, "a tenant far from its bound is never counted"


def test_a_counter_above_the_index_but_below_the_bound_is_not_logged(caplog):
    """The gap between the counter and the index is logged when the counter alone would have
    refused the tenant; one still below the bound only brought the count sooner."""
    stats, jobs = InMemoryStatsStore(), Jobs(a=3)
    for i in range(6):
        record(stats, None, image(f"j{i}", "queued", 1))
    TenantQuota(stats, 10, recount=jobs).admit("a")
    assert jobs.counts == 1 and "counter is above its unfinished jobs" not in caplog.text


def test_the_index_is_counted_no_further_than_the_bound():
    """A tenant past its bound (processes that had not counted yet each admitted up to half of
    it) is counted up to the bound only: a refusal needs no more, and the count's Queries stop
    there."""
    stats, jobs = InMemoryStatsStore(), Jobs(a=14)
    with pytest.raises(QuotaExceededError) as refused:
        TenantQuota(stats, 10, recount=jobs).admit("a", pending=14)
    assert refused.value.details == {"unfinished": 10, "limit": 10}


def test_what_a_caller_added_before_the_counter_saw_it_counts_towards_half_the_bound():
    """A handler spawning in a loop, in a worker process that admitted nothing itself lately:
    its earlier children count on top of the counter, and the index's count decides."""
    stats, clock, jobs = CountingStats(), Clock(), Jobs(a=4)  # the parent and three children
    record(stats, None, image("parent", "running", 1))
    quota = TenantQuota(stats, 10, recount=jobs, recheck_s=60, clock=clock)
    quota.admit("a", pending=3)  # 1 + 3 + this one: below half
    assert jobs.counts == 0
    fresh = TenantQuota(stats, 10, recount=jobs, recheck_s=60, clock=clock)
    fresh.admit("a", pending=4)  # 1 + 4 + this one: half, so the index counts (4) and admits
    assert jobs.counts == 1


def test_a_refusal_writes_its_counts_as_the_docs_write_numbers():
    stats = InMemoryStatsStore()
    quota = TenantQuota(stats, 1_000, recount=Jobs(a=1_000))
    record(stats, None, image("j0", "queued", 1))
    stats.record_batch([delta_for(None, image(f"j{i}", "queued", 1), NOW) for i in range(1, 1_000)])
    with pytest.raises(QuotaExceededError) as refused:
        quota.admit("a")
    assert refused.value.message.startswith("tenant has 1,000 unfinished jobs, the most it may have is 1,000; ")


def test_jobs_admitted_since_the_index_was_counted_count_towards_the_bound():
    """The index's count stands in for the recheck window; what this process admits meanwhile is
    added to it, so a counter left high by lost changes lets the tenant up to its bound, not past."""
    stats, clock, jobs = CountingStats(), Clock(), Jobs(a=8)
    for i in range(10):  # the counter saw ten jobs start, never their ends
        record(stats, None, image(f"j{i}", "queued", 1))
    quota = TenantQuota(stats, 10, recheck_s=60, clock=clock, recount=jobs)
    quota.admit("a")
    quota.admit("a")
    with pytest.raises(QuotaExceededError) as refused:
        quota.admit("a")
    assert refused.value.details == {"unfinished": 10, "limit": 10} and jobs.counts == 1


def test_the_tenants_admitted_last_are_remembered_and_the_oldest_forgotten(monkeypatch):
    """A process remembers the counts of QUOTA_REMEMBERED_TENANTS tenants, those it admitted last."""
    monkeypatch.setattr("chalicelib.quota.QUOTA_REMEMBERED_TENANTS", 3)
    stats, clock = CountingStats(), Clock()
    quota = TenantQuota(stats, 1_000, recount=Jobs(), recheck_s=60, clock=clock)
    for tenant in ("t0", "t1", "t2", "t0"):
        quota.admit(tenant)
    assert stats.reads == 3, "as many tenants as it remembers, each read once"
    quota.admit("t3")  # a fourth: t1, admitted longest ago, is forgotten
    for tenant in ("t3", "t0", "t2"):
        quota.admit(tenant)
    assert stats.reads == 4
    quota.admit("t1")
    assert stats.reads == 5
