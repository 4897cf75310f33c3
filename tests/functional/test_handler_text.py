"""A handler's text on its way out: what it reports, returns, raises and spawns. Text of any
script, combining marks, NUL, controls and 4-byte characters reaches the GET, the events and the
ERP's body exactly as written; a lone surrogate (bytes decoded with `surrogateescape`), which no
store, queue or bus can carry, is refused at the call that hands it in, or replaced by U+FFFD in
an error's text, and the job ends instead of staying `running` until its lease lapses."""
from __future__ import annotations

import json
import uuid

import pytest
from pydantic import BaseModel

from chalicelib import composition
from chalicelib.adapters.memory_events import InMemoryWebhookSender
from chalicelib.domain.errors import InvalidArtifactError, InvalidPayloadError, ProgressRejectedError
from chalicelib.job_types import registry
from chalicelib.subscribers.erp import ErpBridge
from tests.functional.conftest import LambdaContext, auth, drain, sqs_event
from tests.functional.test_events import publish_stream
from tests.support.stream import StreamRecorder

TEXTS = ["😀🧑🏽‍🚀", "e\u0301 a\u0308", "שלום عربى", "a\u0000b", "\x01\x1f\x7f\x85\u2028", "\ufeff\uffff", "𝔘𝔫𝔦"]
LONE = "bad \udcff bytes"


class Text(BaseModel):
    text: str = ""
    how: str = ""


def handler(ctx, p):
    """Does `p.how` with `p.text`; where the call refuses, the refusal is the result."""
    text = LONE if p.text == "LONE" else p.text
    try:
        if p.how == "report":
            ctx.progress(50, step=text, message=text, details={text: text}, force=True)
            return {text: [text]}
        if p.how in ("step", "message"):
            ctx.progress(50, **{p.how: text}, force=True)
        elif p.how == "details":
            ctx.progress(50, details={"k": [text]}, force=True)
        elif p.how == "details_key":
            ctx.progress(50, details={text: 1}, force=True)
        elif p.how == "raise":
            raise RuntimeError(text)
        elif p.how == "fail":
            raise ctx.fail(text, text, percent=60)
        elif p.how == "spawn":
            ctx.spawn("text.echo", {"text": text})
        elif p.how == "artifact":
            ctx.artifact("a.json", {"k": text})
        elif p.how == "artifact_text":
            ctx.artifact("a.txt", text)
        elif p.how == "result_key":
            return {text: 1}
        return text
    except (ProgressRejectedError, InvalidPayloadError, InvalidArtifactError) as exc:
        return {"refused": type(exc).__name__, "message": exc.message}


@pytest.fixture
def text_type():
    registry.register("text.echo", Text, max_attempts=1, timeout_s=10)(handler)
    yield
    registry._types.pop("text.echo")


@pytest.fixture
def stream(client, aws):
    return StreamRecorder(composition.container().store._ddb, aws["ddb"], "jobs")


def run(app, client, aws, text: str, how: str) -> dict:
    submitted = client.http.post("/jobs", headers=auth(), body=json.dumps({"type": "text.echo",
                                                                           "payload": {"text": text, "how": how}}))
    assert submitted.status_code == 202, submitted.body
    assert submitted.json_body["payload"]["text"] == text
    drain(app, aws)
    return client.http.get(f"/jobs/{submitted.json_body['id']}", headers=auth()).json_body


def erp_bodies(app, events: list[dict]) -> list[dict]:
    sender = InMemoryWebhookSender()
    composition.container().erp_bridge = ErpBridge(sender, "https://erp.example/hook",
                                                   "functional-webhook-secret-0123456789abcdef")
    messages = [{"MessageId": str(uuid.uuid4()), "Body": json.dumps(e), "ReceiptHandle": "rh"} for e in events]
    assert app.handler_map["erp_bridge"](sqs_event(messages), LambdaContext(60)) == {"batchItemFailures": []}
    return [json.loads(body) for _, body, _ in sender.posts]


@pytest.mark.parametrize("text", TEXTS)
def test_a_handlers_text_reaches_the_get_the_events_and_the_erp_as_written(app, client, aws, text_type, stream, tap,
                                                                         text):
    done = run(app, client, aws, text, "report")
    assert (done["status"], done["result"]) == ("completed", {text: [text]}), done
    failed = run(app, client, aws, text, "fail")
    code = text.strip()  # a code is a label: trimmed
    assert failed["status"] == "failed" and failed["error"] == {"code": code, "message": text}, failed
    assert failed["progress"]["message"] == text
    assert publish_stream(app, stream) == {"batchItemFailures": []}
    events = tap()
    progress = [e["detail"] for e in events if e["detail-type"] == "job.status.progress" and e["detail"]["progress"] == 50]
    assert [(p["step"], p["message"]) for p in progress] == [(text, text)]
    ended = [e for e in events if e["detail"]["status"] == "failed"]
    assert [e["detail"]["error"] for e in ended] == [{"code": code, "message": text}]
    assert [b["error"] for b in erp_bodies(app, ended)] == [{"code": code, "message": text}]


@pytest.mark.parametrize("how", ["step", "message", "details", "details_key"])
def test_a_progress_report_holding_a_lone_surrogate_is_refused_at_the_call(app, client, aws, text_type, how):
    job = run(app, client, aws, "LONE", how)
    assert job["status"] == "completed" and job["result"]["refused"] == "ProgressRejectedError", job
    assert "lone surrogate" in job["result"]["message"]
    assert job["progress"]["details"] is None and job["progress"]["message"] is None


@pytest.mark.parametrize("how", ["", "result_key"])
def test_a_result_holding_a_lone_surrogate_fails_its_job_once(app, client, aws, text_type, how):
    job = run(app, client, aws, "LONE", how)
    assert (job["status"], job["attempts"], job["error"]["code"]) == ("failed", 1, "result_not_serializable"), job
    assert "lone surrogate" in job["error"]["message"] and job["result"] is None


def test_an_exception_holding_a_lone_surrogate_fails_its_job_with_u_fffd_in_its_place(app, client, aws, text_type):
    job = run(app, client, aws, "LONE", "raise")
    assert job["status"] == "failed" and job["error"] == {"code": "handler_error",
                                                          "message": "RuntimeError: bad \ufffd bytes"}, job


def test_fail_job_text_holding_a_lone_surrogate_is_kept_with_u_fffd_in_its_place(app, client, aws, text_type):
    job = run(app, client, aws, "LONE", "fail")
    assert job["status"] == "failed" and job["error"] == {"code": "bad \ufffd bytes", "message": "bad \ufffd bytes"}
    assert (job["progress"]["percent"], job["progress"]["message"]) == (60.0, "bad \ufffd bytes")


@pytest.mark.parametrize("how, refused", [("spawn", "InvalidPayloadError"), ("artifact", "InvalidArtifactError"),
                                          ("artifact_text", "InvalidArtifactError")])
def test_a_child_or_artifact_holding_a_lone_surrogate_is_refused_at_the_call(app, client, aws, text_type, how, refused):
    job = run(app, client, aws, "LONE", how)
    assert job["status"] == "completed" and job["result"]["refused"] == refused, job
    assert "lone surrogate" in job["result"]["message"] and job["children"] == []
    assert client.http.get(f"/jobs/{job['id']}/artifacts", headers=auth()).json_body["artifacts"] == []
