"""Every operation GET /openapi.json declares, fed requests schemathesis generates from it (valid
and not: bodies, query strings, path parts and headers of the wrong type or shape) with a
tenant's token, on moto: none gets a 5xx, every refusal is the API's error shape with a code
docs/api.md's table lists, and every answer is one the document declares for it. The same
property tests/e2e/test_openapi.py holds against a deployed stack, here bounded and
derandomized: a fixed number of examples per operation, the same ones on every run."""
from __future__ import annotations

import json
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.openapi_cases import operation_cases
from tests.functional.conftest import auth, token
from tests.support.chalice_wsgi import wsgi_app
from tests.unit.test_doc_references import codes, table_after

# A deeper look, run by hand: FUZZ_EXAMPLES=200 FUZZ_RANDOM=1 (new examples on every run).
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 12))


def documented_codes() -> dict[int, set[str]]:
    """docs/api.md's error table: the codes each status may carry (`4xx` rows under every 4xx)."""
    by_status: dict[int, set[str]] = {}
    for status, cell in table_after("docs/api.md", "Errors, by status"):
        for s in range(400, 500) if status == "4xx" else [int(status)]:
            by_status.setdefault(s, set()).update(codes(cell))
    return by_status


DOCUMENTED = documented_codes()


def refused_in_the_documented_shape(path: str, method: str, status: int, body: bytes) -> None:
    if status < 400:
        return
    answer = json.loads(body)
    if (path, method, status) == ("/cache/{scope}/{namespace}", "GET", 404) and answer.get("status") == "miss":
        return  # a cache miss is a 404 in its own declared shape
    code = answer["error"]["code"]
    assert code in DOCUMENTED.get(status, set()), f"{status} {code!r} is not in docs/api.md's table"
    assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]


def existing(client) -> dict[str, str]:
    """A job of the tenant and a maintenance task, by the path parameter that names them."""
    job = client.http.post("/jobs", headers=auth("fuzz"), body=json.dumps(STEPS)).json_body
    task = client.http.post("/api/system/maintenance/health-check", headers=OPERATOR, body=b"").json_body
    return {"job_id": job["id"], "task_id": task["task_id"]}


def aimed(case, ids: dict[str, str]):
    """`case` naming a job or task that exists (generated ids all miss), and a job type that
    exists (generated names all are unknown), so what those reads and writes answer is tried too."""
    for name, value in ids.items():
        if name in (case.path_parameters or {}):
            case.path_parameters[name] = value
    if (case.path, case.method) == ("/jobs", "POST") and isinstance(case.body, dict):
        case.body.update(type=STEPS["type"], payload=STEPS["payload"])
    return case


STEPS = {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}
OPERATOR = {"Authorization": f"Bearer {token('fuzz', 'olga', roles=['operator'])}"}


@pytest.mark.parametrize("path, method, mode", list(operation_cases()))
def test_generated_requests_get_no_server_error_and_documented_answers(app, client, path, method, mode):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", wsgi_app(app))
    operation = schema[path][method]
    roles = ["operator"] if path.startswith("/api/system/") else None
    headers = {"Authorization": f"Bearer {token('fuzz', 'ann', roles=roles)}"}
    ids = existing(client)
    statuses = []

    @given(case=st.tuples(operation.as_strategy(mode), st.booleans()).map(
        lambda drawn: aimed(drawn[0], ids) if drawn[1] else drawn[0]))
    @settings(max_examples=MAX_EXAMPLES, derandomize=not os.environ.get("FUZZ_RANDOM"), database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def call(case):
        response = case.call(headers=headers)
        statuses.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                  content_type_conformance, response_headers_conformance,
                                                  response_schema_conformance])
        refused_in_the_documented_shape(path, method, response.status_code, response.content)

    call()
    assert statuses  # requests were generated and sent
