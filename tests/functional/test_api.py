import json
import sys

import pytest

from tests.functional.conftest import auth, invoke_worker, receive_all, receive_when_due, sqs_event, token
from tests.unit.conftest import log_lines  # noqa: F401 - a fixture

STEPS = {"type": "demo.steps", "payload": {"steps": 3, "step_ms": 0}}


def post(client, path, body, headers=None, raw=None):
    return client.http.post(path, headers=headers or auth(), body=raw if raw is not None else json.dumps(body))


def submit(client, body=STEPS, **headers):
    response = post(client, "/jobs", body, auth(**headers) if headers else None)
    assert response.status_code == 202, response.body
    return response.json_body


def run_worker(client, aws, *, rounds=10):
    """Deliver what is on the jobs queue to the worker function until it is empty."""
    results = []
    for _ in range(rounds):
        messages = receive_when_due(aws)  # retries are delayed messages
        if not messages:
            return results
        results.append(invoke_worker(client._app, sqs_event(messages)))
    return results


def get(client, path, tenant="acme"):
    return client.http.get(path, headers=auth(tenant))


def table_items(aws, table="jobs"):
    return aws["ddb"].scan(TableName=table)["Items"]


def test_health_needs_no_token(client):
    response = client.http.get("/health")
    assert response.status_code == 200 and response.json_body["status"] == "ok"


@pytest.mark.parametrize(
    "headers, fragment",
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Basic abc"}, "missing bearer token"),
        ({"Authorization": "Bearer not-a-jwt"}, "invalid token"),
        ({"Authorization": "Bearer " + token(ttl_s=-60)}, "expired"),  # past the 30 s leeway
    ],
)
def test_requests_without_a_valid_token_are_401(client, headers, fragment):
    response = client.http.get("/jobs", headers=headers)
    assert response.status_code == 401
    assert response.json_body["error"]["code"] == "unauthorized"
    assert fragment in response.json_body["error"]["message"]
    assert response.headers["WWW-Authenticate"] == "Bearer"  # RFC 6750: the scheme a client must use


def test_only_a_401_names_the_authentication_scheme(client):
    """Another refusal of an authenticated request (a 404) does not ask for credentials again."""
    response = client.http.get("/jobs/no-such-job", headers=auth())
    assert response.status_code == 404
    assert "WWW-Authenticate" not in response.headers


def test_each_requests_log_names_the_tenant_and_user_of_its_token(client, log_lines):
    """Who made a request is in its log lines (the invocation's summary included): a tenant's
    operator finds its calls, and the next request, another caller's or none, is not logged as
    the one before's."""
    submit(client)
    client.http.get("/jobs", headers=auth("globex", "gil"))
    client.http.get("/health")
    summaries = [line for line in log_lines() if line["message"] == "invocation finished"]
    assert [(line["route"], line.get("tenant"), line.get("user")) for line in summaries] \
        == [("/jobs", "acme", "ann"), ("/jobs", "globex", "gil"), ("/health", None, None)]


def test_token_signed_with_another_secret_is_401(client):
    from chalicelib.api.auth import issue_token

    forged = issue_token("another-secret-0123456789abcdef-0123456789", user="eve", tenant="acme")
    response = client.http.get("/jobs", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_submitted_job_runs_to_completion(client, aws):
    job = submit(client, dict(STEPS, scope="project-7"))
    assert job["status"] == "queued" and job["tenant"] == "acme" and job["user"] == "ann"
    assert job["scope"] == "project-7" and job["version"] == 1
    outcome = run_worker(client, aws)
    assert outcome == [{"batchItemFailures": []}]
    done = get(client, f"/jobs/{job['id']}").json_body
    assert done["status"] == "completed" and done["progress"]["percent"] == 100
    assert done["result"] == {"steps": 3, "attempt": 1}
    assert done["started_at"] and done["finished_at"] and done["attempts"] == 1
    runs = get(client, f"/jobs/{job['id']}/runs").json_body["runs"]
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "completed")]


def test_failing_job_retries_then_fails_and_is_dead_lettered(client, aws):
    job = submit(client, {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0, "fail_at": 1}})
    run_worker(client, aws)
    failed = get(client, f"/jobs/{job['id']}").json_body
    assert failed["status"] == "failed" and failed["attempts"] == 3
    assert failed["error"]["code"] == "demo_failure"
    runs = get(client, f"/jobs/{job['id']}/runs").json_body["runs"]
    assert [r["status"] for r in runs] == ["failed", "failed", "failed"]
    (dead,) = receive_all(aws, "dlq_url")
    assert json.loads(dead["Body"])["job_id"] == job["id"]


