"""Operator routes (the `operator` role): pipeline statistics and the dead-letter queues of
every tenant."""
from __future__ import annotations

from typing import Any, Literal, Optional

from chalice import Blueprint
from pydantic import BaseModel, ConfigDict, Field

from chalicelib.api.auth import OPERATOR
from chalicelib.api.http import Call, validate
from chalicelib.api.routing import router
from chalicelib.composition import container
from chalicelib.domain.job import PRIORITIES, isoformat, utcnow
from chalicelib.domain.stats import hours_back, summarize

system_api = Blueprint(__name__)


route = router(system_api, role=OPERATOR)


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_hours: int = Field(default=24, ge=1, le=24 * 30)


class DeadLetterQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: Optional[Literal["high", "normal", "low"]] = None
    limit: int = Field(default=10, ge=1, le=100)


@route("/api/system/stats", methods=["GET"])
def stats(call: Call) -> Any:
    """Queue depths from queue attributes; everything else from the stats recorder's counters."""
    params = validate(StatsQuery, dict(call.request.query_params or {}))
    services = container()
    hours = hours_back(utcnow(), params.window_hours)
    summary = summarize(services.stats.status_counts(), services.stats.hourly(hours), params.window_hours)
    return {"queues": services.queue_operations.depths(), **summary, "as_of": isoformat(utcnow())}


@route("/api/system/dlq", methods=["GET"])
def dead_letters(call: Call) -> Any:
    """Messages on the dead-letter queues, left where they are, with their job's status."""
    params = validate(DeadLetterQuery, dict(call.request.query_params or {}))
    services = container()
    priorities = [params.priority] if params.priority else list(PRIORITIES)
    peeked = {p: services.queue_operations.peek_dead_letters(p, params.limit) for p in priorities}
    ids = [str(m.body["job_id"]) for ms in peeked.values() for m in ms if isinstance(m.body.get("job_id"), str)]
    jobs = services.store.get_many(ids) if ids else {}
    out: dict[str, list[dict[str, Any]]] = {}
    for priority, messages in peeked.items():
        out[priority] = []
        for m in messages:
            job = jobs.get(m.body.get("job_id")) if isinstance(m.body.get("job_id"), str) else None
            out[priority].append({
                "message_id": m.message_id, "body": m.body, "sent_at": m.sent_at,
                "receive_count": m.receive_count,
                "job": {"id": job.id, "tenant": job.tenant, "type": job.type, "status": job.status.value}
                if job else None,
            })
    return {"dead_letters": out}


@route("/api/system/dlq/redrive", methods=["POST"])
def redrive(call: Call) -> Any:
    """Move dead-lettered messages back to their priority's queue. A job that is already
    failed is acknowledged by the worker without running again; resubmit it to rerun it."""
    params = validate(DeadLetterQuery, dict(call.request.query_params or {}))
    operations = container().queue_operations
    priorities = [params.priority] if params.priority else list(PRIORITIES)
    return {"redriven": {p: operations.redrive(p, params.limit) for p in priorities}}
