from datetime import timedelta

import pytest

from chalicelib.adapters.memory import InMemoryFinishedJobs
from chalicelib.adapters.memory_blobs import InMemoryArtifactStore, InMemoryBlobStore
from chalicelib.adapters.memory_stats import InMemoryStatsStore
from chalicelib.defaults import (
    CLEANUP_FAILURES_SHOWN,
    CLEANUP_MAX_FAILURES_IN_A_ROW,
    CLEANUP_MAX_FOLLOW_UPS,
    CLEANUP_STOP_MARGIN_MS,
    CLEANUP_TTL_SLACK_DAYS,
    MAX_CLEANUP_AGE_HOURS,
    MAX_STATS_WINDOW_HOURS,
    PROBE_STOP_MARGIN_MS,
    RETENTION_MAX_DAYS,
)
from chalicelib.domain.errors import InvalidArtifactError, JobCancelledError, JobpipeError, StoreUnavailableError
from chalicelib.domain.job import Job, isoformat
from chalicelib.domain.stats import delta_for
from chalicelib.domain.status import JobStatus
from chalicelib.maintenance import MaintenanceTasks, TaskControl, follow_up_id, follow_up_payload
from chalicelib.ports import FinishedPage
from tests.support.lambda_context import TimeLeft


class FakeQueues:
    def __init__(self, broken=()):
        self.broken = set(broken)

    def health(self):
        out = []
        for priority in ("high", "normal", "low"):
            for kind in ("queue", "dlq"):
                name = f"jobs-{priority}{'-dlq' if kind == 'dlq' else ''}"
                if name in self.broken:
                    out.append({"name": name, "kind": kind, "priority": priority, "ok": False, "error": "gone"})
                else:
                    out.append({"name": name, "kind": kind, "priority": priority, "ok": True,
                                "visible": 2 if kind == "dlq" else 3, "in_flight": 0, "delayed": 0})
        return out


@pytest.fixture
def blobs(clock):
    return InMemoryBlobStore(clock)


@pytest.fixture
def tasks(store, blobs, clock):
    artifacts = InMemoryArtifactStore(blobs, clock=clock)
    finished = InMemoryFinishedJobs(store, artifacts, blobs)
    tasks = MaintenanceTasks(finished=finished, stats=InMemoryStatsStore(), queues=FakeQueues(), blobs=blobs,
                             probes={"jobs_table": lambda: {"ok": True}}, clock=clock)
    tasks.artifacts = artifacts
    return tasks


def finished_job(store, clock, job_id, hours_ago):
    at = clock() - timedelta(hours=hours_ago)
    store.create(Job(id=job_id, type="demo.steps", tenant="acme", user="ann", status=JobStatus.COMPLETED,
                     created_at=isoformat(at), finished_at=isoformat(at)))


def health_tasks(store, blobs, clock, probes, queues=None):
    """Maintenance tasks over the in-memory stores with these `probes` (and FakeQueues)."""
    return MaintenanceTasks(finished=InMemoryFinishedJobs(store, InMemoryArtifactStore(blobs, clock=clock), blobs),
                            stats=InMemoryStatsStore(), queues=queues or FakeQueues(), blobs=blobs, probes=probes,
                            clock=clock)


def test_cleanup_runs_deletes_only_jobs_finished_before_the_cutoff(tasks, store, clock, blobs):
    finished_job(store, clock, "old-1", 30)
    finished_job(store, clock, "old-2", 100)
    finished_job(store, clock, "new-1", 3)
    tasks.artifacts.put("old-1", "big.bin", b"x" * 10, "application/octet-stream")
    result = tasks.cleanup_runs(24)
    assert result["jobs_deleted"] == 2 and result["items_deleted"] == 3 and result["complete"]
    assert set(store._jobs) == {"new-1"} and blobs.objects == {}


def test_a_cleanups_progress_is_the_share_of_the_index_walked_not_a_count(tasks, store, clock):
    """150 jobs deleted are not 99 %: a clean-up's percent is the share of the window's days of
    the finished-day index read before the page that deleted them (below 100 until the run
    completes); the message says how many were deleted and how far the index was read."""
    for n in range(150):
        finished_job(store, clock, f"old-{n:03d}", 30 * 24)  # early in the walk
    for n in range(3):
        finished_job(store, clock, f"older-{n}", 2 * 24)  # late in it
    reported = []
    result = tasks.cleanup_runs(24, TaskControl(progress=lambda percent, message: reported.append((percent, message))))
    assert result["jobs_deleted"] == 153
    back = RETENTION_MAX_DAYS + CLEANUP_TTL_SLACK_DAYS  # `since`: as far back as a record can be kept
    days = back - 1 + 1  # from `since`'s day to the cutoff's, a day back, both read

    def read_up_to(days_ago):
        return (clock() - timedelta(days=days_ago)).date().isoformat()

    assert reported == [
        (round(100 * (back - 30) / days, 2), f"deleted 100 jobs; finished-day index read up to {read_up_to(30)}"),
        (round(100 * (back - 30) / days, 2), f"deleted 150 jobs; finished-day index read up to {read_up_to(30)}"),
        (round(100 * (back - 2) / days, 2), f"deleted 153 jobs; finished-day index read up to {read_up_to(2)}"),
    ]


def test_a_temp_file_cleanup_reports_no_percent_it_cannot_know(tasks, blobs, clock):
    """A listing has no known end: 0 % until the run completes, the objects deleted counted in
    the message, never passed off as a percent."""
    for n in range(1500):
        blobs.put(f"tmp/{n:04d}", b"1", "text/plain")
    clock.advance(2 * 3600)
    reported = []
    tasks.cleanup_temp_files(1, TaskControl(progress=lambda percent, message: reported.append((percent, message))))
    assert reported == [(0.0, "deleted 1000 objects"), (0.0, "deleted 1500 objects")]


