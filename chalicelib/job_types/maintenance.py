"""Built-in maintenance task types. Run policy from the maintenance queue's table:

| task               | max_attempts | timeout | priority (queue's number) |
|--------------------|--------------|---------|---------------------------|
| cleanup_runs       | 3            | 300 s   | 5 -> low                  |
| health_check       | 2            | 30 s    | 3 -> normal               |
| cleanup_temp_files | 3            | 300 s   | 5 -> low                  |
| log_statistics     | 2            | 10 s    | 1 -> high                 |

(the old queue ran lower numbers first.) They are internal: not listed on /job-types and not
submittable on /jobs; /api/system/maintenance/* starts them."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.job_types import registry
from chalicelib.maintenance import TaskControl


class AgePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_age_hours: int = Field(default=24, ge=1, le=24 * 365)


class WindowPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_hours: int = Field(default=24, ge=1, le=24 * 30)


class NoPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


# task name -> (payload model, max_attempts, timeout_s, priority)
TASKS = {
    "cleanup_runs": (AgePayload, 3, 300, "low"),
    "health_check": (NoPayload, 2, 30, "normal"),
    "cleanup_temp_files": (AgePayload, 3, 300, "low"),
    "log_statistics": (WindowPayload, 2, 10, "high"),
}


def _control(ctx) -> TaskControl:
    return TaskControl(
        progress=lambda percent, message: ctx.progress(percent, step="working", message=message),
        check_cancelled=ctx.check_cancelled,
        remaining_ms=ctx.remaining_ms,
    )


def _register(task: str) -> None:
    model, max_attempts, timeout_s, priority = TASKS[task]

    def handler(ctx, payload: BaseModel) -> dict:
        from chalicelib.composition import container  # the worker's ports, built once per process

        return container().maintenance.run(task, payload.model_dump(), _control(ctx))

    registry.register(
        f"maintenance.{task}", model, max_attempts=max_attempts, timeout_s=timeout_s,
        priority=priority, description=f"Maintenance task {task}.", internal=True,
    )(handler)


for _task in TASKS:
    _register(_task)
