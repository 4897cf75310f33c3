"""Maintenance task routes (the `operator` role): start a task, follow it, list and cancel tasks.
Every task works across tenants (clean-ups, health, statistics), so none is open to a tenant's
`admin`.

Tasks are jobs of the built-in `maintenance.*` types, owned by the reserved `_system` tenant,
so they get the pipeline's retries, timeouts, priorities and cancellation. With
USE_TASK_QUEUE=false a task runs inline and its result comes back in the response."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from chalice import Blueprint
from pydantic import BaseModel, ConfigDict, Field

from chalicelib.api.auth import OPERATOR
from chalicelib.api.etag import conditional_response, job_etag
from chalicelib.api.http import Call, validate
from chalicelib.api.routing import router
from chalicelib.composition import container
from chalicelib.defaults import (
    API_GATEWAY_TIMEOUT_MS,
    INLINE_ANSWER_MARGIN_MS,
    LISTING_PAGE,
    MAX_CURSOR_CHARS,
    MAX_LISTING_PAGE,
)
from chalicelib.domain.errors import (
    IdempotencyConflictError,
    JobAlreadyFinishedError,
    JobNotFinishedError,
    JobNotFoundError,
    JobPurgedError,
    TaskNotFoundError,
)
from chalicelib.domain.job import Job, is_plausible_job_id, shown_id
from chalicelib.domain.numbers import WholeNumber
from chalicelib.domain.registry import MAINTENANCE_PREFIX
from chalicelib.maintenance import SYSTEM_TENANT, TASK_PARAMETERS, TaskControl, task_parameters
from chalicelib.observability import count
from chalicelib.ports import JobQuery

maintenance_api = Blueprint(__name__)

PREFIX = "/api/system/maintenance"


route = router(maintenance_api, role=OPERATOR)


def inline_time_left(lambda_context: Any, monotonic: Callable[[], float] = time.monotonic) -> Callable[[], int]:
    """Milliseconds an inline task has left, from now: the API function's remaining time (its
    Lambda context; none outside Lambda) and API Gateway's limit, less the answer's margin."""
    started = monotonic()
    remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
    budget = API_GATEWAY_TIMEOUT_MS if remaining is None else min(int(remaining()), API_GATEWAY_TIMEOUT_MS)

    def time_left() -> int:
        return int(budget - (monotonic() - started) * 1000 - INLINE_ANSWER_MARGIN_MS)

    return time_left


class ListTasksQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: WholeNumber = Field(default=LISTING_PAGE, ge=1, le=MAX_LISTING_PAGE)
    cursor: Optional[str] = Field(default=None, min_length=1, max_length=MAX_CURSOR_CHARS)


def task_view(job: Job) -> dict[str, Any]:
    task = job.type[len(MAINTENANCE_PREFIX):]
    return {
        "task_id": job.id,
        "task_type": task,
        # What it was started with (what a keyed start compares, what a rerun starts with): a task
        # is told apart by them before its result, and its result is lost when it fails.
        "parameters": task_parameters(task, job.payload or {}) if task in TASK_PARAMETERS else job.payload,
        "status": job.status.value,
        "result": job.result,
        "error_message": job.error.message if job.error else None,
        "error_code": job.error.code if job.error else None,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        # A running task's cancel takes effect at its next page or progress report: pending till then.
        "cancel_requested": job.cancel_requested,
        "progress": job.progress.model_dump(mode="json"),
        "requested_by": job.user,
        "rerun_of": job.rerun_of,
        "created_at": job.created_at,
        "started_at": job.started_at,  # its first attempt's start: null while it has not run
        "finished_at": job.finished_at,
    }


def _inline_control() -> TaskControl:
    """An inline task's bound: the API function's time. A task stops early (`complete: false`)
    or, when even a part of it cannot fit, is refused with 503 task_out_of_time."""
    return TaskControl(remaining_ms=inline_time_left(maintenance_api.lambda_context))


def _ran_inline(task: str, result: dict[str, Any]) -> Any:
    """The answer to a task that ran inline: 200 with its result, and whether it finished."""
    message = f"{task} ran inline (USE_TASK_QUEUE=false)"
    if result.get("complete") is False:
        message += ("; it stopped before the API function's time ran out and is incomplete: "
                    "run it again to continue, or queue it (USE_TASK_QUEUE=true)")
    return {"task_id": None, "status": "completed", "result": result, "message": message}, 200


def _start(call: Call, task: str) -> Any:
    """`task` started with the request's query as its parameters. Keyed like POST /jobs: the same
    task and parameters under an Idempotency-Key answer the task the key made, as it is now;
    another request under it is 409 idempotency_conflict; with USE_TASK_QUEUE=false a key is
    refused (400): nothing is kept to answer its repeat."""
    payload = validate(TASK_PARAMETERS[task], call.query()).model_dump(exclude_unset=True)  # as given: hashed as sent
    with _said_of_the_task():
        started = container().task_runs.start(task, payload, user=call.user.user,
                                              idempotency_key=call.header("idempotency-key"), control=_inline_control)
    if started.job is None:
        return _ran_inline(task, started.result)
    job = started.job
    if started.made:
        count("jobs_submitted", job.type)
        message = f"{task} task enqueued ({job.priority} priority)"
    else:  # a keyed replay: the task the key's first request made, as it is now
        message = f"{task} task made by an earlier start under this Idempotency-Key: {job.status.value}"
    return {"task_id": job.id, "status": job.status.value, "message": message}, 202


@route(f"{PREFIX}/cleanup-runs", methods=["POST"], body=False)
def cleanup_runs(call: Call) -> Any:
    return _start(call, "cleanup_runs")


@route(f"{PREFIX}/health-check", methods=["POST"], body=False)
def health_check(call: Call) -> Any:
    return _start(call, "health_check")


@route(f"{PREFIX}/cleanup-temp-files", methods=["POST"], body=False)
def cleanup_temp_files(call: Call) -> Any:
    return _start(call, "cleanup_temp_files")


@route(f"{PREFIX}/log-statistics", methods=["POST"], body=False)
def log_statistics(call: Call) -> Any:
    return _start(call, "log_statistics")


@contextmanager
def _said_of_the_task(task_id: Optional[str] = None) -> Iterator[None]:
    """Refusals worded of tasks, their codes and details as they are: one for the status of the
    task `task_id`, as the operator named it (finished for a cancel, not finished for a rerun);
    a keyed replay's whose task was removed (410 job_purged), of that task; a key kept for
    another request (409), in the words of a task's request. The task removed since the route
    read it (the clean-up): 404 task_not_found, as had it been gone then."""
    try:
        yield
    except JobNotFoundError:
        if task_id is None:
            raise
        raise TaskNotFoundError(f"task {shown_id(task_id)} not found") from None
    except JobAlreadyFinishedError as exc:
        raise JobAlreadyFinishedError.of(task_id or "", exc.details["status"], what="task") from None
    except JobNotFinishedError as exc:
        raise JobNotFinishedError.of(task_id or "", exc.details["status"], what="task") from None
    except JobPurgedError as exc:
        raise JobPurgedError.of(exc.details["job_id"], exc.details["key_expires_at"], what="task") from None
    except IdempotencyConflictError:
        raise IdempotencyConflictError.of(what="task") from None


def _task(task_id: str) -> Job:
    try:
        if not is_plausible_job_id(task_id):
            raise JobNotFoundError(task_id)
        job = container().lifecycle.get(SYSTEM_TENANT, task_id)
    except JobNotFoundError:
        raise TaskNotFoundError(f"task {shown_id(task_id)} not found") from None
    if not job.type.startswith(MAINTENANCE_PREFIX):
        raise TaskNotFoundError(f"task {shown_id(task_id)} not found")
    return job


@route(f"{PREFIX}/tasks", methods=["GET"])
def list_tasks(call: Call) -> Any:
    params = validate(ListTasksQuery, call.query())
    page = container().store.list_jobs(JobQuery(tenant=SYSTEM_TENANT, limit=params.limit, cursor=params.cursor))
    return {"tasks": [task_view(j) for j in page.jobs], "next_cursor": page.cursor}


@route(f"{PREFIX}/tasks/{{task_id}}", methods=["GET"])
def get_task(call: Call, task_id: str) -> Any:
    """Cacheable like a job poll: a weak ETag from the task's version, 304 while unchanged."""
    job = _task(task_id)
    return conditional_response(call.header("if-none-match"), job_etag("maintenance.task", [(job.id, job)]),
                                task_view(job))