def test_cleanup_reaches_jobs_kept_under_an_earlier_longer_retention(tasks, store, clock):
    """A record keeps the TTL of the RetentionDays it was written under: after the retention is
    lowered (30 days to 7), a job that finished 20 days ago still exists and is older than any
    cutoff, so the search must reach back as far as the longest retention allows."""
    finished_job(store, clock, "kept-under-30-days", 20 * 24)
    finished_job(store, clock, "recent", 3)
    result = tasks.cleanup_runs(7 * 24)  # what the schedule runs at RetentionDays=7
    assert result["jobs_deleted"] == 1 and set(store._jobs) == {"recent"}


def test_cleanup_stops_when_canceled_and_when_time_runs_out(tasks, store, clock):
    finished_job(store, clock, "old-1", 30)

    def cancel():
        raise JobCancelledError("canceled")

    with pytest.raises(JobCancelledError):
        tasks.cleanup_runs(24, TaskControl(check_cancelled=cancel))
    result = tasks.cleanup_runs(24, TaskControl(remaining_ms=lambda: 1000))
    assert result["complete"] is False and result["jobs_deleted"] == 0 and "old-1" in store._jobs


def test_a_health_check_and_the_statistics_stop_when_canceled(store, blobs, clock):
    """A running task's cancel request (DELETE /api/system/maintenance/tasks/{id}) is taken
    between probes and before the statistics are read, as the clean-ups take it between pages:
    answered 202 `cancel_requested`, the task must end canceled, not run on to `completed`."""
    probed, requests = [], iter([False, True])

    def cancel_after_the_first_probe():
        if next(requests, True):
            raise JobCancelledError("canceled")

    probes = {name: (lambda name=name: probed.append(name) or {"ok": True}) for name in ("jobs_table", "bucket")}
    tasks = health_tasks(store, blobs, clock, probes)
    with pytest.raises(JobCancelledError):
        tasks.health_check(TaskControl(check_cancelled=cancel_after_the_first_probe))
    assert probed == ["jobs_table"]
    with pytest.raises(JobCancelledError):
        tasks.log_statistics(24, TaskControl(check_cancelled=cancel_after_the_first_probe))


def test_cleanup_stops_when_time_runs_short_while_it_walks_empty_days(tasks, store, clock):
    """Most of the index a run reads is empty days, one Query per day and shard: the time left
    is checked after each page, not only before a purge, so a walk that finds nothing still
    stops before the task's end (inline, API Gateway's 29 s) instead of running past it."""
    finished_job(store, clock, "recent", 3)  # newer than the cutoff: nothing to delete
    pages = []
    left = iter(range(10_000, 0, -1_000))  # a second each page read

    def remaining_ms():
        pages.append(1)
        return next(left)

    result = tasks.cleanup_runs(24, TaskControl(remaining_ms=remaining_ms))
    assert result["complete"] is False and result["jobs_deleted"] == 0
    # 10 s, 9 s, ... 5 s (the margin) go on; the seventh page, at 4 s, is where it stops
    assert len(pages) == 7


def test_cleanup_stops_within_a_page_when_time_runs_short(clock):
    """A page holds up to 100 jobs and each purge takes several requests (tens of ms each on
    AWS): the time left is checked before each job, so a page cannot run the task past its end
    (inline, past API Gateway's 29 s)."""
    spent_ms = [0]

    class SlowFinished:
        purged: list = []

        def finished_before(self, cutoff, *, since, page_size=100):
            yield FinishedPage(since.date(), [f"old-{n}" for n in range(100)])

        def purge(self, job_id):
            spent_ms[0] += 100
            self.purged.append(job_id)
            return 2

    finished = SlowFinished()
    tasks = MaintenanceTasks(finished=finished, stats=InMemoryStatsStore(), queues=FakeQueues(), blobs=None,
                             probes={}, clock=clock)
    result = tasks.run("cleanup_runs", {"max_age_hours": 24}, TaskControl(remaining_ms=lambda: 8_000 - spent_ms[0]))
    assert result["complete"] is False
    assert 0 < result["jobs_deleted"] == len(finished.purged) < 100 and result["items_deleted"] == 2 * len(finished.purged)
    assert 8_000 - spent_ms[0] >= 4_000, "the stop margin was spent on the page"
    # 8 s, 7.9 s, ... 5 s (the margin) each purge a job; at 4.9 s it stops, as between pages
    assert result["jobs_deleted"] == 31


def test_a_job_that_cannot_be_purged_is_skipped_counted_and_the_jobs_behind_it_are_deleted(tasks, store, clock, blobs):
    """One job whose objects the bucket refuses to delete must not stop every run at the same
    place (the index is read oldest first): it is left, said in the result and logged, and the
    jobs after it are deleted."""
    seen = []
    tasks._observe = lambda message, extra: seen.append(extra)
    for hours, job_id in ((100, "old-1"), (90, "old-2"), (80, "old-3")):
        finished_job(store, clock, job_id, hours)
        tasks.artifacts.put(job_id, "big.bin", b"x" * 10, "application/octet-stream")
    real_delete = blobs.delete

    def delete(keys):
        if any("old-1" in key for key in keys):
            raise StoreUnavailableError("could not delete 1 objects")
        return real_delete(keys)

    blobs.delete = delete
    result = tasks.cleanup_runs(24)
    assert result["jobs_deleted"] == 2 and result["jobs_failed"] == 1 and result["complete"]
    assert result["failures"] == [{"job_id": "old-1", "error": "store_unavailable: could not delete 1 objects"}]
    assert seen == [{"job_id": "old-1", "error": "store_unavailable: could not delete 1 objects"}]
    # Its record stays (objects before items), so the next run finds it again.
    assert set(store._jobs) == {"old-1"} and list(blobs.objects) == ["jobs/old-1/artifacts/big.bin"]


