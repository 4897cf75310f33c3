"""`GET /job-types`'s answer: each public type a deployment runs, with its run policy and its
payload's JSON schema (the API's route and the client's tests' stand-in API both answer it)."""
from __future__ import annotations

from typing import Any

from chalicelib.domain.registry import JobTypeRegistry


def listed_job_types(registry: JobTypeRegistry) -> dict[str, Any]:
    """The public types of `registry` by name: `type`, `description`, `max_attempts`,
    `timeout_s`, `priority` and `payload_schema`."""
    types = []
    for name in registry.names(public=True):
        job_type = registry.get(name)
        types.append({
            "type": name,
            "description": job_type.description,
            "max_attempts": job_type.max_attempts,
            "timeout_s": job_type.timeout_s,
            "priority": job_type.priority,
            "payload_schema": job_type.payload_model.model_json_schema(),
        })
    return {"job_types": types}
