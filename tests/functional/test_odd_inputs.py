"""Inputs a schema-driven generator does not make, on every route that takes them: bytes that are
not UTF-8, a JSON body sent without a JSON Content-Type, a query parameter given twice or 10,000
times, `%2F` in a path part, a body nested 10,000 deep, 1e400 and -0. Each is answered with the
documented 4xx and code (or read as the docs say), and nothing is written for a refused one."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import BaseModel

from chalicelib.defaults import MAX_CACHE_NAME_CHARS, MAX_JOB_TYPE_CHARS, MAX_JSON_DEPTH, MAX_LISTING_PAGE, MAX_SCHEDULE_S
from chalicelib.job_types import registry
from tests.functional.conftest import auth, drain, get_job, receive_all, submit_job, token
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


def test_a_delay_at_the_schedule_bound_is_kept_and_one_past_it_is_400_writing_nothing(client, aws):
    held = submit_job(client, {**STEPS, "delay_seconds": MAX_SCHEDULE_S})
    assert get_job(client, held["id"])["status"] == "queued"
    items = table_items(aws)
    refused(client.http.post("/jobs", headers=auth(), body=json.dumps({**STEPS, "delay_seconds": MAX_SCHEDULE_S + 1})),
            400, "invalid_request")
    assert table_items(aws) == items


@pytest.mark.parametrize("form", ["epoch seconds as text", "epoch milliseconds as text", "epoch seconds",
                                  "no zone"])
def test_a_run_at_that_is_no_iso_time_with_a_zone_is_400_writing_nothing(client, aws, form):
    """A minute ahead, well within the schedule's bound: refused for its form alone."""
    soon = datetime.now(timezone.utc) + timedelta(minutes=1)
    run_at = {"epoch seconds as text": str(int(soon.timestamp())), "epoch milliseconds as text":
              str(int(soon.timestamp() * 1000)), "epoch seconds": int(soon.timestamp()),
              "no zone": soon.replace(tzinfo=None).isoformat()}[form]
    answer = client.http.post("/jobs", headers=auth(), body=json.dumps({**STEPS, "run_at": run_at}))
    refused(answer, 400, "invalid_request")
    assert [problem["loc"] for problem in answer.json_body["error"]["details"]] == [["run_at"]]
    assert table_items(aws) == [] and receive_all(aws) == []


def test_a_scope_at_the_name_bound_is_kept_and_one_past_it_is_400_writing_nothing(client, aws):
    longest = "s" * MAX_CACHE_NAME_CHARS
    job = submit_job(client, {**STEPS, "scope": longest})
    assert get_job(client, job["id"])["scope"] == longest
    items = table_items(aws)
    refused(client.http.post("/jobs", headers=auth(), body=json.dumps({**STEPS, "scope": longest + "s"})),
            400, "invalid_request")
    assert table_items(aws) == items


def test_a_listing_page_at_the_bound_is_served_and_one_past_it_is_400(client, aws):
    job = submit_job(client, STEPS)
    listed = client.http.get(f"/jobs?limit={MAX_LISTING_PAGE}", headers=auth())
    assert listed.status_code == 200 and [j["id"] for j in listed.json_body["jobs"]] == [job["id"]]
    refused(client.http.get(f"/jobs?limit={MAX_LISTING_PAGE + 1}", headers=auth()), 400, "invalid_request")


def test_a_task_listing_takes_a_page_from_one_to_the_bound_and_a_cursor_that_is_one(client, aws):
    """The task listing reads its query as the job listing does: a page of `limit` 1 to
    MAX_LISTING_PAGE is served, none or one past the bound is 400, and so is an empty cursor."""
    served = client.http.get(f"/api/system/maintenance/tasks?limit={MAX_LISTING_PAGE}", headers=OPERATOR)
    assert served.status_code == 200 and served.json_body == {"tasks": [], "next_cursor": None}
    for query in ("limit=0", f"limit={MAX_LISTING_PAGE + 1}", "cursor="):
        refused(client.http.get(f"/api/system/maintenance/tasks?{query}", headers=OPERATOR), 400, "invalid_request")


