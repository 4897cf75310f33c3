"""Another tenant's job is answered exactly as a missing one, and none of its data is read on the
caller's behalf, even where its claim-checked payload lives in S3 (Chalice test client on moto)."""
from __future__ import annotations

import json

import pytest

from tests.functional.conftest import auth

MISSING = "00000000-0000-0000-0000-000000000000"
# A payload over the 64 KiB inline limit: the job store claim-checks it to S3 (jobs/<id>/payload.json).
LARGE = {"type": "demo.outputs", "payload": {"pad": "x" * (70 * 1024)}}


def _submit(client, body, tenant="acme"):
    response = client.http.post("/jobs", headers=auth(tenant), body=json.dumps(body))
    assert response.status_code == 202, response.body
    return response.json_body


@pytest.fixture
def foreign_claim_checked_job(client, aws):
    """acme's job whose payload lives in S3, and whose object is gone while its record is still
    there: a purge that deleted the objects (it deletes them first) and stopped before the items,
    or the bucket's lifecycle. Its owner gets the job with the payload named in `gone`."""
    job = _submit(client, LARGE)
    key = f"jobs/{job['id']}/payload.json"
    aws["s3"].head_object(Bucket="jobs-bucket", Key=key)  # claim-checked, as intended
    aws["s3"].delete_object(Bucket="jobs-bucket", Key=key)
    return job


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/jobs/{id}"),
        ("GET", "/jobs/{id}/runs"),
        ("DELETE", "/jobs/{id}"),
        ("GET", "/jobs/{id}/artifacts"),
        ("GET", "/jobs/{id}/artifacts/summary.txt"),
    ],
)
def test_a_foreign_job_whose_s3_object_is_gone_answers_like_a_missing_one(
        client, aws, foreign_claim_checked_job, method, path):
    """The store loads a job's claim-checked payload (and result) from S3 before the lifecycle
    compares tenants, so globex asking for acme's job would get acme's job with its payload
    gone, not the 404 job_not_found every missing job gets: an existence oracle across tenants."""
    job_id = foreign_claim_checked_job["id"]
    foreign = client.http.request(method, path.format(id=job_id), headers=auth("globex"))
    missing = client.http.request(method, path.format(id=MISSING), headers=auth("globex"))
    assert missing.status_code == 404 and missing.json_body["error"]["code"] == "job_not_found"
    assert (foreign.status_code, foreign.json_body["error"]["code"]) == (404, "job_not_found"), foreign.body


@pytest.mark.parametrize("path", ["/api/jobstatus/{id}", "/api/jobinfo/{id}"])
def test_a_foreign_job_whose_s3_object_is_gone_is_not_found_on_the_rq_routes(
        client, aws, foreign_claim_checked_job, path):
    """The rq routes promise `{"id", "status": "not_found"}` for unknown and foreign ids alike,
    whatever became of a foreign job's objects."""
    job_id = foreign_claim_checked_job["id"]
    response = client.http.get(path.format(id=job_id), headers=auth("globex"))
    assert response.status_code == 200, response.body
    assert response.json_body == {"id": job_id, "status": "not_found"}


def test_reading_a_foreign_job_does_not_read_its_payload_from_s3(client, aws):
    """Even with the object in place, globex's GET of acme's job id downloads acme's payload
    object from S3 before refusing: a read of another tenant's data on globex's request (and a
    timing difference between foreign and missing ids)."""
    from chalicelib import composition

    job = _submit(client, LARGE)
    reads = []
    blobs = composition.container().blobs
    blobs._s3.meta.events.register(
        "before-call.s3.GetObject", lambda params, **_: reads.append(params["url_path"]))
    response = client.http.get(f"/jobs/{job['id']}", headers=auth("globex"))
    assert response.status_code == 404
    assert reads == [], f"globex's request read acme's objects: {reads}"


@pytest.fixture
def owned_claim_checked_job(app, client, aws):
    """acme's completed job whose payload and result live in S3, with inline artifacts."""
    from tests.functional.conftest import drain

    job = _submit(client, {"type": "demo.outputs", "payload": {"pad": "x" * (70 * 1024), "result_bytes": 70 * 1024}})
    drain(app, aws)
    done = client.http.get(f"/jobs/{job['id']}", headers=auth()).json_body
    assert done["status"] == "completed", done
    for name in ("payload.json", "result-0001.json"):  # claim-checked, as intended
        aws["s3"].head_object(Bucket="jobs-bucket", Key=f"jobs/{job['id']}/{name}")
    return done


OWNER_RECORD_READS = ["/jobs/{id}/runs", "/jobs/{id}/artifacts", "/jobs/{id}/artifacts/summary.txt",
                      "/api/jobstatus/{id}"]


@pytest.mark.parametrize("path", OWNER_RECORD_READS)
def test_the_owners_reads_of_what_is_not_the_payload_or_result_read_no_object(
        client, owned_claim_checked_job, path):
    """Runs, artifacts and an rq status show nothing of the payload or result: checking whose
    job it is reads its record, not its objects in S3 (one request each, on every call)."""
    from chalicelib import composition

    reads = []
    composition.container().blobs._s3.meta.events.register(
        "before-call.s3.GetObject", lambda params, **_: reads.append(params["url_path"]))
    response = client.http.get(path.format(id=owned_claim_checked_job["id"]), headers=auth())
    assert response.status_code == 200, response.body
    assert reads == [], f"{path} read {reads}"


