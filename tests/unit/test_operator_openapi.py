"""The operator routes' part of GET /openapi.json says what they accept and answer: every
query parameter their request models take, and every status they can give."""
from __future__ import annotations

from chalicelib.api.maintenance import ListTasksQuery
from chalicelib.api.openapi import openapi_document
from chalicelib.api.system import DeadLetterQuery, StatsQuery
from chalicelib.maintenance import TASK_PARAMETERS


def _declared(path: str, method: str) -> dict:
    return openapi_document()["paths"][path][method]


def test_each_operator_route_declares_the_query_parameters_it_takes():
    routes = {
        ("/api/system/stats", "get"): StatsQuery,
        ("/api/system/dlq", "get"): DeadLetterQuery,
        ("/api/system/dlq/redrive", "post"): DeadLetterQuery,
        ("/api/system/maintenance/tasks", "get"): ListTasksQuery,
        **{(f"/api/system/maintenance/{task.replace('_', '-')}", "post"): model for task, model in TASK_PARAMETERS.items()},
    }
    for (path, method), model in routes.items():
        declared = {p["name"] for p in _declared(path, method).get("parameters", []) if p["in"] == "query"}
        assert declared == set(model.model_fields), path


def test_the_operator_routes_declare_the_statuses_they_answer():
    assert {"400", "403", "503"} <= set(_declared("/api/system/stats", "get")["responses"])
    assert {"400", "403", "409", "503"} <= set(_declared("/api/system/dlq/redrive", "post")["responses"])
    assert {"400", "403", "503"} <= set(_declared("/api/system/maintenance/tasks", "get")["responses"])


def test_a_task_start_declares_its_idempotency_key_and_the_refusals_a_key_brings():
    for task in TASK_PARAMETERS:
        declared = _declared(f"/api/system/maintenance/{task.replace('_', '-')}", "post")
        headers = [p for p in declared["parameters"] if p["in"] == "header"]
        assert [p["name"] for p in headers] == ["Idempotency-Key"], task
        assert {"202", "200", "400", "409", "410"} <= set(declared["responses"]), task