class _AnyPayload(BaseModel):
    value: object = None
    result_depth: int = 0


@pytest.fixture
def any_payload():
    """A job type whose payload takes any JSON and whose result nests `result_depth` levels."""
    registry.register("odd.any", _AnyPayload, max_attempts=1, timeout_s=10)(
        lambda ctx, p: json.loads("[" * p.result_depth + "]" * p.result_depth) if p.result_depth else None)
    yield "odd.any"
    registry._types.pop("odd.any")


def test_a_job_type_name_at_the_bound_is_taken_and_one_past_it_is_400(client, aws):
    longest = "odd." + "x" * (MAX_JOB_TYPE_CHARS - 4)
    registry.register(longest, _AnyPayload, max_attempts=1, timeout_s=10)(lambda ctx, p: None)
    try:
        job = submit_job(client, {"type": longest})
        listed = client.http.get(f"/jobs?type={longest}", headers=auth())
        assert listed.status_code == 200 and [j["id"] for j in listed.json_body["jobs"]] == [job["id"]]
    finally:
        registry._types.pop(longest)
    items = table_items(aws)
    for short_or_long in ("", longest + "x"):
        refused(client.http.post("/jobs", headers=auth(), body=json.dumps({"type": short_or_long})), 400, "invalid_request")
    refused(client.http.get(f"/jobs?type={longest}x", headers=auth()), 400, "invalid_request")
    assert table_items(aws) == items


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 300])
def test_a_body_nested_past_the_limit_is_400_naming_it_and_nothing_is_written(client, aws, any_payload, depth):
    """A payload of 255 to 935 levels passed the parser and was a 500 (pydantic gives up past
    255 levels); past 935 it was the parser's RecursionError, as a 400: the limit was where
    either ran out. A body may nest MAX_JSON_DEPTH levels, the envelope included, wherever it goes."""
    job = {"type": any_payload, "payload": {"value": json.loads(nested(depth - 1))}}  # depth + 1 with the envelope
    for method, path, body in (("POST", "/jobs", json.dumps(job)), ("PUT", "/cache/s/n", nested(depth + 1)),
                               ("POST", "/jobs/status", nested(depth + 1))):
        answer = client.http.request(method, path, headers=auth(), body=body)
        refused(answer, 400, "invalid_json")
        assert f"more than {MAX_JSON_DEPTH} levels" in answer.json_body["error"]["message"], answer.json_body
    assert table_items(aws) == [] and receive_all(aws) == []


def test_a_body_at_the_limit_is_kept_and_read_back(client, aws, any_payload):
    job = client.http.post("/jobs", headers=auth(), body=json.dumps(
        {"type": any_payload, "payload": {"value": json.loads(nested(MAX_JSON_DEPTH - 2))}}))
    assert job.status_code == 202, job.json_body
    assert client.http.get(f"/jobs/{job.json_body['id']}", headers=auth()).status_code == 200
    assert client.http.put("/cache/s/n", headers=auth(), body=nested(MAX_JSON_DEPTH)).status_code == 200
    assert client.http.get("/cache/s/n", headers=auth()).json_body["value"] == json.loads(nested(MAX_JSON_DEPTH))


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 300])
def test_a_result_nested_past_the_limit_fails_its_job_once_saying_so(app, client, aws, any_payload, depth):
    """A result of 255 levels or more made the job's answer fail to serialize after the handler
    ran: the delivery failed and the job stayed running, to be run again, ending worker_lost."""
    job = submit_job(client, {"type": any_payload, "payload": {"result_depth": depth}})
    drain(app, aws)
    failed = client.http.get(f"/jobs/{job['id']}", headers=auth()).json_body
    assert failed["status"] == "failed" and failed["attempts"] == 1, failed
    assert failed["error"]["code"] == "result_not_serializable"
    assert f"more than {MAX_JSON_DEPTH} levels" in failed["error"]["message"]


def test_a_result_at_the_limit_completes_its_job(app, client, aws, any_payload):
    job = submit_job(client, {"type": any_payload, "payload": {"result_depth": MAX_JSON_DEPTH}})
    drain(app, aws)
    done = client.http.get(f"/jobs/{job['id']}", headers=auth()).json_body
    assert done["status"] == "completed" and done["result"] == json.loads(nested(MAX_JSON_DEPTH))


