"""Where the API's input bounds fall over HTTP: a value at a bound is taken, one past it is a 4xx
with its stable code and a message saying why, and a refused request writes nothing."""
from __future__ import annotations

import json

import pytest

from chalicelib import composition
from tests.functional.conftest import auth, get_job, receive_all, submit_job
from tests.functional.test_api import table_items

STEPS = {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}
LIMIT = 2048  # JOBPIPE_MAX_BODY_BYTES for these tests: small enough to build a body of any size


@pytest.fixture
def small_bodies(aws, monkeypatch):
    monkeypatch.setenv("JOBPIPE_MAX_BODY_BYTES", str(LIMIT))
    composition.use(None)


def _body_of(size: int) -> str:
    frame = json.dumps({"type": "demo.outputs", "payload": {"pad": ""}})
    body = json.dumps({"type": "demo.outputs", "payload": {"pad": "x" * (size - len(frame))}})
    assert len(body.encode()) == size
    return body


def test_a_body_of_exactly_the_limit_is_taken_and_one_byte_more_is_413_writing_nothing(small_bodies, client, aws):
    taken = client.http.post("/jobs", headers=auth(), body=_body_of(LIMIT))
    assert taken.status_code == 202, taken.body
    items = table_items(aws)
    refused = client.http.post("/jobs", headers=auth(), body=_body_of(LIMIT + 1))
    assert refused.status_code == 413 and refused.json_body["error"]["code"] == "payload_too_large"
    assert refused.json_body["error"]["message"] == "request body is 2,049 bytes; the limit is 2,048 bytes"
    assert table_items(aws) == items


def test_an_explicit_delay_of_zero_is_no_delay(client, aws):
    job = submit_job(client, {**STEPS, "delay_seconds": 0})
    assert get_job(client, job["id"])["status"] == "queued" and len(receive_all(aws)) == 1


def test_a_type_filter_of_one_character_is_served(client, aws):
    response = client.http.get("/jobs?type=a", headers=auth())
    assert response.status_code == 200 and response.json_body["jobs"] == []


@pytest.mark.parametrize("parameter", ["type", "cursor"])
def test_an_empty_listing_parameter_is_400_naming_it(client, aws, parameter):
    response = client.http.get(f"/jobs?{parameter}=", headers=auth())
    assert response.status_code == 400 and response.json_body["error"]["code"] == "invalid_request"
    assert response.json_body["error"]["details"][0]["loc"] == [parameter]


def test_a_scope_given_as_null_is_no_scope(client, aws):
    job = submit_job(client, {**STEPS, "scope": None})
    assert get_job(client, job["id"])["scope"] is None


@pytest.mark.parametrize("body", [b"[]", b'["demo.steps"]', b'"demo.steps"', b"null", b"7"])
def test_a_json_body_that_is_no_object_is_400_saying_so(client, aws, body):
    response = client.http.post("/jobs", headers=auth(), body=body)
    assert response.status_code == 400
    assert response.json_body["error"] == {"code": "invalid_request", "message": "request body must be a JSON object"}
    assert table_items(aws) == []
