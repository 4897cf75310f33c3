"""A job partly removed (a purge cut off midway, an object gone, a key that outlived its job):
every route answers what is true of it, a clear 4xx or the job, never a 5xx or a 410 for a
job the clean-up is removing."""
from __future__ import annotations

import json

import pytest

from chalicelib import composition
from chalicelib.adapters.retention import DynamoFinishedJobs
from chalicelib.domain.errors import StoreUnavailableError
from tests.functional.conftest import LambdaContext, auth, drain, job_items, job_objects
from tests.support.aws_calls import recorded_calls

OUTPUTS = {"type": "demo.outputs", "payload": {"artifact_bytes": 70 * 1024, "result_bytes": 70 * 1024}}
LARGE = {"type": "demo.outputs", "payload": {"pad": "x" * (70 * 1024)}}  # its payload claim-checked


class _ItemsKept:
    """The stack's DynamoDB client, whose batch writes are refused: a purge cut off after the
    job's objects went, before its items did."""

    def __init__(self, client) -> None:
        self._client = client

    def batch_write_item(self, **request):
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "cut off"}}, "BatchWriteItem")

    def __getattr__(self, name):
        return getattr(self._client, name)


def _finished_job(client, app, aws, headers=None) -> str:
    response = client.http.post("/jobs", headers=headers or auth(), body=json.dumps(OUTPUTS))
    assert response.status_code == 202, response.body
    drain(app, aws)
    return response.json_body["id"]


def _purge_cut_off(job_id: str) -> None:
    services = composition.container()
    cut_off = DynamoFinishedJobs(_ItemsKept(services.finished_jobs._ddb), services.finished_jobs._table,
                                 services.blobs)
    with pytest.raises(StoreUnavailableError):
        cut_off.purge(job_id)


def test_a_job_whose_purge_was_cut_off_is_not_found_on_every_route_until_a_repeat_ends_it(app, client, aws):
    job_id = _finished_job(client, app, aws)
    assert len(job_objects(aws, job_id)) == 2  # its result and its artifact
    _purge_cut_off(job_id)
    assert job_objects(aws, job_id) == [] and any(i["sk"]["S"] == "JOB" for i in job_items(aws, job_id))

    for method, path in (("get", f"/jobs/{job_id}"), ("delete", f"/jobs/{job_id}"),
                         ("get", f"/jobs/{job_id}/runs"), ("get", f"/jobs/{job_id}/artifacts")):
        answer = getattr(client.http, method)(path, headers=auth())
        assert answer.status_code == 404 and answer.json_body["error"]["code"] == "job_not_found", (path, answer.body)
    for path in (f"/api/jobinfo/{job_id}", f"/api/jobstatus/{job_id}"):
        answer = client.http.get(path, headers=auth())
        assert answer.status_code == 200 and answer.json_body == {"id": job_id, "status": "not_found"}, path
    batch = client.http.post("/jobs/status", headers=auth(), body=json.dumps({"job_ids": [job_id]}))
    assert batch.json_body["jobs"][job_id] == {"id": job_id, "status": "not_found"}
    assert client.http.get("/jobs", headers=auth()).json_body["jobs"] == []

    composition.container().finished_jobs.purge(job_id)  # the clean-up's next run finds it and ends it
    assert job_items(aws, job_id) == [] and job_objects(aws, job_id) == []


def test_cancelling_a_finished_job_whose_result_object_is_gone_is_409_job_finished(app, client, aws):
    """The cancel decides on the record: a finished job is 409 whatever became of its objects."""
    job_id = _finished_job(client, app, aws)
    aws["s3"].delete_object(Bucket="jobs-bucket", Key=f"jobs/{job_id}/result-0001.json")
    answer = client.http.delete(f"/jobs/{job_id}", headers=auth())
    assert answer.status_code == 409, answer.body
    assert answer.json_body["error"] == {"code": "job_finished", "message": f"job {job_id} is already completed",
                                         "details": {"status": "completed"}}


def _gone(aws, job_id: str, *names: str) -> None:
    for name in names:
        aws["s3"].delete_object(Bucket="jobs-bucket", Key=f"jobs/{job_id}/{name}")


