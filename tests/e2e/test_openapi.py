"""schemathesis against the deployed API, from its own GET /openapi.json: generated requests
(valid and not) never get a 5xx, and every answer conforms to its declared schema."""
from __future__ import annotations

import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from app import app as chalice_app
from chalicelib.api.openapi import route_paths
from tests.support.openapi_cases import operation_cases

TENANT = f"fuzz-{uuid.uuid4().hex[:8]}"
MAX_EXAMPLES = 15


def test_the_document_describes_every_route():
    assert route_paths() == {(path, method) for path, methods in chalice_app.routes.items() for method in methods}


@pytest.fixture(scope="module")
def api_schema(stack):
    return schemathesis.openapi.from_url(f"{stack.api_url}/openapi.json")


# schemathesis' pytest plugin does not run under this pytest; its strategies do, through hypothesis.
@pytest.mark.parametrize("path, method, mode", list(operation_cases()))
def test_generated_requests_get_no_server_error_and_conforming_answers(api_schema, stack, path, method, mode):
    operation = api_schema[path][method]
    headers = {"Authorization": f"Bearer {stack.token(TENANT)}"}
    statuses = []

    @given(case=operation.as_strategy(mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck), database=None)
    def call(case):
        response = case.call(base_url=stack.api_url, headers=headers, timeout=30)
        statuses.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    call()
    assert statuses  # requests were generated and sent