@route(f"{PREFIX}/tasks/{{task_id}}/runs", methods=["GET"], query=(), body=False)
def task_runs(call: Call, task_id: str) -> Any:
    """One run per attempt, as GET /jobs/{id}/runs shows a job's (no tenant's route reaches a
    task): each attempt's error, where the task view shows its last attempt's only, and none
    once a retrying task was canceled."""
    job = _task(task_id)
    return {"task_id": job.id, "runs": [r.model_dump(mode="json") for r in job.runs(container().store.runs(job.id))]}


@route(f"{PREFIX}/tasks/{{task_id}}", methods=["DELETE"], query=(), body=False)
def cancel_task(call: Call, task_id: str) -> Any:
    """Queued or retrying: canceled now; running: stops at its next progress report or page."""
    job = _task(task_id)
    try:
        with _said_of_the_task(job.id):
            return task_view(container().lifecycle.cancel(SYSTEM_TENANT, job.id)), 202
    except JobAlreadyFinishedError as exc:
        raise _continued(exc, job.id) from None


def _continued(refusal: JobAlreadyFinishedError, task_id: str) -> JobAlreadyFinishedError:
    """The refusal of a finished task's cancel, naming the run that continues it when it is a
    clean-up that ran out of time (`continued_by`): the clean-up goes on there, and that is the
    task to cancel. Read afresh (a refusal's cost only): the run may have ended since the route
    read it."""
    try:
        ended = container().lifecycle.get(SYSTEM_TENANT, task_id, fetch=("result",))
    except JobNotFoundError:
        return refusal
    follow_up = ended.result.get("continued_by") if isinstance(ended.result, dict) else None
    if not isinstance(follow_up, str):
        return refusal
    return JobAlreadyFinishedError(
        f"{refusal.message}; the clean-up was continued by task {follow_up}: cancel that one (or the run "
        "continuing it) to stop it",
        details={**refusal.details, "continued_by": follow_up})


