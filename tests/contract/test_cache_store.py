"""CacheStore: values per namespace and generation; invalidation bumps the generation."""
from __future__ import annotations

import pytest

from chalicelib.domain.errors import CacheGenerationChangedError
from chalicelib.ports import CacheEntry, TaskCompletion
from tests.contract.conftest import expire

AT = "2026-01-01T10:00:00.000Z"


def test_a_value_is_a_hit_until_its_namespace_is_invalidated(adapters):
    cache = adapters.cache
    miss = cache.get("acme", "proj", "summary")
    assert (miss.hit, miss.generation, miss.value) == (False, 0, None)
    stored = cache.put("acme", "proj", "summary", {"rows": [1, 2.5]}, AT)
    assert (stored.hit, stored.generation, stored.value, stored.cached_at) == (True, 0, {"rows": [1, 2.5]}, AT)
    assert cache.get("acme", "proj", "summary") == stored
    assert cache.get("globex", "proj", "summary").hit is False  # tenants never share entries
    assert cache.get("acme", "other", "summary").hit is False
    assert cache.invalidate("acme", "proj", "summary", "job-1", "2026-01-01T11:00:00.000Z") == 1
    after = cache.get("acme", "proj", "summary")
    assert (after.hit, after.generation, after.value, after.cached_at) == (False, 1, None, None)
    assert (after.invalidated_at, after.invalidated_by) == ("2026-01-01T11:00:00.000Z", "job-1")
    assert cache.invalidate("acme", "proj", "never-stored", "job-1", AT) == 1


def test_a_repeated_invalidation_by_the_same_job_bumps_nothing_and_reports_the_generation(adapters):
    cache = adapters.cache
    assert cache.invalidate("acme", "proj", "summary", "job-1", AT) == 1
    stored = cache.put("acme", "proj", "summary", {"fresh": True}, AT, expected_generation=1)
    assert cache.invalidate("acme", "proj", "summary", "job-1", AT) == 1  # a redelivery: nothing happens
    assert cache.get("acme", "proj", "summary") == stored
    assert cache.invalidate("acme", "proj", "summary", "job-2", AT) == 2  # another job's completion does


def test_a_late_invalidation_of_an_older_completion_bumps_nothing(adapters):
    """Completions at t1 (job-1) and t2 (job-2); a value stored after t2; job-1's event arrives
    late: the value stays a hit and the namespace still names job-2's invalidation."""
    cache = adapters.cache
    t1, t2 = "2026-01-01T00:00:01.000Z", "2026-01-01T00:00:02.000Z"
    cache.invalidate("acme", "proj", "summary", "job-1", t1)
    assert cache.invalidate("acme", "proj", "summary", "job-2", t2) == 2
    stored = cache.put("acme", "proj", "summary", {"fresh": True}, t2, expected_generation=2)
    assert cache.invalidate("acme", "proj", "summary", "job-1", t1) == 2
    assert cache.get("acme", "proj", "summary") == stored


def test_a_put_for_a_stale_generation_is_refused(adapters):
    cache = adapters.cache
    assert cache.put("acme", "proj", "summary", 1, AT, expected_generation=0).hit
    cache.invalidate("acme", "proj", "summary", "job-1", AT)
    with pytest.raises(CacheGenerationChangedError):
        cache.put("acme", "proj", "summary", 2, AT, expected_generation=0)
    assert cache.get("acme", "proj", "summary").hit is False
    again = cache.put("acme", "proj", "summary", 3, AT, expected_generation=1)
    assert (again.hit, again.generation, again.value) == (True, 1, 3)


def test_a_refused_put_names_the_namespaces_current_generation(adapters):
    """The refusal says what the namespace is at, so the caller need not guess: behind it
    (invalidated since) or ahead of it (a generation this namespace never reported, as after
    its item expired), never "invalidated" when nothing was."""
    cache = adapters.cache
    cache.invalidate("acme", "proj", "summary", "job-1", AT)
    cache.invalidate("acme", "proj", "summary", "job-2", "2026-01-01T11:00:00.000Z")
    with pytest.raises(CacheGenerationChangedError) as behind:
        cache.put("acme", "proj", "summary", 1, AT, expected_generation=1)
    assert behind.value.details == {"generation": 2, "if_match": 1}
    assert "generation 2, not 1" in behind.value.message and "invalidated since" in behind.value.message
    with pytest.raises(CacheGenerationChangedError) as ahead:
        cache.put("acme", "proj", "fresh", 1, AT, expected_generation=5)
    assert ahead.value.details == {"generation": 0, "if_match": 5}
    assert "generation 0, not 5" in ahead.value.message and "invalidated" not in ahead.value.message
    with pytest.raises(CacheGenerationChangedError) as ahead_of_stored:
        cache.put("acme", "proj", "summary", 1, AT, expected_generation=3)
    assert ahead_of_stored.value.details == {"generation": 2, "if_match": 3}
    assert cache.get("acme", "proj", "fresh").hit is False


