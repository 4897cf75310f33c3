"""A function whose environment breaks a setting's rule fails at its first call with one log
line naming the variable and the rule: no traceback per request, no silent default."""
from __future__ import annotations

import json

import pytest

from chalicelib import composition
from tests.functional.conftest import auth


@pytest.fixture
def logged(monkeypatch):
    """Every error and exception line the functions log from here on, with its message."""
    from chalicelib.observability import logger

    lines: list[dict] = []
    monkeypatch.setattr(logger, "error", lambda message, *a, extra=None, **k: lines.append(
        {"level": "error", "message": str(message), **(extra or {})}))
    monkeypatch.setattr(logger, "exception", lambda message, *a, extra=None, **k: lines.append(
        {"level": "exception", "message": str(message), **(extra or {})}))
    return lines


@pytest.fixture
def misconfigured(aws, monkeypatch):
    monkeypatch.setenv("JOBPIPE_RETENTION_DAYS", "90")
    composition.use(None)


def test_the_api_answers_misconfigured_and_logs_the_variable_and_rule_once(misconfigured, client, logged):
    answers = [client.http.get("/jobs", headers=auth()) for _ in range(3)]
    answers.append(client.http.post("/jobs", headers=auth(), body=json.dumps({"type": "demo.steps"})))
    for answer in answers:
        assert answer.status_code == 500
        assert answer.json_body["error"]["code"] == "misconfigured"
        assert "90" not in answer.json_body["error"]["message"]  # the log says what, not the caller
    (line,) = logged
    assert line["level"] == "error"
    assert "JOBPIPE_RETENTION_DAYS" in line["message"] and "30" in line["message"]


def test_an_event_function_fails_its_call_and_logs_once(misconfigured, app, logged):
    from chalicelib.settings import SettingsError

    handler = app.handler_map["reconciler"] if "reconciler" in app.handler_map else None
    assert handler is not None, sorted(app.handler_map)
    event = {"version": "0", "id": "e-1", "detail-type": "Scheduled Event", "source": "aws.events",
             "account": "123456789012", "time": "2024-01-01T00:00:00Z", "region": "us-east-1",
             "resources": ["arn:aws:events:us-east-1:123456789012:rule/r"], "detail": {}}
    for _ in range(2):
        with pytest.raises(SettingsError, match="JOBPIPE_RETENTION_DAYS") as caught:
            handler(event, None)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no pydantic traceback
    assert [line["level"] for line in logged] == ["error"]
    assert "JOBPIPE_RETENTION_DAYS" in logged[0]["message"]


def test_a_missing_auth_secret_is_misconfigured_not_an_internal_error(aws, monkeypatch, client, logged):
    monkeypatch.delenv("JOBPIPE_AUTH_SECRET")
    composition.use(None)
    for _ in range(2):
        answer = client.http.get("/jobs", headers=auth())
        assert (answer.status_code, answer.json_body["error"]["code"]) == (500, "misconfigured")
    (line,) = logged
    assert "JOBPIPE_AUTH_SECRET" in line["message"] and line["level"] == "error"


@pytest.mark.parametrize("function", ["job_worker", "job_worker_high", "job_worker_low", "erp_bridge",
                                      "cache_invalidation", "event_publisher"])
def test_a_queue_or_stream_function_fails_its_whole_invocation_and_acknowledges_nothing(misconfigured, app, aws,
                                                                                         logged, function):
    """docs/reliability.md: a function whose settings are refused answers no batch, so no
    message or stream record is taken as done: each comes back until its queue's redrive
    policy parks it (or the stream hands the batch to StreamFailureQueue)."""
    from chalicelib.settings import SettingsError
    from tests.functional.conftest import LambdaContext, sqs_event

    if function == "event_publisher":
        event = {"Records": [{"eventID": "1", "eventName": "INSERT", "eventSource": "aws:dynamodb",
                              "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/s",
                              "dynamodb": {"Keys": {"pk": {"S": "JOB#j-1"}, "sk": {"S": "JOB"}},
                                           "SequenceNumber": "100", "StreamViewType": "NEW_AND_OLD_IMAGES"}}]}
    else:
        event = sqs_event([{"MessageId": "m-1", "ReceiptHandle": "rh-1",
                            "Body": json.dumps({"job_id": "j-1", "attempt": 1})}])
    for _ in range(2):
        with pytest.raises(SettingsError, match="JOBPIPE_RETENTION_DAYS"):
            app.handler_map[function](event, LambdaContext(60))
    assert [line["level"] for line in logged] == ["error"]


