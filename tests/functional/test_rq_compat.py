"""rq-engine compatible polling routes, on the real DynamoDB adapter (moto)."""
import json

import pytest

from tests.functional.conftest import auth, invoke_worker, receive_all, sqs_event
from tests.functional.test_api import get, post, run_worker, submit

STEPS = {"type": "demo.steps", "payload": {"steps": 3, "step_ms": 0}}


def test_queued_job_reads_as_queued_with_no_times(client, aws):
    job = submit(client)
    response = get(client, f"/api/jobstatus/{job['id']}")
    assert response.status_code == 200
    assert response.json_body == {
        "id": job["id"], "runid": None, "status": "queued", "started_at": None, "ended_at": None, "elapsed_s": None,
    }
    assert response.headers["ETag"].startswith('W/"')


def test_finished_job_info_carries_result_progress_and_times(client, aws):
    job = submit(client, dict(STEPS, scope="project-7"))
    run_worker(client, aws)
    info = get(client, f"/api/jobinfo/{job['id']}").json_body
    native = get(client, f"/jobs/{job['id']}").json_body
    assert info["id"] == job["id"] and info["status"] == "finished"
    assert info["result"] == {"steps": 3, "attempt": 1} and info["exc_info"] is None
    assert info["started_at"] == native["started_at"] and info["ended_at"] == native["finished_at"]
    assert isinstance(info["elapsed_s"], float) and info["elapsed_s"] >= 0
    assert info["description"] == "demo.steps(project-7)" and info["children"] == {}
    assert info["runid"] == "project-7"
    assert info["progress"] == native["progress"] and info["progress"]["percent"] == 100
    status = get(client, f"/api/jobstatus/{job['id']}").json_body
    assert status["status"] == "finished" and status["ended_at"] == info["ended_at"]
    assert "result" not in status


def test_failed_job_reports_its_error_as_exc_info(client, aws):
    job = submit(client, {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0, "fail_at": 1, "fail_mode": "fatal"}})
    run_worker(client, aws)
    info = get(client, f"/api/jobinfo/{job['id']}").json_body
    assert info["status"] == "failed" and info["ended_at"] and info["result"] is None
    assert info["exc_info"] == "demo_failure: failing at step 1 of 2 as asked"


def test_retrying_job_reads_as_queued(client, aws):
    job = submit(client, {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0, "fail_at": 1}})
    invoke_worker(client._app, sqs_event(receive_all(aws)))
    assert get(client, f"/jobs/{job['id']}").json_body["status"] == "retrying"
    status = get(client, f"/api/jobstatus/{job['id']}").json_body
    assert status["status"] == "queued" and status["ended_at"] is None and status["started_at"]


def test_canceled_job_reads_as_canceled(client, aws):
    job = submit(client)
    client.http.delete(f"/jobs/{job['id']}", headers=auth())
    assert get(client, f"/api/jobinfo/{job['id']}").json_body["status"] == "canceled"


@pytest.mark.parametrize("path", ["/api/jobstatus/{id}", "/api/jobinfo/{id}"])
def test_unknown_implausible_and_foreign_ids_are_not_found(client, aws, path):
    job = submit(client)
    for job_id, tenant in ((job["id"], "globex"), ("00000000-0000-0000-0000-000000000000", "acme"), ("a" * 128, "acme")):
        response = get(client, path.format(id=job_id), tenant=tenant)
        assert response.status_code == 200
        assert response.json_body == {"id": job_id, "status": "not_found"}


@pytest.mark.parametrize("path", ["/api/jobstatus/{id}", "/api/jobinfo/{id}"])
def test_an_id_past_the_longest_is_not_found_echoed_only_up_to_it(client, aws, path):
    """The batch routes refuse an id past MAX_JOB_ID_CHARS; the single-id rq routes answered a
    5,000-character one not_found with all of it echoed back. No job has such an id: it is
    not_found like any unknown one, its first 128 characters and an ellipsis shown."""
    from chalicelib.defaults import MAX_JOB_ID_CHARS

    response = get(client, path.format(id="a" * 5000))
    assert response.status_code == 200
    assert response.json_body == {"id": "a" * MAX_JOB_ID_CHARS + "…", "status": "not_found"}
    assert len(response.body) < 300 and response.headers["ETag"]


@pytest.mark.parametrize("path", ["/api/jobstatus/x", "/api/jobinfo/x"])
def test_rq_routes_need_a_token(client, path):
    response = client.http.get(path)
    assert response.status_code == 401 and response.json_body["error"]["code"] == "unauthorized"
    batch = client.http.post("/api/jobinfo", body=json.dumps(["x"]))
    assert batch.status_code == 401