def test_a_job_another_run_removed_first_is_not_counted_as_this_runs_deletion(tasks, store, clock):
    """Two clean-ups at once (the schedule's and an operator's; a retried attempt beside its
    first) read the same page of the index: the job the other one purged between that read and
    this run's purge was counted in both runs' `jobs_deleted`, and a run that had deleted
    nothing itself when its time ran out was continued as if it had."""
    for hours, job_id in ((100, "old-1"), (90, "old-2"), (80, "old-3")):
        finished_job(store, clock, job_id, hours)
    real_purge = tasks._finished.purge

    def purge(job_id):
        if job_id != "old-3":
            real_purge(job_id)  # the other run got there first
        return real_purge(job_id)

    tasks._finished.purge = purge
    result = tasks.cleanup_runs(24)
    assert result["jobs_deleted"] == 1 and result["items_deleted"] == 1 and result["complete"]
    assert store._jobs == {}
    finished_job(store, clock, "old-4", 70)
    purged = []
    tasks._finished.purge = lambda job_id: purged.append(job_id) or purge(job_id)  # removed by the other run
    # Time for one purge: out of time after it, having deleted nothing itself.
    late = tasks.cleanup_runs(24, TaskControl(remaining_ms=lambda: 10**6 if not purged else 0))
    assert late["complete"] is False and late["jobs_deleted"] == 0
    assert follow_up_payload("cleanup_runs", {"max_age_hours": 24, "follow_up": 0}, late) is None


def test_a_run_names_the_first_failures_only_and_counts_them_all(tasks, store, clock):
    """Failures with a deleted job between them are no outage, however many: the count in a
    row starts again after each job deleted; all are counted, the first CLEANUP_FAILURES_SHOWN
    named, so the task's result stays small."""
    for n in range(3 * CLEANUP_MAX_FAILURES_IN_A_ROW):
        finished_job(store, clock, f"old-{n:02d}", 30)
    real_purge = tasks._finished.purge

    def purge(job_id):  # one job deleted, then one short of an outage failing, three times
        if int(job_id[-2:]) % CLEANUP_MAX_FAILURES_IN_A_ROW:
            raise StoreUnavailableError("the bucket refused")
        return real_purge(job_id)

    tasks._finished.purge = purge
    result = tasks.cleanup_runs(24)
    assert result["complete"] and result["jobs_deleted"] == 3
    assert result["jobs_failed"] == 3 * (CLEANUP_MAX_FAILURES_IN_A_ROW - 1)
    failing = [f"old-{n:02d}" for n in range(3 * CLEANUP_MAX_FAILURES_IN_A_ROW) if n % CLEANUP_MAX_FAILURES_IN_A_ROW]
    assert [f["job_id"] for f in result["failures"]] == failing[:CLEANUP_FAILURES_SHOWN]


def test_purges_failing_one_after_another_fail_the_run(tasks, store, clock):
    """Every purge failing is an outage, not one job: the run fails (and its attempt is retried)
    instead of marking every job of the index for deletion and deleting none. Its message counts
    the jobs deleted before, not their items (the first goes with its artifact)."""
    for n in range(CLEANUP_MAX_FAILURES_IN_A_ROW + 5):
        finished_job(store, clock, f"old-{n:02d}", 30)
    tasks.artifacts.put("old-00", "big.bin", b"x" * 10, "application/octet-stream")
    attempted = []
    real_purge = tasks._finished.purge

    def purge(job_id):  # the first job is deleted with its artifact; then the bucket stops answering
        attempted.append(job_id)
        if job_id == "old-00":
            return real_purge(job_id)
        raise StoreUnavailableError("the bucket does not answer")

    tasks._finished.purge = purge
    with pytest.raises(JobpipeError) as raised:
        tasks.cleanup_runs(24)
    assert len(attempted) == 1 + CLEANUP_MAX_FAILURES_IN_A_ROW
    assert type(raised.value) is StoreUnavailableError and isinstance(raised.value.__cause__, StoreUnavailableError)
    # What the failed task shows its operator (its result is lost with the run): that the run gave
    # up, after how many, and the last failure, under the failure's own code (retried as it was).
    assert raised.value.message == (
        f"clean-up stopped: {CLEANUP_MAX_FAILURES_IN_A_ROW} purges failed one after another (an outage, not one "
        f"job) after it deleted 1 job; the last, of job {attempted[-1]}: "
        "store_unavailable: the bucket does not answer")


def test_purges_failing_one_after_another_with_any_error_say_so(tasks, store, clock):
    for n in range(CLEANUP_MAX_FAILURES_IN_A_ROW):
        finished_job(store, clock, f"old-{n:02d}", 30)

    attempted = []

    def purge(job_id):
        attempted.append(job_id)
        raise OSError("disk on fire")

    tasks._finished.purge = purge
    with pytest.raises(JobpipeError) as raised:
        tasks.cleanup_runs(24)
    assert raised.value.code == "handler_error"  # what any other error fails a job with
    assert raised.value.message == (
        f"clean-up stopped: {CLEANUP_MAX_FAILURES_IN_A_ROW} purges failed one after another (an outage, not one "
        f"job) after it deleted 0 jobs; the last, of job {attempted[-1]}: OSError: disk on fire")
    assert isinstance(raised.value.__cause__, OSError)