def test_runs_show_the_running_attempt_before_its_record_is_written(client, aws, monkeypatch):
    import dataclasses

    from chalicelib.composition import container

    seen = {}
    registry = container().registry
    steps = registry.get("demo.steps")

    def observe(ctx, payload):  # what a user sees while the attempt runs
        seen["runs"] = get(client, f"/jobs/{ctx.job_id}/runs").json_body["runs"]
        seen["job"] = get(client, f"/jobs/{ctx.job_id}").json_body
        return steps.handler(ctx, payload)

    monkeypatch.setitem(registry._types, "demo.steps", dataclasses.replace(steps, handler=observe))
    job = submit(client)
    assert run_worker(client, aws) == [{"batchItemFailures": []}]
    (running,) = seen["runs"]
    assert running == {"job_id": job["id"], "attempt": 1, "status": "running", "started_at": seen["job"]["started_at"],
                       "finished_at": None, "error": None}
    (done,) = get(client, f"/jobs/{job['id']}/runs").json_body["runs"]
    assert (done["attempt"], done["status"], done["started_at"]) == (1, "completed", running["started_at"])
    assert done["finished_at"] >= done["started_at"]


def test_a_worker_claims_and_completes_a_job_in_two_writes(client, aws, monkeypatch):
    """The worker's AWS requests for one job, counted as the benchmark counts them: the claim is
    one conditional write (no read, no visibility change), the completion one transaction with
    the run record; the rest are the handler's progress writes."""
    from chalicelib import aws_requests, composition

    monkeypatch.setenv("JOBPIPE_COUNT_AWS_REQUESTS", "true")
    composition.use(None)  # rebuilt with the setting on
    reports = []
    take = aws_requests.AwsRequestCounter.take
    monkeypatch.setattr(aws_requests.AwsRequestCounter, "take", lambda self: reports.append(take(self)) or reports[-1])
    job = submit(client, {"type": "demo.steps", "payload": {"steps": 3, "step_ms": 0}})
    (message,) = receive_all(aws)
    reports.clear()
    assert invoke_worker(client._app, sqs_event([message])) == {"batchItemFailures": []}
    (worker,) = reports  # one report per invocation
    done = get(client, f"/jobs/{job['id']}").json_body
    assert done["status"] == "completed"
    progress_writes = done["version"] - 3  # created at 1; the claim, the completion and each progress write add 1
    assert worker == {"dynamodb.UpdateItem": 1 + progress_writes, "dynamodb.TransactWriteItems": 1}, worker


def test_duplicate_delivery_in_one_batch_runs_once(client, aws, worker_clock):
    job = submit(client)
    (message,) = receive_all(aws)
    twin = dict(message, MessageId="twin-id")
    result = invoke_worker(client._app, sqs_event([message, twin]))
    assert result == {"batchItemFailures": []}  # the twin found the job finished: skipped
    runs = get(client, f"/jobs/{job['id']}/runs").json_body["runs"]
    assert len(runs) == 1


def test_poison_message_is_parked_alone(client, aws, worker_clock):
    job = submit(client)
    (message,) = receive_all(aws)
    poison = {"MessageId": "poison", "Body": "{not json", "ReceiptHandle": "x"}
    result = invoke_worker(client._app, sqs_event([message, poison]))
    assert result == {"batchItemFailures": []}
    assert [m["Body"] for m in receive_all(aws, "dlq_url")] == ["{not json"], "parked in this batch, not handed back"
    assert receive_all(aws) == []
    assert get(client, f"/jobs/{job['id']}").json_body["status"] == "completed"


def test_cancel_queued_then_finished_is_409(client, aws):
    job = submit(client)
    canceled = client.http.delete(f"/jobs/{job['id']}", headers=auth())
    assert canceled.status_code == 202 and canceled.json_body["status"] == "canceled"
    again = client.http.delete(f"/jobs/{job['id']}", headers=auth())
    assert again.status_code == 409 and again.json_body["error"]["code"] == "job_finished"
    run_worker(client, aws)
    assert get(client, f"/jobs/{job['id']}").json_body["status"] == "canceled"


