"""The maintenance tasks (cleanup-runs, health-check, cleanup-temp-files, log-statistics):
what each does, over ports only, their payloads and run policy (`TaskRuns`, which starts them,
over the lifecycle). They run as built-in job types
in the workers (chalicelib/job_types/maintenance.py) or, with USE_TASK_QUEUE=false, inline in the API;
`TaskRuns` decides which when a task is started or run again.

Run policy, from the old maintenance queue's table:

| task               | max_attempts | timeout | priority (queue's number) |
|--------------------|--------------|---------|---------------------------|
| cleanup_runs       | 3            | 300 s   | 5 -> low                  |
| health_check       | 2            | 30 s    | 3 -> normal               |
| cleanup_temp_files | 3            | 300 s   | 5 -> low                  |
| log_statistics     | 2            | 10 s    | 1 -> high                 |

(the old queue ran lower numbers first.)"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Optional

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.defaults import (
    CLEANUP_AGE_HOURS,
    CLEANUP_FAILURES_SHOWN,
    CLEANUP_MAX_FAILURES_IN_A_ROW,
    CLEANUP_MAX_FOLLOW_UPS,
    CLEANUP_STOP_MARGIN_MS,
    CLEANUP_TTL_SLACK_DAYS,
    MAX_CLEANUP_AGE_HOURS,
    MAX_STATS_WINDOW_HOURS,
    RETENTION_MAX_DAYS,
    PROBE_STOP_MARGIN_MS,
    STATS_WINDOW_HOURS,
)
from chalicelib.domain.errors import (
    InvalidRequestError,
    JobpipeError,
    RetryableJobError,
    TaskTimeError,
    describe_failure,
)
from chalicelib.domain.job import Job, isoformat, new_job_id, utcnow
from chalicelib.domain.numbers import WholeNumber, shown_number
from chalicelib.domain.registry import MAINTENANCE_PREFIX
from chalicelib.domain.stats import hours_back, summarize
from chalicelib.lifecycle import JobLifecycle, check_finished
from chalicelib.ports import BlobStore, FinishedJobs, QueueOperations, StatsStore

SYSTEM_TENANT = "_system"
TEMP_PREFIX = "tmp/"
# The least time each task needs to do any of its work; with less it is refused, not started
# (inline in the API function, a task may find little of the function's time left).
MIN_RUN_MS = {
    "cleanup_runs": CLEANUP_STOP_MARGIN_MS + 1_000,
    "cleanup_temp_files": CLEANUP_STOP_MARGIN_MS + 1_000,
    "health_check": PROBE_STOP_MARGIN_MS + 1_000,
    "log_statistics": 2_000,
}

Probe = Callable[[], dict[str, Any]]
Observe = Callable[[str, dict[str, Any]], None]


class AgeParameters(BaseModel):
    """What an operator gives a clean-up: the age of what it deletes."""

    model_config = ConfigDict(extra="forbid")

    max_age_hours: WholeNumber = Field(default=CLEANUP_AGE_HOURS, ge=1, le=MAX_CLEANUP_AGE_HOURS)


class AgePayload(AgeParameters):
    """A clean-up run's payload: its parameters and where it stands in its chain of runs."""

    # How many runs of the clean-up came before this one, each continuing the last
    # (follow_up_payload): the pipeline's own count, never a caller's.
    follow_up: WholeNumber = Field(default=0, ge=0, le=CLEANUP_MAX_FOLLOW_UPS)


class WindowPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_hours: WholeNumber = Field(default=STATS_WINDOW_HOURS, ge=1, le=MAX_STATS_WINDOW_HOURS)


class NoPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


# task name -> (payload model, max_attempts, timeout_s, priority)
TASKS: dict[str, tuple[type[BaseModel], int, int, str]] = {
    "cleanup_runs": (AgePayload, 3, 300, "low"),
    "health_check": (NoPayload, 2, 30, "normal"),
    "cleanup_temp_files": (AgePayload, 3, 300, "low"),
    "log_statistics": (WindowPayload, 2, 10, "high"),
}