def test_only_a_cleanup_that_ran_out_of_time_having_deleted_something_is_continued_and_not_forever():
    """A follow-up run continues an incomplete clean-up at once; one that deleted nothing (its
    time went on jobs it could not purge, which the next run would meet first again) and the
    last of a chain of CLEANUP_MAX_FOLLOW_UPS start none, so a chain always ends."""
    short = {"complete": False, "jobs_deleted": 40, "jobs_failed": 0}
    assert follow_up_payload("cleanup_runs", {"max_age_hours": 24, "follow_up": 0}, short) == \
        {"max_age_hours": 24, "follow_up": 1}
    assert follow_up_payload("cleanup_temp_files", {"max_age_hours": 24, "follow_up": 3},
                             {"complete": False, "objects_deleted": 1000}) == {"max_age_hours": 24, "follow_up": 4}
    assert follow_up_payload("cleanup_runs", {"max_age_hours": 24, "follow_up": 0}, {**short, "complete": True}) is None
    assert follow_up_payload("cleanup_runs", {"max_age_hours": 24, "follow_up": 0},
                             {**short, "jobs_deleted": 0, "jobs_failed": 9}) is None
    last = {"max_age_hours": 24, "follow_up": CLEANUP_MAX_FOLLOW_UPS}
    assert follow_up_payload("cleanup_runs", last, short) is None
    assert follow_up_payload("health_check", {}, {"complete": False}) is None
    assert follow_up_id("cleanup_runs", "job-1") == follow_up_id("cleanup_runs", "job-1") != \
        follow_up_id("cleanup_runs", "job-2")


def test_cleanup_temp_files_removes_only_old_objects_under_the_prefix(tasks, blobs, clock):
    blobs.put("tmp/old", b"1", "text/plain")
    blobs.put("jobs/j/payload.json", b"{}", "application/json")
    clock.advance(2 * 3600)
    blobs.put("tmp/new", b"2", "text/plain")
    # with the stop margin left exactly, it still deletes (it stops with less, as cleanup_runs)
    result = tasks.cleanup_temp_files(1, TaskControl(remaining_ms=lambda: CLEANUP_STOP_MARGIN_MS))
    assert result["objects_deleted"] == 1 and set(blobs.objects) == {"jobs/j/payload.json", "tmp/new"}
    assert result["complete"]


def test_cleanup_temp_files_keeps_an_object_younger_than_the_age_given(tasks, blobs, clock):
    blobs.put("tmp/half-an-hour", b"1", "text/plain")
    clock.advance(1800)
    assert tasks.cleanup_temp_files(1)["objects_deleted"] == 0 and set(blobs.objects) == {"tmp/half-an-hour"}


def test_cleanup_temp_files_sees_a_cancel_and_its_time_on_pages_of_recent_objects_only(tasks, blobs, clock):
    """Two pages of listing, neither with anything old enough: a cancel request and the time
    running short are still seen after the first, not left unseen for want of a deletion."""
    for n in range(1500):
        blobs.put(f"tmp/{n:04d}", b"1", "text/plain")
    checks = []

    def cancel():
        checks.append("after a page")
        raise JobCancelledError("canceled")

    with pytest.raises(JobCancelledError):
        tasks.cleanup_temp_files(1, TaskControl(check_cancelled=cancel))
    assert checks == ["after a page"]
    result = tasks.cleanup_temp_files(1, TaskControl(remaining_ms=lambda: 1000))
    assert result["complete"] is False and result["objects_deleted"] == 0 and len(blobs.objects) == 1500


def test_health_check_reports_each_failure_without_stopping(store, blobs, clock):
    def broken():
        raise StoreUnavailableError("table jobs: ResourceNotFoundException")

    tasks = MaintenanceTasks(finished=None, stats=InMemoryStatsStore(), queues=FakeQueues({"jobs-low"}), blobs=blobs,
                             probes={"jobs_table": broken, "bucket": lambda: {"ok": True}}, clock=clock)
    result = tasks.health_check()
    assert result["healthy"] is False and result["problems"] == ["jobs_table", "jobs-low"]
    assert result["checks"]["jobs_table"]["error"].startswith("table jobs") and result["checks"]["bucket"]["ok"]
    assert result["dead_lettered"] == 6  # the dead-letter queues' messages only, not the queues' own


def test_log_statistics_summarises_the_window(tasks, clock):
    stats = tasks._stats
    base = {"id": "a", "type": "t", "tenant": "acme", "user": "ann", "created_at": isoformat(clock())}
    stats.record_batch([
        delta_for(None, Job(**base, status="queued", version=1), clock()),
        delta_for(Job(**base, status="running", version=2),
                  Job(**base, status="failed", version=3, finished_at=isoformat(clock())), clock()),
    ])
    result = tasks.log_statistics(24)
    assert result["events"]["submitted"] == 1 and result["events"]["failed"] == 1
    assert result["failure_rate"] == 1.0 and result["by_type"]["t"]["failed"] == 1


def test_the_statistics_say_when_they_were_computed(tasks, clock):
    assert tasks.log_statistics(24)["computed_at"] == isoformat(clock())


def test_a_task_refused_for_its_time_names_itself_in_the_refusals_details(tasks):
    from chalicelib.domain.errors import TaskTimeError

    with pytest.raises(TaskTimeError) as refused:
        tasks.run("log_statistics", {"window_hours": 24}, TaskControl(remaining_ms=lambda: 500))
    assert refused.value.details == {"task": "log_statistics", "needed_ms": 2_000, "remaining_ms": 500}


def test_artifact_names_are_checked(blobs):
    artifacts = InMemoryArtifactStore(blobs)
    for name in ("", "../x", "a/b", "-x", "x" * 129):
        with pytest.raises(InvalidArtifactError):
            artifacts.put("j", name, b"", "text/plain")
    assert artifacts.put("j", "r.csv", b"a,b", "text/csv").location == "inline"
    assert artifacts.put("j", "r.bin", b"a,b", "application/octet-stream").location == "s3"
    assert artifacts.put("j", "huge.txt", b"a" * (65 * 1024), "text/plain").location == "s3"


