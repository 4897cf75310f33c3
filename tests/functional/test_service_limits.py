"""Inputs that reach a service's own limit, on moto: each ends in a clear answer (a refusal at
submit, or a job that fails with a named error), never a record DynamoDB can no longer write,
a job stranded `running`, or a message retried for good."""
from __future__ import annotations

import json
import uuid

import pytest
from moto.dynamodb.models import table as moto_table
from pydantic import BaseModel

from chalicelib.defaults import MAX_ANSWER_BYTES, MAX_CHILDREN, SPAWN_ANSWER_ROOM_BYTES
from chalicelib.domain.job import answer_bytes
from chalicelib.job_types import registry
from chalicelib.worker.helpers import complete_job, fail_job
from tests.functional.conftest import auth, drain, receive_all
from tests.functional.conftest import get_job as get
from tests.functional.conftest import submit_job as submit


class Pad(BaseModel):
    pad: str = ""
    spawn: int = 0


@pytest.fixture
def limit_types():
    names = []

    def add(name, handler, **policy):
        registry.register(name, Pad, **policy)(handler)
        names.append(name)

    def fan_out(ctx, payload):
        ctx.progress(50, step="spawn", details={"pad": "d" * (31 * 1024)})
        spawned = [ctx.spawn("limits.leaf", {}) for _ in range(payload.spawn)]
        return {"spawned": spawned, "pad": "r" * (63 * 1024)}

    add("limits.fan_out", fan_out, max_attempts=3, timeout_s=30)
    add("limits.leaf", lambda ctx, payload: "ok", max_attempts=1, timeout_s=30)
    add("limits.wide", lambda ctx, payload: [ctx.spawn("limits.leaf", {}) for _ in range(payload.spawn)],
        max_attempts=3, timeout_s=30)
    add("limits.big_result", lambda ctx, payload: {"text": "é" * 950_000}, max_attempts=3, timeout_s=30)

    def echo_after_progress(ctx, payload):
        ctx.progress(50, force=True)
        return {"echo": ctx.job.payload["pad"]}

    add("limits.echo_after_progress", echo_after_progress, max_attempts=3, timeout_s=30)

    def result_with_long_final_message(ctx, payload):
        # Each part fits an answer alone; together, the final message's 7 bytes per é pass it.
        return complete_job(ctx, {"text": "x" * 5_200_000}, payload.pad or "é" * 150_000)

    add("limits.long_final_message", result_with_long_final_message, max_attempts=3, timeout_s=30)

    def result_after_a_coalesced_report(ctx, payload):
        ctx.progress(50, message="é" * 150_000)  # inside the window: written by the completion
        return {"text": "x" * 5_200_000}

    add("limits.coalesced_long_message", result_after_a_coalesced_report, max_attempts=3, timeout_s=30)

    def fail_with_a_long_message(ctx, payload):
        fail_job(ctx, "too_hard", "é" * 150_000, progress_percent=40)  # 7 bytes a character in an answer

    add("limits.long_failure_message", fail_with_a_long_message, max_attempts=3, timeout_s=30)

    def raise_a_long_error(ctx, payload):
        raise RuntimeError("é" * 5_000)  # the error keeps its first 2,000 characters: 14,000 bytes in an answer

    add("limits.long_error", raise_a_long_error, max_attempts=1, timeout_s=30)
    yield
    for name in names:
        registry._types.pop(name)


