"""The job types a team writes on its first day, from docs/jobs.md alone, through the API and
the worker function on moto: what each promise of the docs comes to for a submitter."""
import json
import threading
import time

import pytest
from pydantic import BaseModel, ConfigDict, Field

from chalicelib.domain.errors import RetryableJobError
from chalicelib.job_types import registry
from tests.functional.conftest import auth, drain, invoke_worker, receive_all, sqs_event
from tests.functional.conftest import get_job as get
from tests.functional.conftest import submit_job as submit


class CsvImport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: int = Field(ge=1, le=100_000)
    reject_every: int = Field(default=0, ge=0)


class Fanout(BaseModel):
    children: int = Field(ge=1, le=100)


class Empty(BaseModel):
    pass


class Totals(BaseModel):
    rows: int
    rejected: int = 0


class Spawner(BaseModel):
    type: str
    payload: dict = {}
    priority: str | None = None


def _runs(client, job_id):
    return client.http.get(f"/jobs/{job_id}/runs", headers=auth()).json_body["runs"]


def _artifacts(client, job_id):
    return client.http.get(f"/jobs/{job_id}/artifacts", headers=auth()).json_body["artifacts"]


@pytest.fixture
def day_one(client):
    names, calls = [], {"flaky": 0, "cancel_seen": 0}

    def add(name, model, handler, **policy):
        registry.register(name, model, **policy)(handler)
        names.append(name)

    def csv_import(ctx, payload):
        rejected, batch = 0, []
        for row in range(1, payload.rows + 1):
            if payload.reject_every and row % payload.reject_every == 0:
                batch.append(f"{row},bad value\n")
            if row % 1000 == 0:
                if batch:
                    ctx.artifact(f"rejected-{row // 1000:04d}.csv", "row,reason\n" + "".join(batch), "text/csv")
                    rejected += len(batch)
                    batch = []
                ctx.progress(100 * row / payload.rows, step="import", message=f"{row} rows",
                             details={"rows": row, "rejected": rejected})
        return {"rows": payload.rows, "rejected": rejected}

    def fan_out(ctx, payload):
        for _ in range(payload.children):
            ctx.spawn("day1.noop", {})  # waits for nothing
        return {"spawned": payload.children}

    def flaky(ctx, payload):
        calls["flaky"] += 1
        if ctx.attempt == 1:
            raise RetryableJobError("the rates service answered 503", code="rates_unavailable")
        return {"rate": 1.1}

    def stoppable(ctx, payload):
        canceler = threading.Thread(target=lambda: client.http.delete(f"/jobs/{ctx.job_id}", headers=auth()))
        canceler.start()
        canceler.join()
        for _ in range(100):
            if ctx.cancelled():
                calls["cancel_seen"] += 1
                return {"partial": True}
            time.sleep(0.05)
        return {"partial": False}

    def slow(ctx, payload):
        time.sleep(60)  # far past the 30 s its test allows: a busy machine's drain is never near it
        return "too late"

    def spawn_one(ctx, payload):
        return ctx.spawn(payload.type, payload.payload, priority=payload.priority)

    def bad_artifact(ctx, payload):
        ctx.artifact(payload.type, "row,reason\n")

    add("day1.bad_artifact", Spawner, bad_artifact, max_attempts=1, timeout_s=10)
    add("day1.csv_import", CsvImport, csv_import, max_attempts=2, timeout_s=60)
    add("day1.noop", Empty, lambda ctx, payload: None, max_attempts=1, timeout_s=10, priority="low")
    add("day1.fan_out", Fanout, fan_out, max_attempts=1, timeout_s=60)
    add("day1.flaky", Empty, flaky, max_attempts=3, timeout_s=10)
    add("day1.stoppable", Empty, stoppable, max_attempts=1, timeout_s=30)
    add("day1.slow", Empty, slow, max_attempts=1, timeout_s=1)
    add("day1.spawn_one", Spawner, spawn_one, max_attempts=1, timeout_s=10)
    add("day1.model_result", CsvImport, lambda ctx, payload: Totals(rows=payload.rows), max_attempts=1, timeout_s=10)
    yield calls
    for name in names:
        registry._types.pop(name)


