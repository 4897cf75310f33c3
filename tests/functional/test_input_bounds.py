"""Where the API's input bounds fall over HTTP: a value at a bound is taken, one past it is a 4xx
with its stable code and a message saying why, and a refused request writes nothing."""
from __future__ import annotations

import json

import pytest

from chalicelib import composition
from chalicelib.defaults import MAX_ANSWER_BYTES, MAX_LOC_PART_CHARS, MAX_PROBLEMS_LISTED
from chalicelib.domain.job import answer_bytes
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
    assert refused.json_body["error"]["details"] == {"limit": LIMIT}  # the bound a client can read, not parse
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


STRAY = 100_000  # keys of one character and a number: a body of 1.2 MB, well inside the limit


@pytest.mark.parametrize("where, status, code", [("body", 400, "invalid_request"), ("payload", 422, "invalid_payload")])
def test_a_body_of_a_hundred_thousand_stray_keys_is_refused_in_an_answer_lambda_can_return(client, aws, where, status,
                                                                                           code):
    """Each unknown field is one problem: listed whole, 100,000 of them made a 9 MB refusal, past
    the 6 MB Lambda returns, so the caller got API Gateway's 502 for a request it got wrong."""
    stray = {f"k{i}": 0 for i in range(STRAY)}
    body = {**STEPS, **stray} if where == "body" else {**STEPS, "payload": {**STEPS["payload"], **stray}}
    response = client.http.post("/jobs", headers=auth(), body=json.dumps(body))
    error = response.json_body["error"]
    assert (response.status_code, error["code"]) == (status, code)
    assert answer_bytes(response.json_body) < MAX_ANSWER_BYTES
    assert len(error["details"]) == MAX_PROBLEMS_LISTED and error["details"][0]["loc"] == ["k0"]
    assert error["message"].endswith(f": 100,000 problems, the first {MAX_PROBLEMS_LISTED} listed")
    assert table_items(aws) == [] and receive_all(aws) == []


@pytest.mark.parametrize("where, status, code", [("body", 400, "invalid_request"), ("payload", 422, "invalid_payload")])
def test_a_stray_key_of_a_million_characters_is_named_by_its_first(client, aws, where, status, code):
    """A problem's `loc` echoes the key: one of a million `€` (3 MB in the body) took 7 bytes a
    character in the answer, past the 6 MB Lambda returns."""
    key = "€" * 1_000_000
    body = {**STEPS, key: 0} if where == "body" else {**STEPS, "payload": {**STEPS["payload"], key: 0}}
    response = client.http.post("/jobs", headers=auth(), body=json.dumps(body, ensure_ascii=False).encode())
    error = response.json_body["error"]
    assert (response.status_code, error["code"]) == (status, code)
    assert answer_bytes(response.json_body) < 10_000
    assert error["details"][-1]["loc"] == ["€" * MAX_LOC_PART_CHARS + "…"]
    assert table_items(aws) == [] and receive_all(aws) == []