def test_a_finished_job_whose_result_object_is_gone_reads_as_recorded_with_its_result_gone(app, client, aws):
    """Its status, times, error and attempts stay readable: `result` is null and `gone` names
    it on every route that shows the result; the rq routes answer rq's own shape for a result
    that expired (`result: null`). Listings never read the object: they show the placeholder."""
    job_id = _finished_job(client, app, aws)
    before = client.http.get(f"/jobs/{job_id}", headers=auth()).json_body
    assert "gone" not in before and before["result"] is not None
    _gone(aws, job_id, "result-0001.json")

    answer = client.http.get(f"/jobs/{job_id}", headers=auth())
    assert answer.status_code == 200, answer.body
    job = answer.json_body
    assert (job["result"], job["gone"]) == (None, ["result"])
    assert {k: v for k, v in job.items() if k not in ("result", "gone")} == \
        {k: v for k, v in before.items() if k != "result"}
    info = client.http.get(f"/api/jobinfo/{job_id}", headers=auth())
    assert info.status_code == 200, info.body
    assert (info.json_body["status"], info.json_body["result"]) == ("finished", None)
    assert "gone" not in info.json_body  # rq's shape: an expired result is null
    batch = client.http.post("/api/jobinfo", headers=auth(), body=json.dumps([job_id])).json_body
    assert batch["jobs"][job_id]["status"] == "finished"
    status = client.http.post("/jobs/status", headers=auth(), body=json.dumps([job_id])).json_body["jobs"][job_id]
    assert status["status"] == "completed" and set(status["result"]) == {"claim_check"}
    [listed] = client.http.get("/jobs", headers=auth()).json_body["jobs"]
    assert listed["id"] == job_id and set(listed["result"]) == {"claim_check"}


def test_a_poll_holding_the_tag_of_a_result_since_gone_gets_the_answer_not_a_304(app, client, aws):
    """No write bumps the version when an object goes, yet the answer changes: every route that
    shows the result answers the change to the tag read before, then 304s on the new tag."""
    job_id = _finished_job(client, app, aws)
    paths = (f"/jobs/{job_id}", f"/api/jobinfo/{job_id}")
    tags = {path: client.http.get(path, headers=auth()).headers["ETag"] for path in paths}
    _gone(aws, job_id, "result-0001.json")

    for path in paths:
        answer = client.http.get(path, headers=auth(**{"If-None-Match": tags[path]}))
        assert answer.status_code == 200 and answer.json_body["result"] is None, (path, answer.status_code)
        again = client.http.get(path, headers=auth(**{"If-None-Match": answer.headers["ETag"]}))
        assert again.status_code == 304, path


def test_a_job_whose_payload_object_is_gone_shows_it_null_and_still_cancels(app, client, aws):
    """A queued job: GET shows `payload: null`, `gone: ["payload"]`; its cancel writes and
    answers the canceled job the same way, not a 410 for the object it does not need."""
    response = client.http.post("/jobs", headers=auth(),
                                body=json.dumps(LARGE))
    job_id = response.json_body["id"]
    _gone(aws, job_id, "payload.json")
    job = client.http.get(f"/jobs/{job_id}", headers=auth()).json_body
    assert (job["status"], job["payload"], job["gone"]) == ("queued", None, ["payload"])
    canceled = client.http.delete(f"/jobs/{job_id}", headers=auth())
    assert canceled.status_code == 202, canceled.body
    assert (canceled.json_body["status"], canceled.json_body["gone"]) == ("canceled", ["payload"])
    assert client.http.get(f"/jobs/{job_id}", headers=auth()).json_body["status"] == "canceled"


def test_cancelling_a_running_job_whose_payload_object_is_gone_answers_the_saved_request(app, client, aws):
    """The request is written on the record; its answer reads the object back, which is gone:
    the answer is the job with `cancel_requested`, never a 410 after the write landed."""
    from chalicelib.ports import JobMessage

    response = client.http.post("/jobs", headers=auth(),
                                body=json.dumps(LARGE))
    job_id = response.json_body["id"]
    assert composition.container().lifecycle.claim(JobMessage(job_id, 1)).job.status.value == "running"
    _gone(aws, job_id, "payload.json")
    answer = client.http.delete(f"/jobs/{job_id}", headers=auth())
    assert answer.status_code == 202, answer.body
    assert (answer.json_body["status"], answer.json_body["cancel_requested"]) == ("running", True)
    assert (answer.json_body["payload"], answer.json_body["gone"]) == (None, ["payload"])
    assert composition.container().store.get(job_id, fetch=(), mark_gone=False).cancel_requested