def test_a_task_that_cannot_fit_in_the_time_left_is_refused_before_it_starts(tasks, store, clock):
    from chalicelib.domain.errors import TaskTimeError
    from chalicelib.maintenance import MIN_RUN_MS

    finished_job(store, clock, "old-1", 30)
    with pytest.raises(TaskTimeError) as refused:
        tasks.run("cleanup_runs", {"max_age_hours": 24}, TaskControl(remaining_ms=lambda: 4_000))
    assert refused.value.code == "task_out_of_time"
    assert "cleanup_runs needs at least 6 s and has 4 s left" == refused.value.message
    assert "old-1" in store._jobs  # nothing was done
    left = MIN_RUN_MS["cleanup_runs"]
    # exactly the least it needs is enough: it runs, and its work fits
    assert tasks.run("cleanup_runs", {"max_age_hours": 24}, TaskControl(remaining_ms=lambda: left))["complete"]
    assert "old-1" not in store._jobs


def test_health_check_stops_probing_when_time_runs_short(store, blobs, clock):
    probed = []
    countdown = iter([10_000, 10_000, 1_000, 1_000, 1_000])
    tasks = health_tasks(store, blobs, clock, {name: (lambda n=name: probed.append(n) or {"ok": True})
                                               for name in ("jobs_table", "stats_table", "bucket")})
    result = tasks.run("health_check", {}, TaskControl(remaining_ms=lambda: next(countdown)))
    assert probed == ["jobs_table"]
    assert result["complete"] is False and result["healthy"] is False
    assert result["checks"]["stats_table"] == {"ok": False, "error": "not checked: the task ran out of time"}
    assert set(result["problems"]) == {"stats_table", "bucket", "queues"}


def test_health_check_with_time_enough_is_complete(tasks):
    result = tasks.health_check()
    assert result["complete"] is True and result["checks"]["jobs_table"] == {"ok": True}


def test_inline_time_left_is_bounded_by_the_function_and_the_gateway():
    from chalicelib.api.maintenance import inline_time_left

    now = [100.0]
    assert inline_time_left(TimeLeft(30_000), lambda: now[0])() == 28_000  # the gateway's 29 s, less 1 s
    assert inline_time_left(TimeLeft(5_000), lambda: now[0])() == 4_000  # the function's own time
    assert inline_time_left(None, lambda: now[0])() == 28_000  # outside Lambda
    time_left = inline_time_left(TimeLeft(12_000), lambda: now[0])
    now[0] += 2.5
    assert time_left() == 8_500


def test_the_maintenance_job_types_run_the_tasks_they_were_given(tasks):
    from chalicelib.job_types import registry
    from chalicelib.job_types.maintenance import with_maintenance
    from chalicelib.maintenance import TASKS

    given = []
    types = with_maintenance(registry, lambda: given.append("built") or tasks)
    assert given == []  # the tasks' ports are built when a task first runs
    assert sorted(n for n in types.names() if n.startswith("maintenance.")) == sorted(f"maintenance.{t}" for t in TASKS)
    assert not any(n.startswith("maintenance.") for n in types.names(public=True) + registry.names())

    class Context:
        reported: list = []

        def progress(self, percent, step=None, message=None):
            self.reported.append((percent, message))

        def check_cancelled(self):
            pass

        def remaining_ms(self):
            return 60_000

    health = types.get("maintenance.health_check")
    assert (health.internal, health.max_attempts, health.timeout_s, health.priority) == (True, 2, 30, "normal")
    result = health.handler(Context(), health.parse_payload({}))
    assert given == ["built"] and result["complete"] is True and result["checks"]["jobs_table"] == {"ok": True}


def submitted_cleanup(tasks, store, queue, clock):
    """The cleanup_runs job type over `tasks`, its continuations submitted through the real
    lifecycle, and a run of it submitted (its message taken off the queue): (job type, run)."""
    from chalicelib.job_types import build_registry
    from chalicelib.job_types.maintenance import with_maintenance
    from chalicelib.lifecycle import JobLifecycle

    registry = with_maintenance(build_registry(demo_types=False), lambda: tasks,
                                submit=lambda **request: lifecycle.submit(**request))
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    run = lifecycle.submit(tenant="_system", user="schedule", type="maintenance.cleanup_runs",
                           payload={"max_age_hours": 24})
    queue.drain()
    return registry.get("maintenance.cleanup_runs"), run


def test_a_retried_attempt_of_a_cleanup_that_enqueued_its_continuation_enqueues_none_more(store, queue, clock):
    """The continuation is enqueued by the handler before its run's completion is written: a
    worker that dies between the two leaves the run to its lease, and the retried attempt, running
    the clean-up again, finds the continuation made (its id is the run's) instead of starting a
    second chain or failing on it."""
    from types import SimpleNamespace

    class OutOfTime:
        def run(self, task, payload, control):
            return {"max_age_hours": payload["max_age_hours"], "jobs_deleted": 3, "complete": False,
                    "follow_up": payload.get("follow_up", 0)}

    job_type, run = submitted_cleanup(OutOfTime(), store, queue, clock)
    results = []
    for attempt in (1, 2):  # the first attempt's worker dies once its handler returned
        ctx = SimpleNamespace(job=run.model_copy(update={"attempts": attempt}), progress=lambda *a, **k: None,
                              check_cancelled=lambda fresh=False: None, remaining_ms=lambda: 10**6)
        results.append(job_type.handler(ctx, job_type.parse_payload({"max_age_hours": 24})))
        clock.advance(job_type.timeout_s + 31)  # the lease ends; the reconciler retries the run
    assert results[0]["continued_by"] == results[1]["continued_by"]
    continuation = store.get(results[0]["continued_by"], mark_gone=False)
    assert continuation.status == JobStatus.QUEUED and continuation.payload["follow_up"] == 1
    assert [m.job_id for m in queue.drain()] == [continuation.id], "one message: the first attempt's"