def test_idempotency_key_returns_the_same_job(client, aws):
    first = submit(client, **{"Idempotency-Key": "order-1"})
    second = submit(client, **{"Idempotency-Key": "order-1"})
    assert first["id"] == second["id"]
    assert len(receive_all(aws)) == 1
    other_body = dict(STEPS, payload={"steps": 4, "step_ms": 0})
    conflict = post(client, "/jobs", other_body, auth(**{"Idempotency-Key": "order-1"}))
    assert conflict.status_code == 409 and conflict.json_body["error"]["code"] == "idempotency_conflict"
    other_tenant = post(client, "/jobs", STEPS, auth("globex", **{"Idempotency-Key": "order-1"}))
    assert other_tenant.status_code == 202 and other_tenant.json_body["id"] != first["id"]


def test_other_tenants_job_is_not_found_everywhere(client, aws):
    job = submit(client)
    for path in (f"/jobs/{job['id']}", f"/jobs/{job['id']}/runs"):
        response = get(client, path, tenant="globex")
        assert response.status_code == 404 and response.json_body["error"]["code"] == "job_not_found"
    assert client.http.delete(f"/jobs/{job['id']}", headers=auth("globex")).status_code == 404
    batch = post(client, "/jobs/status", {"job_ids": [job["id"]]}, auth("globex")).json_body
    assert batch["jobs"][job["id"]] == {"id": job["id"], "status": "not_found"}
    assert get(client, "/jobs", tenant="globex").json_body["jobs"] == []
    assert get(client, f"/jobs/{job['id']}").json_body["status"] == "queued"


@pytest.mark.parametrize(
    "raw, status, code",
    [
        ("{not json", 400, "invalid_json"),
        ("", 400, "invalid_json"),
        ("[1, 2]", 400, "invalid_request"),
        (json.dumps({"type": "nope", "payload": {}}), 422, "unknown_job_type"),
        (json.dumps({"type": "demo.steps", "payload": {"steps": "many"}}), 422, "invalid_payload"),
        (json.dumps({**STEPS, "delay_seconds": 365 * 86400 + 1}), 400, "invalid_request"),
            (json.dumps({**STEPS, "delay_seconds": -1}), 400, "invalid_request"),
            # No coercion: a boolean or a numeral in text is no delay, an epoch number no run_at.
            (json.dumps({**STEPS, "delay_seconds": True}), 400, "invalid_request"),
            (json.dumps({**STEPS, "delay_seconds": "10"}), 400, "invalid_request"),
            (json.dumps({**STEPS, "delay_seconds": 1.5}), 400, "invalid_request"),
            (json.dumps({**STEPS, "run_at": 1900000000}), 400, "invalid_request"),
            # pydantic reads digits in text as epoch seconds, or milliseconds past 2e10: no ISO 8601
            # (2100-01-01, a future instant written as a constant: the same ids wherever collected)
            (json.dumps({**STEPS, "run_at": "4102444800"}), 400, "invalid_request"),
            (json.dumps({**STEPS, "run_at": "4102444800000"}), 400, "invalid_request"),
            (json.dumps({**STEPS, "run_at": "4102444800.5"}), 400, "invalid_request"),
        (json.dumps({**STEPS, "priority": "urgent"}), 400, "invalid_request"),
        (json.dumps({**STEPS, "surprise": 1}), 400, "invalid_request"),
        (json.dumps({**STEPS, "scope": "a b"}), 400, "invalid_request"),
        # No path segment carries these: `/` splits it (API Gateway decodes %2F before it routes),
        # and clients drop `.` and `..` segments from a URL.
        (json.dumps({**STEPS, "scope": "runs/42"}), 400, "invalid_request"),
        (json.dumps({**STEPS, "scope": ".."}), 400, "invalid_request"),
        (json.dumps({**STEPS, "scope": "."}), 400, "invalid_request"),
        (json.dumps({**STEPS, "payload": {"steps": 1, "step_ms": 0, "pad": "x" * (5 * 1024 * 1024)}}), 413, "payload_too_large"),
    ],
)
def test_bad_submissions_are_refused_and_write_nothing(client, aws, raw, status, code):
    response = post(client, "/jobs", None, raw=raw)
    assert response.status_code == status, response.body
    error = response.json_body["error"]
    assert error["code"] == code and error["message"]
    assert table_items(aws) == [] and receive_all(aws) == []