def test_a_csv_import_reports_progress_and_writes_one_artifact_per_rejected_batch(client, app, aws, day_one):
    job = submit(client, {"type": "day1.csv_import", "payload": {"rows": 5000, "reject_every": 700}})
    drain(app, aws)
    done = get(client, job["id"])
    assert done["status"] == "completed", done
    assert done["result"] == {"rows": 5000, "rejected": 7}
    assert done["progress"]["percent"] == 100
    assert done["progress"]["details"] == {"rows": 5000, "rejected": 7}
    names = [a["name"] for a in _artifacts(client, job["id"])]
    assert names == ["rejected-0001.csv", "rejected-0002.csv", "rejected-0003.csv", "rejected-0004.csv",
                     "rejected-0005.csv"]
    first = client.http.get(f"/jobs/{job['id']}/artifacts/rejected-0001.csv", headers=auth())
    assert first.body.decode() == "row,reason\n700,bad value\n"


def test_an_invalid_payload_is_a_422_naming_the_field(client, day_one):
    response = client.http.post("/jobs", headers=auth(),
                                body=json.dumps({"type": "day1.csv_import", "payload": {"rows": 0, "sheet": 1}}))
    assert response.status_code == 422
    error = response.json_body["error"]
    assert error["code"] == "invalid_payload"
    assert {tuple(d["loc"]) for d in error["details"]} == {("rows",), ("sheet",)}


def test_a_payload_its_model_would_not_read_back_is_a_422_not_a_job_that_cannot_run(client, aws, day_one):
    """A type whose field has a pydantic schema of its own writing `1,250` for an int: stored
    so, every job failed `invalid_payload` in the worker after its 202. The submission is
    refused instead, saying why, and nothing is queued."""
    from tests.unit.test_job_authors import custom_amount

    Amount = custom_amount(lambda amount: f"{amount:,}")  # noqa: N806 - a type

    class Invoice(BaseModel):
        amount: Amount

    registry.register("day1.invoice", Invoice)(lambda ctx, payload: int(payload.amount))
    try:
        response = client.http.post("/jobs", headers=auth(),
                                    body=json.dumps({"type": "day1.invoice", "payload": {"amount": 1250}}))
    finally:
        registry._types.pop("day1.invoice")
    assert response.status_code == 422, response.body
    error = response.json_body["error"]
    assert error["code"] == "invalid_payload" and "does not read back the payload it stores" in error["message"]
    assert error["details"] == [{"loc": ["amount"], "msg": "as stored: Input should be a valid integer",
                                 "type": "not_stored_as_given"}]
    assert receive_all(aws) == []


def test_a_fan_out_spawns_fifty_children_and_completes_at_once(client, app, aws, day_one):
    parent = submit(client, {"type": "day1.fan_out", "payload": {"children": 50}})
    (message,) = receive_all(aws)
    invoke_worker(app, sqs_event([message]))
    done = get(client, parent["id"])
    assert done["status"] == "completed" and len(set(done["children"])) == 50
    child = get(client, done["children"][0])
    assert child["parent_id"] == parent["id"] and child["priority"] == "normal"  # the parent's, not the type's
    drain(app, aws)
    assert {get(client, c)["status"] for c in done["children"]} == {"completed"}


def test_a_flaky_service_is_retried_and_succeeds_on_attempt_two(client, app, aws, day_one):
    job = submit(client, {"type": "day1.flaky", "payload": {}})
    (message,) = receive_all(aws)
    invoke_worker(app, sqs_event([message]))
    waiting = get(client, job["id"])
    assert waiting["status"] == "retrying"
    assert waiting["error"] == {"code": "rates_unavailable", "message": "the rates service answered 503"}
    assert waiting["not_before"] > waiting["created_at"]  # backoff: JOBPIPE_RETRY_BASE_S=1 here
    drain(app, aws)
    done = get(client, job["id"])
    assert done["status"] == "completed" and done["attempts"] == 2 and done["result"] == {"rate": 1.1}
    assert done["error"] is None  # the failed attempt's error is on its run, not on the completed job
    failed_run = _runs(client, job["id"])[0]
    assert failed_run["error"] == {"code": "rates_unavailable", "message": "the rates service answered 503"}
    assert [(r["attempt"], r["status"]) for r in _runs(client, job["id"])] == [(1, "failed"), (2, "completed")]
    assert day_one["flaky"] == 2


