"""Each priority has its own queue, DLQ and worker function."""
import json

from tests.functional.conftest import auth, invoke_worker, receive_all, receive_when_due, sqs_event, submit_job

ARN = "arn:aws:sqs:us-east-1:123456789012:jobs-{}"


def submit(client, priority=None, **payload):
    body = {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0, **payload}}
    if priority:
        body["priority"] = priority
    return submit_job(client, body)


def test_each_priority_is_sent_to_its_own_queue(client, aws):
    high, normal, low = submit(client, "high"), submit(client), submit(client, "low")
    assert (high["priority"], normal["priority"], low["priority"]) == ("high", "normal", "low")
    on = {key: [json.loads(m["Body"])["job_id"] for m in receive_all(aws, key)]
          for key in ("high_url", "jobs_url", "low_url")}
    assert on == {"high_url": [high["id"]], "jobs_url": [normal["id"]], "low_url": [low["id"]]}


def test_high_priority_worker_runs_retries_and_dead_letters_on_its_own_queues(client, aws):
    job = submit(client, "high", fail_at=1)
    for _ in range(3):
        messages = receive_when_due(aws, "high_url")  # a retry is a delayed message on the same (high) queue
        result = invoke_worker(client._app, sqs_event(messages, ARN.format("high")), function="job_worker_high")
        assert result == {"batchItemFailures": []}
    final = client.http.get(f"/jobs/{job['id']}", headers=auth()).json_body
    assert final["status"] == "failed" and final["attempts"] == 3
    assert receive_all(aws, "jobs_url") == [] and receive_all(aws, "low_url") == []
    (dead,) = receive_all(aws, "dlq_high_url")
    assert json.loads(dead["Body"])["job_id"] == job["id"]
    assert receive_all(aws, "dlq_url") == []


def test_low_priority_worker_runs_its_jobs(client, aws):
    job = submit(client, "low")
    result = invoke_worker(client._app, sqs_event(receive_all(aws, "low_url"), ARN.format("low")), function="job_worker_low")
    assert result == {"batchItemFailures": []}
    assert client.http.get(f"/jobs/{job['id']}", headers=auth()).json_body["status"] == "completed"
