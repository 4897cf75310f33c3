"""Least privilege, checked: every AWS call each function makes (recorded on moto while it does
its work) is allowed by that function's role in the packaged template, on that resource.

ministack does not enforce IAM, so without this a missing permission would first show on AWS.
The scenarios drive each function through its paths (the API's routes, a worker's success,
retry and failure, the stream consumers, the subscribers, the reconciler's actions)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from chalicelib import composition
from chalicelib.api.auth import issue_token
from tests.functional.conftest import SECRET, LambdaContext, auth, drain, receive_all, sqs_event
from tests.support.stream import StreamRecorder

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "build" / "sam.json"

# botocore operation -> the IAM actions it needs (the default is <service>:<Operation>).
SPECIAL_ACTIONS = {
    ("s3", "ListObjectsV2"): ["s3:ListBucket"],
    ("s3", "HeadObject"): ["s3:GetObject"],
    ("s3", "DeleteObjects"): ["s3:DeleteObject"],
    ("s3", "HeadBucket"): ["s3:ListBucket"],
    ("sqs", "SendMessageBatch"): ["sqs:SendMessage"],
    ("sqs", "DeleteMessageBatch"): ["sqs:DeleteMessage"],
    ("sqs", "ChangeMessageVisibilityBatch"): ["sqs:ChangeMessageVisibility"],
}
TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}
SERVICE_PREFIX = {"dynamodb": "dynamodb", "sqs": "sqs", "s3": "s3", "events": "events", "eventbridge": "events"}


class CallLog:
    """(function, IAM action, resource logical id) of every AWS call, by the function running."""

    def __init__(self, resources: dict[str, str]) -> None:
        self.function = "none"
        self.calls: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self._resources = resources  # physical name or URL -> logical id

    def hook(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        service = SERVICE_PREFIX[model.service_model.signing_name]
        operation = model.name
        if operation == "TransactWriteItems":
            for item in params["TransactItems"]:
                (kind, action), = item.items()
                self.calls[self.function].add((f"dynamodb:{TRANSACT_ACTIONS[kind]}", self._resource(action)))
            return
        actions = SPECIAL_ACTIONS.get((service, operation), [f"{service}:{operation}"])
        if operation == "BatchGetItem" or operation == "BatchWriteItem":
            targets = [self._resources.get(t, t) for t in params["RequestItems"]]
        else:
            targets = [self._resource(params)]
        for action in actions:
            for target in targets:
                self.calls[self.function].add((action, target))

    def _resource(self, params: dict[str, Any]) -> str:
        for key in ("TableName", "QueueUrl", "Bucket", "EventBusName", "Name"):
            if key in params:
                value = params[key]
                suffix = f"/index/{params['IndexName']}" if "IndexName" in params else ""
                return self._resources.get(value, value) + suffix
        if "Entries" in params:  # PutEvents
            return self._resources.get(params["Entries"][0]["EventBusName"], "?")
        return "*"


def _statement_resources(resource: Any) -> set[str]:
    """Logical ids (with /index/... suffixes kept) a policy statement's Resource names."""
    out: set[str] = set()
    for entry in resource if isinstance(resource, list) else [resource]:
        if entry == "*":
            out.add("*")
        elif isinstance(entry, dict) and "Fn::GetAtt" in entry:
            out.add(entry["Fn::GetAtt"][0])
        elif isinstance(entry, dict) and "Fn::Sub" in entry:
            text = entry["Fn::Sub"] if isinstance(entry["Fn::Sub"], str) else entry["Fn::Sub"][0]
            if text.startswith("${") and ".Arn}" in text:
                logical, rest = text[2:].split(".Arn}", 1)
                out.add(logical + (rest if rest.startswith("/index/") else ""))
                if rest.startswith("/") and not rest.startswith("/index/"):
                    out.add(logical)  # objects under a bucket's prefix
            else:
                out.add("*" if text.endswith(":*") else text)
        elif isinstance(entry, dict) and "Ref" in entry:
            out.add(entry["Ref"])
    return out


def allowed(template: dict[str, Any], role: str, action: str, resource: str) -> bool:
    policies = template["Resources"][role]["Properties"].get("Policies", [])
    for policy in policies:
        for statement in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in statement:
                statement = statement["Fn::If"][1]
                if not isinstance(statement, dict) or "Effect" not in statement:
                    continue
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if statement["Effect"] != "Allow" or action not in actions:
                continue
            names = _statement_resources(statement["Resource"])
            base = resource.split("/index/")[0]
            if "*" in names or resource in names or (base in names and "/index/" not in resource) \
                    or any(n.startswith(base + "/index/") and (n.endswith("/*") or n == resource) for n in names):
                return True
    return False


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    subprocess.run([sys.executable, "-m", "scripts.package", "build"], cwd=ROOT, check=True, capture_output=True)
    return json.loads(TEMPLATE.read_text())


@pytest.fixture
def log(aws, monkeypatch):
    names = {"jobs": "JobsTable", "idempotency": "IdempotencyTable", "stats": "StatsTable",
             "jobs-bucket": "JobsBucket", "job-events": "JobEventsBus",
             aws["jobs_url"]: "JobsQueue", aws["high_url"]: "JobsQueueHigh", aws["low_url"]: "JobsQueueLow",
             aws["dlq_url"]: "JobsDeadLetterQueue", aws["dlq_high_url"]: "JobsDeadLetterQueueHigh",
             aws["dlq_low_url"]: "JobsDeadLetterQueueLow"}
    calls = CallLog(names)
    original = composition.Container.client

    def recording_client(self, service):
        client = original(self, service)
        client.meta.events.register("before-parameter-build", calls.hook)
        return client

    monkeypatch.setattr(composition.Container, "client", recording_client)
    composition.use(None)
    return calls


