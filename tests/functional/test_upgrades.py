"""A deploy over a running pipeline, on moto: job items, run records and messages as the first
versions wrote them (e711b7b's layout, before the reconciler's fields, a claim that wrote its
run record, progress details kept as a map, messages without the claim's hints) are read,
run, finished and shown by this code (docs/operations.md, Deploying over a running pipeline)."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from tests.functional.conftest import auth, drain, get_job
from tests.functional.test_events import stream  # noqa: F401  (a fixture)

_serialize = TypeSerializer().serialize


def _at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _first_version_item(job_id: str, **fields: Any) -> dict[str, Any]:
    """A job item as e711b7b wrote it: the three listing indexes, `payload_json`, and none of
    the fields added since (due_at, dispatches, children, attempt_started_at, event_percent,
    claim_id, not_before, write_id)."""
    created = _at(datetime.now(timezone.utc) - timedelta(minutes=30))
    item = {
        "pk": f"JOB#{job_id}", "sk": "JOB",
        "gsi1pk": "T#acme", "gsi1sk": f"{created}#{job_id}",
        "gsi2pk": f"T#acme#S#{fields.get('status', 'queued')}", "gsi2sk": f"{created}#{job_id}",
        "gsi3pk": "T#acme#Y#demo.steps", "gsi3sk": f"{created}#{job_id}",
        "id": job_id, "type": "demo.steps", "payload_json": json.dumps({"steps": 2, "step_ms": 0}),
        "status": "queued", "tenant": "acme", "user": "ann", "priority": "normal",
        "attempts": 0, "max_attempts": 3, "timeout_s": 600, "progress": {"percent": Decimal(0)},
        "cancel_requested": False, "created_at": created, "version": 1,
        **fields,
    }
    return {k: _serialize(v) for k, v in item.items()}


def _put(aws, item: dict[str, Any]) -> None:
    aws["ddb"].put_item(TableName="jobs", Item=item)


def _send_first_version_message(aws, job_id: str, attempt: int) -> None:
    aws["sqs"].send_message(QueueUrl=aws["jobs_url"], MessageBody=json.dumps({"job_id": job_id, "attempt": attempt}))


def test_a_queued_job_of_the_first_version_runs_and_finishes(app, client, aws):
    job_id = str(uuid.uuid4())
    _put(aws, _first_version_item(job_id))
    _send_first_version_message(aws, job_id, 1)

    assert get_job(client, job_id)["status"] == "queued"
    drain(app, aws)
    job = get_job(client, job_id)
    assert (job["status"], job["attempts"], job["result"]) == ("completed", 1, {"steps": 2, "attempt": 1})
    runs = client.http.get(f"/jobs/{job_id}/runs", headers=auth()).json_body["runs"]
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "completed")]
    listed = client.http.get("/jobs?status=completed", headers=auth()).json_body["jobs"]
    assert job_id in [j["id"] for j in listed]


def test_a_running_attempt_claimed_by_an_earlier_version_is_shown_and_taken_over(app, client, aws):
    """A worker of a version that wrote the run record at its claim, kept progress details as a
    map and no claim_id died; its lease ended. The job reads (with its details), its run keeps
    its start, and the message delivered again ends that attempt worker_lost and runs the next."""
    job_id = str(uuid.uuid4())
    now = datetime.now(timezone.utc)
    started, lease = _at(now - timedelta(minutes=20)), _at(now - timedelta(minutes=5))
    _put(aws, _first_version_item(
        job_id, status="running", attempts=1, started_at=started, lease_expires_at=lease, version=3,
        progress={"percent": Decimal(50), "step": "step 1/2", "details": {"rows": Decimal(7), "ok": True}}))
    aws["ddb"].put_item(TableName="jobs", Item={k: _serialize(v) for k, v in {
        "pk": f"JOB#{job_id}", "sk": "RUN#0001", "job_id": job_id, "attempt": 1, "status": "running",
        "started_at": started}.items()})

    shown = get_job(client, job_id)
    assert (shown["status"], shown["progress"]["details"]) == ("running", {"rows": 7, "ok": True})
    runs = client.http.get(f"/jobs/{job_id}/runs", headers=auth()).json_body["runs"]
    assert [(r["attempt"], r["status"], r["started_at"]) for r in runs] == [(1, "running", started)]

    _send_first_version_message(aws, job_id, 1)
    drain(app, aws)
    job = get_job(client, job_id)
    assert (job["status"], job["attempts"]) == ("completed", 2)
    runs = client.http.get(f"/jobs/{job_id}/runs", headers=auth()).json_body["runs"]
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "failed"), (2, "completed")]
    assert runs[0]["started_at"] == started and runs[0]["error"]["code"] == "worker_lost"


def test_a_rolled_back_version_runs_a_job_and_an_event_a_newer_one_wrote(app, client, aws, tap, stream):
    """CloudFormation rolls a failed update back by itself, so the code reading the tables and
    queues can be older than what is in them: a job item and an event carrying fields this
    version does not know are read, run and handled as this version knows them."""
    from tests.functional.conftest import LambdaContext, sqs_event
    from tests.functional.test_api import run_worker, submit
    from tests.functional.test_events import publish_stream

    job_id = str(uuid.uuid4())
    _put(aws, _first_version_item(job_id, lease_owner="w-1", progress={"percent": Decimal(0), "eta_s": Decimal(3)}))
    _send_first_version_message(aws, job_id, 1)
    assert get_job(client, job_id)["status"] == "queued"
    drain(app, aws)
    assert get_job(client, job_id)["status"] == "completed"

    job = submit(client, {"type": "demo.steps", "scope": "p-1", "payload": {"steps": 1, "step_ms": 0}})
    run_worker(client, aws)
    publish_stream(client._app, stream)
    (completed,) = [e for e in tap() if e["detail-type"] == "job.status.changed"
                    and e["detail"]["job_id"] == job["id"] and e["detail"]["status"] == "completed"]
    newer = {**completed, "detail": {**completed["detail"], "eta_s": 0}}
    handler = client._app.handler_map["cache_invalidation"]
    message = {"MessageId": str(uuid.uuid4()), "Body": json.dumps(newer), "ReceiptHandle": "rh"}
    assert handler(sqs_event([message]), LambdaContext(60)) == {"batchItemFailures": []}


def test_an_idempotency_key_an_earlier_version_stored_answers_its_request_sent_again(client, aws):
    """A key's record as versions before the request-as-taken hash wrote it (its request's hash
    as sent alone, no `taken_hash`), its job an earlier version's: the request sent again as it
    was answers that job for the key's day after a deploy, not 409; another request is 409."""
    job_id = str(uuid.uuid4())
    _put(aws, _first_version_item(job_id))
    aws["ddb"].put_item(TableName="idempotency", Item={
        "id": {"S": "submit#acme#order-1"}, "tenant": {"S": "acme"}, "job_id": {"S": job_id},
        # {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0}, "priority": "normal"}, as sent
        "request_hash": {"S": "d0849aabf71da357b3321f6a7e8cb5bd192223e6671044f36406248a5d04a973"},
        "expiration": {"N": str(int(datetime.now(timezone.utc).timestamp()) + 3600)}})
    body = {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0}, "priority": "normal"}
    keyed = auth(**{"Idempotency-Key": "order-1"})
    again = client.http.post("/jobs", headers=keyed, body=json.dumps(body))
    assert (again.status_code, again.json_body["id"]) == (202, job_id), again.body
    other = client.http.post("/jobs", headers=keyed, body=json.dumps({**body, "priority": "high"}))
    assert other.status_code == 409 and other.json_body["error"]["code"] == "idempotency_conflict"
