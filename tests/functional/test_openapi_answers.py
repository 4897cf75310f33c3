"""GET /openapi.json declares what each route answers: every status a client can meet (a 304
to a conditional read, a 503 while the store is down, a 404 for a key whose job is gone), and
the headers a conditional read takes and gives. A client generated from the document handles
each one instead of meeting it as an undeclared surprise."""
from __future__ import annotations

import json

import pytest

from chalicelib import composition
from tests.functional.conftest import TimingOut, auth, drain, submit_job, token

STEPS = {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}


@pytest.fixture
def document(client):
    return client.http.get("/openapi.json").json_body


def operation(document, template: str, method: str) -> dict:
    return document["paths"][template][method.lower()]


def call(client, method: str, path: str, body=None, **headers):
    return client.http.request(method, path, headers=auth(**headers), body=json.dumps(body) if body is not None else b"")


def conditional_reads(job_id: str):
    """(template, method, path, body) of every read answered with an ETag."""
    return [
        ("/jobs/{job_id}", "GET", f"/jobs/{job_id}", None),
        ("/jobs", "GET", "/jobs", None),
        ("/jobs/status", "POST", "/jobs/status", {"job_ids": [job_id]}),
        ("/api/jobstatus/{job_id}", "GET", f"/api/jobstatus/{job_id}", None),
        ("/api/jobinfo/{job_id}", "GET", f"/api/jobinfo/{job_id}", None),
        ("/api/jobinfo", "POST", "/api/jobinfo", {"job_ids": [job_id]}),
    ]


def test_every_conditional_read_declares_if_none_match_its_etag_and_its_304(client, aws, document):
    job_id = submit_job(client, STEPS)["id"]
    for template, method, path, body in conditional_reads(job_id):
        first = call(client, method, path, body)
        again = call(client, method, path, body, **{"If-None-Match": first.headers["ETag"]})
        assert (first.status_code, again.status_code) == (200, 304), path
        declared = operation(document, template, method)
        assert "304" in declared["responses"], template
        assert "ETag" in declared["responses"]["200"].get("headers", {}), template
        assert {("header", "If-None-Match")} <= {(p["in"], p["name"]) for p in declared.get("parameters", [])}, template


def test_every_status_a_store_outage_answers_is_declared(client, aws, document):
    job_id = submit_job(client, STEPS)["id"]
    aws["ddb"].delete_table(TableName="jobs")  # every read and write of the store now fails
    requests = [
        ("/jobs", "POST", "/jobs", STEPS), ("/jobs", "GET", "/jobs", None),
        ("/jobs/{job_id}", "DELETE", f"/jobs/{job_id}", None), ("/jobs/{job_id}/runs", "GET", f"/jobs/{job_id}/runs", None),
        ("/cache/{scope}/{namespace}", "PUT", "/cache/s/n", [1]), ("/cache/{scope}/{namespace}", "GET", "/cache/s/n", None),
        ("/scopes/{scope}/tasks", "GET", "/scopes/s/tasks", None),
        ("/jobs/{job_id}/artifacts", "GET", f"/jobs/{job_id}/artifacts", None),
        ("/jobs/{job_id}/artifacts/{name}", "GET", f"/jobs/{job_id}/artifacts/out.txt", None),
        *conditional_reads(job_id),
    ]
    for template, method, path, body in requests:
        answer = call(client, method, path, body)
        assert answer.status_code == 503 and answer.json_body["error"]["code"] == "store_unavailable", path
        assert "503" in operation(document, template, method)["responses"], (template, method)


def test_a_key_whose_job_is_gone_answers_a_declared_410(client, aws, document):
    job = submit_job(client, STEPS, auth(**{"Idempotency-Key": "k-1"}))
    aws["ddb"].delete_item(TableName="jobs", Key={"pk": {"S": f"JOB#{job['id']}"}, "sk": {"S": "JOB"}})
    again = call(client, "POST", "/jobs", STEPS, **{"Idempotency-Key": "k-1"})
    assert again.status_code == 410 and again.json_body["error"]["code"] == "job_purged"
    assert "410" in operation(document, "/jobs", "POST")["responses"]


def test_a_refused_cache_name_is_a_400_not_the_404_of_a_miss(client, aws, document):
    refused = call(client, "GET", "/cache/a%20b/n")
    assert refused.status_code == 400 and refused.json_body["error"]["code"] == "invalid_request"
    declared = operation(document, "/cache/{scope}/{namespace}", "GET")["responses"]
    assert "refused" not in declared["404"]["description"] and "400" in declared


