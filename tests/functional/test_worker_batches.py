"""Worker batches of up to ten jobs, without giving up crash isolation: batch-mates wait their
turn under a short lease, come back that soon when the process dies, are handed back untouched
when their turn comes too late, and those delivered most often run first."""
from __future__ import annotations

import json
import time

import pytest

from chalicelib.worker import handlers
from chalicelib.worker.runner import JobRunner
from tests.functional.conftest import auth, invoke_worker, receive_all, sqs_event

STEPS = {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0}}


def submit(client, n: int) -> list[str]:
    return [client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body["id"] for _ in range(n)]


def status(client, job_id: str) -> str:
    return client.http.get(f"/jobs/{job_id}", headers=auth()).json_body["status"]


def job_of(message: dict) -> str:
    return json.loads(message["Body"])["job_id"]


def test_a_batch_runs_every_job_and_deletes_nothing_it_did_not_finish(app, client, aws):
    ids = submit(client, 3)
    result = invoke_worker(app, sqs_event(receive_all(aws)))
    assert result == {"batchItemFailures": []}
    assert [status(client, i) for i in ids] == ["completed"] * 3


def test_a_process_that_dies_gives_its_batch_mates_back_after_their_short_lease(app, client, aws, monkeypatch):
    ids = submit(client, 3)
    messages = sorted(receive_all(aws), key=lambda m: ids.index(job_of(m)))
    monkeypatch.setattr(handlers, "BATCH_MATE_LEASE_S", 1)
    real_run = JobRunner.run

    def dies_on_the_first(self, message, **kwargs):
        if message.job_id == ids[0]:
            raise SystemExit("the process died")  # no Exception: nothing in the batch catches it
        return real_run(self, message, **kwargs)

    monkeypatch.setattr(JobRunner, "run", dies_on_the_first)
    with pytest.raises(SystemExit):
        invoke_worker(app, sqs_event(messages))
    time.sleep(1.5)
    back = receive_all(aws)
    # the batch-mates are visible again; the first keeps the queue's visibility timeout
    assert sorted(job_of(m) for m in back) == sorted(ids[1:])
    assert [status(client, i) for i in ids] == ["queued"] * 3


def test_a_batch_mate_whose_turn_comes_after_its_short_lease_is_handed_back_untouched(app, client, aws, monkeypatch):
    ids = submit(client, 3)
    messages = sorted(receive_all(aws), key=lambda m: ids.index(job_of(m)))
    monkeypatch.setattr(handlers, "BATCH_MATE_LEASE_S", 4)  # under the turn margin: no batch-mate's turn
    event = sqs_event(messages)
    result = invoke_worker(app, event)
    handed_back = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    assert handed_back == {r["messageId"] for r in event["Records"][1:]}
    assert [status(client, i) for i in ids] == ["completed", "queued", "queued"]


def test_the_records_delivered_most_often_run_first(app, client, aws, monkeypatch):
    ids = submit(client, 3)
    messages = sorted(receive_all(aws), key=lambda m: ids.index(job_of(m)))
    event = sqs_event(messages)
    event["Records"][2]["attributes"]["ApproximateReceiveCount"] = "3"
    monkeypatch.setattr(handlers, "BATCH_MATE_LEASE_S", 4)
    invoke_worker(app, event)
    assert [status(client, i) for i in ids] == ["queued", "queued", "completed"]