def test_a_keyed_replay_of_a_job_whose_objects_are_gone_answers_the_job_as_recorded(app, client, aws):
    """The key's job is still recorded: the replay answers it as GET /jobs/{id} does (its gone
    objects named), 202, nothing made or run again."""
    headers = auth(**{"Idempotency-Key": "nightly-42"})
    first = client.http.post("/jobs", headers=headers, body=json.dumps(OUTPUTS))
    assert first.status_code == 202, first.body
    job_id = first.json_body["id"]
    drain(app, aws)
    _gone(aws, job_id, "result-0001.json")
    again = client.http.post("/jobs", headers=headers, body=json.dumps(OUTPUTS))
    assert again.status_code == 202, again.body
    assert again.json_body == client.http.get(f"/jobs/{job_id}", headers=auth()).json_body
    assert (again.json_body["status"], again.json_body["gone"]) == ("completed", ["result"])
    assert len(client.http.get("/jobs", headers=auth()).json_body["jobs"]) == 1


@pytest.fixture
def stream(client, aws):
    from tests.support.stream import StreamRecorder

    return StreamRecorder(composition.container().store._ddb, aws["ddb"], "jobs")


def _deliver(app, aws, messages: list[dict]) -> dict:
    from tests.functional.conftest import invoke_worker, sqs_event

    return invoke_worker(app, sqs_event(messages, "arn:aws:sqs:us-east-1:123456789012:jobs-normal"))


@pytest.mark.parametrize("keyed", [False, True], ids=["submitted", "keyed"])
def test_a_queued_job_whose_payload_object_is_gone_fails_at_once_payload_gone(app, client, aws, tap, stream, keyed):
    """The worker claims it, finds the payload gone and fails it for good: `payload_gone`, no
    retry, its letter on the DLQ, its failed event published, the delivery a success (its
    message deleted), where it failed delivery after delivery until its lease ended."""
    from tests.functional.conftest import receive_all, receive_all_peek

    headers = auth(**{"Idempotency-Key": "nightly-43"}) if keyed else auth()
    job_id = client.http.post("/jobs", headers=headers, body=json.dumps(LARGE)).json_body["id"]
    _gone(aws, job_id, "payload.json")
    assert _deliver(app, aws, receive_all(aws)) == {"batchItemFailures": []}

    job = client.http.get(f"/jobs/{job_id}", headers=auth()).json_body
    assert (job["status"], job["attempts"], job["error"]["code"], job["gone"]) == \
        ("failed", 1, "payload_gone", ["payload"])
    assert receive_all_peek(aws, "jobs_url") == 0  # no next attempt sent
    [letter] = receive_all(aws, "dlq_url")
    assert {k: v for k, v in json.loads(letter["Body"]).items() if k != "reason"} == \
        {"job_id": job_id, "attempt": 1}
    assert json.loads(letter["Body"])["reason"] == job["error"]
    assert app.handler_map["event_publisher"]({"Records": stream.records},
                                              LambdaContext(60)) == {"batchItemFailures": []}
    status = [e["detail"] for e in tap() if e["detail-type"] == "job.status.changed"]
    assert [(d["previous_status"], d["status"]) for d in status] == \
        [(None, "queued"), ("queued", "running"), ("running", "failed")]
    assert status[-1]["error"]["code"] == "payload_gone"


def test_a_duplicate_of_a_completed_job_whose_result_object_is_gone_is_acknowledged(app, client, aws):
    """Its claim is refused on the record, which reads as completed: acknowledged, not failed on
    each delivery until the redrive policy parks it 10 receives (about 75 minutes) later."""
    job_id = _finished_job(client, app, aws)
    _gone(aws, job_id, "result-0001.json")
    body = json.dumps({"job_id": job_id, "attempt": 1, "tenant": "acme", "timeout_s": 120})
    assert _deliver(app, aws, [{"Body": body}]) == {"batchItemFailures": []}
    assert client.http.get(f"/jobs/{job_id}", headers=auth()).json_body["status"] == "completed"


def test_a_jobs_runs_are_answered_without_reading_its_objects(app, client, aws):
    """GET /jobs/{id}/runs shows neither the payload nor the result: it reads no object in S3,
    so one that is gone is no concern of it, and it pays for none."""
    job_id = _finished_job(client, app, aws)
    aws["s3"].delete_object(Bucket="jobs-bucket", Key=f"jobs/{job_id}/result-0001.json")
    sent = recorded_calls(composition.container().blobs._s3)
    answer = client.http.get(f"/jobs/{job_id}/runs", headers=auth())
    assert answer.status_code == 200 and [r["status"] for r in answer.json_body["runs"]] == ["completed"]
    assert sent == []