@pytest.mark.parametrize("written", ["1_0", "%201%20", "%2B5", "1.0", "%D9%A1", "1e1", "0x10", "true"])
@pytest.mark.parametrize("path", ["/jobs?limit={}", "/api/system/dlq?limit={}", "/api/system/stats?window_hours={}",
                                  "/api/system/maintenance/tasks?limit={}"])
def test_a_number_in_the_query_is_plain_digits_or_400(client, path, written):
    """pydantic's own reading of text as an int took "1_0" as 10, " 1 ", "+5" and "1.0"."""
    answer = client.http.get(path.format(written), headers=OPERATOR)
    assert answer.status_code == 400 and answer.json_body["error"]["code"] == "invalid_request"
    assert "digits 0-9" in json.dumps(answer.json_body)


def test_a_number_in_the_query_may_lead_with_zeros_and_one_too_long_is_told_so(client):
    """`?limit=0000000000000000000005` was refused as "not written in the digits 0-9"."""
    submit_job(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    led = client.http.get("/jobs?limit=" + "0" * 30 + "1", headers=auth())
    assert led.status_code == 200 and len(led.json_body["jobs"]) == 1
    long = client.http.get("/jobs?limit=" + "9" * 40, headers=auth())
    assert long.status_code == 400 and "at most 18 digits" in json.dumps(long.json_body)


@pytest.mark.parametrize("written", ["1_0", "%2B5", "1.0"])
def test_a_task_parameter_that_is_no_plain_number_starts_no_task(client, aws, written):
    answer = client.http.post(f"/api/system/maintenance/cleanup-runs?max_age_hours={written}",
                              headers=OPERATOR, body=b"")
    assert answer.status_code == 400 and answer.json_body["error"]["code"] == "invalid_request"
    listed = client.http.get("/api/system/maintenance/tasks", headers=OPERATOR).json_body
    assert listed["tasks"] == []


def test_a_number_in_plain_digits_is_read(client):
    assert client.http.get("/jobs?limit=007", headers=OPERATOR).status_code == 200
    assert client.http.get("/api/system/dlq?limit=-1", headers=OPERATOR).status_code == 400  # the range's


# POSTs that only read (batch status): they take ids from the query or the body, as rq's do.
READING_POSTS = {"/jobs/status", "/api/jobinfo"}


def _writes(app):
    for path, methods in app.routes.items():
        for method, entry in methods.items():
            if method in ("POST", "PUT", "DELETE") and path not in READING_POSTS:
                yield method, path.replace("{", "").replace("}", ""), entry.view_function


def test_every_route_that_changes_something_refuses_a_query_parameter_it_does_not_take(client, app, aws):
    """`DELETE /jobs/{id}?dry_run=true` canceled the job; `POST /jobs?priority=high` made a
    normal one. Walks the app's routes, so a new one cannot be missed."""
    writes = list(_writes(app))
    assert len(writes) >= 11
    for method, path, _ in writes:
        answer = client.http.request(method, f"/{path.lstrip('/')}?dry_run=true", headers=OPERATOR, body=b"")
        assert answer.status_code == 400, (method, path, answer.body[:200])
        assert answer.json_body["error"]["code"] == "invalid_request" and "dry_run" in answer.body.decode()
    assert receive_all(aws, "jobs_url") == [] and client.http.get("/jobs", headers=auth()).json_body["jobs"] == []


def test_a_query_parameter_refused_is_named_and_so_is_what_the_route_takes(client, aws):
    """The refusal lists the parameters it did not take (in its details too, for a client to
    read) and says the route takes none, rather than leaving the sentence unfinished."""
    answer = client.http.post("/jobs?priority=high&dry_run=1", headers=auth(), body=json.dumps(
        {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}))
    assert answer.status_code == 400
    assert answer.json_body["error"]["message"] \
        == "POST /jobs does not take the query parameter dry_run, priority: it takes none"
    assert answer.json_body["error"]["details"] == {"parameters": ["dry_run", "priority"]}


def test_a_route_that_takes_no_body_refuses_one_and_does_nothing(client, app, aws):
    """A clean-up given `{"max_age_hours": 720}` as a body ran with the default 24 h; a redrive
    given `{"queue": "high"}` redrove every queue. Every write but a submit, a rerun and a cache
    put takes none: a route that came to take one would leave this walk unseen."""
    bodiless = [(method, path) for method, path, view in _writes(app) if not view.takes_body]
    assert {path for _, path in bodiless} == {path for _, path, _ in _writes(app)} - {
        "/jobs", "/jobs/job_id/rerun", "/cache/scope/namespace"}
    for method, path in bodiless:
        # a no-break space is not JSON's whitespace: it is a body
        for body in (b'{"max_age_hours": 720}', b"\xff not json", b"[]", b"null", "\u00a0".encode()):
            answer = client.http.request(method, path, headers=OPERATOR, body=body)
            assert answer.status_code == 400, (method, path, body, answer.body[:200])
            assert "takes no request body" in answer.json_body["error"]["message"]
    assert client.http.get("/api/system/maintenance/tasks", headers=OPERATOR).json_body["tasks"] == []
    # a route whose parameters are read from the query says where they go; one that takes none does not
    said = {path: client.http.request(method, path, headers=OPERATOR, body=b'{"max_age_hours": 720}')
            .json_body["error"]["message"] for method, path in bodiless
            if path in ("/api/system/maintenance/cleanup-runs", "/jobs/job_id")}
    assert said == {
        "/api/system/maintenance/cleanup-runs": "POST /api/system/maintenance/cleanup-runs takes no request body: "
                                                "its parameters go in the query string",
        "/jobs/job_id": "DELETE /jobs/{job_id} takes no request body"}
    for nothing in (b" \n", b"{}", b" { }\n"):  # whitespace, or an empty object (`json={}`), is no body
        started = client.http.post("/api/system/maintenance/cleanup-runs?max_age_hours=720", headers=OPERATOR,
                                   body=nothing)
        assert started.status_code == 202, (nothing, started.body[:200])


@pytest.mark.parametrize("nothing", [b"\xef\xbb\xbf{}", b"\xef\xbb\xbf", "{}".encode("utf-16"),
                                     " { }\n".encode("utf-32"), "{}".encode("utf-16-le")],
                         ids=["utf8-bom", "bom-alone", "utf16", "utf32", "utf16le"])
def test_an_empty_object_is_no_body_in_every_encoding_a_body_is_read_in(client, aws, nothing):
    """Every body is read as JSON in UTF-8, UTF-16 or UTF-32, a byte order mark skipped, and
    `{}` asks for nothing; a route that takes no body refused `{}` written with a byte order
    mark (as Windows editors save a file for `curl -d @file`) or in UTF-16 as a body."""
    job = client.http.post("/jobs", headers=auth(), body=json.dumps(
        {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})).json_body
    canceled = client.http.delete(f"/jobs/{job['id']}", headers=auth(), body=nothing)
    assert canceled.status_code == 202 and canceled.json_body["status"] == "canceled", canceled.body[:200]
    started = client.http.post("/api/system/maintenance/health-check", headers=OPERATOR, body=nothing)
    assert started.status_code == 202, started.body[:200]
    # a route whose body is optional takes it as none too (a rerun that says nothing of its start)
    rerun = client.http.post(f"/jobs/{job['id']}/rerun", headers=auth(), body=nothing)
    assert rerun.status_code == 202 and rerun.json_body["rerun_of"] == job["id"], rerun.body[:200]


@pytest.mark.parametrize("steps", ["10", "1_0", True, 10.5])
def test_a_demo_payload_takes_numbers_as_numbers(client, aws, steps):
    """The demo types' models are strict: pydantic's lax reading took "1_0" as 10 and true as 1."""
    answer = client.http.post("/jobs", headers=auth(), body=json.dumps(
        {"type": "demo.steps", "payload": {"steps": steps, "step_ms": 0}}))
    assert answer.status_code == 422 and answer.json_body["error"]["code"] == "invalid_payload"
    assert receive_all(aws, "jobs_url") == []
