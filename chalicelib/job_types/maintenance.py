"""Built-in maintenance task types (`maintenance.<task>`), with the run policy of
chalicelib/maintenance.py's TASKS. They are internal: not listed on /job-types and not
submittable on /jobs; /api/system/maintenance/* and the schedules start them.

The composition root registers them (`with_maintenance`) with the maintenance tasks it built,
so these handlers receive their services instead of looking them up."""
from __future__ import annotations

from typing import Any, Callable, Optional

from pydantic import BaseModel

from chalicelib.domain.errors import StaleJobError
from chalicelib.domain.job import Job
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.maintenance import (
    SYSTEM_TENANT, TASKS, MaintenanceTasks, TaskControl, follow_up_id, follow_up_payload, task_type,
)

Submit = Callable[..., Any]


def _control(ctx: Any) -> TaskControl:
    return TaskControl(
        progress=lambda percent, message: ctx.progress(percent, step="working", message=message),
        check_cancelled=ctx.check_cancelled,
        remaining_ms=ctx.remaining_ms,
    )


def _continue(submit: Submit, task: str, job: Job, payload: dict[str, Any]) -> str:
    """Enqueue the run continuing `job` (the same task, `payload`); returns its id."""
    job_id = follow_up_id(task, job.id)
    try:
        submit(tenant=SYSTEM_TENANT, user=job.user, type=task_type(task), payload=payload, job_id=job_id)
    except StaleJobError:  # a retried attempt of this run enqueued it already
        pass
    return job_id


def with_maintenance(registry: JobTypeRegistry, tasks: Callable[[], MaintenanceTasks],
                     submit: Optional[Submit] = None) -> JobTypeRegistry:
    """A copy of `registry` with every `maintenance.<task>` type added, each running its task on
    `tasks()` (called when a task runs: its ports are built on first use). A clean-up that ran
    out of time is continued by a run `submit` (the lifecycle's) enqueues at once, named in its
    result as `continued_by` (maintenance.follow_up_payload says when)."""
    types = registry.copy()
    for task, (model, max_attempts, timeout_s, priority) in TASKS.items():

        def handler(ctx: Any, payload: BaseModel, task: str = task) -> dict[str, Any]:
            given = payload.model_dump()
            result = tasks().run(task, given, _control(ctx))
            more = follow_up_payload(task, given, result)
            if more is not None and submit is not None:
                # A cancel requested since the run last looked (its last progress report held
                # back by the window, no poll due) ends it here, canceled, continued by none.
                ctx.check_cancelled(fresh=True)
                result["continued_by"] = _continue(submit, task, ctx.job, more)
            return result

        types.register(
            task_type(task), model, max_attempts=max_attempts, timeout_s=timeout_s,
            priority=priority, description=f"Maintenance task {task}.", internal=True,
        )(handler)
    return types
