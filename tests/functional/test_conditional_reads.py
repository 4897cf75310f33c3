"""Status reads carry ETags and answer 304 to a matching If-None-Match; polling reads are
eventually consistent GetItems, one BatchGetItem per batch."""
import json

import pytest

from chalicelib import composition
from chalicelib.adapters.dynamodb_items import job_key
from tests.functional.conftest import auth
from tests.functional.test_api import submit
from tests.support.aws_calls import recorded_calls


def read(client, method, path, body=None, tenant="acme", etag=None):
    headers = auth(tenant, **({"If-None-Match": etag} if etag else {}))
    if method == "GET":
        return client.http.get(path, headers=headers)
    return client.http.post(path, headers=headers, body=json.dumps(body))


def reads(job_id):
    return [
        ("GET", f"/jobs/{job_id}", None),
        ("GET", "/jobs?limit=5", None),  # a listing: the jobs it shows and where it goes on
        ("POST", "/jobs/status", {"job_ids": [job_id, "missing"]}),
        ("GET", f"/api/jobstatus/{job_id}", None),
        ("GET", f"/api/jobinfo/{job_id}", None),
        ("POST", "/api/jobinfo", [job_id, "missing"]),
    ]


def test_every_status_read_revalidates_to_304_until_the_job_changes(client, aws):
    job = submit(client)
    tags = {}
    for method, path, body in reads(job["id"]):
        first = read(client, method, path, body)
        assert first.status_code == 200, path
        tag = first.headers["ETag"]
        assert first.headers["Cache-Control"] == "private, no-cache"
        again = read(client, method, path, body, etag=tag)
        assert again.status_code == 304 and again.body in (b"", ""), path
        assert again.headers["ETag"] == tag
        tags[path] = tag
    assert len(set(tags.values())) == len(tags)  # each answer shape has its own tag
    client.http.delete(f"/jobs/{job['id']}", headers=auth())
    for method, path, body in reads(job["id"]):
        changed = read(client, method, path, body, etag=tags[path])
        assert changed.status_code == 200 and changed.headers["ETag"] != tags[path], path


def test_progress_changes_the_tag(client, aws):
    """A progress write alone (the job running before and after) changes every read's tag: a
    poller holding the tag of the job at 10 % is answered the job at 60 %, not a 304."""
    from chalicelib.domain.status import JobStatus
    from chalicelib.ports import JobMessage

    submitted = submit(client, {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0}})
    lifecycle = composition.container().lifecycle
    job = lifecycle.store.get(submitted["id"], mark_gone=False)
    running = lifecycle.claim(JobMessage(job.id, 1, tenant=job.tenant, timeout_s=job.timeout_s)).job
    running = lifecycle.report_progress(running, 10, step="rows")
    tags = {path: read(client, method, path, body).headers["ETag"] for method, path, body in reads(job.id)}
    lifecycle.report_progress(running, 60, step="rows")
    for method, path, body in reads(job.id):
        after = read(client, method, path, body, etag=tags[path])
        assert after.status_code == 200 and after.headers["ETag"] != tags[path], path
    shown = read(client, "GET", f"/jobs/{job.id}").json_body
    assert (shown["status"], shown["progress"]["percent"]) == (JobStatus.RUNNING.value, 60)


def test_if_none_match_lists_star_and_strong_forms(client, aws):
    job = submit(client)
    path = f"/jobs/{job['id']}"
    tag = read(client, "GET", path).headers["ETag"]
    strong = tag[2:]
    for header in (f'"nope", {tag}', strong, "*"):
        assert read(client, "GET", path, etag=header).status_code == 304, header
    assert read(client, "GET", path, etag='"nope"').status_code == 200


def test_batch_tag_depends_on_the_ids_and_their_order(client, aws):
    a, b = submit(client)["id"], submit(client)["id"]
    ab = read(client, "POST", "/jobs/status", [a, b]).headers["ETag"]
    ba = read(client, "POST", "/jobs/status", [b, a]).headers["ETag"]
    assert ab != ba
    assert read(client, "POST", "/jobs/status", [b, a], etag=ab).status_code == 200


def test_foreign_job_tags_like_a_missing_one(client, aws):
    """Another tenant's tag of a job is the tag of an id not found: it does not follow the
    job's writes (which would tell that it exists, and when it changes)."""
    job = submit(client)
    foreign = read(client, "POST", "/jobs/status", {"job_ids": [job["id"]]}, tenant="globex")
    own = read(client, "POST", "/jobs/status", {"job_ids": [job["id"]]})
    assert foreign.headers["ETag"] != own.headers["ETag"]
    assert client.http.delete(f"/jobs/{job['id']}", headers=auth()).status_code == 202  # a write: version + 1
    after = read(client, "POST", "/jobs/status", {"job_ids": [job["id"]]}, tenant="globex", etag=foreign.headers["ETag"])
    assert after.status_code == 304 and after.headers["ETag"] == foreign.headers["ETag"]
    changed = read(client, "POST", "/jobs/status", {"job_ids": [job["id"]]}, etag=own.headers["ETag"])
    assert changed.status_code == 200 and changed.json_body["jobs"][job["id"]]["status"] == "canceled"


def test_a_404_carries_no_tag(client, aws):
    response = read(client, "GET", "/jobs/00000000-0000-0000-0000-000000000000", etag="*")
    assert response.status_code == 404 and "ETag" not in response.headers


@pytest.fixture
def dynamodb_calls(client, aws):
    """Every DynamoDB call the API makes, with its parameters, as botocore sends it."""
    return recorded_calls(composition.container().store._ddb)