def test_batch_jobinfo_keeps_request_order_and_marks_missing(client, aws):
    a, b = submit(client)["id"], submit(client)["id"]
    foreign = submit(client, **{"Authorization": auth("globex")["Authorization"]})["id"]
    body = post(client, "/api/jobinfo", {"job_ids": [b, "missing", a, b, foreign]}).json_body
    assert body["job_ids"] == [b, "missing", a, foreign]
    assert list(body["jobs"]) == [b, "missing", a, foreign]
    assert body["jobs"][a]["status"] == "queued" and body["jobs"][a]["description"] == "demo.steps"
    assert body["jobs"]["missing"] == {"id": "missing", "status": "not_found"}
    assert body["jobs"][foreign] == {"id": foreign, "status": "not_found"}


def test_batch_jobinfo_accepts_what_rq_clients_send(client, aws):
    a, b = submit(client)["id"], submit(client)["id"]
    for raw in (json.dumps([a, b]), json.dumps(f"{a}, {b}"), json.dumps({"jobs": [a, b]}), json.dumps({"x": a, "y": b})):
        body = post(client, "/api/jobinfo", None, raw=raw).json_body
        assert body["job_ids"] == [a, b], raw
    from_query = client.http.post(f"/api/jobinfo?job_ids={a},{b}", headers=auth(), body="")
    assert from_query.json_body["job_ids"] == [a, b]
    form_body = client.http.post(f"/api/jobinfo?job_id={b}", headers=auth(), body="job_id=whatever")
    assert form_body.json_body["job_ids"] == [b]
    repeated = client.http.post(f"/api/jobinfo?job_id={a}&job_id={b}", headers=auth(), body="")
    assert repeated.json_body["job_ids"] == [a, b] and set(repeated.json_body["jobs"]) == {a, b}


@pytest.mark.parametrize("raw", ["", "[]", "{}", '{"job_ids": []}', "{not json"])
def test_batch_jobinfo_naming_no_job_answers_no_jobs_as_rq_engine_does(client, aws, raw):
    """rq-engine answers 200 {"jobs": {}, "job_ids": []} when a body (JSON or not) and the
    query name no job: its pollers send that while they have nothing to watch."""
    response = post(client, "/api/jobinfo", None, raw=raw)
    assert response.status_code == 200 and response.json_body == {"jobs": {}, "job_ids": []}
    # Tagged as every rq answer is (and as GET /openapi.json declares): a poller holding the tag
    # of its empty answer gets a 304 until it names a job.
    assert response.headers["Cache-Control"] == "private, no-cache" and response.headers["ETag"].startswith('W/"')
    again = client.http.post("/api/jobinfo", headers=auth(**{"If-None-Match": response.headers["ETag"]}), body=raw)
    assert again.status_code == 304 and again.headers["ETag"] == response.headers["ETag"]


def test_batch_jobinfo_refuses_more_ids_than_a_batch_takes(client, aws):
    response = post(client, "/api/jobinfo", None, raw=json.dumps([f"id-{i}" for i in range(101)]))
    assert response.status_code == 400 and response.json_body["error"]["code"] == "invalid_request"
    assert "at most 100" in response.json_body["error"]["message"]


@pytest.mark.parametrize("path", ["/api/jobinfo", "/jobs/status"])
def test_a_batch_of_the_most_ids_each_of_the_longest_is_answered(client, aws, path):
    """The bounds are inclusive: MAX_BATCH_IDS ids of MAX_JOB_ID_CHARS characters are answered
    (each not found here); one id more, or one character more, is refused, its `details`
    saying the bound, and for a long id which one (cut to the bound: the refusal echoes no
    more of it than an answer would)."""
    from chalicelib.defaults import MAX_BATCH_IDS, MAX_JOB_ID_CHARS

    ids = [f"{i:03d}".ljust(MAX_JOB_ID_CHARS, "a") for i in range(MAX_BATCH_IDS)]
    response = post(client, path, {"job_ids": ids})
    assert response.status_code == 200, response.body
    assert response.json_body["jobs"] == {i: {"id": i, "status": "not_found"} for i in ids}
    for refused, details in (([*ids, "one-more"], {"limit": MAX_BATCH_IDS}),
                             ([*ids[1:], ids[0] + "a"], {"job_id": ids[0] + "…", "limit": MAX_JOB_ID_CHARS})):
        response = post(client, path, {"job_ids": refused})
        assert (response.status_code, response.json_body["error"]["code"]) == (400, "invalid_request")
        assert response.json_body["error"]["details"] == details


