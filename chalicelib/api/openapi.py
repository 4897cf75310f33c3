"""The API's OpenAPI 3.1 description, built from the same pydantic models that validate
requests and shape answers, served at `GET /openapi.json`."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic.json_schema import models_json_schema

from chalicelib.api.cache_routes import GENERATION
from chalicelib.api.etag import CACHE_CONTROL
from chalicelib.api.requests import ListArtifactsQuery, ListJobsQuery, RerunJobRequest, SubmitJobRequest
from chalicelib.defaults import (
    MAX_ARTIFACT_PAGE,
    MAX_BATCH_IDS,
    MAX_CURSOR_CHARS,
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_JOB_TYPE_CHARS,
    MAX_LISTING_PAGE,
)
from chalicelib.domain.job import INTERNAL_FIELDS, Job, Run
from chalicelib.domain.status import JobStatus

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"description": description or "OK", "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    errors = {str(s): _json(_ref("Error"), "refused; `error.code` says why") for s in statuses}
    if "429" in errors:  # a tenant's quota says when to submit again (API Gateway's own 429 need not)
        errors["429"] = {**errors["429"], "headers": {"Retry-After": {
            "schema": {"type": "integer", "minimum": 0}, "description": "seconds before a submit may be admitted"}}}
    return errors


# What any route answers when the API itself fails (`internal_error`) or is deployed with a setting
# it cannot use (`misconfigured`, its log names the setting); the rq-compatible routes in
# rq-engine's own shape.
_INTERNAL = _json(_ref("Error"), "`internal_error` or `misconfigured`: the API's log says why")
_RQ_INTERNAL = _json({"type": "object", "required": ["Success", "Error", "StackTrace"], "properties": {
    "Success": {"const": False}, "Error": {"type": "string"},
    "StackTrace": {"type": "array", "items": {"type": "string"}}}}, "rq-engine's shape of a failure")


def _with_internal(paths: dict[str, Any]) -> dict[str, Any]:
    """`paths`, each operation declaring the 500 it answers when the API itself fails."""
    return {template: {method: {**op, "responses": {**op["responses"], "500": _RQ_INTERNAL
                                                    if template.startswith("/api/job") else _INTERNAL}}
                       for method, op in item.items()}
            for template, item in paths.items()}


def _conditional(operation: dict[str, Any]) -> dict[str, Any]:
    """`operation`, a status read answered with a weak ETag (chalicelib/api/etag.py): it takes
    `If-None-Match` and answers 304 with no body while the jobs it shows are unchanged."""
    tagged = {"ETag": {"schema": {"type": "string"}, "description": "weak tag of the jobs shown"},
              "Cache-Control": {"schema": {"type": "string", "const": CACHE_CONTROL}}}
    responses = dict(operation["responses"])
    responses["200"] = {**responses["200"], "headers": tagged}
    responses["304"] = {"description": "not modified: the answer the tag in If-None-Match names still holds",
                        "headers": tagged}
    parameters = [*operation.get("parameters", []), {
        "name": "If-None-Match", "in": "header", "schema": {"type": "string"},
        "description": "ETags of earlier answers (weak comparison), or `*`"}]
    return {**operation, "parameters": parameters, "responses": responses}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _schemas() -> dict[str, Any]:
    _, top = models_json_schema(
        [(SubmitJobRequest, "validation"), (RerunJobRequest, "validation"), (Job, "serialization"),
         (Run, "serialization")], ref_template=_REF
    )
    schemas = top["$defs"]
    job = schemas["Job"]
    for field in sorted(INTERNAL_FIELDS):  # Job.public() leaves them out
        job["properties"].pop(field, None)
    # public() writes every field but `gone`, which it writes only when an object is gone
    job["required"] = sorted(set(job["properties"]) - {"result", "gone"})
    job["properties"]["gone"] = {
        "type": "array", "items": {"enum": ["payload", "result"]}, "uniqueItems": True,
        "description": "the fields whose stored object no longer exists (deleted by hand or by a bucket rule): "
                       "each shows as null; left out while nothing is gone"}
    job["properties"]["children_cut"] = {
        "type": "integer", "minimum": 1,
        "description": "POST /jobs/status only, past what one answer carries: the job is shown without its "
                       "children (`children` empty), this many; GET /jobs/{job_id} lists them"}
    job["properties"]["started_at"]["description"] = "when the first attempt started"
    job["properties"]["rerun_of"]["description"] = (
        "the finished job this one runs again (POST /jobs/{job_id}/rerun); null on every other job")
    job["properties"]["attempt_started_at"]["description"] = (
        "while an attempt runs (status `running`), when that attempt started; null otherwise")
    job["properties"]["payload"] = {"anyOf": [job["properties"]["payload"], {"type": "null"}],
                                    "description": "null only when `gone` names it"}
    schemas["NotFound"] = {"type": "object", "required": ["id", "status"],
                           "properties": {"id": {"type": "string"}, "status": {"const": "not_found"}}}
    schemas["Error"] = {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "details": {}}}},
    }
    schemas["JobIds"] = {"type": "object", "required": ["job_ids"], "properties": {
        "job_ids": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_BATCH_IDS}}}
    schemas["JobStatusBatch"] = {
        "type": "object", "required": ["jobs", "job_ids"],
        "properties": {"jobs": {"type": "object", "additionalProperties": {"anyOf": [_ref("Job"), _ref("NotFound")]}},
                       "job_ids": {"type": "array", "items": {"type": "string"}}},
    }
    return schemas


def _list_parameters() -> list[dict[str, Any]]:
    fields = ListJobsQuery.model_fields
    return [
        {"name": "status", "in": "query", "schema": {"type": "string", "enum": [s.value for s in JobStatus]}},
        {"name": "type", "in": "query", "schema": {"type": "string", "minLength": 1, "maxLength": MAX_JOB_TYPE_CHARS}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LISTING_PAGE,
                                                     "default": fields["limit"].default}},
        {"name": "cursor", "in": "query", "schema": {"type": "string", "minLength": 1,
                                                      "maxLength": MAX_CURSOR_CHARS}},
    ]


def _artifact_page_parameters() -> list[dict[str, Any]]:
    limit = ListArtifactsQuery.model_fields["limit"]
    return [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ARTIFACT_PAGE,
                                                     "default": limit.default}},
        {"name": "cursor", "in": "query", "schema": {"type": "string", "minLength": 1,
                                                      "maxLength": MAX_CURSOR_CHARS}},
    ]


def _query_ids() -> list[dict[str, Any]]:
    """A batch route's ids as query arguments (chalicelib/api/job_ids.py): read when the body is
    empty, not JSON or names no id, each value of a repeated one."""
    return [{"name": name, "in": "query", "style": "form", "explode": True,
             "schema": {"type": "array", "items": {"type": "string"}}} for name in ("job_id", "job_ids")]


def _ids_body() -> dict[str, Any]:
    """A batch route's ids as a body, optional: the query can carry them instead."""
    return {"required": False, "content": {"application/json": {"schema": _ref("JobIds")}}}


_IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header",
                    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_CHARS,
                               "pattern": "^[ -~]+$"}}  # printable ASCII


def _paths() -> dict[str, Any]:
    public: dict[str, Any] = {"security": []}
    job_id = [_path_param("job_id")]
    cache_params = [_path_param("scope"), _path_param("namespace")]
    return {
        "/health": {"get": {**public, "summary": "liveness", "responses": {"200": _json({"type": "object"})}}},
        "/openapi.json": {"get": {**public, "summary": "this document", "responses": {"200": _json({"type": "object"})}}},
        "/dashboard": {"get": {**public, "summary": "the dashboard page",
                               "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
        "/job-types": {"get": {"summary": "registered job types", "responses": {
            "200": _json({"type": "object", "required": ["job_types"]}), **_errors(401)}}},
        "/jobs": {
            "post": {"summary": "submit a job",
                     "parameters": [_IDEMPOTENCY_KEY],
                     "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("SubmitJobRequest")}}},
                     "responses": {"202": _json(_ref("Job"), "accepted"),
                                   **_errors(400, 401, 409, 410, 413, 422, 429, 503)}},
            "get": _conditional({"summary": "the tenant's jobs, newest first", "parameters": _list_parameters(), "responses": {
                "200": _json({"type": "object", "required": ["jobs", "next_cursor"], "properties": {
                    "jobs": {"type": "array", "items": _ref("Job")}, "next_cursor": {"type": ["string", "null"]}}}),
                **_errors(400, 401, 503)}}),
        },
        "/jobs/status": {"post": _conditional({
            "summary": f"up to {MAX_BATCH_IDS} jobs in one read",
            "parameters": _query_ids(),
            "requestBody": _ids_body(),
            "responses": {"200": _json(_ref("JobStatusBatch")), **_errors(400, 401, 413, 503)}})},
        "/jobs/{job_id}": {
            "get": _conditional({"parameters": job_id, "responses": {"200": _json(_ref("Job")),
                                                                     **_errors(401, 404, 503)}}),
            "delete": {"parameters": job_id, "responses": {"202": _json(_ref("Job")),
                                                           **_errors(400, 401, 404, 409, 503)}},
        },
        "/jobs/{job_id}/rerun": {"post": {
            "summary": "run a finished job again as a new job (`rerun_of` names it)",
            "parameters": [*job_id, _IDEMPOTENCY_KEY],
            "requestBody": {"required": False,
                            "content": {"application/json": {"schema": _ref("RerunJobRequest")}}},
            "responses": {"202": _json(_ref("Job"), "accepted"),
                          **_errors(400, 401, 404, 409, 410, 413, 422, 429, 503)}}},
        "/jobs/{job_id}/runs": {"get": {"parameters": job_id, "responses": {
            "200": _json({"type": "object", "required": ["job_id", "runs"], "properties": {
                "job_id": {"type": "string"}, "runs": {"type": "array", "items": _ref("Run")}}}),
            **_errors(401, 404, 503)}}},
        "/api/jobstatus/{job_id}": {"get": _conditional({"parameters": job_id, "responses": {
            "200": _json({"type": "object", "required": ["id", "status"]}), **_errors(401, 503)}})},
        "/api/jobinfo/{job_id}": {"get": _conditional({"parameters": job_id, "responses": {
            "200": _json({"type": "object", "required": ["id", "status"]}), **_errors(401, 503)}})},
        "/api/jobinfo": {"post": _conditional({
            "parameters": _query_ids(),
            "requestBody": _ids_body(),
            "responses": {"200": _json({"type": "object", "required": ["jobs", "job_ids"]}),
                          **_errors(400, 401, 413, 503)}})},
        "/cache/{scope}/{namespace}": {
            "put": {"parameters": [*cache_params, {"name": "If-Match", "in": "header", "schema": {
                "type": "string", "pattern": f"^({GENERATION.pattern})$"}}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
                    "responses": {"200": _json({"type": "object", "required": ["generation"]}),
                                  **_errors(400, 401, 409, 413, 503)}},
            "get": {"parameters": cache_params, "responses": {
                "200": _json({"type": "object", "required": ["status", "value", "generation"]}, "hit"),
                "404": _json({"type": "object", "required": ["status", "generation"]}, "miss"),
                **_errors(400, 401, 503)}},
        },
        "/scopes/{scope}/tasks": {"get": {"parameters": [_path_param("scope")], "responses": {
            "200": _json({"type": "object", "required": ["scope", "tasks"]}), **_errors(400, 401, 503)}}},
        "/jobs/{job_id}/artifacts": {"get": {
            "summary": "a page of the job's artifacts, by name", "parameters": [*job_id, *_artifact_page_parameters()],
            "responses": {
                "200": _json({"type": "object", "required": ["job_id", "artifacts", "next_cursor"], "properties": {
                    "job_id": {"type": "string"}, "artifacts": {"type": "array", "items": {"type": "object"}},
                    "next_cursor": {"type": ["string", "null"]}}}),
                **_errors(400, 401, 404, 503)}}},
        "/jobs/{job_id}/artifacts/{name}": {"get": {"parameters": [*job_id, _path_param("name")], "responses": {
            "200": {"description": "the content, or a presigned URL for one kept in S3"}, **_errors(401, 404, 503)}}},
        **_operator_paths(),
    }


def _query(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "schema": {"type": "string"}} for n in names]


def _operator_paths() -> dict[str, Any]:
    """Routes for the `operator` role (403 `forbidden` without it)."""
    # Every one reads a queue or a table: 503 when it does not answer.
    refused = _errors(400, 401, 403, 503)
    task = {"type": "object", "required": ["task_id", "status"]}
    queued = {"202": _json(task, "enqueued"), "200": _json(task, "ran inline (USE_TASK_QUEUE=false)"), **refused}
    task_id = [_path_param("task_id")]
    # Reading or redriving every queue: those that did not answer, by name (503 only when none did).
    # A redrive that stopped midway says what it had moved: `details` {queue, moved, moved_ids, sent_ids}.
    unavailable = {"type": "object", "additionalProperties": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "object"}}}}
    by_name = {"type": "object"}
    depth = {"type": "object", "required": ["visible", "in_flight", "delayed", "dead_lettered"], "properties": {
        **{k: {"type": "integer"} for k in ("visible", "in_flight", "delayed")},
        "dead_lettered": {"type": ["integer", "null"], "description": "null when its DLQ did not answer"}}}
    # Each part is read on its own: what did not answer is left out and named under `unavailable`.
    # A dead letter, with how often its job was tried (its record's attempts; no receive count:
    # every peek of a DLQ is one too).
    letter_job = {"type": ["object", "null"], "required": ["id", "tenant", "type", "status", "attempts", "max_attempts"],
                  "properties": {**{k: {"type": "string"} for k in ("id", "tenant", "type", "status")},
                                 "attempts": {"type": "integer"}, "max_attempts": {"type": "integer"}},
                  "description": "the job the body names, null when it names none, when it is gone, or when "
                                 "the jobs table did not answer (`jobs_unavailable` says so)"}
    letter_fields = ["message_id", "body", "body_cut", "body_bytes", "sent_at", "reason", "job"]
    letter = {"type": "object", "required": letter_fields, "properties": {
        "message_id": {"type": "string"}, "body": {"type": "object"},
        "body_cut": {"type": "boolean", "description": "the body did not fit the listing's answer: `{raw}` holds its start"},
        "body_bytes": {"type": ["integer", "null"], "description": "a cut body's whole size (UTF-8); null when whole"},
        "sent_at": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"], "description": "why the pipeline parked it, when it did; for an "
                   "event EventBridge could not deliver, its target and error; for a message SQS's redrive "
                   "policy moved there, the queue it came from, its receives and its first receive"},
        "job": letter_job}}
    stats = {"type": "object", "required": ["queues", "dead_letter_queues", "window_hours", "as_of"], "properties": {
        "queues": {"type": "object", "additionalProperties": depth},
        "dead_letter_queues": {"type": "object", "additionalProperties": {"type": "integer"}},
        **{k: by_name for k in ("jobs_by_status", "events", "by_type", "completion_time_s", "reconciler")},
        "window_hours": {"type": "integer"}, "failure_rate": {"type": ["number", "null"]},
        "as_of": {"type": "string"},
        "unavailable": {"type": "object", "properties": {
            "queues": unavailable, "dead_letter_queues": unavailable,
            **{k: {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}}} for k in ("counters", "reconciler")}},
            "description": "per section, the queues that did not answer; `counters` (jobs_by_status, events, "
                           "by_type, completion_time_s, failure_rate) and `reconciler` when their table did not"}}}
    return {
        "/api/system/stats": {"get": {"parameters": _query("window_hours"), "responses": {
            "200": _json(stats), **refused}}},
        "/api/system/dlq": {"get": {"parameters": _query("priority", "queue", "limit"), "responses": {
            "200": _json({"type": "object", "required": ["dead_letters"], "properties": {
                "dead_letters": {"type": "object", "additionalProperties": {"type": "array", "items": letter}},
                "total": {"type": "object", "additionalProperties": {"type": ["integer", "null"]},
                          "description": "per queue, its letters in all (a listing shows up to `limit`)"},
                "unavailable": unavailable,
                "jobs_unavailable": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}},
                    "description": "the jobs table did not answer: every letter's `job` is null, not read"}}}),
                **refused}}},
        "/api/system/dlq/redrive": {"post": {"parameters": _query("priority", "queue", "limit"), "responses": {
            "200": _json({"type": "object", "required": ["redriven"], "properties": {
                "redriven": {"type": "object"}, "unavailable": unavailable}}), **refused, **_errors(409)}}},
        "/api/system/dlq/letters/{message_id}": {"delete": {
            "parameters": [_path_param("message_id"), *_query("priority", "queue")], "responses": {
                "200": _json({"type": "object", "required": ["deleted", "queue"], "properties": {
                    "deleted": {"type": "string"}, "queue": {"type": "string"}}}),
                # A parked stream record the reconciler holds hidden (SQS hands out no hidden
                # message): deleted, unpublished, at its next take.
                "202": _json({"type": "object", "required": ["drop_requested", "queue"], "properties": {
                    "drop_requested": {"type": "string"}, "queue": {"type": "string"}}},
                    "a parked stream record held hidden: deleted at the reconciler's next take"),
                **refused, **_errors(404, 409)}}},
        # A start is keyed as POST /jobs: the same task and parameters under a key answer its task,
        # anything else under it is 409; its task purged while the key is kept, 410. With
        # USE_TASK_QUEUE=false a key is refused (400): an inline run keeps no record.
        **{f"/api/system/maintenance/{route}": {"post": {
            "parameters": [*_query(*names), _IDEMPOTENCY_KEY], "responses": {**queued, **_errors(409, 410)}}}
           for route, names in (("cleanup-runs", ("max_age_hours",)), ("health-check", ()),
                                ("cleanup-temp-files", ("max_age_hours",)), ("log-statistics", ("window_hours",)))},
        "/api/system/maintenance/tasks": {"get": {"parameters": _query("limit", "cursor"), "responses": {
            "200": _json({"type": "object", "required": ["tasks"]}), **refused}}},
        "/api/system/maintenance/tasks/{task_id}": {
            "get": _conditional({"parameters": task_id, "responses": {"200": _json(task), **refused, **_errors(404)}}),
            "delete": {"parameters": task_id, "responses": {"202": _json(task), **refused, **_errors(404, 409)}},
        },
        "/api/system/maintenance/tasks/{task_id}/runs": {"get": {"parameters": task_id, "responses": {
            "200": _json({"type": "object", "required": ["task_id", "runs"], "properties": {
                "task_id": {"type": "string"}, "runs": {"type": "array", "items": _ref("Run")}}}),
            **refused, **_errors(404)}}},
        "/api/system/maintenance/tasks/{task_id}/rerun": {
            # A key's replay after the first task was purged answers 410, as on /jobs/{id}/rerun;
            # with USE_TASK_QUEUE=false a key is refused (400): an inline run keeps no record.
            "post": {"parameters": [*task_id, _IDEMPOTENCY_KEY],
                     "responses": {**queued, **_errors(404, 409, 410, 422)}},
        },
    }


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once per process)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "jobpipe", "version": "1", "description": "Submit jobs, follow their progress, read scope caches."},
        "components": {"schemas": _schemas(),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        "security": [{"bearer": []}],
        "paths": _with_internal(_paths()),
    }


def route_paths() -> set[tuple[str, str]]:
    """(path, METHOD) of every documented operation."""
    return {(path, method.upper()) for path, item in _paths().items() for method in item}
