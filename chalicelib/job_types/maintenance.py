"""Built-in maintenance task types (`maintenance.<task>`), with the run policy of
chalicelib/maintenance.py's TASKS. They are internal: not listed on /job-types and not
submittable on /jobs; /api/system/maintenance/* and the schedules start them.

The composition root registers them (`with_maintenance`) with the maintenance tasks it built,
so these handlers receive their services instead of looking them up."""
from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel

from chalicelib.domain.registry import MAINTENANCE_PREFIX, JobTypeRegistry
from chalicelib.maintenance import TASKS, MaintenanceTasks, TaskControl


def _control(ctx: Any) -> TaskControl:
    return TaskControl(
        progress=lambda percent, message: ctx.progress(percent, step="working", message=message),
        check_cancelled=ctx.check_cancelled,
        remaining_ms=ctx.remaining_ms,
    )


def with_maintenance(registry: JobTypeRegistry, tasks: Callable[[], MaintenanceTasks]) -> JobTypeRegistry:
    """A copy of `registry` with every `maintenance.<task>` type added, each running its task on
    `tasks()` (called when a task runs: its ports are built on first use)."""
    types = registry.copy()
    for task, (model, max_attempts, timeout_s, priority) in TASKS.items():

        def handler(ctx: Any, payload: BaseModel, task: str = task) -> dict[str, Any]:
            return tasks().run(task, payload.model_dump(), _control(ctx))

        types.register(
            f"{MAINTENANCE_PREFIX}{task}", model, max_attempts=max_attempts, timeout_s=timeout_s,
            priority=priority, description=f"Maintenance task {task}.", internal=True,
        )(handler)
    return types