def _operator():
    token = issue_token(SECRET, user="op", tenant="ops", roles=["admin", "operator"])
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def test_every_call_of_every_function_is_allowed_by_its_role(template, log, app, client, aws):
    steps = {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0}}
    log.function = "APIHandler"
    # In a scope with a cache: its completion reaches cache invalidation with work to do.
    ok = client.http.post("/jobs", headers=auth(), body=json.dumps({**steps, "scope": "p-1"})).json_body
    client.http.post("/jobs", headers=auth(**{"Idempotency-Key": "k1"}), body=json.dumps(steps))
    failing = client.http.post("/jobs", headers=auth(), body=json.dumps(
        {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0, "fail_at": 1, "fail_mode": "fatal"}})).json_body
    retried = client.http.post("/jobs", headers=auth(), body=json.dumps(
        {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0, "fail_at": 1}})).json_body
    big = client.http.post("/jobs", headers=auth(), body=json.dumps(
        {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0, "message_chars": 100_000}})).json_body
    held = client.http.post("/jobs", headers=auth(), body=json.dumps({**steps, "delay_seconds": 7200})).json_body
    client.http.get(f"/jobs/{ok['id']}", headers=auth())
    client.http.get("/jobs?limit=5", headers=auth())
    client.http.get("/jobs?status=queued", headers=auth())
    client.http.post("/jobs/status", headers=auth(), body=json.dumps({"job_ids": [ok["id"], held["id"]]}))
    client.http.get(f"/api/jobinfo/{ok['id']}", headers=auth())
    client.http.put("/cache/p-1/steps-summary", headers=auth(), body=json.dumps({"n": 1}))
    client.http.get("/cache/p-1/steps-summary", headers=auth())
    client.http.get("/api/system/stats", headers=_operator())
    client.http.get("/api/system/dlq", headers=_operator())
    client.http.post("/api/system/maintenance/health-check", headers=_operator())

    recorder = StreamRecorder(composition.container().store._ddb, aws["ddb"], "jobs")
    log.function = "JobWorker"
    drain(app, aws)
    client.http.get(f"/jobs/{big['id']}/artifacts", headers=auth())
    log.function = "APIHandler"
    client.http.get(f"/jobs/{retried['id']}/runs", headers=auth())
    client.http.delete(f"/jobs/{held['id']}", headers=auth())
    client.http.post("/api/system/dlq/redrive", headers=_operator())

    log.function = "EventPublisher"  # publishes the events and keeps the counters
    app.handler_map["event_publisher"]({"Records": recorder.records}, LambdaContext(60))

    tap = aws["sqs"].create_queue(QueueName="iam-tap")["QueueUrl"]
    arn = aws["sqs"].get_queue_attributes(QueueUrl=tap, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws["events"].put_rule(Name="iam-tap", EventBusName="job-events", EventPattern=json.dumps({"source": ["jobpipe"]}))
    aws["events"].put_targets(Rule="iam-tap", EventBusName="job-events", Targets=[{"Id": "t", "Arn": arn}])
    log.function = "EventPublisher"
    app.handler_map["event_publisher"]({"Records": recorder.records}, LambdaContext(60))
    envelopes = [m for m in receive_all({**aws, "tap": tap}, "tap")]
    messages = [{"MessageId": str(uuid.uuid4()), "Body": m["Body"], "ReceiptHandle": "rh"} for m in envelopes]
    scoped = [m for m in messages if json.loads(m["Body"])["detail"].get("scope")
              and json.loads(m["Body"])["detail"].get("status") == "completed"]
    assert scoped

    class Sender:
        def post(self, url, body, headers):
            return 200

    from chalicelib.subscribers.erp import ErpBridge

    composition.container().erp_bridge = ErpBridge(Sender(), "https://erp.example/hook", "x" * 32)
    log.function = "ErpBridge"
    app.handler_map["erp_bridge"](sqs_event(messages[:5]), LambdaContext(60))
    log.function = "CacheInvalidation"
    app.handler_map["cache_invalidation"](sqs_event(scoped), LambdaContext(60))

    log.function = "APIHandler"  # the submission is the API's (admission reads the stats table)
    lost = client.http.post("/jobs", headers=auth(), body=json.dumps(steps)).json_body
    log.function = "Reconciler"
    aws["sqs"].purge_queue(QueueUrl=aws["jobs_url"])
    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=json.dumps({"job_id": lost["id"], "attempt": 1}))
    scheduled = {"version": "0", "id": "e", "detail-type": "Scheduled Event", "source": "aws.events", "account": "1",
                 "time": "2026-11-30T12:00:00Z", "region": "us-east-1", "resources": [], "detail": {}}
    app.handler_map["reconciler"](scheduled, LambdaContext(120))
    app.handler_map["reconciler"]({**scheduled, "detail": {"maintenance_task": "health_check"}}, LambdaContext(120))

    roles = {logical: resource["Properties"]["Role"]["Fn::GetAtt"][0]
             for logical, resource in template["Resources"].items()
             if resource["Type"] == "AWS::Serverless::Function"}
    denied = {}
    for function, calls in log.calls.items():
        role = roles["JobWorker" if function == "JobWorker" else function]
        missing = sorted(c for c in calls if not allowed(template, role, *c))
        if missing:
            denied[function] = missing
    assert set(log.calls) >= {"APIHandler", "JobWorker", "EventPublisher", "ErpBridge",
                              "CacheInvalidation", "Reconciler"}
    assert not denied, denied