def test_a_handler_that_sees_its_cancel_stops_and_the_job_is_canceled(client, app, aws, day_one):
    job = submit(client, {"type": "day1.stoppable", "payload": {}})
    drain(app, aws)
    done = get(client, job["id"])
    assert done["status"] == "canceled", done
    assert done["result"] is None and day_one["cancel_seen"] == 1


def test_a_short_timeout_fails_the_attempt_timeout(client, app, aws, day_one):
    job = submit(client, {"type": "day1.slow", "payload": {}})
    started = time.monotonic()
    drain(app, aws)
    assert time.monotonic() - started < 30  # interrupted at 1 s, not waited out
    done = get(client, job["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "timeout", done
    assert done["result"] is None


def test_a_spawn_with_an_unknown_priority_fails_invalid_request_naming_it(client, app, aws, day_one):
    """docs/jobs.md: a child is "validated like any submission": a priority POST /jobs answers
with 400 `invalid_request` fails the spawn the same way, not with the job record's own
pydantic error as a `handler_error`."""
    job = submit(client, {"type": "day1.spawn_one",
                          "payload": {"type": "day1.noop", "payload": {}, "priority": "urgent"}})
    drain(app, aws)
    done = get(client, job["id"])
    assert done["status"] == "failed" and done["children"] == []
    assert done["error"]["code"] == "invalid_request", done["error"]
    assert "'urgent'" in done["error"]["message"] and "high, normal or low" in done["error"]["message"]


def test_a_spawn_with_an_invalid_payload_fails_the_job_naming_the_field(client, app, aws, day_one):
    """A submitter sees which field of a payload is wrong in the 422's details; a handler's
spawn refused the same way has only the job's `error` to say it, so its message names them."""
    job = submit(client, {"type": "day1.spawn_one",
                          "payload": {"type": "day1.csv_import", "payload": {"rows": 0, "sheet": 2}}})
    drain(app, aws)
    error = get(client, job["id"])["error"]
    assert error["code"] == "invalid_payload"
    assert error["message"].startswith("payload is not valid for job type 'day1.csv_import': "), error
    assert "rows: Input should be greater than or equal to 1" in error["message"]
    assert "sheet: Extra inputs are not permitted" in error["message"]


@pytest.mark.parametrize("name", ["rejected 0001.csv", ".rejected.csv", "x" * 129, "batches/0001.csv"])
def test_an_artifact_name_outside_the_rules_fails_the_job_naming_it(client, app, aws, day_one, name):
    """docs/jobs.md: artifact names are letters, digits, `.`, `_`, `-`, starting with a letter or
digit, at most 128 of them; the job's error says which name broke the rule."""
    job = submit(client, {"type": "day1.bad_artifact", "payload": {"type": name}})
    drain(app, aws)
    done = get(client, job["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "invalid_artifact"
    assert "starting with a letter or digit" in done["error"]["message"]
    assert repr(name)[:60] in done["error"]["message"], done["error"]
    assert _artifacts(client, job["id"]) == []


def test_a_handler_returning_a_pydantic_model_completes_with_its_json(client, app, aws, day_one):
    """Payloads are models, so a handler's author returns one too: the job completes with it as
    JSON; it failed `result_not_serializable`."""
    job = submit(client, {"type": "day1.model_result", "payload": {"rows": 7}})
    drain(app, aws)
    done = get(client, job["id"])
    assert (done["status"], done["result"]) == ("completed", {"rows": 7, "rejected": 0}), done.get("error")
