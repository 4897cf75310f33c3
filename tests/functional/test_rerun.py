"""POST /jobs/{id}/rerun on moto: a finished job run again as a new job (202 and its body, as
POST /jobs answers), the original left as it ended, each refusal a stable code writing nothing,
and the Idempotency-Key, quota and tenant isolation as on POST /jobs."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib import composition
from chalicelib.defaults import QUOTA_RECHECK_S
from chalicelib.ports import JobMessage
from tests.functional.conftest import auth, get_job, job_items, job_objects, receive_all, submit_job
from tests.functional.test_operations import _feed_stream

STEPS = {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0}, "priority": "high", "scope": "run-7"}


def rerun(client, job_id, body=None, tenant="acme", user="ann", **headers):
    return client.http.post(f"/jobs/{job_id}/rerun", headers=auth(tenant, user, **headers),
                            body=json.dumps(body) if body is not None else "")


def finished(client, body=STEPS):
    """A job submitted and canceled before it ran: finished, its record as it ended."""
    job = submit_job(client, body)
    canceled = client.http.delete(f"/jobs/{job['id']}", headers=auth())
    assert canceled.status_code == 202 and canceled.json_body["status"] == "canceled"
    return canceled.json_body


def test_a_finished_job_runs_again_as_a_new_job_answered_as_post_jobs_answers(client, aws):
    original = finished(client)
    receive_all(aws, "high_url")  # the original's message
    items_before = job_items(aws, original["id"])
    response = rerun(client, original["id"], user="bob")
    assert response.status_code == 202, response.body
    again = response.json_body
    assert again["id"] != original["id"] and again["status"] == "queued" and again["attempts"] == 0
    assert {k: again[k] for k in ("type", "payload", "priority", "scope", "tenant")} == {
        k: original[k] for k in ("type", "payload", "priority", "scope", "tenant")}
    assert again["rerun_of"] == original["id"] and again["user"] == "bob" and again["parent_id"] is None
    assert set(again) == set(submit_job(client, STEPS))  # the body POST /jobs answers
    assert get_job(client, again["id"]) == again
    (message,) = [m for m in receive_all(aws, "high_url") if again["id"] in m["Body"]]
    assert job_items(aws, original["id"]) == items_before  # the original is not written
    assert get_job(client, original["id"])["rerun_of"] is None
    listed = {j["id"]: j for j in client.http.get("/jobs", headers=auth()).json_body["jobs"]}
    assert listed[again["id"]]["rerun_of"] == original["id"]
    batch = client.http.post("/jobs/status", headers=auth(), body=json.dumps({"job_ids": [again["id"]]}))
    assert batch.json_body["jobs"][again["id"]]["rerun_of"] == original["id"]


def test_a_rerun_starts_when_its_body_says(client):
    original = finished(client)
    at = datetime.now(timezone.utc) + timedelta(days=2)
    held = rerun(client, original["id"], {"run_at": at.isoformat()})
    assert held.status_code == 202, held.body
    assert held.json_body["not_before"].startswith(at.strftime("%Y-%m-%dT%H:%M"))
    for body, problem in (({"delay_seconds": -1}, "delay_seconds"), ({"type": "demo.sleep"}, "type"),
                          ({"delay_seconds": 5, "run_at": at.isoformat()}, "either run_at or delay_seconds")):
        refused = rerun(client, original["id"], body)
        assert refused.status_code == 400 and refused.json_body["error"]["code"] == "invalid_request", body
        assert problem in json.dumps(refused.json_body), refused.body


def test_a_payload_kept_in_s3_is_read_back_and_one_whose_object_is_gone_is_410(client, aws):
    pad = "p" * 100_000  # past the record's 64 KiB: the payload is kept in the bucket
    original = finished(client, {"type": "demo.outputs", "payload": {"pad": pad}})
    again = rerun(client, original["id"])
    assert again.status_code == 202, again.body
    assert again.json_body["payload"]["pad"] == pad and again.json_body["rerun_of"] == original["id"]
    assert job_objects(aws, again.json_body["id"]) == [f"jobs/{again.json_body['id']}/payload.json"]

    gone = finished(client, {"type": "demo.outputs", "payload": {"pad": pad}})
    aws["s3"].delete_object(Bucket="jobs-bucket", Key=f"jobs/{gone['id']}/payload.json")
    listed = client.http.get("/jobs", headers=auth()).json_body["jobs"]
    refused = rerun(client, gone["id"])
    assert refused.status_code == 410 and refused.json_body["error"]["code"] == "blob_not_found"
    assert f"the payload of job {gone['id']} is gone" in refused.json_body["error"]["message"]
    assert client.http.get("/jobs", headers=auth()).json_body["jobs"] == listed


@pytest.mark.parametrize("advance", ["queued", "running"])
def test_an_unfinished_job_is_refused_409_and_nothing_is_written(client, aws, advance):
    job = submit_job(client, STEPS)
    if advance == "running":
        composition.container().lifecycle.claim(JobMessage(job["id"], 1))
    listed = client.http.get("/jobs", headers=auth()).json_body["jobs"]
    refused = rerun(client, job["id"])
    assert refused.status_code == 409
    assert refused.json_body["error"]["code"] == "job_not_finished"
    assert f"job {job['id']} is {advance}" in refused.json_body["error"]["message"]
    assert refused.json_body["error"]["details"] == {"status": advance}
    assert client.http.get("/jobs", headers=auth()).json_body["jobs"] == listed


def test_an_unknown_job_or_another_tenants_is_404_as_get_answers(client):
    original = finished(client)
    for tenant, job_id in (("globex", original["id"]), ("acme", "no-such-job"), ("acme", "bad id!")):
        refused = rerun(client, job_id, tenant=tenant)
        assert refused.status_code == 404 and refused.json_body["error"]["code"] == "job_not_found"
        assert refused.json_body == client.http.get(f"/jobs/{job_id}", headers=auth(tenant)).json_body
    assert client.http.get("/jobs", headers=auth("globex")).json_body["jobs"] == []


def test_a_keyed_rerun_answers_its_job_again_and_a_key_names_one_request(client, aws):
    original = finished(client)
    first = rerun(client, original["id"], **{"Idempotency-Key": "again-1"})
    assert first.status_code == 202, first.body
    again = rerun(client, original["id"], **{"Idempotency-Key": "again-1"})
    assert again.status_code == 202 and again.json_body == first.json_body
    conflict = rerun(client, original["id"], {"delay_seconds": 5}, **{"Idempotency-Key": "again-1"})
    assert conflict.status_code == 409 and conflict.json_body["error"]["code"] == "idempotency_conflict"
    posted = client.http.post("/jobs", headers=auth(**{"Idempotency-Key": "again-1"}), body=json.dumps(STEPS))
    assert posted.status_code == 409 and posted.json_body["error"]["code"] == "idempotency_conflict"
    reruns = [j for j in client.http.get("/jobs", headers=auth()).json_body["jobs"] if j["rerun_of"]]
    assert [j["id"] for j in reruns] == [first.json_body["id"]]


def test_quota_refuses_a_rerun_429(client, aws, monkeypatch):
    monkeypatch.setenv("JOBPIPE_TENANT_MAX_UNFINISHED_JOBS", "1")
    composition.use(None)
    original = finished(client)
    time.sleep(QUOTA_RECHECK_S)  # admitting it counted the index: its end is seen at the next count
    submit_job(client, STEPS)  # the one unfinished job acme may have
    _feed_stream(client._app, aws)
    refused = rerun(client, original["id"])
    assert refused.status_code == 429 and refused.json_body["error"]["code"] == "quota_exceeded"
    assert int(refused.headers["Retry-After"]) > 0
    assert not [j for j in client.http.get("/jobs", headers=auth()).json_body["jobs"] if j["rerun_of"]]


def test_another_jobs_rerun_under_a_used_key_is_not_told_its_body_differs(client, aws):
    """The same (empty) body, another job: 'used with a different request body' sent the reader
    looking for a body difference that is not there."""
    one, other = finished(client), finished(client)
    assert rerun(client, one["id"], **{"Idempotency-Key": "nightly"}).status_code == 202
    conflict = rerun(client, other["id"], **{"Idempotency-Key": "nightly"})
    assert conflict.status_code == 409
    message = conflict.json_body["error"]["message"]
    assert "rerun of another job" in message and "body" != message.rsplit(" ", 1)[-1]


def test_a_keyed_rerun_repeated_once_both_payload_objects_are_gone_answers_its_job_as_get_shows_it(client, aws):
    """The original's payload object and the rerun's are both gone (a bucket rule): the repeated
    keyed rerun still answers the job its key made, as GET /jobs/{id} shows it (its payload
    named in `gone`), not 410 for an object the answer does not need."""
    pad = "p" * 100_000  # past the record's 64 KiB: both payloads are kept in the bucket
    original = finished(client, {"type": "demo.outputs", "payload": {"pad": pad}})
    first = rerun(client, original["id"], **{"Idempotency-Key": "again-2"})
    assert first.status_code == 202, first.body
    made = first.json_body["id"]
    for job_id in (original["id"], made):
        aws["s3"].delete_object(Bucket="jobs-bucket", Key=f"jobs/{job_id}/payload.json")
    again = rerun(client, original["id"], **{"Idempotency-Key": "again-2"})
    assert again.status_code == 202, again.body
    assert again.json_body == get_job(client, made)
    assert again.json_body["gone"] == ["payload"] and again.json_body["rerun_of"] == original["id"]