def test_a_cleanup_that_completed_through_its_job_type_enqueues_no_continuation(tasks, store, queue, clock):
    """Only a run that ran out of time is continued: one that completed, given the lifecycle's
    submit, starts no other run (a chain that never ends would run clean-ups forever)."""
    from types import SimpleNamespace

    finished_job(store, clock, "old-1", 30)
    job_type, run = submitted_cleanup(tasks, store, queue, clock)
    ctx = SimpleNamespace(job=run, progress=lambda *a, **k: None, check_cancelled=lambda fresh=False: None,
                          remaining_ms=lambda: 10**6)
    result = job_type.handler(ctx, job_type.parse_payload({"max_age_hours": 24}))
    assert result["complete"] and result["jobs_deleted"] == 1 and "continued_by" not in result
    assert queue.drain() == [] and "old-1" not in store._jobs


def test_each_maintenance_task_runs_under_the_policy_of_the_old_queues_table():
    """Each task's job type keeps the run policy the old maintenance queue gave it (attempts,
    timeout, priority): a clean-up given a health check's 30 s would stop every daily run short,
    and log-statistics moved off `high` would wait behind the clean-ups it reports on."""
    from chalicelib.job_types import registry
    from chalicelib.job_types.maintenance import with_maintenance

    types = with_maintenance(registry, lambda: None)
    policy = {task: (types.get(f"maintenance.{task}").max_attempts, types.get(f"maintenance.{task}").timeout_s,
                     types.get(f"maintenance.{task}").priority)
              for task in ("cleanup_runs", "health_check", "cleanup_temp_files", "log_statistics")}
    assert policy == {"cleanup_runs": (3, 300, "low"), "health_check": (2, 30, "normal"),
                      "cleanup_temp_files": (3, 300, "low"), "log_statistics": (2, 10, "high")}


@pytest.mark.parametrize("task, parameter, most", [
    ("cleanup_runs", "max_age_hours", MAX_CLEANUP_AGE_HOURS),
    ("cleanup_temp_files", "max_age_hours", MAX_CLEANUP_AGE_HOURS),
    ("log_statistics", "window_hours", MAX_STATS_WINDOW_HOURS),
])
def test_a_tasks_payload_takes_its_documented_range_and_default_and_nothing_else(task, parameter, most):
    """A clean-up's age and the statistics' window default to a day and run from 1 hour to
    their limit, both ends taken: an age of 0 would delete every finished job at once, a window
    past the counters kept reads hours that are gone; a field the task does not know is refused,
    not dropped (a misspelt `max_age_hour` would run at the default)."""
    from pydantic import ValidationError

    from chalicelib.maintenance import TASKS

    model = TASKS[task][0]
    assert model.model_validate({}).model_dump()[parameter] == 24
    assert model.model_validate({parameter: 1}).model_dump()[parameter] == 1
    assert model.model_validate({parameter: most}).model_dump()[parameter] == most
    for refused in ({parameter: 0}, {parameter: most + 1}, {parameter: 1, "surprise": 1}):
        with pytest.raises(ValidationError):
            model.model_validate(refused)


def test_a_health_checks_payload_takes_nothing_and_a_chain_of_runs_is_counted_no_further_than_its_end():
    """A health check has no parameters: anything given is refused. A clean-up's payload counts
    its chain of runs up to CLEANUP_MAX_FOLLOW_UPS and no further, so a payload past the end of
    a chain is refused rather than run as one more link."""
    from pydantic import ValidationError

    from chalicelib.maintenance import TASKS

    with pytest.raises(ValidationError):
        TASKS["health_check"][0].model_validate({"max_age_hours": 24})
    age = TASKS["cleanup_runs"][0]
    assert age.model_validate({"follow_up": CLEANUP_MAX_FOLLOW_UPS}).model_dump()["follow_up"] == CLEANUP_MAX_FOLLOW_UPS
    with pytest.raises(ValidationError):
        age.model_validate({"follow_up": CLEANUP_MAX_FOLLOW_UPS + 1})


@pytest.mark.parametrize("task, payload, needed_ms", [
    ("cleanup_runs", {"max_age_hours": 24}, CLEANUP_STOP_MARGIN_MS + 1_000),
    ("cleanup_temp_files", {"max_age_hours": 24}, CLEANUP_STOP_MARGIN_MS + 1_000),
    ("health_check", {}, PROBE_STOP_MARGIN_MS + 1_000),
    ("log_statistics", {"window_hours": 24}, 2_000),
])
def test_a_task_runs_with_a_second_past_its_stop_margin_and_is_refused_a_millisecond_less(
        tasks, task, payload, needed_ms):
    """docs/operations.md: the least time each task needs is a second of work past its stop
    margin (the statistics, with no margin, two seconds: a few item reads and a summary)."""
    from chalicelib.domain.errors import TaskTimeError

    with pytest.raises(TaskTimeError):
        tasks.run(task, payload, TaskControl(remaining_ms=lambda: needed_ms - 1))
    assert tasks.run(task, payload, TaskControl(remaining_ms=lambda: needed_ms)) is not None


@pytest.mark.parametrize("task, payload, given", [
    ("cleanup_runs", {"max_age_hours": 48, "follow_up": 3}, {"max_age_hours": 48}),
    ("cleanup_temp_files", {"max_age_hours": 48, "follow_up": 3}, {"max_age_hours": 48}),
    ("log_statistics", {"window_hours": 6}, {"window_hours": 6}),
    ("health_check", {}, {}),
])
def test_a_tasks_parameters_are_what_a_caller_gave_it_without_its_place_in_a_chain(task, payload, given):
    """What a rerun starts with: the parameters an operator may give the task, a clean-up's
    count of runs before it left out (a rerun is a new chain, counted from 0), and the
    statistics' window kept."""
    from chalicelib.maintenance import task_parameters

    assert task_parameters(task, payload) == given