def _list_children(aws, job_id: str, count: int) -> None:
    """The job lists `count` children already (as spawned by its earlier attempts)."""
    aws["ddb"].update_item(
        TableName="jobs", Key={"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "JOB"}},
        UpdateExpression="SET children = :c",
        ExpressionAttributeValues={":c": {"L": [{"S": str(uuid.uuid4())} for _ in range(count)]}},
    )


def test_a_parent_at_the_children_bound_still_has_room_to_complete(client, app, aws, limit_types):
    """docs/jobs.md: a job lists at most MAX_CHILDREN children. At the bound its record still
takes a payload and a result at the inline limit and progress details at theirs."""
    parent = submit(client, {"type": "limits.fan_out", "payload": {"pad": "p" * (63 * 1024)}})
    _list_children(aws, parent["id"], MAX_CHILDREN)
    drain(app, aws)
    done = get(client, parent["id"])
    assert done["status"] == "completed", done.get("error")
    assert len(done["children"]) == MAX_CHILDREN and len(done["result"]["pad"]) == 63 * 1024


def test_a_spawn_past_the_children_bound_fails_the_job_by_name(client, app, aws, limit_types):
    """A parent whose record cannot list one more child fails `too_many_children` at the spawn,
without retrying (its list only grows) and without making the child: before, the child was
made, its listing refused as a store outage, and the attempt retried, each retry making
another unlisted child, until the record had no room for the failure either and the job stayed
`running` while its message came back for good."""
    parent = submit(client, {"type": "limits.fan_out", "payload": {"spawn": 3}})
    _list_children(aws, parent["id"], MAX_CHILDREN - 1)
    drain(app, aws)
    failed = get(client, parent["id"])
    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == "too_many_children" and str(MAX_CHILDREN) in failed["error"]["message"]
    assert failed["attempts"] == 1 and len(failed["children"]) == MAX_CHILDREN
    leaves = [c for c in failed["children"][-1:] if get(client, c).get("type") == "limits.leaf"]
    assert len(leaves) == 1, "the one child within the bound was made and listed"
    assert receive_all(aws) == []


def test_a_spawn_past_what_its_parents_answer_carries_fails_the_job_by_name(client, app, aws, limit_types):
    """A parent's answer lists its children's ids (41 bytes each, about 80 KB at MAX_CHILDREN),
which no check measured: a parent whose payload sat a few KB under the bound spawned past it, and
every GET of it, and every listing page holding it, failed at Lambda's 6 MB (a 502). The spawn
that would pass it fails the job `answer_full`, not retried, its child neither made nor sent, and
the job still answers."""
    bare = submit(client, {"type": "limits.wide", "payload": {"pad": "", "spawn": 100}})
    room = MAX_ANSWER_BYTES - answer_bytes(get(client, bare["id"])) - SPAWN_ANSWER_ROOM_BYTES - 20 * 41
    pad = "é" * (room // 7) + "p" * (room % 7)  # 7 bytes an é in an answer, 6 in the request's body
    parent = submit(client, {"type": "limits.wide", "payload": {"pad": pad, "spawn": 100}})
    client.http.delete(f"/jobs/{bare['id']}", headers=auth())
    drain(app, aws)
    response = client.http.get(f"/jobs/{parent['id']}", headers=auth())
    assert response.status_code == 200
    failed = response.json_body
    assert failed["status"] == "failed" and failed["attempts"] == 1, failed.get("error")
    assert failed["error"]["code"] == "answer_full" and "payload" in failed["error"]["message"]
    assert answer_bytes(failed) <= MAX_ANSWER_BYTES and 10 < len(failed["children"]) < 30
    assert all(get(client, child)["status"] == "completed" for child in failed["children"])
    listed = client.http.get("/jobs?type=limits.wide", headers=auth())
    assert listed.status_code == 200 and parent["id"] in [j["id"] for j in listed.json_body["jobs"]]
    assert answer_bytes(listed.json_body) <= MAX_ANSWER_BYTES
    leaves = client.http.get("/jobs?type=limits.leaf&limit=100", headers=auth()).json_body["jobs"]
    assert sorted(j["id"] for j in leaves) == sorted(failed["children"])  # nothing unlisted was made
    assert receive_all(aws) == []


def test_a_payload_whose_answer_would_pass_lambdas_6_mb_is_refused_at_submit(client, aws):
    """A body within the 5 MiB limit can still make an answer Lambda cannot return: the API's
JSON writes é as \\u00e9 and the proxy response escapes that text again (\\\\u00e9), 7 bytes
for 2. Before, the job was stored and sent and its 202 was lost (API Gateway answered 502),
as was every GET of it; now it is 413 payload_too_large, nothing stored."""
    body = json.dumps({"type": "demo.outputs", "payload": {"pad": "é" * 950_000}}, ensure_ascii=False)
    assert len(body.encode()) < 5 * 1024 * 1024
    response = client.http.post("/jobs", headers=auth(), body=body.encode())
    assert response.status_code == 413, response.body[:300]
    error = response.json_body["error"]
    assert error["code"] == "payload_too_large" and "6 MB" in error["message"], error
    assert receive_all(aws) == []
    assert client.http.get("/jobs", headers=auth()).json_body["jobs"] == []


def test_a_result_no_answer_could_carry_fails_the_job_by_name(client, app, aws, limit_types):
    """docs/data-model.md: a result is bounded by what one GET /jobs/{id} answer carries. Before,
the job completed with it (in S3) and every GET of it failed at Lambda's 6 MB (a 502 the client
takes for an outage); now it fails `result_too_large`, not retried, naming artifacts."""
    job = submit(client, {"type": "limits.big_result", "payload": {}})
    drain(app, aws)
    failed = get(client, job["id"])
    assert failed["status"] == "failed" and failed["attempts"] == 1, failed
    assert failed["error"]["code"] == "result_too_large" and "artifact" in failed["error"]["message"]
    assert answer_bytes(failed) <= MAX_ANSWER_BYTES


def test_a_result_is_bounded_with_the_payload_the_job_was_given_after_a_progress_write(client, app, aws, limit_types):
    """A progress write answers the job with a claim-checked payload as its placeholder (the write
reads no object back). The worker took that answer for the attempt's job: after one report,
ctx.job.payload was {"claim_check": ...}, and a result was bounded beside the placeholder, so a
job whose payload and result no answer could carry together completed, every GET of it past
Lambda's 6 MB. The attempt keeps the payload it was claimed with."""
    small = submit(client, {"type": "limits.echo_after_progress", "payload": {"pad": "p" * (100 * 1024)}})
    large = submit(client, {"type": "limits.echo_after_progress", "payload": {"pad": "p" * 3_100_000}})
    drain(app, aws)
    done = get(client, small["id"])
    assert done["status"] == "completed", done.get("error")
    assert done["result"] == {"echo": "p" * (100 * 1024)}
    failed = get(client, large["id"])
    assert failed["status"] == "failed" and failed["attempts"] == 1, failed.get("error")
    assert failed["error"]["code"] == "result_too_large"


@pytest.mark.parametrize("job_type", ["limits.long_final_message", "limits.coalesced_long_message"])
def test_a_result_is_bounded_with_the_final_progress_the_completion_writes(client, app, aws, limit_types,
                                                                           monkeypatch, job_type):
    """The completion writes its own progress: complete_job's message, else the report the
window still held. The result was bounded beside the progress written before it, so a result
and a final message that no answer could carry together completed, every GET of the job past
Lambda's 6 MB. The job is measured as it would be completed."""
    monkeypatch.setenv("PROGRESS_MIN_INTERVAL_S", "60")  # the report stays in its window
    job = submit(client, {"type": job_type, "payload": {}})
    drain(app, aws)
    response = client.http.get(f"/jobs/{job['id']}", headers=auth())
    failed = response.json_body
    assert failed["status"] == "failed" and failed["attempts"] == 1, failed.get("error")
    assert failed["error"]["code"] == "result_too_large"
    assert answer_bytes(failed) <= MAX_ANSWER_BYTES
    # the error says which part to shrink: here the final message's 1,050,006 bytes, not the result's
    assert "the final progress message 1,050,006" in failed["error"]["message"], failed["error"]["message"]


@pytest.mark.parametrize("pad, cut", [(5_200_000, True), (1_000, False)])
def test_a_failures_message_is_cut_to_what_the_answer_has_room_for(client, app, aws, limit_types, pad, cut):
    """fail_job's message is never refused, and it is written as the failed job's progress: beside
a payload near what one answer carries, a long one made a job no GET (and no listing page holding
it) could return. It is cut, marked "…", to the room the answer leaves it; beside a small payload
it is written whole."""
    job = submit(client, {"type": "limits.long_failure_message", "payload": {"pad": "p" * pad}})
    drain(app, aws)
    failed = get(client, job["id"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "too_hard"
    assert failed["progress"]["percent"] == 40
    assert answer_bytes(failed) <= MAX_ANSWER_BYTES
    message = failed["progress"]["message"]
    if cut:
        assert message.endswith("…") and set(message[:-1]) == {"é"} and 100_000 < len(message) < 150_000
    else:
        assert message == "é" * 150_000
    listed = client.http.get("/jobs?limit=10", headers=auth())
    assert listed.status_code == 200 and [j["id"] for j in listed.json_body["jobs"]] == [job["id"]]


def test_an_error_is_cut_to_what_the_answer_has_room_for(client, app, aws, limit_types):
    """A job submitted with its answer a few KB under the bound, failing with an error of 2,000
non-ASCII characters (14,000 bytes in an answer), is answerable: the error's message is cut,
marked "…", to the room left."""
    bare = submit(client, {"type": "limits.long_error", "payload": {"pad": ""}})
    pad = "é" * ((MAX_ANSWER_BYTES - answer_bytes(get(client, bare["id"])) - 4_000) // 7)  # 7 bytes each
    job = submit(client, {"type": "limits.long_error", "payload": {"pad": pad}})
    drain(app, aws)
    failed = get(client, job["id"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "handler_error"
    assert answer_bytes(failed) <= MAX_ANSWER_BYTES
    assert failed["error"]["message"].endswith("é…")
    whole = get(client, bare["id"])["error"]["message"]
    assert whole.endswith("é") and len(whole) == 2_000


def test_a_page_of_jobs_stays_within_what_one_answer_carries(client, aws, monkeypatch):
    """GET /jobs?limit=100 of jobs with payloads just under the claim-check limit (64 KiB,
kept in the record and shown whole) made an answer past Lambda's 6 MB: a 502 for every
listing of the tenant's jobs. A page now ends before the job that would pass MAX_ANSWER_BYTES,
with a cursor to the rest."""
    # DynamoDB counts a Query's 1 MB in what the index projects (its keys here); moto counts
    # whole items, and so would end the page after 15 of these jobs by itself.
    monkeypatch.setattr(moto_table, "RESULT_SIZE_LIMIT", 64 * 1024 * 1024)
    pad = "x" * (63 * 1024)
    made = [submit(client, {"type": "demo.outputs", "payload": {"pad": pad}})["id"] for _ in range(100)]
    seen, cursor = [], None
    while True:
        response = client.http.get("/jobs?limit=100" + (f"&cursor={cursor}" if cursor else ""), headers=auth())
        assert response.status_code == 200
        page = response.json_body
        assert answer_bytes(page) <= MAX_ANSWER_BYTES and page["jobs"]
        assert all(job["payload"]["pad"] == pad for job in page["jobs"])
        seen += [job["id"] for job in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made) and len(seen) == 100


@pytest.mark.parametrize("route", ["/jobs/status", "/api/jobinfo"])
def test_a_batch_of_100_jobs_stays_within_what_one_answer_carries(client, aws, route):
    """POST /jobs/status (what wait_many polls) and POST /api/jobinfo with 100 ids of jobs whose
payloads (or results) sit just under the 64 KiB kept in the record were answers of 6.5 MB: a 502 at every
poll, which a client takes for an outage. Past MAX_ANSWER_BYTES the jobs after the point are
shown short: payload and result as the claim-check placeholder (as for one kept in S3)."""
    pad = "x" * (63 * 1024)
    made = [submit(client, {"type": "demo.outputs", "payload": {"pad": pad}})["id"] for _ in range(100)]
    for job_id in made:  # rq's jobinfo shows results, not payloads: each holds one as large
        aws["ddb"].update_item(TableName="jobs", Key={"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "JOB"}},
                               UpdateExpression="SET result_json = :r",
                               ExpressionAttributeValues={":r": {"S": json.dumps({"pad": pad})}})
    response = client.http.post(route, headers=auth(), body=json.dumps({"job_ids": made}))
    assert response.status_code == 200
    answer = response.json_body
    assert answer_bytes(answer) <= MAX_ANSWER_BYTES
    assert answer["job_ids"] == made and set(answer["jobs"]) == set(made)
    assert all(answer["jobs"][i]["status"] == "queued" for i in made)
    if route == "/jobs/status":
        shown = [answer["jobs"][i]["payload"] for i in made]
        assert shown[0]["pad"] == pad
        assert shown[-1] == {"claim_check": {"bytes": len(json.dumps({"artifact_bytes": 0, "result_bytes": 0,
                                                                        "pad": pad}, separators=(",", ":")))}}


@pytest.mark.parametrize("route", ["/jobs/status", "/api/jobinfo"])
def test_a_batch_of_overlong_ids_is_refused_not_echoed(client, aws, route):
    """A batch answer echoes each id three times (a key of `jobs`, the entry's `id`, `job_ids`):
100 ids of 50,000 characters, a body within the 5 MiB limit, made an answer of 15 MB, past
what Lambda returns. No job id is longer than 128 characters: such an id is a 400 naming it."""
    ids = [f"{i:03d}" + "x" * 49_997 for i in range(100)]
    response = client.http.post(route, headers=auth(), body=json.dumps({"job_ids": ids}))
    assert response.status_code == 400, (response.status_code, answer_bytes(response.json_body))
    error = response.json_body["error"]
    assert error["code"] == "invalid_request" and "128" in error["message"]
    assert answer_bytes(response.json_body) < 2048
    fine = client.http.post(route, headers=auth(), body=json.dumps({"job_ids": ["x" * 128]}))
    assert fine.status_code == 200 and fine.json_body["jobs"]["x" * 128]["status"] == "not_found"


def test_every_run_of_a_job_with_many_attempts_is_listed(aws):
    """A job's runs are one Query, and a Query answers at most 1 MB: 500 attempts that each
failed with an error of 2,000 characters (what the runner keeps) fill about 1.2 MB, and the
runs past the first page were left out of GET /jobs/{id}/runs without a word."""
    from chalicelib.adapters.dynamodb import DynamoJobStore

    store = DynamoJobStore(aws["ddb"], "jobs")
    job_id = "00000000-0000-4000-8000-000000000042"
    for attempt in range(1, 501):
        aws["ddb"].put_item(TableName="jobs", Item={
            "pk": {"S": f"JOB#{job_id}"}, "sk": {"S": f"RUN#{attempt:04d}"}, "job_id": {"S": job_id},
            "attempt": {"N": str(attempt)}, "status": {"S": "failed"},
            "started_at": {"S": "2026-01-01T00:00:00.000Z"}, "finished_at": {"S": "2026-01-01T00:00:01.000Z"},
            "error": {"M": {"code": {"S": "handler_error"}, "message": {"S": "e" * 2000}}},
        })
    assert [run.attempt for run in store.runs(job_id)] == list(range(1, 501))


def test_the_rq_status_of_a_wide_fan_out_covers_every_child(client, aws):
    """rq-engine's jobstatus of a parent covers its children: finished only once all are. The
tree was read up to 500 jobs, and the children past them were left out as if gone, so a parent
of 600 (MAX_CHILDREN allows 2,000) read `finished` while its last child still ran."""
    from chalicelib.adapters.dynamodb import DynamoJobStore
    from chalicelib.domain.job import Job
    from chalicelib.domain.status import JobStatus

    store = DynamoJobStore(aws["ddb"], "jobs")
    done = {"status": JobStatus.COMPLETED, "started_at": "2026-01-01T00:00:01.000Z",
            "finished_at": "2026-01-01T00:00:02.000Z", "created_at": "2026-01-01T00:00:00.000Z"}
    children = [f"00000000-0000-4000-8000-{i:012d}" for i in range(1, 601)]
    for n, child_id in enumerate(children, 1):
        fields = done if n < 600 else {**done, "status": JobStatus.RUNNING, "finished_at": None}
        store.create(Job(id=child_id, type="demo.steps", tenant="acme", user="ann", **fields))
    parent = "00000000-0000-4000-8000-000000000000"
    store.create(Job(id=parent, type="demo.fanout", tenant="acme", user="ann", children=children, **done))
    status = client.http.get(f"/api/jobstatus/{parent}", headers=auth()).json_body
    assert status["status"] == "started" and status["ended_at"] is None, status
    info = client.http.get(f"/api/jobinfo/{parent}", headers=auth()).json_body
    assert info["children"]["599"][0]["status"] == "started"


@pytest.mark.parametrize("route", ["/jobs/status", "/api/jobinfo"])
def test_a_batch_of_100_fan_outs_of_2000_children_stays_within_what_one_answer_carries(client, aws, route):
    """A parent lists each child it spawned (MAX_CHILDREN, 2,000: 90 KB of ids as an answer
    counts them), and a short job kept them: 100 such parents answered 11 MB on POST
    /jobs/status, a 502 at every poll. Past the budget a parent is shown without them there
    (`children: []`, `children_cut` their number; GET /jobs/{id} shows them)."""
    from chalicelib.adapters.dynamodb import DynamoJobStore
    from chalicelib.defaults import MAX_CHILDREN
    from chalicelib.domain.job import Job
    from chalicelib.domain.status import JobStatus

    store = DynamoJobStore(aws["ddb"], "jobs")
    parents = [f"00000000-0000-4000-8000-{p:012d}" for p in range(100)]
    for p, parent in enumerate(parents):
        children = [f"{p + 1:08d}-1111-4000-8000-{c:012d}" for c in range(MAX_CHILDREN)]
        store.create(Job(id=parent, type="demo.fanout", tenant="acme", user="ann", children=children,
                         status=JobStatus.COMPLETED, created_at="2026-01-01T00:00:00.000Z",
                         started_at="2026-01-01T00:00:01.000Z", finished_at="2026-01-01T00:00:02.000Z"))
    response = client.http.post(route, headers=auth(), body=json.dumps({"job_ids": parents}))
    assert response.status_code == 200
    answer = response.json_body
    assert answer_bytes(answer) <= MAX_ANSWER_BYTES, answer_bytes(answer)
    assert answer["job_ids"] == parents and all(answer["jobs"][p]["status"] in ("completed", "finished")
                                                 for p in parents)
    if route == "/jobs/status":
        first, last = answer["jobs"][parents[0]], answer["jobs"][parents[-1]]
        assert len(first["children"]) == MAX_CHILDREN and "children_cut" not in first
        assert last["children"] == [] and last["children_cut"] == MAX_CHILDREN
        whole = client.http.get(f"/jobs/{parents[-1]}", headers=auth()).json_body
        assert len(whole["children"]) == MAX_CHILDREN


@pytest.mark.parametrize("case", ["large_result", "long_errors"])
def test_the_rq_jobinfo_of_a_wide_fan_out_stays_within_what_one_answer_carries(client, aws, case):
    """GET /api/jobinfo/{id} nests every descendant's info (up to MAX_TREE_JOBS), each with its
    error's text even when shown short: a parent whose result sat within 1 MB of the bound, or
    whose 2,000 children failed with long messages full of quotes (4 bytes each in an answer),
    made an answer past Lambda's 6 MB, a 502 at every poll of the tree, though GET /jobs/{id} of
    each job answered. The descendants that do not fit even short are shown as rq-engine shows
    a child past the jobs read: None."""
    from chalicelib.adapters.dynamodb import DynamoJobStore
    from chalicelib.adapters.s3 import S3BlobStore
    from chalicelib.domain.job import Job, JobErrorInfo
    from chalicelib.domain.status import JobStatus
    from chalicelib.ports import ChangeSet

    store = DynamoJobStore(aws["ddb"], "jobs", blobs=S3BlobStore(aws["s3"], "jobs-bucket"))
    times = {"started_at": "2026-01-01T00:00:01.000Z", "finished_at": "2026-01-01T00:00:02.000Z",
             "created_at": "2026-01-01T00:00:00.000Z"}
    failed = {"status": JobStatus.FAILED, "error": JobErrorInfo(code="upstream", message='"' * 2_000)}
    children = [f"00000000-0000-4000-8000-{i:012d}" for i in range(1, MAX_CHILDREN + 1)]
    for child_id in children:
        store.create(Job(id=child_id, type="demo.steps", tenant="acme", user="ann", **times,
                         **(failed if case == "long_errors" else {"status": JobStatus.COMPLETED})))
    parent = "00000000-0000-4000-9000-000000000000"
    result = {"text": "x" * 5_600_000} if case == "large_result" else {"ok": True}
    store.create(Job(id=parent, type="demo.fanout", tenant="acme", user="ann", children=children,
                     status=JobStatus.COMPLETED, **times))
    store.apply(store.get(parent, mark_gone=False), JobStatus.COMPLETED, ChangeSet({"result": result}))  # to S3
    whole = client.http.get(f"/jobs/{parent}", headers=auth()).json_body
    assert answer_bytes(whole) <= MAX_ANSWER_BYTES
    response = client.http.get(f"/api/jobinfo/{parent}", headers=auth())
    assert response.status_code == 200
    info = response.json_body
    assert answer_bytes(info) <= MAX_ANSWER_BYTES, answer_bytes(info)
    assert info["result"] == result and len(info["children"]) == MAX_CHILDREN
    shown = [entry[0] for entry in info["children"].values()]
    assert shown[0] is not None and shown[0]["id"] == children[0] and shown[-1] is None
    assert set(shown[shown.index(None):]) == {None}  # the first left out and every one after


def test_the_rq_polls_of_a_long_chain_of_jobs_answer(client, aws, monkeypatch):
    """A job continued as a new one, and that one as another, makes a chain that nests a level
    per job: rq's jobinfo of its first job answered 500 past ~400 jobs (Python's recursion),
    and its jobstatus past ~600. jobinfo nests JOBINFO_MAX_LEVELS levels and reads no deeper;
    jobstatus still covers the whole chain (finished only once its last job is)."""
    from chalicelib.adapters.dynamodb import DynamoJobStore
    from chalicelib.defaults import JOBINFO_MAX_LEVELS
    from chalicelib.domain.job import Job
    from chalicelib.domain.status import JobStatus
    from chalicelib.job_reads import JobReads

    store = DynamoJobStore(aws["ddb"], "jobs")
    times = {"started_at": "2026-01-01T00:00:01.000Z", "created_at": "2026-01-01T00:00:00.000Z"}
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(700)]
    for n, job_id in enumerate(ids):
        last = n == len(ids) - 1
        store.create(Job(id=job_id, type="demo.steps", tenant="acme", user="ann", children=ids[n + 1:n + 2],
                         status=JobStatus.RUNNING if last else JobStatus.COMPLETED,
                         finished_at=None if last else "2026-01-01T00:00:02.000Z", **times))
    read: list[int] = []  # the jobs each tree read held
    tree = JobReads.tree

    def counted(self, *args, **kwargs):
        got = tree(self, *args, **kwargs)
        read.append(len(got[0]))
        return got

    monkeypatch.setattr(JobReads, "tree", counted)
    response = client.http.get(f"/api/jobinfo/{ids[0]}", headers=auth())
    assert response.status_code == 200, response.body[:300]
    info, levels = json.loads(response.body), 0
    while info["children"]["0"][0] is not None:
        info, levels = info["children"]["0"][0], levels + 1
    assert levels == JOBINFO_MAX_LEVELS and info["id"] == ids[JOBINFO_MAX_LEVELS]
    assert read == [JOBINFO_MAX_LEVELS]  # the jobs it nests, none deeper
    batch = client.http.post("/api/jobinfo", headers=auth(), body=json.dumps({"job_ids": ids[:2]}))
    assert batch.status_code == 200 and set(json.loads(batch.body)["jobs"]) == set(ids[:2])
    status = client.http.get(f"/api/jobstatus/{ids[0]}", headers=auth())
    assert status.status_code == 200 and status.json_body["status"] == "started" and read[-1] == len(ids) - 1


def _chain(aws, root: str, links: int, retried: frozenset[int] = frozenset()) -> list[str]:
    """A chain of jobs each continued as a new one, named as ctx.spawn names them (a link in
    `retried` made by its parent's second attempt), written straight to the table: the root and
    `links` descendants, each completed but the last, running."""
    from chalicelib.domain.job import child_job_id
    from chalicelib.domain.status import JobStatus

    ids = [root]
    for n in range(links):
        ids.append(child_job_id(ids[-1], 2 if n in retried else 1, 1))
    items = [_chain_link(ids, n, JobStatus.RUNNING if n == links else JobStatus.COMPLETED, retried)
             for n in range(len(ids))]
    for start in range(0, len(items), 25):
        aws["ddb"].batch_write_item(RequestItems={"jobs": [{"PutRequest": {"Item": i}} for i in items[start:start + 25]]})
    return ids


def _chain_link(ids: list[str], n: int, status, retried: frozenset[int] = frozenset()) -> dict:
    """Job `n` of the chain `ids` as its item, with `status`."""
    from chalicelib.adapters.dynamodb_items import job_to_item
    from chalicelib.domain.job import Job, JobErrorInfo
    from chalicelib.domain.status import JobStatus

    return job_to_item(Job(
        id=ids[n], type="demo.steps", tenant="acme", user="ann", children=ids[n + 1:n + 2], status=status,
        attempts=2 if n in retried else 1, created_at="2026-01-01T00:00:00.000Z", started_at="2026-01-01T00:00:01.000Z",
        finished_at=None if status is JobStatus.RUNNING else f"2026-01-01T00:{n // 600:02d}:{n // 10 % 60:02d}.000Z",
        error=JobErrorInfo(code="boom", message="failed") if status is JobStatus.FAILED else None))


def test_the_rq_jobstatus_of_a_long_chain_reads_a_few_jobs_ahead_a_read(client, aws):
    """A job continued as a new one, again and again, is a chain: each of its jobs is known only
    once its parent is read, so its jobstatus read one level a BatchGetItem, one after the other:
    a chain of MAX_TREE_JOBS jobs made 5,000 of them a poll, past API Gateway's 29 s. A link is
    named by its parent's id, attempt and index (ctx.spawn), so the next links are read with it,
    more of them while the guess holds: about a BatchGetItem per hundred jobs, and the status
    still that of the whole chain (a link made by a retried attempt, which no guess names, too)."""
    from chalicelib import composition
    from chalicelib.defaults import BATCH_GET_MAX
    from chalicelib.domain.status import JobStatus

    from tests.support.aws_calls import recorded_calls

    calls = recorded_calls(composition.container().store._ddb)

    def poll(job_id):
        calls.clear()
        answer = client.http.get(f"/api/jobstatus/{job_id}", headers=auth())
        assert answer.status_code == 200, answer.body[:300]
        batches = [params["RequestItems"]["jobs"]["Keys"] for name, params in calls if name == "BatchGetItem"]
        # 7 calls to read 127 jobs ahead, one a hundred after: twice that past the retried link
        assert len(batches) <= 2 * 7 + links // BATCH_GET_MAX + 2, len(batches)
        assert sum(len(b) for b in batches) <= links + 2 * BATCH_GET_MAX  # guesses past the end: bounded too
        return answer.json_body

    root, links = "00000000-0000-4000-9000-000000000001", 600
    ids = _chain(aws, root, links, retried=frozenset({300}))
    assert poll(root)["status"] == "started" and poll(root)["ended_at"] is None
    aws["ddb"].put_item(TableName="jobs", Item=_chain_link(ids, links, JobStatus.COMPLETED))
    done = poll(root)
    assert done["status"] == "finished" and done["ended_at"] == "2026-01-01T00:01:00.000Z"
    aws["ddb"].put_item(TableName="jobs", Item=_chain_link(ids, 450, JobStatus.FAILED))
    assert poll(root)["status"] == "failed" and poll(ids[451])["status"] == "finished"


def test_the_rq_jobstatus_of_a_fan_out_counts_every_child_however_large_their_infos(client, aws):
    """jobinfo leaves out of its nesting the descendants whose infos would take its answer past
    what Lambda returns (long progress messages, seven bytes an é as answered); jobstatus, whose
    answer shows none of them, left them out of its status too: a fan-out whose last children
    still ran, behind hundreds with long final messages, read `finished` with an `ended_at`."""
    from chalicelib.adapters.dynamodb_items import job_to_item
    from chalicelib.domain.job import Job, Progress
    from chalicelib.domain.status import JobStatus

    times = {"created_at": "2026-01-01T00:00:00.000Z", "started_at": "2026-01-01T00:00:01.000Z"}
    children = [f"00000000-0000-4000-8000-{i:012d}" for i in range(1, 501)]
    items = [job_to_item(Job(id=child_id, type="demo.steps", tenant="acme", user="ann", **times,
                             status=JobStatus.RUNNING if n == len(children) - 1 else JobStatus.COMPLETED,
                             finished_at=None if n == len(children) - 1 else "2026-01-01T00:00:02.000Z",
                             progress=Progress(percent=100, message="é" * 2_000)))
             for n, child_id in enumerate(children)]
    parent = "00000000-0000-4000-9000-000000000000"
    items.append(job_to_item(Job(id=parent, type="demo.fanout", tenant="acme", user="ann", children=children,
                                 status=JobStatus.COMPLETED, finished_at="2026-01-01T00:00:02.000Z", **times)))
    for start in range(0, len(items), 25):
        aws["ddb"].batch_write_item(RequestItems={"jobs": [{"PutRequest": {"Item": i}} for i in items[start:start + 25]]})
    info = client.http.get(f"/api/jobinfo/{parent}", headers=auth()).json_body
    assert info["children"][str(len(children) - 1)] == [None]  # past what the jobinfo answer carries
    status = client.http.get(f"/api/jobstatus/{parent}", headers=auth()).json_body
    assert status["status"] == "started" and status["ended_at"] is None and status["elapsed_s"] is not None