def test_operator_routes_declare_the_queue_they_take_the_409_of_redrive_and_the_304_of_a_task(client, aws, document, monkeypatch):
    url = aws["sqs"].create_queue(QueueName="stream-failures")["QueueUrl"]
    monkeypatch.setenv("JOBPIPE_STREAM_FAILURE_QUEUE_URL", url)
    composition.use(None)
    operator = {"Authorization": f"Bearer {token(roles=['operator'])}"}
    for method, path in (("GET", "/api/system/dlq"), ("POST", "/api/system/dlq/redrive")):
        assert client.http.request(method, f"{path}?queue=normal", headers=operator).status_code == 200
        assert "queue" in {p["name"] for p in operation(document, path, method)["parameters"]}
    refused = client.http.post("/api/system/dlq/redrive?queue=stream_failure", headers=operator)
    assert refused.status_code == 409 and refused.json_body["error"]["code"] == "not_redrivable"
    assert "409" in operation(document, "/api/system/dlq/redrive", "POST")["responses"]

    task_id = client.http.post("/api/system/maintenance/health-check", headers=operator).json_body["task_id"]
    path = f"/api/system/maintenance/tasks/{task_id}"
    tag = client.http.get(path, headers=operator).headers["ETag"]
    assert client.http.get(path, headers={**operator, "If-None-Match": tag}).status_code == 304
    declared = operation(document, "/api/system/maintenance/tasks/{task_id}", "GET")
    assert "304" in declared["responses"] and "If-None-Match" in {p["name"] for p in declared["parameters"]}


def test_operator_reads_declare_the_queues_they_could_not_read(client, aws, document, monkeypatch):
    """With one dead-letter queue unreachable, the statistics, the dead letters and a redrive of
    every queue answer 200 naming it under `unavailable`: every key of each answer is declared."""
    url = aws["sqs"].create_queue(QueueName="erp-webhook-dlq")["QueueUrl"]
    monkeypatch.setenv("JOBPIPE_ERP_WEBHOOK_DLQ_URL", url)
    monkeypatch.setenv("JOBPIPE_ERP_WEBHOOK_QUEUE_URL", aws["sqs"].create_queue(QueueName="erp-webhook")["QueueUrl"])
    composition.use(None)
    aws["sqs"].delete_queue(QueueUrl=url)
    operator = {"Authorization": f"Bearer {token(roles=['operator'])}"}
    for method, path in (("GET", "/api/system/stats"), ("GET", "/api/system/dlq"), ("POST", "/api/system/dlq/redrive")):
        answer = client.http.request(method, path, headers=operator)
        assert answer.status_code == 200 and "unavailable" in answer.json_body, (path, answer.body)
        declared = operation(document, path, method)["responses"]["200"]["content"]["application/json"]["schema"]
        assert set(answer.json_body) <= set(declared["properties"]), path
        assert "unavailable" not in declared.get("required", []), path


def test_the_statistics_without_any_queue_or_counter_declare_what_they_answer(client, aws, document, monkeypatch):
    """Every queue down, then the counters' table down: each answer keeps the keys it declares
    required, and every key it gives (and every section of `unavailable`) is declared."""
    operator = {"Authorization": f"Bearer {token(roles=['operator'])}"}
    declared = operation(document, "/api/system/stats", "GET")["responses"]["200"]["content"]["application/json"]["schema"]
    operations, stats = composition.container().queue_operations, composition.container().stats
    for adapter, attribute, methods in ((operations, "_sqs", ("get_queue_attributes",)),
                                        (stats, "_ddb", ("get_item", "batch_get_item"))):
        with monkeypatch.context() as patched:
            patched.setattr(adapter, attribute, TimingOut(getattr(adapter, attribute), *methods))
            answer = client.http.get("/api/system/stats", headers=operator)
        assert answer.status_code == 200, answer.body
        assert set(declared["required"]) <= set(answer.json_body) <= set(declared["properties"]), attribute
        sections = declared["properties"]["unavailable"]["properties"]
        assert set(answer.json_body["unavailable"]) <= set(sections), attribute


