"""Inputs a schema-driven generator does not make, on every route that takes them: bytes that are
not UTF-8, a JSON body sent without a JSON Content-Type, a query parameter given twice or 10,000
times, `%2F` in a path part, a body nested 10,000 deep, 1e400 and -0. Each is answered with the
documented 4xx and code (or read as the docs say), and nothing is written for a refused one."""
from __future__ import annotations

import json

import pytest

from tests.functional.conftest import auth, receive_all, submit_job, token
from tests.functional.test_api import table_items
from tests.support.chalice_wsgi import wsgi_app

STEPS = {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}
OPERATOR = {"Authorization": f"Bearer {token(roles=['operator'])}"}
BODY_ROUTES = [("POST", "/jobs"), ("PUT", "/cache/s/n"), ("POST", "/jobs/status")]
DEEP = "[" * 10_000 + "]" * 10_000


def refused(response, status: int, code: str) -> None:
    assert (response.status_code, response.json_body["error"]["code"]) == (status, code), response.body[:300]


@pytest.mark.parametrize("method, path", BODY_ROUTES)
@pytest.mark.parametrize("raw", [b'{"type": "\xff\xfe"}', b"\xe9t\xe9", DEEP.encode(), b"[1e400]", b"[-1e400]"])
def test_a_body_no_parser_reads_alike_is_400_invalid_json_and_nothing_is_written(client, aws, method, path, raw):
    refused(client.http.request(method, path, headers=auth(), body=raw), 400, "invalid_json")
    assert table_items(aws) == [] and receive_all(aws) == []


@pytest.mark.parametrize("raw", [b"\xff\xff", DEEP.encode()])
def test_rq_jobinfo_reads_an_unreadable_body_as_naming_no_job(client, aws, raw):
    response = client.http.post("/api/jobinfo", headers=auth(), body=raw)
    assert response.status_code == 200 and response.json_body == {"jobs": {}, "job_ids": []}


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_json_body_is_read_whatever_its_content_type(client, aws, content_type):
    headers = {"Authorization": auth()["Authorization"], **({"Content-Type": content_type} if content_type else {})}
    job = client.http.post("/jobs", headers=headers, body=json.dumps(STEPS))
    assert job.status_code == 202 and job.json_body["payload"]["steps"] == 1
    assert client.http.put("/cache/s/n", headers=headers, body="[1]").status_code == 200
    status = client.http.post("/jobs/status", headers=headers, body=json.dumps([job.json_body["id"]]))
    assert status.status_code == 200 and status.json_body["job_ids"] == [job.json_body["id"]]


@pytest.mark.parametrize("path, headers", [
    ("/jobs?limit=1&limit=2", None), ("/jobs?status=queued&status=running", None),
    ("/jobs/{job}/artifacts?cursor=a&cursor=b", None),
    ("/api/system/stats?window_hours=1&window_hours=2", OPERATOR), ("/api/system/dlq?limit=1&limit=2", OPERATOR),
    ("/api/system/maintenance/tasks?limit=1&limit=2", OPERATOR),
])
def test_a_query_parameter_given_twice_is_400_not_one_value_kept(client, aws, path, headers):
    job = submit_job(client, STEPS)["id"]
    refused(client.http.get(path.format(job=job), headers=headers or auth()), 400, "invalid_request")


def test_a_maintenance_parameter_given_twice_starts_no_task(client, aws):
    path = "/api/system/maintenance/cleanup-runs?max_age_hours=1&max_age_hours=2"
    refused(client.http.post(path, headers=OPERATOR, body=b""), 400, "invalid_request")
    assert receive_all(aws, "low_url") == [] and receive_all(aws) == [] and receive_all(aws, "high_url") == []


@pytest.mark.parametrize("query", [
    "&".join(f"job_id=id-{i}" for i in range(10_000)), "job_ids=" + ",".join(f"id-{i}" for i in range(10_000)),
])
@pytest.mark.parametrize("path", ["/jobs/status", "/api/jobinfo"])
def test_ten_thousand_ids_in_a_query_string_are_400_at_most_100(client, aws, path, query):
    response = client.http.post(f"{path}?{query}", headers=auth(), body=b"")
    refused(response, 400, "invalid_request")
    assert response.json_body["error"]["details"] == {"limit": 100}


def test_ten_thousand_of_a_listing_parameter_are_400(client, aws):
    refused(client.http.get("/jobs?" + "&".join(["limit=1"] * 10_000), headers=auth()), 400, "invalid_request")


@pytest.mark.parametrize("path, status, code", [
    ("/jobs/{job}%2F..", 404, "job_not_found"), ("/jobs/a%2Fb", 404, "job_not_found"),
    ("/jobs/a%2Fb/runs", 404, "job_not_found"), ("/jobs/a%2Fb/artifacts", 404, "job_not_found"),
    ("/jobs/{job}/artifacts/..%2F..%2Fx", 404, "artifact_not_found"), ("/jobs/{job}/artifacts/a%2Fb", 404, "artifact_not_found"),
    ("/cache/a%2Fb/n", 400, "invalid_request"), ("/cache/s/a%2Fb", 400, "invalid_request"),
    ("/scopes/a%2Fb/tasks", 400, "invalid_request"), ("/api/system/maintenance/tasks/a%2Fb", 404, "task_not_found"),
])
def test_a_percent_encoded_slash_in_a_path_part_is_refused_as_the_name_it_decodes_to(app, client, aws, path, status, code):
    """API Gateway hands a path part to the function decoded (`a%2Fb` is `a/b`); the Chalice test
    client hands it as sent: both are refused with the route's code."""
    from werkzeug.test import Client

    job = submit_job(client, STEPS)["id"]
    headers = OPERATOR if "/system/" in path else {"Authorization": auth()["Authorization"]}
    path = path.format(job=job)
    for answer in (client.http.get(path, headers=headers), Client(wsgi_app(app)).get(path, headers=headers)):
        body = answer.json_body if hasattr(answer, "json_body") else answer.get_json()
        assert (answer.status_code, body["error"]["code"]) == (status, code), (path, body)


@pytest.mark.parametrize("path", ["/api/jobstatus/a%2Fb", "/api/jobinfo/a%2Fb"])
def test_rq_routes_answer_a_slashed_id_not_found(app, client, aws, path):
    response = client.http.get(path, headers=auth())
    assert response.status_code == 200 and response.json_body["status"] == "not_found"


def test_minus_zero_reads_as_zero_where_a_count_is_taken(client, aws):
    """`-0` is the integer 0 to every JSON parser: a delay of -0 is no delay; `-0.0` is no
    integer, so it is no number of seconds either (strict)."""
    job = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)[:-1] + ', "delay_seconds": -0}')
    assert job.status_code == 202 and job.json_body["not_before"] == job.json_body["created_at"]
    refused(client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)[:-1] + ', "delay_seconds": -0.0}'),
            400, "invalid_request")
    refused(client.http.get("/jobs?limit=-0", headers=auth()), 400, "invalid_request")
    refused(client.http.get("/jobs?limit=1e400", headers=auth()), 400, "invalid_request")
    stored = client.http.put("/cache/s/z", headers=auth(), body="[-0, -0.0]")
    assert stored.status_code == 200
    assert client.http.get("/cache/s/z", headers=auth()).body.endswith(b'"value":[0,-0.0],"generation":0,' +
                                                                        b'"cached_at":"' + stored.json_body["cached_at"].encode() + b'"}')