def test_polling_reads_are_single_eventually_consistent_reads(client, aws, dynamodb_calls):
    a, b = submit(client)["id"], submit(client)["id"]
    for path in (f"/jobs/{a}", f"/api/jobstatus/{a}", f"/api/jobinfo/{a}"):
        dynamodb_calls.clear()
        read(client, "GET", path)
        assert [(name, params.get("ConsistentRead")) for name, params in dynamodb_calls] == [("GetItem", False)], path
    for path in ("/jobs/status", "/api/jobinfo"):
        dynamodb_calls.clear()
        read(client, "POST", path, [a, b])
        assert [name for name, _ in dynamodb_calls] == ["BatchGetItem"], path


def test_a_poll_that_misses_reads_again_consistently_before_it_answers_not_found(client, aws, dynamodb_calls):
    """A job just submitted may not be on the replica an eventually consistent read asks: a
    miss is read once more, consistently, the job or the batch's missing ids alone."""
    a, missing = submit(client)["id"], "00000000-0000-4000-8000-000000000000"
    for path in (f"/jobs/{missing}", f"/api/jobstatus/{missing}", f"/api/jobinfo/{missing}"):
        dynamodb_calls.clear()
        assert read(client, "GET", path).status_code in (200, 404)
        assert [(name, params.get("ConsistentRead")) for name, params in dynamodb_calls] == [
            ("GetItem", False), ("GetItem", True)], path
    for path in ("/jobs/status", "/api/jobinfo"):
        dynamodb_calls.clear()
        read(client, "POST", path, [a, missing])
        (first, second) = [params["RequestItems"]["jobs"] for name, params in dynamodb_calls if name == "BatchGetItem"]
        assert "ConsistentRead" not in first and len(first["Keys"]) == 2
        assert second["ConsistentRead"] is True and second["Keys"] == [job_key(missing)]


def test_cancel_still_reads_consistently(client, aws, dynamodb_calls):
    job = submit(client)
    dynamodb_calls.clear()
    client.http.delete(f"/jobs/{job['id']}", headers=auth())
    gets = [params for name, params in dynamodb_calls if name == "GetItem"]
    assert gets and all(params["ConsistentRead"] is True for params in gets)


def test_a_listing_s_tag_changes_with_a_new_job_and_with_its_next_page(client, aws):
    """The dashboard re-reads the first page every 10 s: a 304 while it is unchanged, a 200 once
    a job is added to it (or one it shows changes), or the page comes to have a next page."""
    submit(client)
    tag = read(client, "GET", "/jobs?limit=2").headers["ETag"]
    assert read(client, "GET", "/jobs?limit=2", etag=tag).status_code == 304
    submit(client)
    grown = read(client, "GET", "/jobs?limit=2", etag=tag)
    assert grown.status_code == 200 and len(grown.json_body["jobs"]) == 2 and grown.json_body["next_cursor"] is None
    tag = grown.headers["ETag"]
    newest = submit(client)
    full = read(client, "GET", "/jobs?limit=2", etag=tag)
    assert full.status_code == 200 and full.json_body["next_cursor"] and full.headers["ETag"] != tag
    client.http.delete(f"/jobs/{newest['id']}", headers=auth())
    assert read(client, "GET", "/jobs?limit=2", etag=full.headers["ETag"]).status_code == 200


def test_a_listing_reads_its_jobs_eventually_consistent(client, aws, dynamodb_calls):
    """A listing's index is eventually consistent, so its page's jobs are read the same way, at
    half a consistent read's cost, in one BatchGetItem after the index's Query."""
    submit(client)
    dynamodb_calls.clear()
    assert read(client, "GET", "/jobs?limit=5").status_code == 200
    assert [(name, params.get("RequestItems", {}).get("jobs", {}).get("ConsistentRead")) for name, params in
            dynamodb_calls] == [("Query", None), ("BatchGetItem", None)]


def test_the_due_page_reads_its_jobs_eventually_consistent(client, aws, dynamodb_calls):
    """The by_due index is eventually consistent too: the reconciler's page of due jobs is read
    like a listing's, in one BatchGetItem at half a consistent read's cost."""
    job = submit(client)
    dynamodb_calls.clear()
    assert [j.id for j in composition.container().store.due("2999-01-01T00:00:00.000Z", 10).jobs] == [job["id"]]
    assert [params["RequestItems"]["jobs"].get("ConsistentRead") for name, params in dynamodb_calls
            if name == "BatchGetItem"] == [None]


def test_a_jobs_runs_are_read_consistently(client, aws, dynamodb_calls):
    """The run of an attempt that just ended is written with its job's end: a read of the job's
    runs after it must show it, so their Query is strongly consistent."""
    job = submit(client)
    dynamodb_calls.clear()
    assert read(client, "GET", f"/jobs/{job['id']}/runs").status_code == 200
    assert [params.get("ConsistentRead") for name, params in dynamodb_calls if name == "Query"] == [True]


def test_a_listing_page_whose_next_page_went_is_read_again_though_its_jobs_stayed(client, aws):
    """A page's tag names where the listing goes on as well as its jobs: once the job past the
    page is removed (the clean-up), the page shows the same jobs and no next page, and a 304
    would leave the dashboard offering a page that is gone."""
    oldest = submit(client)
    submit(client)
    submit(client)
    first = read(client, "GET", "/jobs?limit=2")
    assert first.json_body["next_cursor"]
    composition.container().finished_jobs.purge(oldest["id"])
    again = read(client, "GET", "/jobs?limit=2", etag=first.headers["ETag"])
    assert again.status_code == 200 and again.json_body["next_cursor"] is None
    assert [j["id"] for j in again.json_body["jobs"]] == [j["id"] for j in first.json_body["jobs"]]