def test_invalid_payload_lists_pydantic_errors(client):
    response = post(client, "/jobs", {"type": "demo.steps", "payload": {"steps": 0}})
    details = response.json_body["error"]["details"]
    assert {tuple(d["loc"]) for d in details} == {("steps",), ("step_ms",)}


def test_listing_is_newest_first_with_cursor_and_filters(client, aws):
    ids = [submit(client)["id"] for _ in range(5)]
    client.http.delete(f"/jobs/{ids[0]}", headers=auth())
    page = get(client, "/jobs?limit=2").json_body
    seen = [j["id"] for j in page["jobs"]]
    while page["next_cursor"]:
        page = get(client, f"/jobs?limit=2&cursor={page['next_cursor']}").json_body
        seen += [j["id"] for j in page["jobs"]]
    assert seen == list(reversed(ids))
    canceled = get(client, "/jobs?status=canceled").json_body["jobs"]
    assert [j["id"] for j in canceled] == [ids[0]]
    assert len(get(client, "/jobs?type=demo.steps&status=queued").json_body["jobs"]) == 4
    assert get(client, "/jobs?type=demo.sleep").json_body["jobs"] == []


def test_a_listing_page_holds_its_limit_and_says_where_the_listing_goes_on(client):
    """`limit` bounds a page, whatever the default: the jobs past it are on the next page."""
    ids = [submit(client)["id"] for _ in range(3)]
    page = get(client, "/jobs?limit=2").json_body
    assert [j["id"] for j in page["jobs"]] == [ids[2], ids[1]] and page["next_cursor"]


def test_listing_refuses_bad_parameters_and_foreign_cursors(client, aws):
    for query in ("status=bogus", "limit=0", "limit=101", "cursor=%%%", "color=red"):
        response = get(client, f"/jobs?{query}")
        assert response.status_code == 400, query
    for _ in range(3):
        submit(client)
    cursor = get(client, "/jobs?limit=1").json_body["next_cursor"]
    response = get(client, f"/jobs?limit=1&cursor={cursor}", tenant="globex")
    assert response.status_code == 400 and "cursor" in response.json_body["error"]["message"]


def test_batch_status_keeps_request_order(client, aws):
    a, b = submit(client)["id"], submit(client)["id"]
    body = post(client, "/jobs/status", {"job_ids": [b, "missing", a, b, "x' OR 1=1 --"]}).json_body
    assert body["job_ids"] == [b, "missing", a, "x' OR 1=1 --"]
    assert body["jobs"][a]["status"] == "queued"
    assert body["jobs"]["missing"] == {"id": "missing", "status": "not_found"}
    too_many = post(client, "/jobs/status", {"job_ids": [f"id-{i}" for i in range(101)]})
    assert too_many.status_code == 400


@pytest.mark.parametrize("path", ["/jobs/status", "/api/jobinfo"])
def test_batch_routes_read_a_body_as_post_jobs_does_and_keep_every_query_id(client, aws, path):
    a, b = submit(client)["id"], submit(client)["id"]
    with_bom = post(client, path, None, raw=b"\xef\xbb\xbf" + json.dumps({"job_ids": [a]}).encode())
    assert with_bom.status_code == 200 and with_bom.json_body["job_ids"] == [a], with_bom.body
    assert with_bom.json_body["jobs"][a]["status"] == "queued"
    repeated = post(client, f"{path}?job_id={a}&job_id={b}", None, raw="")
    assert repeated.status_code == 200 and repeated.json_body["job_ids"] == [a, b], repeated.body
    latin1 = post(client, path, None, raw=b'{"job_ids": ["caf\xe9"]}')
    if path == "/jobs/status":
        assert latin1.status_code == 400 and latin1.json_body["error"]["code"] == "invalid_json"
    else:  # rq-engine answers a body it cannot read with no jobs
        assert latin1.status_code == 200 and latin1.json_body == {"jobs": {}, "job_ids": []}


def test_unknown_job_id_and_injection_in_path_are_404(client):
    for job_id in ("00000000-0000-0000-0000-000000000000", "..%2F..%2Fetc", "a" * 3000):
        response = get(client, f"/jobs/{job_id}")
        assert response.status_code == 404


def test_job_types_describe_their_payloads(client):
    types = {t["type"]: t for t in get(client, "/job-types").json_body["job_types"]}
    assert types["demo.steps"]["payload_schema"]["required"] == ["steps", "step_ms"]