def test_a_cleanup_queued_before_runs_were_counted_is_the_first_of_its_chain():
    """A payload without `follow_up` (a run queued by a deploy that kept no count) came first:
    its continuation is the chain's second run, not its third; and no count is below 0."""
    from pydantic import ValidationError

    from chalicelib.maintenance import TASKS

    short = {"complete": False, "jobs_deleted": 40, "jobs_failed": 0}
    assert follow_up_payload("cleanup_runs", {"max_age_hours": 24}, short) == {"max_age_hours": 24, "follow_up": 1}
    with pytest.raises(ValidationError):
        TASKS["cleanup_runs"][0].model_validate({"follow_up": -1})


@pytest.mark.parametrize("task, payload, margin", [
    ("cleanup_runs", {"max_age_hours": 24}, CLEANUP_STOP_MARGIN_MS),
    ("cleanup_temp_files", {"max_age_hours": 24}, CLEANUP_STOP_MARGIN_MS),
    ("health_check", {}, PROBE_STOP_MARGIN_MS),
    ("log_statistics", {"window_hours": 24}, 0),
])
def test_a_task_left_only_its_stop_margin_is_refused_before_it_starts(tasks, task, payload, margin):
    """A task stops once no more than its stop margin is left (the statistics have none): started
    with only that much, it could do none of its work, only report it ran out of time; it is
    refused up front (TaskTimeError), as an inline run late in the API function's time is."""
    from chalicelib.domain.errors import TaskTimeError

    with pytest.raises(TaskTimeError):
        tasks.run(task, payload, TaskControl(remaining_ms=lambda: margin))


def run_stopped_by(tasks, store, clock, error):
    """What a clean-up raises when every purge fails with `error`: the error it stopped with."""
    for n in range(CLEANUP_MAX_FAILURES_IN_A_ROW):
        finished_job(store, clock, f"old-{n:02d}", 30)

    def purge(job_id):
        raise error

    tasks._finished.purge = purge
    with pytest.raises(JobpipeError) as raised:
        tasks.cleanup_runs(24)
    assert raised.value.__cause__ is error
    return raised.value


def test_a_run_stopped_by_a_jobpipe_error_keeps_its_code_its_class_when_it_can_and_its_details(tasks, store, clock):
    """The stopped run's error is all its operator sees: built from a message alone, the failure
    keeps its class (so its retry and an inline run's status are the failure's) and its details;
    one whose class needs more than a message is retryable under the failure's own code, never
    `handler_error` (which would hide a queue or event outage as a handler's bug)."""
    from chalicelib.domain.errors import EventPublishError, RetryableJobError

    stopped = run_stopped_by(tasks, store, clock, StoreUnavailableError("throttled", details={"table": "jobs"}))
    assert type(stopped) is StoreUnavailableError and stopped.details == {"table": "jobs"}
    stopped = run_stopped_by(tasks, store, clock, EventPublishError("events lost", unpublished=["e-1"]))
    assert type(stopped) is RetryableJobError and stopped.code == "event_publish_failed"
    assert stopped.message.endswith("event_publish_failed: events lost")


def test_a_cleanup_out_of_time_before_a_page_reports_no_progress_for_it(tasks, store, clock):
    """A run whose time is short when it reads a page stops there: it deletes nothing of that
    page and writes no progress for it (a write of a count that did not move, the run's last
    request spent on nothing)."""
    finished_job(store, clock, "old-1", (RETENTION_MAX_DAYS + CLEANUP_TTL_SLACK_DAYS) * 24)  # on the first page
    reported = []
    result = tasks.cleanup_runs(24, TaskControl(progress=lambda percent, message: reported.append(message),
                                                remaining_ms=lambda: CLEANUP_STOP_MARGIN_MS - 1))
    assert result["complete"] is False and reported == [] and "old-1" in store._jobs


def test_a_cleanup_that_runs_out_of_time_within_a_page_reads_no_further_page(clock):
    """Each page of the finished-day index is a Query: a run that stopped within a page for
    want of time has ended its work, and reading the next page would only spend a request (and
    the time it lacks) on jobs it will not purge."""
    spent_ms, pages = [0], []

    class TwoPages:
        def finished_before(self, cutoff, *, since, page_size=100):
            for n in range(2):
                pages.append(n)
                yield FinishedPage(since.date() + timedelta(days=n), [f"old-{n}-{m}" for m in range(10)])

        def purge(self, job_id):
            spent_ms[0] += 1_000
            return 1

    tasks = MaintenanceTasks(finished=TwoPages(), stats=InMemoryStatsStore(), queues=FakeQueues(), blobs=None,
                             probes={}, clock=clock)
    result = tasks.cleanup_runs(24, TaskControl(remaining_ms=lambda: CLEANUP_STOP_MARGIN_MS + 2_000 - spent_ms[0]))
    assert result["complete"] is False and result["jobs_deleted"] == 3 and pages == [0]


@pytest.mark.parametrize("task", ["cleanup_runs", "cleanup_temp_files"])
def test_a_cleanups_result_says_where_it_stands_in_its_chain_of_runs(tasks, task):
    """A continued clean-up shows its operator which run of its chain it is (`follow_up`, as
    its payload counted it): the fifth run of a chain is not passed off as a fresh start."""
    assert tasks.run(task, {"max_age_hours": 24, "follow_up": 4})["follow_up"] == 4
    assert tasks.run(task, {"max_age_hours": 24})["follow_up"] == 0