# task name -> what a caller may give it (the operator routes' query): the payload without the
# pipeline's own bookkeeping.
TASK_PARAMETERS: dict[str, type[BaseModel]] = {
    "cleanup_runs": AgeParameters,
    "health_check": NoPayload,
    "cleanup_temp_files": AgeParameters,
    "log_statistics": WindowPayload,
}


def task_parameters(task: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What of a run's `payload` a caller gave `task` (TASK_PARAMETERS), the pipeline's own
    bookkeeping (a clean-up's `follow_up`) left out: what a rerun of it starts with."""
    return {name: value for name, value in payload.items() if name in TASK_PARAMETERS[task].model_fields}


def task_type(task: str) -> str:
    """The job type a maintenance task runs as: `maintenance.<task>`."""
    return f"{MAINTENANCE_PREFIX}{task}"


_FOLLOW_UP_NAMESPACE = uuid.UUID("0b7f6a52-3c1e-4f0d-9a8e-6d2c4b1f7e93")


def follow_up_payload(task: str, payload: dict[str, Any], result: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The payload of the run that continues a clean-up's run (its `payload` and `result`), or
    None: only a clean-up that ran out of time (`complete: false`) continues, at once rather than
    at the next day's schedule, and only when it deleted something (a run that spent its time on
    jobs it could not purge would only meet them again) and fewer than CLEANUP_MAX_FOLLOW_UPS
    runs came before it."""
    if TASKS[task][0] is not AgePayload or result.get("complete") is not False:
        return None
    deleted = result.get("jobs_deleted", result.get("objects_deleted", 0))
    done = payload.get("follow_up", 0)
    if not deleted or done >= CLEANUP_MAX_FOLLOW_UPS:
        return None
    return {**payload, "follow_up": done + 1}


def follow_up_id(task: str, after: str) -> str:
    """The id of the run continuing task run `after`: one per run, so a retried attempt of it
    enqueues its follow-up once."""
    return str(uuid.uuid5(_FOLLOW_UP_NAMESPACE, f"{task}:after:{after}"))


@dataclass
class TaskControl:
    """What a task may ask of the job running it; the defaults serve the inline mode."""

    progress: Callable[[float, str], None] = lambda percent, message: None
    check_cancelled: Callable[[], None] = lambda: None
    remaining_ms: Callable[[], int] = lambda: 10**9


class IndexWalk:
    """A walk of the finished-day index from `since`'s day to `cutoff`'s (UTC)."""

    def __init__(self, since: datetime, cutoff: datetime) -> None:
        self._first = since.astimezone(timezone.utc).date()
        self._days = (cutoff.astimezone(timezone.utc).date() - self._first).days + 1

    def percent(self, day: date) -> float:
        """How far the walk has come at a page of `day`: the share of its days read before it,
        in percent (below 100: the run's completion writes 100)."""
        return min(99.0, round(100.0 * (day - self._first).days / self._days, 2))


def _stopped(exc: Exception, in_a_row: int, deleted: int, job_id: str) -> JobpipeError:
    """What ends a clean-up whose purges failed `in_a_row` one after another (the last `exc`, of
    `job_id`): an error saying so, of the failure's class when it is a jobpipe error built from
    a message (so its code, a queued attempt's retry and an inline run's HTTP status are the
    failure's), else retryable with the code any other error fails a job with. The run's result
    is lost with it: this is all the failed task shows its operator."""
    jobs = f"{deleted} job" if deleted == 1 else f"{deleted} jobs"
    message = (f"clean-up stopped: {in_a_row} purges failed one after another (an outage, not one job) after it "
               f"deleted {jobs}; the last, of job {job_id}: {describe_failure(exc)}")
    if isinstance(exc, JobpipeError) and type(exc).__init__ is JobpipeError.__init__:
        return type(exc)(message, details=exc.details)
    return RetryableJobError(message, code=exc.code if isinstance(exc, JobpipeError) else "handler_error")


class MaintenanceTasks:
    def __init__(
        self,
        *,
        finished: FinishedJobs,
        stats: StatsStore,
        queues: QueueOperations,
        blobs: Optional[BlobStore],
        probes: dict[str, Probe],
        clock: Callable[[], datetime] = utcnow,
        observe: Observe = lambda message, extra: None,
    ) -> None:
        self._finished = finished
        self._stats = stats
        self._queues = queues
        self._blobs = blobs
        self._probes = probes
        self._clock = clock
        self._observe = observe

    def cleanup_runs(self, max_age_hours: int, control: TaskControl = TaskControl(), *,
                     follow_up: int = 0) -> dict[str, Any]:
        """Delete jobs (item, runs, artifacts, S3 objects) that finished more than
        `max_age_hours` ago, page by page from the finished-day index. A job whose purge fails
        is skipped, logged and counted (`jobs_failed`; the first few named in `failures`),
        as the reconciler skips a job it cannot act on: the jobs behind it are still deleted and
        the next run tries it again. Raises the last failure once CLEANUP_MAX_FAILURES_IN_A_ROW
        purges failed one after another (an outage: the task's attempt is retried)."""
        now = self._clock()
        cutoff = now - timedelta(hours=max_age_hours)
        # Back to the oldest record that can still exist: one written under an earlier, longer
        # RetentionDays keeps its TTL, so a lowered retention must still reach it. A day is one
        # Query per shard, mostly empty: at most (RETENTION_MAX_DAYS + CLEANUP_TTL_SLACK_DAYS + 1)
        # x FINISHED_SHARDS = 264 a run, what a run at the longest retention always made; the
        # daily run at the default 7 days makes 26 x 8 = 208 (each ~0.5 read unit).
        since = now - timedelta(days=RETENTION_MAX_DAYS + CLEANUP_TTL_SLACK_DAYS)
        walk = IndexWalk(since, cutoff)
        jobs = items = failed = in_a_row = 0
        failures: list[dict[str, str]] = []
        complete = True
        for page in self._finished.finished_before(cutoff, since=since):
            # After every read of the index, an empty one too: most of the walk is empty days,
            # and 264 Queries can take seconds (inline, of API Gateway's 29).
            control.check_cancelled()
            if control.remaining_ms() < CLEANUP_STOP_MARGIN_MS:
                complete = False
                break
            for job_id in page.ids:
                # Per job too, not only per page: a page of 100 purges takes seconds, more than the margin.
                if control.remaining_ms() < CLEANUP_STOP_MARGIN_MS:
                    complete = False
                    break
                try:
                    removed = self._finished.purge(job_id)
                except Exception as exc:  # noqa: BLE001 - one job's failure never stops the others
                    failed, in_a_row = failed + 1, in_a_row + 1
                    error = describe_failure(exc)
                    if len(failures) < CLEANUP_FAILURES_SHOWN:
                        failures.append({"job_id": job_id, "error": error})
                    self._observe("clean-up could not purge a job", {"job_id": job_id, "error": error})
                    if in_a_row >= CLEANUP_MAX_FAILURES_IN_A_ROW:
                        raise _stopped(exc, in_a_row, jobs, job_id) from exc
                    continue
                in_a_row = 0
                # Nothing removed: another run (the schedule's beside an operator's, a retried
                # attempt beside its first) purged it after this run's page was read. Not this
                # run's deletion, and a run that deleted nothing itself starts no follow-up.
                if removed:
                    jobs, items = jobs + 1, items + removed
            # How far the run has come is the share of the window's days read (how many jobs
            # remain no read knows). An empty page changed nothing to report: no write for it.
            if page.ids:
                control.progress(walk.percent(page.day), f"deleted {jobs} jobs; finished-day index read up to "
                                                         f"{page.day.isoformat()}")
            if not complete:
                break
        return {"max_age_hours": max_age_hours, "cutoff": isoformat(cutoff), "jobs_deleted": jobs,
                "items_deleted": items, "jobs_failed": failed, "failures": failures, "complete": complete,
                "follow_up": follow_up}

    def cleanup_temp_files(self, max_age_hours: int, control: TaskControl = TaskControl(), *,
                           follow_up: int = 0) -> dict[str, Any]:
        """Delete objects under the bucket's temporary prefix older than `max_age_hours`."""
        if self._blobs is None:
            return {"prefix": TEMP_PREFIX, "objects_deleted": 0, "complete": True, "note": "no bucket configured"}
        cutoff = self._clock() - timedelta(hours=max_age_hours)
        deleted = 0
        complete = True
        for keys in self._blobs.keys_older_than(TEMP_PREFIX, cutoff):
            # After every page listed, one of recent objects only too: a cancel is not left
            # unseen while the listing holds nothing to delete.
            control.check_cancelled()
            if control.remaining_ms() < CLEANUP_STOP_MARGIN_MS:
                complete = False
                break
            if keys:  # an empty page deletes nothing and reports nothing: no request for it
                deleted += self._blobs.delete(keys)
                # A listing has no known end, so no share of it is done: 0 % until it ends,
                # what it did in the message (not a count passed off as a percent).
                control.progress(0.0, f"deleted {deleted} objects")
        return {"prefix": TEMP_PREFIX, "max_age_hours": max_age_hours, "cutoff": isoformat(cutoff),
                "objects_deleted": deleted, "complete": complete, "follow_up": follow_up}

    def health_check(self, control: TaskControl = TaskControl()) -> dict[str, Any]:
        """Check every dependency; one failing check does not stop the others. With less than
        the probe margin left, the checks not yet run are reported `not checked` and the
        result is `complete: false` (and not healthy: nothing is known about them)."""
        checks: dict[str, Any] = {}
        unchecked = {"ok": False, "error": "not checked: the task ran out of time"}
        complete = True
        for name, probe in self._probes.items():
            control.check_cancelled()  # a cancel request is taken between probes, as between pages
            if control.remaining_ms() < PROBE_STOP_MARGIN_MS:
                checks[name], complete = dict(unchecked), False
                continue
            try:
                checks[name] = probe()
            except JobpipeError as exc:
                checks[name] = {"ok": False, "error": exc.message}
            except Exception as exc:  # a probe's own failure is the finding, not the task's
                checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        control.check_cancelled()
        if control.remaining_ms() < PROBE_STOP_MARGIN_MS:
            queues: list[dict[str, Any]] = []
            checks["queues"], complete = [], False
            problems = [n for n, c in checks.items() if n != "queues" and not c.get("ok")] + ["queues"]
        else:
            queues = self._queues.health()
            checks["queues"] = queues
            problems = [n for n, c in checks.items() if n != "queues" and not c.get("ok")]
            problems += [q["name"] for q in queues if not q["ok"]]
        dead = sum(q.get("visible", 0) for q in queues if q["kind"] == "dlq" and q["ok"])
        return {"healthy": not problems, "problems": problems, "dead_lettered": dead,
                "checked_at": isoformat(self._clock()), "checks": checks, "complete": complete}

    def log_statistics(self, window_hours: int, control: TaskControl = TaskControl()) -> dict[str, Any]:
        """Counts by status and type, completion-time percentiles and failure rates over the
        window, from the counters the stats recorder keeps (a few item reads)."""
        control.check_cancelled()
        hours = hours_back(self._clock(), window_hours)
        summary = summarize(self._stats.status_counts(), self._stats.hourly(hours), window_hours)
        return {**summary, "computed_at": isoformat(self._clock())}

    def run(self, task: str, payload: dict[str, Any], control: TaskControl = TaskControl()) -> dict[str, Any]:
        """Run a task by its short name. Raises TaskTimeError, before starting it, when
        `control` leaves less than the task's MIN_RUN_MS."""
        left = control.remaining_ms()
        needed = MIN_RUN_MS.get(task, 0)
        if left < needed:
            raise TaskTimeError(
                f"{task} needs at least {shown_number(needed / 1000)} s "
                f"and has {shown_number(max(0, left) / 1000)} s left",
                details={"task": task, "needed_ms": needed, "remaining_ms": max(0, left)},
            )
        method = getattr(self, task)
        return method(**payload, control=control)


@dataclass(frozen=True)
class TaskStart:
    """What starting a task (or a finished one again) did: it ran inline, `result` its result;
    or it was queued, `job` the task, `made` whether this call made it (a keyed rerun's replay
    answers the key's first task instead)."""

    result: Optional[dict[str, Any]] = None
    job: Optional[Job] = None
    made: bool = False


class TaskRuns:
    """A maintenance task started, or a finished one run again: inline in the API function
    (`inline`: USE_TASK_QUEUE=false), its result in the answer, or queued as a job of
    SYSTEM_TENANT that the workers run. `tasks` and `lifecycle` are built on first use: an
    inline start needs no queue, a queued one no probes."""

    def __init__(self, tasks: Callable[[], MaintenanceTasks], lifecycle: Callable[[], JobLifecycle], *,
                 inline: bool) -> None:
        self._tasks = tasks
        self._lifecycle = lifecycle
        self._inline = inline

    def start(self, task: str, payload: dict[str, Any], *, user: str, idempotency_key: Optional[str] = None,
              control: Callable[[], TaskControl]) -> TaskStart:
        """`task` started with `payload` (the parameters as the caller gave them, those left to
        their defaults left out) for `user`. Queued, it is the lifecycle's submit, keyed by
        `idempotency_key` as POST /jobs is: the same task and parameters under the key answer the
        task it made (`made` false), another request under it is IdempotencyConflictError; the
        job's stored payload has the defaults filled in, the key compares them as the task takes
        them (a default given or left out alike), and a parameter added by a later deploy does
        not make a replay of a key sent before it another request.
        Inline it runs bounded by `control()`, taken before anything else (MaintenanceTasks.run:
        TaskTimeError when not even a part of it fits), and an Idempotency-Key is
        InvalidRequestError, nothing run: an inline run keeps no record to answer a repeat with."""
        if self._inline:
            if idempotency_key is not None:
                raise InvalidRequestError(
                    "Idempotency-Key cannot be honoured when tasks run inline (USE_TASK_QUEUE=false): "
                    "an inline run keeps no record to answer a repeat with; send the request without one")
            bound = control()  # the time left is counted from here
            parameters = TASK_PARAMETERS[task].model_validate(payload).model_dump()
            return TaskStart(result=self._tasks().run(task, parameters, bound))
        made = new_job_id()  # a keyed replay answers the key's first task instead: not made
        job = self._lifecycle().submit(tenant=SYSTEM_TENANT, user=user, type=task_type(task), payload=payload,
                                       job_id=made, idempotency_key=idempotency_key)
        return TaskStart(job=job, made=job.id == made)

    def rerun(self, task: Job, *, user: str, idempotency_key: Optional[str],
              control: Callable[[], TaskControl]) -> TaskStart:
        """The finished `task` run again with its parameters, for `user`: queued, as the lifecycle's
        rerun of it (a new task, `rerun_of` naming it; keyed by `idempotency_key`); inline, as
        `start` runs it. Raises JobNotFinishedError, and inline InvalidRequestError for an
        Idempotency-Key (nothing is kept to answer its repeat), then what `start` raises."""
        name = task.type[len(MAINTENANCE_PREFIX):]
        parameters = task_parameters(name, task.payload or {})  # a new chain of runs, counted from 0
        if not self._inline:
            made = new_job_id()  # a keyed replay answers the key's first task instead: not made
            again = self._lifecycle().rerun(tenant=SYSTEM_TENANT, user=user, job_id=task.id, new_id=made,
                                            internal=True, idempotency_key=idempotency_key, payload=parameters)
            return TaskStart(job=again, made=again.id == made)
        check_finished(task)
        return self.start(name, parameters, user=user, idempotency_key=idempotency_key, control=control)

    def rerun_made(self, task_id: str, *, idempotency_key: Optional[str]) -> Optional[Job]:
        """The task a queued rerun of `task_id` made under the kept `idempotency_key`, or None:
        asked once `task_id` is gone (the clean-up removed it), so that a keyed rerun repeated
        then answers the task it made, as the lifecycle's rerun answers it. Inline no key is
        kept: None. Reads only; raises InvalidRequestError for a key that is no key."""
        if self._inline or idempotency_key is None:
            return None
        return self._lifecycle().rerun_made(SYSTEM_TENANT, idempotency_key, task_id)