def test_the_owner_lists_runs_and_artifacts_of_a_job_whose_objects_are_gone(client, aws, owned_claim_checked_job):
    """The job's payload and result are gone from S3 (a purge stopped between objects and
    items, the bucket's lifecycle): GET /jobs/{id} shows the job as recorded with both named
    in `gone`, and what never showed them (runs, artifacts, an rq status) still answers."""
    job_id = owned_claim_checked_job["id"]
    for name in ("payload.json", "result-0001.json"):
        aws["s3"].delete_object(Bucket="jobs-bucket", Key=f"jobs/{job_id}/{name}")
    whole = client.http.get(f"/jobs/{job_id}", headers=auth())
    assert whole.status_code == 200, whole.body
    assert (whole.json_body["status"], whole.json_body["gone"]) == ("completed", ["payload", "result"])
    runs = client.http.get(f"/jobs/{job_id}/runs", headers=auth())
    assert runs.status_code == 200, runs.body
    assert [(r["attempt"], r["status"]) for r in runs.json_body["runs"]] == [(1, "completed")]
    listed = client.http.get(f"/jobs/{job_id}/artifacts", headers=auth())
    assert listed.status_code == 200, listed.body
    assert [a["name"] for a in listed.json_body["artifacts"]] == ["numbers.json", "summary.txt"]
    summary = client.http.get(f"/jobs/{job_id}/artifacts/summary.txt", headers=auth())
    assert summary.status_code == 200 and summary.body.decode().startswith(f"job {job_id}")
    status = client.http.get(f"/api/jobstatus/{job_id}", headers=auth())
    assert status.status_code == 200 and status.json_body["status"] == "finished", status.body


def test_a_child_id_naming_another_tenants_job_shows_nothing_of_it(client, aws):
    """A job's children are read for the caller's tenant only: a parent whose record names
    another tenant's job among its children (an item written by hand, or a bug elsewhere) shows
    that child as null on the rq routes, as a gone one, and none of its data."""
    from chalicelib.adapters.dynamodb import DynamoJobStore
    from chalicelib.domain.job import Job
    from chalicelib.domain.status import JobStatus

    store = DynamoJobStore(aws["ddb"], "jobs")
    done = {"status": JobStatus.COMPLETED, "started_at": "2026-01-01T00:00:01.000Z",
            "finished_at": "2026-01-01T00:00:02.000Z", "created_at": "2026-01-01T00:00:00.000Z"}
    own, foreign, parent = (f"00000000-0000-4000-8000-{i:012d}" for i in (1, 2, 3))
    store.create(Job(id=own, type="demo.steps", tenant="acme", user="ann", **done))
    store.create(Job(id=foreign, type="demo.steps", tenant="globex", user="bob", result={"secret": "globex-7f3e"},
                     **{**done, "status": JobStatus.RUNNING, "finished_at": None}))
    store.create(Job(id=parent, type="demo.fanout", tenant="acme", user="ann", children=[own, foreign], **done))
    single = client.http.get(f"/api/jobinfo/{parent}", headers=auth()).json_body
    batch = client.http.post("/api/jobinfo", headers=auth(), body=json.dumps({"job_ids": [parent]})).json_body
    for info in (single, batch["jobs"][parent]):
        assert info["children"]["0"][0]["id"] == own and info["children"]["1"] == [None], info
    status = client.http.get(f"/api/jobstatus/{parent}", headers=auth())
    assert status.json_body["status"] == "finished", status.json_body  # the foreign child's run does not count
    for body in (status.body, json.dumps(single), json.dumps(batch)):
        assert "globex" not in str(body) and "bob" not in str(body)


@pytest.mark.parametrize("path", ["/jobs/status", "/api/jobinfo"])
def test_a_batch_naming_foreign_jobs_reads_nothing_of_them_into_jobs(client, aws, monkeypatch, path):
    """A batch poll's BatchGetItem hands back another tenant's items with the caller's (a job's
    key carries no tenant): each is dropped on its `tenant` before it is read into a job, as a
    single GET drops it, so nothing of it (its inline payload, result and progress parsed) is
    worked on for the caller, and a foreign id costs what a missing one does."""
    from chalicelib.adapters import dynamodb_reads

    own = _submit(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}, tenant="globex")
    foreign = [_submit(client, {"type": "demo.outputs", "payload": {"pad": "x" * 1000}})["id"] for _ in range(3)]
    read = []
    real = dynamodb_reads.item_to_job

    def spied(item, *args, **kwargs):
        read.append(item["pk"]["S"].removeprefix("JOB#"))
        return real(item, *args, **kwargs)

    monkeypatch.setattr(dynamodb_reads, "item_to_job", spied)
    response = client.http.post(path, headers=auth("globex"), body=json.dumps({"job_ids": [own["id"], *foreign]}))
    assert response.status_code == 200, response.body
    assert [response.json_body["jobs"][i]["status"] for i in foreign] == ["not_found"] * 3
    assert set(read) == {own["id"]}, f"globex's batch read acme's items into jobs: {set(read) - {own['id']}}"
