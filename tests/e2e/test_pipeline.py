"""The spine, deployed: API Gateway → Lambda → SQS → worker Lambda → DynamoDB."""
import json
import time

import pytest

STEPS = {"type": "demo.steps", "payload": {"steps": 5, "step_ms": 50}}


def test_health_over_the_deployed_gateway(stack):
    response = stack.call("GET", "/health", headers={})
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_submitted_job_completes_with_full_progress(stack):
    job = stack.submit(STEPS)
    assert job["status"] == "queued"
    done = stack.wait_terminal(job["id"])
    assert done["status"] == "completed", done
    assert done["progress"]["percent"] == 100 and done["result"] == {"steps": 5, "attempt": 1}
    runs = stack.call("GET", f"/jobs/{job['id']}/runs").json()["runs"]
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "completed")]


def test_failing_job_retries_then_fails_into_the_dlq(stack):
    job = stack.submit({"type": "demo.steps", "payload": {"steps": 3, "step_ms": 0, "fail_at": 2}})
    failed = stack.wait_terminal(job["id"], timeout_s=90)
    assert failed["status"] == "failed" and failed["attempts"] == 3
    assert failed["error"]["code"] == "demo_failure"
    runs = stack.call("GET", f"/jobs/{job['id']}/runs").json()["runs"]
    assert [r["status"] for r in runs] == ["failed"] * 3
    sqs = stack.session.client("sqs")
    bodies = []
    deadline = time.monotonic() + 10
    while job["id"] not in bodies and time.monotonic() < deadline:
        messages = sqs.receive_message(
            QueueUrl=stack.outputs["JobsDeadLetterQueueUrl"], MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", [])
        bodies += [json.loads(m["Body"])["job_id"] for m in messages]
    assert job["id"] in bodies


def test_timeout_is_enforced_and_retried(stack):
    job = stack.submit({"type": "demo.sleep", "payload": {"seconds": 8}})
    failed = stack.wait_terminal(job["id"], timeout_s=60)
    assert failed["status"] == "failed" and failed["error"]["code"] == "timeout"
    assert failed["attempts"] == 2


def test_cancel_a_running_job(stack):
    job = stack.submit({"type": "demo.steps", "payload": {"steps": 40, "step_ms": 250}})
    stack.wait_for(job["id"], lambda j: j["status"] == "running" and j["progress"]["percent"] > 0)
    response = stack.call("DELETE", f"/jobs/{job['id']}")
    assert response.status_code == 202 and response.json()["cancel_requested"] is True
    canceled = stack.wait_terminal(job["id"])
    assert canceled["status"] == "canceled" and canceled["progress"]["percent"] < 100
    again = stack.call("DELETE", f"/jobs/{job['id']}")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"


def test_idempotent_submit(stack):
    first = stack.submit(STEPS, **{"Idempotency-Key": "e2e-key-1"})
    second = stack.submit(STEPS, **{"Idempotency-Key": "e2e-key-1"})
    assert first["id"] == second["id"]
    conflict = stack.call(
        "POST", "/jobs", headers=stack.headers(**{"Idempotency-Key": "e2e-key-1"}),
        json={"type": "demo.steps", "payload": {"steps": 6, "step_ms": 0}},
    )
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"
    assert stack.wait_terminal(first["id"])["status"] == "completed"


def test_tenant_isolation(stack):
    job = stack.submit(STEPS)
    for method, path in (("GET", f"/jobs/{job['id']}"), ("GET", f"/jobs/{job['id']}/runs"), ("DELETE", f"/jobs/{job['id']}")):
        response = stack.call(method, path, tenant="globex")
        assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"
    batch = stack.call("POST", "/jobs/status", tenant="globex", json={"job_ids": [job["id"]]}).json()
    assert batch["jobs"][job["id"]]["status"] == "not_found"
    listed = stack.call("GET", "/jobs?limit=100", tenant="globex").json()["jobs"]
    assert job["id"] not in [j["id"] for j in listed]


def test_batch_status_and_listing(stack):
    ids = [stack.submit(STEPS)["id"] for _ in range(3)]
    body = stack.call("POST", "/jobs/status", json={"job_ids": [ids[2], "nope", ids[0]]}).json()
    assert body["job_ids"] == [ids[2], "nope", ids[0]]
    assert body["jobs"]["nope"]["status"] == "not_found"
    page = stack.call("GET", "/jobs?limit=2").json()
    assert len(page["jobs"]) == 2 and page["next_cursor"]


@pytest.mark.parametrize(
    "kwargs, status, code",
    [
        ({"data": "{oops"}, 400, "invalid_json"),
        ({"json": {"type": "nope"}}, 422, "unknown_job_type"),
        ({"json": {"type": "demo.steps", "payload": {"steps": -1}}}, 422, "invalid_payload"),
        ({"json": {**STEPS, "delay_seconds": 400 * 86400}}, 400, "invalid_request"),
        ({"data": json.dumps({**STEPS, "payload": {"steps": 1, "step_ms": 0, "x": "y" * (5 * 1024 * 1024)}})}, 413, "payload_too_large"),
    ],
)
def test_bad_input_is_refused_clearly(stack, kwargs, status, code):
    before = stack.call("GET", "/jobs?limit=100").json()["jobs"]
    response = stack.call("POST", "/jobs", **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    after = stack.call("GET", "/jobs?limit=100").json()["jobs"]
    assert [j["id"] for j in after] == [j["id"] for j in before]


def test_missing_or_expired_token_is_401(stack):
    assert stack.call("GET", "/jobs", headers={}).status_code == 401
    expired = {"Authorization": f"Bearer {stack.token(ttl_s=-120)}"}
    response = stack.call("GET", "/jobs", headers=expired)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