@pytest.mark.parametrize("raw, code", [("", "invalid_request"), ("{not json", "invalid_json")])
def test_the_native_batch_still_refuses_a_request_naming_no_job(client, aws, raw, code):
    response = post(client, "/jobs/status", None, raw=raw)
    assert response.status_code == 400 and response.json_body["error"]["code"] == code
    if code == "invalid_request":  # the refusal says what to send
        assert response.json_body["error"]["message"] == 'no job ids given; send {"job_ids": ["..."]}'


def test_unexpected_error_answers_rq_engine_500_shape(client, aws, monkeypatch):
    """A record the code cannot read (here a status no version of jobpipe writes) is an internal
    error when read alone, answered in the shape rq-engine's clients expect; a batch leaves it
    out (not_found) and answers the jobs beside it. A batch whose read fails unexpectedly is
    answered in the same 500 shape."""
    from chalicelib.composition import container

    job, other = submit(client), submit(client)
    aws["ddb"].update_item(
        TableName="jobs",
        Key={"pk": {"S": f"JOB#{job['id']}"}, "sk": {"S": "JOB"}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "mangled"}},
    )
    batch = post(client, "/api/jobinfo", [job["id"], other["id"]])
    assert batch.status_code == 200
    assert batch.json_body["jobs"][job["id"]]["status"] == "not_found"
    assert batch.json_body["jobs"][other["id"]]["status"] == "queued"

    store = container().store
    monkeypatch.setattr(store, "get_many", lambda ids, **_: (_ for _ in ()).throw(RuntimeError("mangled")))
    for response, raised in ((get(client, f"/api/jobinfo/{job['id']}"), "ValidationError"),
                             (post(client, "/api/jobinfo", [other["id"]]), "RuntimeError")):
        assert response.status_code == 500
        body = response.json_body
        assert body["Success"] is False and body["Error"]
        assert isinstance(body["StackTrace"], list) and body["StackTrace"][0].startswith(raised)
        assert "mangled" not in response.body.decode()  # the exception's text holds stored values
    native = get(client, f"/jobs/{job['id']}")
    assert native.status_code == 500 and native.json_body["error"]["code"] == "internal_error"


def test_a_parents_jobinfo_nests_its_children_for_its_tenant(client, aws):
    """The children are read for the caller's tenant (the parent's): each is shown nested, the
    single and the batch route alike; another tenant gets the parent as not found."""
    parent = submit(client, {"type": "demo.fanout", "payload": {"children": 2, "steps": 1, "step_ms": 0}})
    run_worker(client, aws)
    children = get(client, f"/jobs/{parent['id']}").json_body["children"]
    assert len(children) == 2
    single = get(client, f"/api/jobinfo/{parent['id']}").json_body
    batch = post(client, "/api/jobinfo", {"job_ids": [parent["id"]]}).json_body["jobs"][parent["id"]]
    for info in (single, batch):
        assert info["status"] == "finished"
        assert {order: [c["id"] for c in nested] for order, nested in info["children"].items()} \
            == {"0": [children[0]], "1": [children[1]]}
        assert all(nested[0]["status"] == "finished" for nested in info["children"].values())
    assert get(client, f"/api/jobinfo/{parent['id']}", tenant="globex").json_body \
        == {"id": parent["id"], "status": "not_found"}


@pytest.mark.parametrize("path", ["/api/jobinfo", "/jobs/status"])
def test_a_body_with_an_empty_ids_key_reads_the_ids_of_the_query(client, aws, path):
    """As rq-engine reads a request: the query's ids when the body names none, `{"job_ids": []}`
    as much as `{}` (which was read so already)."""
    job = submit(client)
    for raw in ('{"job_ids": []}', "{}"):
        response = client.http.post(f"{path}?job_id={job['id']}", headers=auth(), body=raw)
        assert response.status_code == 200, (raw, response.body)
        assert response.json_body["job_ids"] == [job["id"]], raw


def test_a_result_past_64_kib_is_whole_in_a_jobinfo_and_a_claim_check_in_a_batch_or_as_a_child(client, aws):
    """rq-engine answered every jobinfo with the job's result. jobpipe keeps a result past
    64 KiB in S3: `GET /api/jobinfo/{id}` reads it back whole, while `POST /api/jobinfo` and the
    `children` nested in a jobinfo show `{"claim_check": {"bytes": n}}` in its place, as
    docs/migrating.md tells an rq-engine poller."""
    from pydantic import BaseModel

    from chalicelib.job_types import registry

    class Empty(BaseModel):
        pass

    @registry.register("test.large_child", Empty, max_attempts=1, timeout_s=30)
    def large_child(ctx, payload):
        return {"child": ctx.spawn("demo.outputs", {"result_bytes": 70_000})}

    try:
        large = submit(client, {"type": "demo.outputs", "payload": {"result_bytes": 70_000}})
        parent = submit(client, {"type": "test.large_child", "payload": {}})
        run_worker(client, aws)
    finally:
        registry._types.pop("test.large_child")
    whole = {"text": "r" * 70_000, "pad_bytes": 0}
    assert get(client, f"/api/jobinfo/{large['id']}").json_body["result"] == whole
    batch = post(client, "/api/jobinfo", {"job_ids": [large["id"]]}).json_body["jobs"][large["id"]]
    assert batch["status"] == "finished" and set(batch["result"]) == {"claim_check"}
    assert batch["result"]["claim_check"]["bytes"] > 70_000
    (child,) = get(client, f"/api/jobinfo/{parent['id']}").json_body["children"]["0"]
    assert child["status"] == "finished" and set(child["result"]) == {"claim_check"}
    assert get(client, f"/api/jobinfo/{child['id']}").json_body["result"] == whole