def test_the_latest_completion_per_task_type_is_kept(adapters):
    cache = adapters.cache
    cache.record_completion("acme", "proj", TaskCompletion("demo.steps", "2026-01-01T10:00:00.000Z", "job-1"))
    cache.record_completion("acme", "proj", TaskCompletion("demo.steps", "2026-01-01T12:00:00.000Z", "job-2"))
    cache.record_completion("acme", "proj", TaskCompletion("demo.steps", "2026-01-01T11:00:00.000Z", "job-3"))  # late
    cache.record_completion("acme", "proj", TaskCompletion("demo.sleep", "2026-01-01T09:00:00.000Z", "job-4"))
    assert cache.completions("acme", "proj") == [
        TaskCompletion("demo.sleep", "2026-01-01T09:00:00.000Z", "job-4"),
        TaskCompletion("demo.steps", "2026-01-01T12:00:00.000Z", "job-2"),
    ]
    # one at the very same time is no older: the one recorded last is kept
    cache.record_completion("acme", "proj", TaskCompletion("demo.sleep", "2026-01-01T09:00:00.000Z", "job-5"))
    assert cache.completions("acme", "proj")[0] == TaskCompletion("demo.sleep", "2026-01-01T09:00:00.000Z", "job-5")
    assert cache.completions("globex", "proj") == []


def test_recording_a_completion_answers_what_the_last_completions_own_write_invalidated(adapters):
    """A completion's own write (its transaction) keeps the namespaces it invalidated on the
    scope's record of its type. Recording a completion from its event answers the namespaces the
    record named before, and keeps them: job-2's write landed after job-1's with an earlier time
    (its `finished_at` taken first), so job-1's event, later in time, replaces the record's time
    and job but is still told what job-2's write invalidated, and so are job-1's redelivery and
    job-2's event. A type whose completions were only recorded from events names none. Each
    write invalidates its namespaces as of its own job's `finished_at`, not when it was sent."""
    from chalicelib.domain.status import JobStatus
    from chalicelib.ports import ChangeSet
    from tests.contract.test_job_store import make_job, running

    if adapters.kind == "memory":  # the composition root gives the job store the scope caches
        adapters.store.caches = adapters.cache
    first, second = "2026-01-01T10:00:00.002Z", "2026-01-01T10:00:00.001Z"
    jobs = [running(adapters.store, make_job(i, scope="proj")) for i in (1, 2)]
    for job, at in zip(jobs, (first, second)):  # job-1's write lands first, then job-2's
        adapters.store.apply(job, JobStatus.RUNNING, ChangeSet(
            {"status": JobStatus.COMPLETED, "finished_at": at}, invalidate_caches=("summary", "report"),
            task_completion=TaskCompletion("demo.steps", at, job.id, ("summary", "report"))))
    one, two = jobs
    # read before any event: the record names the last write's completion, at its job's end
    assert adapters.cache.completions("acme", "proj") == [TaskCompletion("demo.steps", second, two.id)]
    summary = adapters.cache.get("acme", "proj", "summary")  # invalidated at the end of the job whose write did it
    assert (summary.generation, summary.invalidated_at, summary.invalidated_by) == (2, second, two.id)
    assert adapters.cache.record_completion("acme", "proj", TaskCompletion("demo.steps", first, one.id)) == (
        "summary", "report")
    assert adapters.cache.completions("acme", "proj") == [TaskCompletion("demo.steps", first, one.id)]
    assert adapters.cache.record_completion("acme", "proj", TaskCompletion("demo.steps", first, one.id)) == (
        "summary", "report")
    assert adapters.cache.record_completion("acme", "proj", TaskCompletion("demo.steps", second, two.id)) == (
        "summary", "report")
    assert adapters.cache.completions("acme", "proj") == [TaskCompletion("demo.steps", first, one.id)]
    assert adapters.cache.record_completion("acme", "proj", TaskCompletion("demo.sleep", first, one.id)) == ()
    assert adapters.cache.record_completion("acme", "proj", TaskCompletion("demo.sleep", first, one.id)) == ()


def test_a_namespace_is_kept_for_the_cache_ttl_after_its_last_write(adapters):
    """DynamoDB's TTL removes a scope cache's item CACHE_TTL_S after its last put or
    invalidation, each counted from its own time: a namespace no one used for that long is
    recomputed on its next read (a miss at generation 0), and one written again is kept that
    long from then."""
    from chalicelib.defaults import CACHE_TTL_S
    from chalicelib.domain.job import parse_time

    def kept_until(at: str) -> int:  # the last second the TTL leaves an item written at `at`
        return int(parse_time(at).timestamp()) + CACHE_TTL_S

    later, latest = "2026-01-02T10:00:00.000Z", "2026-01-03T10:00:00.000Z"
    adapters.cache.put("acme", "proj", "summary", {"rows": 1}, AT)
    expire(adapters, kept_until(AT))
    assert adapters.cache.get("acme", "proj", "summary").hit
    adapters.cache.invalidate("acme", "proj", "summary", "job-1", later)
    expire(adapters, kept_until(AT) + 1)  # past the put's time, not the invalidation's
    assert adapters.cache.get("acme", "proj", "summary").generation == 1
    expire(adapters, kept_until(later) + 1)
    assert adapters.cache.get("acme", "proj", "summary") == CacheEntry("summary", 0, None, False, None, None, None)
    adapters.cache.put("acme", "proj", "summary", {"rows": 2}, latest, expected_generation=0)
    expire(adapters, kept_until(latest))
    assert adapters.cache.get("acme", "proj", "summary").value == {"rows": 2}
    expire(adapters, kept_until(latest) + 1)
    assert not adapters.cache.get("acme", "proj", "summary").hit