@route(f"{PREFIX}/tasks/{{task_id}}/rerun", methods=["POST"], query=(), body=False)
def rerun_task(call: Call, task_id: str) -> Any:
    """A finished task run again as a new task with its parameters (`rerun_of` names it); the
    first stays as it ended. Keyed like POST /jobs/{id}/rerun, a repeat answered even once the
    first task was removed. Not finished: 409 job_not_finished. With USE_TASK_QUEUE=false it runs
    inline, as a started task does, and an Idempotency-Key is refused (400): nothing is kept to
    answer its repeat."""
    key = call.header("idempotency-key")
    runs = container().task_runs
    try:
        job = _task(task_id)
    except TaskNotFoundError:
        # Removed since (the clean-up): a keyed rerun of it repeated still answers the task it made.
        made = runs.rerun_made(task_id, idempotency_key=key) if is_plausible_job_id(task_id) else None
        if made is None:
            raise
        return _rerun_answer(made, task_id, made=False)
    with _said_of_the_task(job.id):
        started = runs.rerun(job, user=call.user.user, idempotency_key=key, control=_inline_control)
    if started.job is None:
        return _ran_inline(job.type[len(MAINTENANCE_PREFIX):], started.result)
    return _rerun_answer(started.job, job.id, made=started.made)


def _rerun_answer(again: Job, rerun_of: str, *, made: bool) -> Any:
    """The answer to a queued rerun of task `rerun_of`: 202 with `again`, the task it made (made
    by this call, or by the key's first request: a keyed replay, shown as it is now)."""
    task = again.type[len(MAINTENANCE_PREFIX):]
    if made:
        count("jobs_submitted", again.type)
        message = f"{task} task enqueued again ({again.priority} priority)"
    else:
        message = f"{task} task made by an earlier rerun under this Idempotency-Key: {again.status.value}"
    return {"task_id": again.id, "status": again.status.value, "rerun_of": rerun_of, "message": message}, 202
