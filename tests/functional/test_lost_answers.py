"""A write whose answer was lost: DynamoDB applied it, but the answer never came back (a read
timeout, a connection reset, a 500 after the write) and botocore sent the request again. The
second try of a conditional write finds the first one's result and is refused; what the user
sees must be what happened, the write that landed."""
from __future__ import annotations

import json
from typing import Any, Callable

import pytest
from botocore.exceptions import ReadTimeoutError

from chalicelib import composition
from chalicelib.adapters.dynamodb_items import moves_into
from chalicelib.domain.errors import StoreUnavailableError
from chalicelib.domain.job import child_job_id
from chalicelib.ports import JobMessage
from tests.functional.conftest import auth, get_job, invoke_worker, receive_all, sqs_event

LARGE = {"type": "demo.outputs", "payload": {"pad": "x" * (70 * 1024)}}
STEPS = {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}


class AnswersLost:
    """A DynamoDB client whose `operation` is applied by each try, with every try's answer lost
    but the last, as botocore's standard retries meet a write whose answer timed out: `tries`
    requests reach DynamoDB, and the last one's answer (or refusal) is what the caller gets;
    with `all_lost`, that one times out too."""

    def __init__(self, client: Any, operation: str, *, tries: int = 2, all_lost: bool = False,
                 only: Callable[[dict[str, Any]], bool] = lambda request: True) -> None:
        self._client = client
        self._operation = operation
        self._only = only
        self._tries = tries
        self._all_lost = all_lost
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._client, name)
        if name != self._operation:
            return real

        def lost(**kwargs: Any) -> Any:
            if not self._only(kwargs):
                return real(**kwargs)
            self.calls += 1
            for _ in range(self._tries - (0 if self._all_lost else 1)):
                try:
                    real(**kwargs)
                except Exception:  # noqa: BLE001 - its answer was lost whatever it was
                    pass
            if self._all_lost:
                raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/")
            return real(**kwargs)

        return lost


def _jobs_of(client) -> list[dict]:
    return client.http.get("/jobs", headers=auth()).json_body["jobs"]


def test_a_submission_whose_first_try_landed_is_accepted_once(app, client, aws):
    """The job's PutItem landed and its answer was lost; botocore's second try is refused by the
    write's own condition (the id exists). That job is the one the user asked for: the answer is
    202 with it, and its message goes out now, not a 409 `conflict` for a job that then runs
    anyway once the reconciler finds it due (and again when the user, told it failed, resubmits)."""
    store = composition.container().store
    store._ddb = AnswersLost(store._ddb, "put_item")

    response = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS))

    assert response.status_code == 202, response.body
    job_id = response.json_body["id"]
    assert [j["id"] for j in _jobs_of(client)] == [job_id]
    assert len(receive_all(aws)) == 1


def test_a_claim_checked_submission_whose_answer_never_came_keeps_its_payload(app, client, aws):
    """Every try's answer was lost, so the API cannot know whether the job was stored and says so
    (503). The job may have been stored, and then it is due and runs: its payload object must
    still be there for it, not deleted as if the write had been refused."""
    store = composition.container().store
    store._ddb = AnswersLost(store._ddb, "put_item", all_lost=True)

    response = client.http.post("/jobs", headers=auth(), body=json.dumps(LARGE))

    assert response.status_code == 503, response.body
    store._ddb = store._ddb._client
    [stored] = _jobs_of(client)
    read = client.http.get(f"/jobs/{stored['id']}", headers=auth())
    assert read.status_code == 200, read.body  # not 410 blob_not_found
    assert read.json_body["payload"]["pad"] == LARGE["payload"]["pad"]


def _claims(request: dict[str, Any]) -> bool:
    return moves_into(request, "running")


def test_a_claim_whose_first_try_landed_runs_the_attempt(app, client, aws):
    """The claim's write started the attempt and its answer was lost; botocore's second try is
    refused, since the job is running now, and the refusal shows the attempt this very claim
    started. The delivery runs it: deferred as if another worker held it, the attempt would run
    nowhere until its lease ended, then end `worker_lost` (a job of one attempt failed so without
    ever running)."""
    job_id = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body["id"]
    store = composition.container().store
    store._ddb = lost = AnswersLost(store._ddb, "update_item", only=_claims)
    event = sqs_event(receive_all(aws))

    assert invoke_worker(app, event) == {"batchItemFailures": []}

    assert lost.calls == 1
    job = get_job(client, job_id)
    assert (job["status"], job["attempts"]) == ("completed", 1)


def test_a_claim_after_a_read_whose_first_try_landed_runs_the_attempt(app, client, aws):
    """The same on the claim that reads the job first (a message without the hints of the claim
    without a read: one sent before they were added, or redriven from a dead-letter queue)."""
    job_id = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body["id"]
    receive_all(aws)
    store = composition.container().store
    store._ddb = lost = AnswersLost(store._ddb, "update_item", only=_claims)
    event = sqs_event([{"Body": json.dumps({"job_id": job_id, "attempt": 1})}])

    assert invoke_worker(app, event) == {"batchItemFailures": []}

    assert lost.calls == 1
    job = get_job(client, job_id)
    assert (job["status"], job["attempts"]) == ("completed", 1)


def test_a_claim_checked_child_whose_answer_never_came_keeps_its_payload(app, client, aws):
    """A spawn whose transaction (the child and its place on the parent) may have landed with
    every answer lost: the handler is told it failed, and the child, if stored, is due and runs;
    its payload object must still be there for it."""
    parent_id = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body["id"]
    services = composition.container()
    running = services.lifecycle.claim(JobMessage(parent_id, 1)).job
    services.store._ddb = AnswersLost(services.store._ddb, "transact_write_items", all_lost=True)

    with pytest.raises(StoreUnavailableError):
        services.lifecycle.spawn(running, 1, type=LARGE["type"], payload=LARGE["payload"])

    services.store._ddb = services.store._ddb._client
    child = services.store.get(child_job_id(parent_id, 1, 1))
    assert child is not None and child.id in services.store.get(parent_id).children
    read = client.http.get(f"/jobs/{child.id}", headers=auth())
    assert read.status_code == 200, read.body  # not 410 blob_not_found
    assert read.json_body["payload"]["pad"] == LARGE["payload"]["pad"]