@pytest.mark.parametrize("path", ["/jobs", "/jobs/status", "/api/jobinfo"])
def test_deeply_nested_json_is_a_400_not_a_crash(client, aws, path):
    nested = "[" * 5000 + "]" * 5000
    response = client.http.post(path, headers=auth(), body=nested)
    if path == "/api/jobinfo":  # rq-engine reads a body it cannot parse as naming no job
        assert response.status_code == 200 and response.json_body == {"jobs": {}, "job_ids": []}
    else:
        assert response.status_code == 400 and response.json_body["error"]["code"] == "invalid_json"
    assert table_items(aws) == []


@pytest.mark.parametrize("tenant", ["acme#Y#demo.steps", "acme\n", "acme#S#queued"])
def test_a_tenant_claim_that_could_reach_another_tenants_keys_is_401(client, tenant):
    response = client.http.get("/jobs", headers={"Authorization": f"Bearer {token(tenant=tenant)}"})
    assert response.status_code == 401 and response.json_body["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("query", ["type=demo.steps%23S%23queued", "status=queued&type=demo.steps%23S%23queued",
                                   "status=completed&type=Demo.Steps", "type=demo%20steps"])
def test_a_type_filter_no_job_type_can_have_is_refused_with_or_without_a_status(client, query):
    """Alone, the type reaches its index key; with a status it was only a filter, and a name no
    job can have answered an empty page there where it was a 400 alone."""
    response = get(client, f"/jobs?{query}")
    assert response.status_code == 400 and response.json_body["error"]["code"] == "invalid_request", response.body
    assert "dotted lower-case words" in json.dumps(response.json_body["error"]), response.body


def test_demo_types_are_unknown_where_the_stack_leaves_them_off(client, monkeypatch):
    from chalicelib import composition

    monkeypatch.setenv("JOBPIPE_DEMO_JOB_TYPES", "false")
    composition.use(None)
    response = client.http.post("/jobs", headers=auth(), body=json.dumps({"type": "demo.chaos", "payload": {}}))
    assert response.status_code == 422 and response.json_body["error"]["code"] == "unknown_job_type"
    listed = [t["type"] for t in get(client, "/job-types").json_body["job_types"]]
    assert not any(name.startswith("demo.") for name in listed)


def test_every_request_ends_with_one_summary_line_naming_its_route_and_status(client, caplog):
    job = submit(client)
    caplog.clear()
    assert client.http.get(f"/jobs/{job['id']}", headers=auth()).status_code == 200
    assert client.http.get("/jobs/no-such-job", headers=auth()).status_code == 404
    summaries = [(r.method, r.route, r.status, r.outcome) for r in caplog.records if r.getMessage() == "invocation finished"]
    assert summaries == [("GET", "/jobs/{job_id}", 200, "ok"), ("GET", "/jobs/{job_id}", 404, "ok")]


@pytest.mark.parametrize("path", ["/jobs/status", "/api/jobinfo"])
def test_a_job_id_holding_a_lone_surrogate_is_a_400(client, aws, path):
    submit(client)
    response = client.http.post(path, headers=auth(), body='{"job_ids": ["\\ud800"]}')
    assert response.status_code == 400, response.body
    assert response.json_body["error"]["code"] == "invalid_request"
    # a surrogate pair is one character, an id like any other (unknown here)
    paired = post(client, "/jobs/status", {"job_ids": ["\U0001F600"]}).json_body
    assert paired["jobs"]["\U0001F600"]["status"] == "not_found"


@pytest.mark.parametrize("path", ["/jobs/\ud800x", "/jobs/\ud800x/runs"])
def test_a_refusal_echoing_a_lone_surrogate_shows_u_fffd_in_its_place(client, path):
    """A path part handed over with a lone surrogate (a Lambda event's JSON can carry the
    escape) was echoed into the message, making an answer no strict JSON reader takes."""
    response = client.http.get(path, headers=auth())
    assert (response.status_code, response.json_body["error"]["message"]) == (404, "job \ufffdx not found")
    response.body.decode("utf-8")
    assert b"\\ud800" not in response.body


