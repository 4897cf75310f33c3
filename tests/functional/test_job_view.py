"""The job as GET /jobs/{id}, the listing and the batch status read show it: a running job
says when its current attempt started, so a duration counts that attempt, not the ones before
it and the waits between them."""
import json
from datetime import timedelta

from chalicelib import composition
from chalicelib.domain.job import JobErrorInfo, isoformat, utcnow
from chalicelib.lifecycle.transitions import start_message
from tests.functional.conftest import auth
from tests.functional.test_api import submit


def views(client, job_id: str) -> dict[str, dict]:
    """The job as each of the three native reads shows it."""
    one = client.http.get(f"/jobs/{job_id}", headers=auth())
    listing = client.http.get("/jobs?limit=5", headers=auth())
    batch = client.http.post("/jobs/status", headers=auth(), body=json.dumps({"job_ids": [job_id]}))
    assert one.status_code == listing.status_code == batch.status_code == 200
    listed = next(j for j in listing.json_body["jobs"] if j["id"] == job_id)
    return {"GET /jobs/{id}": one.json_body, "GET /jobs": listed, "POST /jobs/status": batch.json_body["jobs"][job_id]}


def attempt_starts(client, job_id: str) -> set:
    return {view["attempt_started_at"] for view in views(client, job_id).values()}


def test_a_running_job_shows_its_current_attempts_start_and_no_other_does(client, aws):
    job = submit(client)
    lifecycle = composition.container().lifecycle
    first = utcnow()
    now = [first]
    lifecycle.clock = lambda: now[0]
    assert attempt_starts(client, job["id"]) == {None}  # queued: no attempt runs

    claimed = lifecycle.claim(start_message(lifecycle.get("acme", job["id"]), 1)).job
    assert attempt_starts(client, job["id"]) == {isoformat(first)}

    now[0] = first + timedelta(seconds=20)
    retrying = lifecycle.fail_attempt(claimed, JobErrorInfo(code="boom", message="boom"), retryable=True)
    assert retrying.status.value == "retrying"
    assert attempt_starts(client, job["id"]) == {None}  # waiting for its next attempt runs nothing

    third_start = first + timedelta(minutes=5)
    now[0] = third_start
    again = lifecycle.claim(start_message(retrying, 2)).job
    assert again.status.value == "running" and again.attempts == 2
    shown = views(client, job["id"])
    for read, view in shown.items():
        assert view["attempt_started_at"] == isoformat(third_start), read
        assert view["started_at"] == isoformat(first), read  # the first attempt's, as before

    now[0] = third_start + timedelta(seconds=3)
    lifecycle.complete(again, {"ok": True})
    assert attempt_starts(client, job["id"]) == {None}  # finished: its runs say when each ran


def test_the_tag_of_a_running_job_changes_when_its_next_attempt_starts(client, aws):
    """A new attempt's start is a write: a poll holding the tag of the attempt before is
    answered the new start, never a 304."""
    job = submit(client)
    lifecycle = composition.container().lifecycle
    claimed = lifecycle.claim(start_message(lifecycle.get("acme", job["id"]), 1)).job
    tag = client.http.get(f"/jobs/{job['id']}", headers=auth()).headers["ETag"]
    lifecycle.retry_base_s = 0
    retrying = lifecycle.fail_attempt(claimed, JobErrorInfo(code="boom", message="boom"), retryable=True)
    lifecycle.claim(start_message(retrying, 2))
    again = client.http.get(f"/jobs/{job['id']}", headers=auth(**{"If-None-Match": tag}))
    assert again.status_code == 200
    assert again.json_body["attempts"] == 2 and again.json_body["attempt_started_at"] is not None


def test_the_openapi_description_names_the_attempts_start(client):
    job = client.http.get("/openapi.json").json_body["components"]["schemas"]["Job"]
    assert "attempt_started_at" in job["required"]
    assert "running" in job["properties"]["attempt_started_at"]["description"]
