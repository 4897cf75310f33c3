"""The operations of the API's OpenAPI document as generated-request cases, for the suites that
feed them to schemathesis (tests/functional/test_generated_requests.py in process,
tests/e2e/test_openapi.py against the deployed stack)."""
from __future__ import annotations

from typing import Iterator

from schemathesis import GenerationMode

from chalicelib.api.openapi import openapi_document, route_paths


def operation_cases() -> Iterator[tuple[str, str, GenerationMode]]:
    """Every operation with valid inputs; those that take inputs with invalid ones too."""
    paths = openapi_document()["paths"]
    for path, method in sorted(route_paths()):
        yield path, method, GenerationMode.POSITIVE
        declared = paths[path][method.lower()]
        if declared.get("parameters") or declared.get("requestBody"):
            yield path, method, GenerationMode.NEGATIVE