def test_an_erp_bridge_with_a_short_secret_fails_each_invocation_and_says_so_once(aws, monkeypatch, app, logged):
    """docs/reliability.md names this line for a webhook secret under 32 characters; its
    events come back after the queue's visibility timeout until they are dead-lettered."""
    from chalicelib.settings import SettingsError
    from tests.functional.conftest import LambdaContext, sqs_event

    monkeypatch.setenv("ERP_WEBHOOK_URL", "https://erp.example/hook")
    monkeypatch.setenv("ERP_WEBHOOK_SECRET", "too-short")
    composition.use(None)
    event = sqs_event([{"MessageId": "m-1", "ReceiptHandle": "rh-1", "Body": json.dumps({"detail": {"event_id": "e-1"}})}])
    for _ in range(2):
        with pytest.raises(SettingsError):
            app.handler_map["erp_bridge"](event, LambdaContext(60))
    (line,) = logged
    assert line["message"] == "invalid jobpipe settings: ERP_WEBHOOK_SECRET: String should have at least 32 characters"


@pytest.mark.parametrize("method, path", [("GET", "/api/jobstatus/j-1"), ("GET", "/api/jobinfo/j-1"),
                                          ("POST", "/api/jobinfo")])
def test_the_rq_routes_answer_misconfigured_in_rq_engines_shape(misconfigured, client, logged, method, path):
    """rq-engine's clients read a 500 as `{"Success": false, "Error", "StackTrace"}`, which the rq
    routes answer for an unexpected error: a misconfigured API is answered so on them too."""
    answer = client.http.request(method, path, headers=auth(), body=b"")
    assert answer.status_code == 500
    assert answer.json_body["Success"] is False and "misconfigured" in answer.json_body["Error"]
    assert answer.json_body["StackTrace"] == ["MisconfiguredError (details in the API's log)"]
    assert "90" not in json.dumps(answer.json_body)
    (line,) = logged
    assert "JOBPIPE_RETENTION_DAYS" in line["message"]


def test_every_route_declares_the_500_a_misconfigured_api_answers_in_its_shape(misconfigured, client):
    """A client generated from GET /openapi.json meets a misconfigured API's 500 as declared: the
    native routes' `Error`, the rq-compatible routes' rq-engine shape."""
    from chalicelib.api.openapi import openapi_document

    names = {"job_id": "j-1", "scope": "s", "namespace": "n", "name": "out.txt", "task_id": "t-1", "queue": "normal",
             "message_id": "m-1"}
    answered_500 = 0
    for template, operations in openapi_document()["paths"].items():
        for method, declared in operations.items():
            answer = client.http.request(method.upper(), template.format(**names), headers=auth(), body=b"")
            assert str(answer.status_code) in declared["responses"], (method, template, answer.status_code)
            if answer.status_code == 500:
                answered_500 += 1
                required = declared["responses"]["500"]["content"]["application/json"]["schema"].get("required", ["error"])
                assert set(required) <= set(answer.json_body), (template, answer.json_body)
    assert answered_500 > 20


@pytest.mark.parametrize("function", ["cache_invalidation", "job_worker"])
def test_cache_rules_keyed_by_no_registered_job_type_fail_the_cold_start_and_say_so_once(aws, monkeypatch, tmp_path,
                                                                                        app, client, logged, function):
    """A rule whose key names no job type (a typo, a type renamed since) would invalidate nothing
    and leave its caches stale without an error anywhere: the functions refuse the rules file at
    their first call, naming the unknown type and the registered ones."""
    from chalicelib.settings import SettingsError
    from chalicelib.subscribers import cache
    from tests.functional.conftest import LambdaContext, sqs_event

    rules = tmp_path / "cache_invalidation_rules.json"
    rules.write_text(json.dumps({"demo.step": ["steps-summary"], "demo.sleep": ["sleep-summary"]}))
    monkeypatch.setattr(cache, "RULES_FILE", rules)
    composition.use(None)
    answer = client.http.get("/jobs", headers=auth())
    assert (answer.status_code, answer.json_body["error"]["code"]) == (500, "misconfigured")
    event = sqs_event([{"MessageId": "m-1", "ReceiptHandle": "rh-1", "Body": json.dumps({"job_id": "j-1", "attempt": 1})}])
    with pytest.raises(SettingsError, match="'demo.step' \\(demo.steps\\?\\)"):
        app.handler_map[function](event, LambdaContext(60))
    (line,) = logged
    assert line["level"] == "error"
    assert line["message"].startswith(f"invalid cache invalidation rules in {composition.RULES_SOURCE}: keys name "
                                      "no registered job type: 'demo.step' (demo.steps?)")
    assert line["message"].endswith("the registered job types are: demo.chaos, demo.fanout, demo.model, demo.outputs, "
                                    "demo.sleep, demo.steps")
