"""The scheduled function: the reconciler's pass, and the maintenance tasks on their schedules.

One function serves every schedule. The reconciler's rule sends the plain scheduled event;
each maintenance rule sends the same event with `{"maintenance_task": "<task>"}` as its detail, and the function
enqueues that task as the same `maintenance.*` job the operator routes start (tenant `_system`),
so it gets the pipeline's retries, timeouts and history. A task's job id is derived from the
task and the schedule's minute, so a retried invocation enqueues it once."""
from __future__ import annotations

import uuid
from typing import Any

from chalice import Blueprint

from chalicelib.composition import Container, container
from chalicelib.defaults import RECONCILE_PASS_MARGIN_S
from chalicelib.domain.errors import StaleJobError
from chalicelib.domain.job import utcnow
from chalicelib.invocation import entry_point
from chalicelib.maintenance import SYSTEM_TENANT, TASKS, task_type
from chalicelib.observability import count, logger

scheduled = Blueprint(__name__)

# The deployment template sets the real period (stack parameter ReconcilerSchedule) and adds
# one rule per maintenance schedule.
RECONCILER_SCHEDULE = "rate(1 minute)"
_TASK_NAMESPACE = uuid.UUID("5d0c1c3e-8f1b-4d7a-9b8e-2f6a0e4c7b11")


def run_reconciler_pass(services: Container, lambda_context: Any = None) -> dict[str, Any]:
    """One pass, then its record and line. Within the pass no AWS request is started once less
    than RECONCILE_PASS_MARGIN_S is left: what one sent just before takes, at worst, leaves the
    record's own request its time (chalicelib/defaults.py), so the invocation ends with both."""
    remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
    time_left_s = (lambda: remaining() / 1000) if remaining else None
    with services.sending_while(time_left_s, RECONCILE_PASS_MARGIN_S):
        result = services.reconciler.run_pass(time_left_s=time_left_s)
    counts = dict(result.counts)
    for name, value in counts.items():
        count(f"reconciler_{name}", "_all", value)
    try:
        services.reconciler_log.record(result.started_at, counts)
    except Exception as exc:  # noqa: BLE001 - the pass's work is done: failing it would only run it again
        from chalicelib.reconciler import describe_failure  # loaded by the pass already

        result.errors.append(f"reconciler log: {describe_failure(exc)}")
    log = logger.warning if result.errors else logger.info
    log("reconciler pass", extra={"counts": counts, "errors": result.errors[:10]})
    return result.as_dict()


def enqueue_maintenance(services: Container, task: str, scheduled_at: str) -> dict[str, Any]:
    """Enqueue `task` once for the schedule's firing at `scheduled_at` (minute precision)."""
    if task not in TASKS:
        raise ValueError(f"unknown maintenance task {task!r}; one of {', '.join(sorted(TASKS))}")
    job_id = str(uuid.uuid5(_TASK_NAMESPACE, f"{task}:{scheduled_at[:16]}"))
    # Scheduled clean-up keeps finished jobs as long as their retention (TTL would remove the
    # records then too, but not their S3 objects); the other tasks take their defaults.
    payload = {"max_age_hours": services.settings.retention_days * 24} if task == "cleanup_runs" else {}
    try:
        job = services.lifecycle.submit(
            tenant=SYSTEM_TENANT, user="schedule", type=task_type(task), payload=payload, job_id=job_id,
        )
    except StaleJobError:  # this firing was enqueued already (a retried invocation)
        return {"task": task, "task_id": job_id, "status": "already_enqueued"}
    logger.info("scheduled maintenance task enqueued", extra={"task": task, "task_id": job.id})
    return {"task": task, "task_id": job.id, "status": "queued"}


@scheduled.schedule(RECONCILER_SCHEDULE, name="reconciler")
@entry_point
def reconciler(event: Any) -> dict[str, Any]:
    task = (event.detail or {}).get("maintenance_task")
    if task:
        return enqueue_maintenance(container(), str(task), event.time or utcnow().isoformat())
    return run_reconciler_pass(container(), getattr(event, "context", None))