@pytest.mark.parametrize("path", ["/api/jobstatus/\ud800", "/api/jobinfo/\ud800x"])
def test_an_rq_path_holding_a_lone_surrogate_is_not_found_shown_with_u_fffd(client, aws, path):
    """rq-engine's single-id routes answer any unknown id 200 not_found; tagging such an id
    raised (it has no UTF-8 form) and the answer was a 500."""
    response = client.http.get(path, headers=auth())
    assert response.status_code == 200, response.body
    assert response.json_body == {"id": path.rsplit("/", 1)[1].replace("\ud800", "\ufffd"), "status": "not_found"}
    assert b"\\ud800" not in response.body
    again = client.http.get(path, headers={**auth(), "If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("path", ["/cache/\ud800/n", "/cache/s/\ud800", "/scopes/\ud800/tasks"])
def test_a_refusal_echoing_a_lone_surrogate_in_its_details_shows_u_fffd(client, aws, path):
    response = client.http.get(path, headers=auth())
    assert response.status_code == 400, response.body
    assert "\ufffd" in response.json_body["error"]["details"].popitem()[1]
    assert b"\\ud800" not in response.body


@pytest.mark.parametrize("token", ["\ud800", "x.y.z\udcff"])
def test_a_token_holding_a_lone_surrogate_is_401_not_500(client, token):
    response = client.http.get("/jobs", headers={"Authorization": f"Bearer {token}"})
    assert (response.status_code, response.json_body["error"]["code"]) == (401, "unauthorized")


@pytest.mark.parametrize("raw", ['{"type": "demo.steps", "payload": {"steps": NaN, "step_ms": 0}}',
                                 '{"type": "demo.steps", "payload": {"steps": 1, "step_ms": Infinity}}',
                                 '{"type": "demo.steps", "payload": {"note": "\\udc00", "steps": 1, "step_ms": 0}}'])
def test_json_that_is_not_portable_json_is_refused(client, aws, raw):
    """NaN and Infinity are Python's extensions, a lone surrogate no text: every other parser
    (JSON.parse, Go, a DynamoDB string) would refuse what the job would later serve."""
    response = post(client, "/jobs", None, raw=raw)
    assert response.status_code == 400 and response.json_body["error"]["code"] == "invalid_json"
    assert table_items(aws) == [] and receive_all(aws) == []
    nan_cache = client.http.put("/cache/s/n", headers=auth(), body="NaN")
    assert nan_cache.status_code == 400 and nan_cache.json_body["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("raw", [
    # a surrogate written as raw UTF-8 bytes (CESU-8) is no more UTF-8 than its escape is a character
    b'{"type": "demo.outputs", "payload": {"pad": "\xed\xa0\x80"}}',
    '{"type": "demo.outputs", "payload": {"pad": "\ud800"}}'.encode("utf-16-le", "surrogatepass"),
])
def test_a_lone_surrogate_sent_as_bytes_is_refused_like_its_escape(client, aws, raw):
    response = post(client, "/jobs", None, raw=raw)
    assert response.status_code == 400 and response.json_body["error"]["code"] == "invalid_json"
    assert table_items(aws) == [] and receive_all(aws) == []
    cache = client.http.put("/cache/s/n", headers=auth(), body=b'["\xed\xb0\x80"]')
    assert cache.status_code == 400 and cache.json_body["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("raw", ["1e400", '{"v": -1e999}', "[0, 2e308]",
                                 # written as integers: Python keeps them exact, a double cannot
                                 "1" + "0" * 400, '{"v": -' + "9" * 309 + "}", "[" + "9" * 5000 + "]"])
def test_a_number_too_large_for_a_double_is_refused_not_stored_as_infinity(client, aws, raw):
    """Python reads 1e400 as inf and would write it back as `Infinity`, which no JSON parser
    reads: the value could be stored but never read by a client. An integer of 400 digits is
    the same number to every other parser (JavaScript's JSON.parse reads Infinity)."""
    response = client.http.put("/cache/s/n", headers=auth(), body=raw)
    assert response.status_code == 400 and response.json_body["error"]["code"] == "invalid_json"
    assert "finite" in response.json_body["error"]["message"]
    assert "sys." not in response.json_body["error"]["message"]  # nothing of how Python reads it
    assert len(response.json_body["error"]["message"]) < 200
    assert client.http.get("/cache/s/n", headers=auth()).status_code == 404


def test_the_largest_integers_a_double_holds_are_kept(client, aws):
    largest = int(sys.float_info.max)  # 309 digits
    raw = f"[{largest}, -{largest}, {10 ** 308}]"
    assert client.http.put("/cache/s/n", headers=auth(), body=raw).status_code == 200
    assert client.http.get("/cache/s/n", headers=auth()).json_body["value"] == [largest, -largest, 10 ** 308]