def test_a_dead_letter_holds_what_the_document_declares_of_it(client, aws, document):
    """Each letter, and the job it names, has the keys the document declares, and no others."""
    submit_job(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0, "fail_at": 1, "fail_mode": "fatal"}})
    drain(client._app, aws)
    operator = {"Authorization": f"Bearer {token(roles=['operator'])}"}
    (letter,) = client.http.get("/api/system/dlq?priority=normal", headers=operator).json_body["dead_letters"]["normal"]
    schema = operation(document, "/api/system/dlq", "GET")["responses"]["200"]["content"]["application/json"]["schema"]
    declared = schema["properties"]["dead_letters"]["additionalProperties"]["items"]
    assert set(letter) == set(declared["required"]) == set(declared["properties"])
    job = declared["properties"]["job"]
    assert set(letter["job"]) == set(job["required"]) == set(job["properties"])


def test_each_batch_route_reads_the_query_ids_its_operation_declares(client, aws, document):
    """POST /jobs/status and POST /api/jobinfo, with no body: `?job_id=` repeated, `?job_ids=`."""
    a, b = (submit_job(client, STEPS)["id"] for _ in range(2))
    for template in ("/jobs/status", "/api/jobinfo"):
        declared = {p["name"] for p in operation(document, template, "POST")["parameters"] if p["in"] == "query"}
        assert declared == {"job_id", "job_ids"}
        for query in (f"job_id={a}&job_id={b}", f"job_ids={a}&job_ids={b}"):
            answer = client.http.post(f"{template}?{query}", headers=auth(), body=b"")
            assert answer.status_code == 200, (template, query, answer.body)
            assert answer.json_body["job_ids"] == [a, b]


def test_a_job_whose_objects_are_gone_answers_each_route_a_declared_status(client, aws, document):
    """The job's claim-checked payload and result are gone from S3: every route answers what it
    declares, none 410; the job is shown as recorded, `payload` and `result` null and named in
    `gone`, which the document declares. A cancel of the finished job is its 409 job_finished."""
    job_id = submit_job(client, {"type": "demo.outputs", "payload": {"pad": "x" * (70 * 1024),
                                                                     "result_bytes": 70 * 1024}})["id"]
    drain(client._app, aws)
    for name in ("payload.json", "result-0001.json"):
        aws["s3"].delete_object(Bucket="jobs-bucket", Key=f"jobs/{job_id}/{name}")
    requests = [
        ("/jobs/{job_id}", "GET", f"/jobs/{job_id}", 200),
        ("/jobs/{job_id}", "DELETE", f"/jobs/{job_id}", 409),
        ("/api/jobinfo/{job_id}", "GET", f"/api/jobinfo/{job_id}", 200),
        ("/jobs/{job_id}/runs", "GET", f"/jobs/{job_id}/runs", 200),
        ("/jobs/{job_id}/artifacts", "GET", f"/jobs/{job_id}/artifacts", 200),
        ("/jobs/{job_id}/artifacts/{name}", "GET", f"/jobs/{job_id}/artifacts/summary.txt", 200),
        ("/api/jobstatus/{job_id}", "GET", f"/api/jobstatus/{job_id}", 200),
    ]
    for template, method, path, status in requests:
        answer = call(client, method, path)
        assert answer.status_code == status, (method, path, answer.body)
        declared = operation(document, template, method)["responses"]
        assert str(status) in declared and "410" not in declared, (template, method)
    job = call(client, "GET", f"/jobs/{job_id}").json_body
    schema = document["components"]["schemas"]["Job"]
    assert set(schema["required"]) <= set(job) <= set(schema["properties"])
    assert (job["payload"], job["result"], job["gone"]) == (None, None, ["payload", "result"])
    assert set(job["gone"]) <= set(schema["properties"]["gone"]["items"]["enum"])


@pytest.mark.parametrize("extra", ["query", "body"])
def test_what_a_route_answers_a_parameter_or_body_it_does_not_take_is_declared(client, aws, document, extra):
    """docs/api.md: a route refuses a query parameter it does not take (GETs ignore them: a
    poller's cache-buster) and a body where it takes none. Every operation, called so by an
    operator (who may call them all), answers a status its operation declares."""
    job_id = submit_job(client, STEPS)["id"]
    names = {"job_id": job_id, "scope": "s", "namespace": "n", "name": "out.txt", "task_id": "t-1",
             "queue": "normal", "message_id": "m-1"}
    headers = {"Authorization": f"Bearer {token(roles=['operator'])}", "Content-Type": "application/json"}
    for template, operations in document["paths"].items():
        path = template.format(**names)
        for method, declared in operations.items():
            answer = client.http.request(method.upper(), path + ("?zz=1" if extra == "query" else ""),
                                         headers=headers, body=json.dumps({"zz": 1}) if extra == "body" else b"")
            assert str(answer.status_code) in declared["responses"], (method, template, answer.status_code, answer.body)