def test_a_parents_tag_follows_its_childrens_writes(client, aws):
    """A parent's rq answers show its children (its jobstatus is theirs too), so their tag
    follows the children's writes: a poller holding the tag it got while the children were
    queued is answered them finished, never a 304, the parent's own record unchanged since."""
    parent = submit(client, {"type": "demo.fanout", "payload": {"children": 2, "steps": 1, "step_ms": 0}})
    invoke_worker(client._app, sqs_event(receive_all(aws)))  # the parent runs and spawns its children
    reads = [("GET", f"/api/jobstatus/{parent['id']}", None), ("GET", f"/api/jobinfo/{parent['id']}", None),
             ("POST", "/api/jobinfo", json.dumps([parent["id"]]))]
    held = [client.http.request(method, path, headers=auth(), body=body or b"") for method, path, body in reads]
    assert held[0].json_body["status"] == "queued"
    run_worker(client, aws)
    for (method, path, body), before in zip(reads, held):
        after = client.http.request(method, path, headers=auth(**{"If-None-Match": before.headers["ETag"]}),
                                    body=body or b"")
        assert after.status_code == 200 and after.headers["ETag"] != before.headers["ETag"], path
    assert get(client, f"/api/jobstatus/{parent['id']}").json_body["status"] == "finished"


def test_a_parents_jobstatus_past_the_jobs_a_poll_reads_never_reads_finished(client, aws, monkeypatch):
    """A tree larger than MAX_TREE_JOBS is read in part: all it read has finished, but the rest
    may still run, so the parent's jobstatus reads started, with no end. Its jobinfo shows the
    job's own status: finished."""
    from chalicelib import job_reads

    parent = submit(client, {"type": "demo.fanout", "payload": {"children": 3, "steps": 1, "step_ms": 0}})
    run_worker(client, aws)
    assert get(client, f"/api/jobstatus/{parent['id']}").json_body["status"] == "finished"
    monkeypatch.setattr(job_reads, "MAX_TREE_JOBS", 2)
    status = get(client, f"/api/jobstatus/{parent['id']}").json_body
    assert (status["status"], status["ended_at"]) == ("started", None)
    assert get(client, f"/api/jobinfo/{parent['id']}").json_body["status"] == "finished"


def test_a_result_that_leaves_a_jobinfo_no_room_is_a_claim_check_there_and_whole_in_the_job(client, aws):
    """A result may take a job's own answer up to MAX_ANSWER_BYTES. A jobinfo keeps 64 KiB of
    that for its children and rq-engine's fields, so such a result is `{"claim_check"}` in
    `GET /api/jobinfo/{id}` (an answer within what Lambda returns, never a failure), and whole in
    `GET /jobs/{id}`."""
    from pydantic import BaseModel

    from chalicelib.api.polling import ANSWER_JOBS_BYTES
    from chalicelib.defaults import MAX_ANSWER_BYTES
    from chalicelib.job_types import registry

    class Empty(BaseModel):
        pass

    characters = 850_000  # each "é" takes 7 bytes as answered: 5.95 MB, between the two bounds
    assert ANSWER_JOBS_BYTES < 7 * characters < MAX_ANSWER_BYTES - 10_000

    @registry.register("test.large_result", Empty, max_attempts=1, timeout_s=30)
    def large_result(ctx, payload):
        return {"text": "é" * characters}

    try:
        job = submit(client, {"type": "test.large_result", "payload": {}})
        run_worker(client, aws)
    finally:
        registry._types.pop("test.large_result")
    own = get(client, f"/jobs/{job['id']}")
    assert own.status_code == 200 and own.json_body["result"] == {"text": "é" * characters}
    info = get(client, f"/api/jobinfo/{job['id']}")
    assert info.status_code == 200 and info.json_body["status"] == "finished"
    assert set(info.json_body["result"]) == {"claim_check"}
    assert len(json.dumps(json.dumps(info.json_body))) < MAX_ANSWER_BYTES