@pytest.mark.parametrize("raw", [
    '{"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}, "payload": {"steps": 9, "step_ms": 0}}',
    '{"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0, "steps": 2}}',
])
def test_a_key_given_twice_is_refused_not_half_read(client, aws, raw):
    """Parsers disagree on which of two equal keys wins (Python keeps the last, others the first
    or refuse): a job must not run with a payload its submitter did not mean."""
    response = post(client, "/jobs", None, raw=raw)
    assert response.status_code == 400 and response.json_body["error"]["code"] == "invalid_json"
    assert "'payload'" in response.json_body["error"]["message"] or "'steps'" in response.json_body["error"]["message"]
    assert table_items(aws) == [] and receive_all(aws) == []
    cache = client.http.put("/cache/s/n", headers=auth(), body='{"v": 1, "v": 2}')
    assert cache.status_code == 400 and cache.json_body["error"]["code"] == "invalid_json"


def test_bodies_in_utf16_or_with_a_byte_order_mark_are_still_read(client, aws):
    body = json.dumps(STEPS)
    for raw in (b"\xef\xbb\xbf" + body.encode(), body.encode("utf-16"), body.encode("utf-16-le")):
        assert post(client, "/jobs", None, raw=raw).status_code == 202


@pytest.mark.parametrize("content_type", ["text/html", "application/xml", "image/png", ""])
def test_any_content_type_is_judged_by_the_body_in_our_error_shape(client, aws, content_type):
    headers = {**auth(), "Content-Type": content_type}
    assert client.http.get("/jobs", headers=headers).status_code == 200
    accepted = client.http.post("/jobs", headers=headers, body=json.dumps(STEPS))
    assert accepted.status_code == 202, accepted.body
    refused = client.http.post("/jobs", headers=headers, body="<job/>")
    assert refused.status_code == 400 and refused.json_body["error"]["code"] == "invalid_json"
    assert client.http.get("/dashboard", headers={"Content-Type": content_type}).status_code == 200


def test_a_body_past_the_limit_says_both_sizes_as_the_docs_write_numbers(client, aws):
    body = json.dumps({**STEPS, "payload": {"steps": 1, "step_ms": 0, "pad": "x" * (5 * 1024 * 1024)}})
    response = client.http.post("/jobs", headers=auth(), body=body)
    assert response.status_code == 413
    assert response.json_body["error"]["message"] == (
        f"request body is {len(body):,} bytes; the limit is 5,242,880 bytes")
    assert table_items(aws) == []


def test_a_cache_value_larger_than_an_item_holds_is_a_413_and_keeps_the_old_value(client, aws):
    assert client.http.put("/cache/s/n", headers=auth(), body='{"v": 1}').status_code == 200
    big = json.dumps({"v": "x" * (350 * 1024)})
    response = client.http.put("/cache/s/n", headers=auth(), body=big)
    assert response.status_code == 413 and response.json_body["error"]["code"] == "payload_too_large"
    assert response.json_body["error"]["details"]["limit"] == 350 * 1024
    # escaped as stored: 60,000 non-ASCII characters take 6 bytes each
    escaped = client.http.put("/cache/s/n", headers=auth(), body=json.dumps({"v": "é" * 60_000}, ensure_ascii=False))
    assert escaped.status_code == 413
    assert client.http.get("/cache/s/n", headers=auth()).json_body["value"] == {"v": 1}
    fits = {"v": "x" * (340 * 1024)}
    assert client.http.put("/cache/s/n", headers=auth(), body=json.dumps(fits)).status_code == 200
    assert client.http.get("/cache/s/n", headers=auth()).json_body["value"] == fits


