"""The fault suites' injected faults reach the write they name, through the composition root and
the real adapters: a fault that silently stopped firing would leave those suites passing while
testing nothing."""
from __future__ import annotations

import pytest

from chalicelib import composition
from chalicelib.domain.errors import EventPublishError
from tests.functional.conftest import LambdaContext, get_job, invoke_worker, receive_all, sqs_event, submit_job
from tests.support.stream import StreamRecorder

STEPS = {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0}}


def test_an_injected_claim_fault_fails_the_claim_alone_and_the_redelivery_runs_the_job(app, client, aws, monkeypatch):
    job_id = submit_job(client, STEPS)["id"]
    before = get_job(client, job_id)
    monkeypatch.setenv("JOBPIPE_FAULT_CLAIM_FAILURE_RATE", "1")
    composition.use(None)  # rebuilt with the fault on
    event = sqs_event(receive_all(aws))

    result = invoke_worker(app, event)

    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    after = get_job(client, job_id)
    assert (after["status"], after["attempts"]) == ("queued", before["attempts"])  # nothing written

    monkeypatch.setenv("JOBPIPE_FAULT_CLAIM_FAILURE_RATE", "0")
    composition.use(None)
    assert invoke_worker(app, event) == {"batchItemFailures": []}
    assert get_job(client, job_id)["status"] == "completed"


def test_an_injected_send_fault_loses_the_message_not_the_job(client, aws, monkeypatch):
    monkeypatch.setenv("JOBPIPE_FAULT_SEND_MESSAGE_FAILURE_RATE", "1")
    composition.use(None)

    job_id = submit_job(client, STEPS)["id"]  # accepted: the record counts, the reconciler sends later

    assert receive_all(aws) == []
    assert get_job(client, job_id)["status"] == "queued"


def test_an_injected_put_events_fault_fails_the_stream_batch_so_it_is_delivered_again(app, client, aws, monkeypatch):
    stream = StreamRecorder(composition.container().store._ddb, aws["ddb"], "jobs")
    submit_job(client, STEPS)
    monkeypatch.setenv("JOBPIPE_FAULT_PUT_EVENTS_FAILURE_RATE", "1")
    composition.use(None)

    with pytest.raises(EventPublishError):
        app.handler_map["event_publisher"]({"Records": stream.records}, LambdaContext(60))