@pytest.mark.parametrize("task", ["cleanup_runs", "cleanup_temp_files"])
def test_a_cleanups_result_names_the_age_it_deleted_from(tasks, task):
    assert tasks.run(task, {"max_age_hours": 48})["max_age_hours"] == 48


def test_a_temp_file_cleanup_without_a_bucket_is_complete_and_says_why(store, clock):
    """With no bucket configured there is nothing to delete: the run is complete (not a run that
    ran out of time, to be looked into or continued) and its note says why it deleted nothing."""
    tasks = MaintenanceTasks(finished=None, stats=InMemoryStatsStore(), queues=FakeQueues(), blobs=None, probes={},
                             clock=clock)
    result = tasks.cleanup_temp_files(24)
    assert result == {"prefix": "tmp/", "objects_deleted": 0, "complete": True, "note": "no bucket configured"}


def test_a_temp_file_cleanup_out_of_time_deletes_nothing_more_and_lists_no_further(tasks, blobs, clock):
    """With no more than its stop margin left after a page is listed, the run stops there: the
    page's old objects are left to the next run and no further page is listed (each listing
    and deletion a request the run has no time for)."""
    for n in range(1500):
        blobs.put(f"tmp/{n:04d}", b"1", "text/plain")
    clock.advance(2 * 3600)
    listed = []
    real_keys = blobs.keys_older_than
    blobs.keys_older_than = lambda prefix, cutoff: (listed.append(len(keys)) or keys
                                                    for keys in real_keys(prefix, cutoff))
    result = tasks.cleanup_temp_files(1, TaskControl(remaining_ms=lambda: CLEANUP_STOP_MARGIN_MS - 1))
    assert result["complete"] is False and result["objects_deleted"] == 0 and len(blobs.objects) == 1500
    assert listed == [1000]


def test_a_temp_file_cleanup_asks_no_deletion_and_reports_nothing_for_a_page_of_recent_objects(tasks, blobs, clock):
    """A listed page with nothing old enough deletes nothing: no delete request for it (S3
    refuses an empty DeleteObjects) and no progress write of a count that did not move."""
    for n in range(1500):
        blobs.put(f"tmp/{n:04d}", b"1", "text/plain")
    deletions, reported = [], []
    real_delete = blobs.delete
    blobs.delete = lambda keys: deletions.append(len(keys)) or real_delete(keys)
    result = tasks.cleanup_temp_files(1, TaskControl(progress=lambda percent, message: reported.append(message)))
    assert result["complete"] is True and result["objects_deleted"] == 0
    assert deletions == [] and reported == []


def test_a_probe_that_crashes_is_a_failed_check_not_a_healthy_one(store, blobs, clock):
    """A probe's own failure (any exception, not only a jobpipe error) is the finding: the
    dependency it checks is not known to be well, so the check fails, named among the
    problems, and the whole is not healthy."""
    def crashing():
        raise OSError("connection reset")

    result = health_tasks(store, blobs, clock, {"bucket": crashing, "jobs_table": lambda: {"ok": True}}).health_check()
    assert result["checks"]["bucket"] == {"ok": False, "error": "OSError: connection reset"}
    assert result["healthy"] is False and result["problems"] == ["bucket"]


def test_a_health_check_canceled_after_its_last_probe_reads_no_queue(store, blobs, clock):
    """The queues' depths are read after the probes, a request per queue: a cancel requested
    while the last probe ran is taken before them, and the task ends canceled."""
    checks = []

    def cancel_after_the_probes():
        checks.append(1)
        if len(checks) > 2:
            raise JobCancelledError("canceled")

    class CountedQueues(FakeQueues):
        read = 0

        def health(self):
            self.read += 1
            return super().health()

    queues = CountedQueues()
    tasks = health_tasks(store, blobs, clock, {name: (lambda: {"ok": True}) for name in ("jobs_table", "bucket")},
                         queues)
    with pytest.raises(JobCancelledError):
        tasks.health_check(TaskControl(check_cancelled=cancel_after_the_probes))
    assert len(checks) == 3 and queues.read == 0


def test_a_health_check_with_exactly_its_stop_margin_left_checks_everything(store, blobs, clock):
    """The margin is what a check may still spend: with exactly that much left every probe and
    the queues are still read, as the clean-ups still work at their margin; it stops with less."""
    result = health_tasks(store, blobs, clock, {"jobs_table": lambda: {"ok": True}}).health_check(
        TaskControl(remaining_ms=lambda: PROBE_STOP_MARGIN_MS))
    assert result["complete"] is True and result["healthy"] is True and len(result["checks"]["queues"]) == 6


def test_log_statistics_counts_only_the_hours_of_its_window(tasks, clock):
    """The window is the hours read: a job submitted five hours ago is in a day's statistics and
    not in those of the last two hours (a window read as a day would report old failures as new)."""
    base = {"id": "a", "type": "t", "tenant": "acme", "user": "ann", "created_at": isoformat(clock())}
    tasks._stats.record_batch([delta_for(None, Job(**base, status="queued", version=1), clock())])
    clock.advance(5 * 3600)
    last_two = tasks.log_statistics(2)
    assert last_two["window_hours"] == 2 and last_two["events"]["submitted"] == 0
    assert tasks.log_statistics(24)["events"]["submitted"] == 1


def test_a_task_refused_after_its_time_ran_out_says_none_is_left_not_a_negative_time(tasks):
    """Inline, the time left can be past zero when a task is asked for: the refusal says 0 s
    left, in its message and its details alike, not a negative count an operator must read."""
    from chalicelib.domain.errors import TaskTimeError

    with pytest.raises(TaskTimeError) as refused:
        tasks.run("health_check", {}, TaskControl(remaining_ms=lambda: -1_500))
    assert refused.value.details["remaining_ms"] == 0 and refused.value.message.endswith("has 0 s left")