def test_a_cache_value_is_measured_as_its_compact_json_and_the_bound_is_inclusive(client, aws):
    """The bound is on the value as stored (compact JSON, whatever spacing the body had): a
    value of exactly MAX_CACHE_VALUE_BYTES is kept, one byte more is a 413 saying both sizes."""
    from chalicelib.defaults import MAX_CACHE_VALUE_BYTES

    at_bound = {"v": "x" * (MAX_CACHE_VALUE_BYTES - len('{"v":""}'))}
    assert len(json.dumps(at_bound, separators=(",", ":"))) == MAX_CACHE_VALUE_BYTES
    stored = client.http.put("/cache/s/n", headers=auth(), body=json.dumps(at_bound, indent=4))
    assert stored.status_code == 200, stored.body
    assert client.http.get("/cache/s/n", headers=auth()).json_body["value"] == at_bound
    past = client.http.put("/cache/s/n", headers=auth(), body=json.dumps({"v": at_bound["v"] + "x"}))
    assert past.status_code == 413 and past.json_body["error"]["code"] == "payload_too_large"
    assert past.json_body["error"]["details"] == {"limit": MAX_CACHE_VALUE_BYTES, "bytes": MAX_CACHE_VALUE_BYTES + 1}
    assert past.json_body["error"]["message"] == (
        f"a cached value's JSON may take {MAX_CACHE_VALUE_BYTES:,} bytes; this one takes {MAX_CACHE_VALUE_BYTES + 1:,}")


def test_a_repeated_query_parameter_is_refused_not_half_read(client):
    answer = client.http.get("/jobs?limit=1&limit=2", headers=auth())
    assert answer.status_code == 400 and answer.json_body["error"]["code"] == "invalid_request"
    assert "limit given more than once" in answer.json_body["error"]["message"]


@pytest.mark.parametrize("if_match", ["-1", "abc", "1" * 31, "1_0", "+1", " 1", "1 ", "\u0661", "1.0", "1e1",
                                      '"1', '1"', '""1""', "", "*", "W/\"1\""])
def test_an_if_match_that_is_no_generation_is_refused(client, if_match):
    answer = client.http.put("/cache/p-1/ns", headers=auth(**{"If-Match": if_match}), body="[1]")
    assert answer.status_code == 400 and answer.json_body["error"]["code"] == "invalid_request"
    assert answer.json_body["error"]["message"] == "If-Match must be the generation number a miss reported"
    assert client.http.get("/cache/p-1/ns", headers=auth()).json_body["status"] == "miss"  # nothing stored


@pytest.mark.parametrize("if_match", ["0", '"0"', "00"])
def test_an_if_match_of_the_generation_stores_bare_or_quoted(client, if_match):
    answer = client.http.put("/cache/p-1/ns", headers=auth(**{"If-Match": if_match}), body="[1]")
    assert answer.status_code == 200 and answer.json_body["generation"] == 0


@pytest.mark.parametrize("if_match", ["9" * 30, '"' + "9" * 30 + '"'])
def test_an_if_match_of_thirty_digits_is_read_as_a_generation_bare_or_quoted(client, if_match):
    """Thirty digits are the most a generation is read from, quoted or not (one more is a 400):
    a generation that is not the stored one is a conflict naming both, not a refusal."""
    answer = client.http.put("/cache/p-1/ns", headers=auth(**{"If-Match": if_match}), body="[1]")
    assert answer.status_code == 409 and answer.json_body["error"]["code"] == "cache_generation_changed"
    assert answer.json_body["error"]["details"] == {"generation": 0, "if_match": int("9" * 30)}
    quoted_past = client.http.put("/cache/p-1/ns", headers=auth(**{"If-Match": '"' + "9" * 31 + '"'}), body="[1]")
    assert quoted_past.status_code == 400 and quoted_past.json_body["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("method, path, code, what", [
    ("GET", "/jobs/{id}", "job_not_found", "job"),
    ("GET", "/jobs/{id}/runs", "job_not_found", "job"),
    ("DELETE", "/jobs/{id}", "job_not_found", "job"),
    ("POST", "/jobs/{id}/rerun", "job_not_found", "job"),
    ("GET", "/jobs/{id}/artifacts", "job_not_found", "job"),
    ("GET", "/api/system/maintenance/tasks/{id}", "task_not_found", "task"),
])
def test_an_overlong_id_is_echoed_cut_with_an_ellipsis_never_as_another_id(client, method, path, code, what):
    """'job aaa…(200) not found' echoed the first 128 characters bare: an id that looked whole
    and was not the one sent. The cut is marked, as the rq routes mark it."""
    headers = {"Authorization": f"Bearer {token(roles=['operator'])}"}
    response = client.http.request(method, path.format(id="a" * 200), headers=headers, body=b"")
    assert response.status_code == 404, response.body
    assert response.json_body["error"] == {"code": code, "message": f"{what} {'a' * 128}… not found"}
