"""Least privilege, checked: every AWS call each function makes (recorded on moto while it does
its work) is allowed by that function's role in the packaged template, on that resource.

ministack does not enforce IAM, so without this a missing permission would first show on AWS.
The scenarios drive each function through its paths (the API's routes, a worker's success,
retry and failure, the stream consumers, the subscribers, the reconciler's actions; and the API
with UseTaskQueue=false, the quota recount and the other dead-letter queues).

The check reads a policy as IAM does, as far as these roles need: a statement's `Fn::If` is
taken on the stack's parameters (their defaults unless a scenario sets them), a resource is
matched by logical id down to the index name and the object key, a `ForAllValues:StringLike`
condition on `dynamodb:LeadingKeys` is checked against the partition key of every item a call
reads or writes, and a `StringLike` condition on `s3:prefix` against the Prefix a listing names
(one that names none is refused, as on AWS), and a `StringEquals` or `StringLike` condition on
`events:source` or `events:detail-type` against each entry a PutEvents puts. The other way, every grant must be used by a call
the scenarios recorded or by its function's event source mapping, but for the paths listed in
NOT_DRIVEN_HERE. tests/unit/test_iam_grants.py pins the grants themselves, each with its why."""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Optional

import boto3
import pytest

from chalicelib import composition
from chalicelib.adapters.dynamodb_stream import as_delivered
from chalicelib.adapters.sqs_stream_failures import parked_body
from chalicelib.api.auth import issue_token
from chalicelib.defaults import QUOTA_RECHECK_S
from chalicelib.domain.job import utcnow
from chalicelib.maintenance import MaintenanceTasks
from scripts.package import template_path
from tests.functional.conftest import SECRET, LambdaContext, auth, drain, receive_all, sqs_event
from tests.support.infra import resources
from tests.support.stream import StreamRecorder, on_failure_record, read_stream

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = template_path(ROOT / "build")

# botocore operation -> the IAM actions it needs (the default is <service>:<Operation>).
SPECIAL_ACTIONS = {
    ("s3", "ListObjectsV2"): ["s3:ListBucket"],
    ("s3", "HeadObject"): ["s3:GetObject"],
    ("s3", "DeleteObjects"): ["s3:DeleteObject"],
    ("s3", "HeadBucket"): ["s3:ListBucket"],  # naming no prefix: refused where s3:prefix is a condition
    ("sqs", "SendMessageBatch"): ["sqs:SendMessage"],
    ("sqs", "DeleteMessageBatch"): ["sqs:DeleteMessage"],
    ("sqs", "ChangeMessageVisibilityBatch"): ["sqs:ChangeMessageVisibility"],
}
TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}
SERVICE_PREFIX = {"dynamodb": "dynamodb", "sqs": "sqs", "s3": "s3", "events": "events", "eventbridge": "events"}
# An ARN written out in a policy (`arn:${AWS::Partition}:<service>:...:<rest>`): the resource
# type its <rest> names, by prefix.
ARN_TYPES = {"events": ("event-bus/", "AWS::Events::EventBus"), "dynamodb": ("table/", "AWS::DynamoDB::Table"),
             "sqs": ("", "AWS::SQS::Queue")}


class Call(NamedTuple):
    """One authorization a request needs: the IAM action, the resource (a logical id, with
    `/index/<name>` or `/<object key>` when it is an index or an object), the partition keys
    of the items it touches (None where the request names no items: a Query, a Describe), and
    the Prefix an S3 request names (None where it names none: a HeadBucket, an unprefixed list),
    and the source and detail type of the event a PutEvents entry puts (one Call per entry)."""

    action: str
    resource: str
    keys: Optional[tuple[str, ...]] = None
    prefix: Optional[str] = None
    event: Optional[tuple[str, str]] = None  # a PutEvents entry's (Source, DetailType): IAM checks each


class CallLog:
    """Every AWS call, as Calls, by the function running."""

    def __init__(self, names: dict[str, str]) -> None:
        self.function = "none"
        self.task: Optional[str] = None  # the maintenance task running, if any
        self.calls: dict[str, set[Call]] = defaultdict(set)
        self.outside_tasks: dict[str, set[Call]] = defaultdict(set)  # the calls made while none ran
        self._resources = dict(names)  # physical name or URL -> logical id
        infra = resources()
        self._hash_keys = {logical: next(k["AttributeName"] for k in infra[logical]["Properties"]["KeySchema"]
                                         if k["KeyType"] == "HASH")
                           for logical in names.values() if infra.get(logical, {}).get("Type") == "AWS::DynamoDB::Table"}

    def name(self, physical: str, logical: str) -> None:
        self._resources[physical] = logical

    def hook(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        service = SERVICE_PREFIX[model.service_model.signing_name]
        calls = set(self._calls(service, model.name, params))
        self.calls[self.function] |= calls
        if self.task is None:
            self.outside_tasks[self.function] |= calls

    def _calls(self, service: str, operation: str, params: dict[str, Any]) -> Iterator[Call]:
        if operation == "TransactWriteItems":
            for item in params["TransactItems"]:
                (kind, action), = item.items()
                yield self._item_call(f"dynamodb:{TRANSACT_ACTIONS[kind]}", action["TableName"],
                                      [action.get("Key") or action["Item"]])
            return
        if operation in ("BatchGetItem", "BatchWriteItem"):
            for table, request in params["RequestItems"].items():
                items = request["Keys"] if operation == "BatchGetItem" else [
                    r.get("PutRequest", {}).get("Item") or r["DeleteRequest"]["Key"] for r in request]
                yield self._item_call(f"dynamodb:{operation}", table, items)
            return
        if (service, operation) == ("events", "PutEvents"):
            for entry in params["Entries"]:
                yield Call("events:PutEvents", self._resources.get(entry["EventBusName"], "?"),
                           event=(entry["Source"], entry["DetailType"]))
            return
        actions = SPECIAL_ACTIONS.get((service, operation), [f"{service}:{operation}"])
        if service == "dynamodb" and ("Key" in params or "Item" in params):
            for action in actions:
                yield self._item_call(action, params["TableName"], [params.get("Key") or params["Item"]])
            return
        prefix = params.get("Prefix") if service == "s3" else None
        for action in actions:
            for resource in self._resources_of(params):
                yield Call(action, resource, prefix=prefix)

    def _item_call(self, action: str, table: str, items: list[dict[str, Any]]) -> Call:
        logical = self._resources.get(table, table)
        hash_key = self._hash_keys[logical]
        return Call(action, logical, tuple(sorted({item[hash_key]["S"] for item in items})))

    def _resources_of(self, params: dict[str, Any]) -> list[str]:
        if "Bucket" in params:
            bucket = self._resources.get(params["Bucket"], params["Bucket"])
            if "Delete" in params:  # DeleteObjects: each object
                return [f"{bucket}/{o['Key']}" for o in params["Delete"]["Objects"]]
            return [f"{bucket}/{params['Key']}" if "Key" in params else bucket]
        if "StreamArn" in params:  # a stream's records are read through iterators of it
            self._iterated = self._resources.get(params["StreamArn"], params["StreamArn"])
            return [self._iterated]
        if "ShardIterator" in params:
            return [getattr(self, "_iterated", "?")]
        for key in ("TableName", "QueueUrl", "EventBusName", "Name"):
            if key in params:
                value = params[key]
                suffix = f"/index/{params['IndexName']}" if "IndexName" in params else ""
                return [self._resources.get(value, value) + suffix]
        return ["*"]


def _evaluate(template: dict[str, Any], expression: Any, parameters: dict[str, Any]) -> Any:
    """A condition or a condition function's argument, on `parameters` (else the defaults)."""
    if isinstance(expression, dict):
        (function, argument), = expression.items()
        if function == "Ref":
            default = template["Parameters"][argument].get("Default")
            return str(parameters.get(argument, default))
        if function == "Condition":
            return _evaluate(template, template["Conditions"][argument], parameters)
        values = [_evaluate(template, a, parameters) for a in argument]
        if function == "Fn::Equals":
            return values[0] == values[1]
        if function == "Fn::Not":
            return not values[0]
        if function == "Fn::And":
            return all(values)
        if function == "Fn::Or":
            return any(values)
        raise ValueError(f"cannot evaluate {function}")
    return str(expression)


def _documents(template: dict[str, Any], role: str) -> Iterator[tuple[dict[str, Any], tuple[str, ...]]]:
    """(policy document, the roles holding it) of the role's own policies and of each managed
    policy of the stack it holds (the three priority workers share one)."""
    resources = template["Resources"]
    for policy in resources[role]["Properties"].get("Policies", []):
        yield policy["PolicyDocument"], (role,)
    for arn in resources[role]["Properties"].get("ManagedPolicyArns", []):
        holders = tuple(name for name, r in resources.items() if r["Type"] == "AWS::IAM::Role"
                        and arn in r["Properties"].get("ManagedPolicyArns", []))
        yield resources[arn["Ref"]]["Properties"]["PolicyDocument"], holders


def held_statements(template: dict[str, Any], role: str,
                    parameters: Optional[dict[str, Any]] = None) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    """(statement, the roles holding it) of the role's policies as a stack with `parameters`
    (else the defaults) has them."""
    out = []
    for document, holders in _documents(template, role):
        for statement in document["Statement"]:
            while isinstance(statement, dict) and "Fn::If" in statement:
                condition, when_true, when_false = statement["Fn::If"]
                holds = _evaluate(template, template["Conditions"][condition], parameters or {})
                statement = when_true if holds else when_false
            if statement != {"Ref": "AWS::NoValue"}:
                out.append((statement, holders))
    return out


def statements(template: dict[str, Any], role: str, parameters: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]:
    """The role's policy statements as a stack with `parameters` (else the defaults) has them."""
    return [statement for statement, _ in held_statements(template, role, parameters)]


def _patterns(template: dict[str, Any], resource: Any) -> list[str]:
    """Glob patterns over Call.resource that a statement's Resource names."""
    out: list[str] = []
    for entry in resource if isinstance(resource, list) else [resource]:
        if entry == "*":
            out.append("*")
        elif isinstance(entry, dict) and "Fn::GetAtt" in entry:
            logical, attribute = entry["Fn::GetAtt"]
            out.append(logical if attribute == "Arn" else f"{logical}/{attribute}")
        elif isinstance(entry, dict) and "Fn::Sub" in entry:
            text = entry["Fn::Sub"] if isinstance(entry["Fn::Sub"], str) else entry["Fn::Sub"][0]
            own = re.fullmatch(r"\$\{(\w+)\.Arn\}(/.*)?", text)
            written = re.fullmatch(r"arn:\$\{AWS::Partition\}:(\w+):\$\{AWS::Region\}:\$\{AWS::AccountId\}:(.*)", text)
            if own:
                out.append(own.group(1) + (own.group(2) or ""))
            elif written and written.group(1) in ARN_TYPES:
                prefix, kind = ARN_TYPES[written.group(1)]
                rest = written.group(2)
                if rest == prefix + "*":  # every resource of that type (by name: not matched here)
                    out += [name for name, r in template["Resources"].items() if r["Type"] == kind]
            elif written:
                out.append(f"arn:{written.group(1)}:{written.group(2)}")  # logs and such: no call names it
            else:
                raise ValueError(f"the test cannot read the resource {text!r}")
        else:
            raise ValueError(f"the test cannot read the resource {entry!r}")
    return out


def _glob(pattern: str) -> "re.Pattern[str]":
    """IAM's wildcards (`*` any run of characters, `?` one) as a regular expression."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern))


CONDITIONS = {("ForAllValues:StringLike", "dynamodb:LeadingKeys"), ("StringLike", "s3:prefix"),
              *((operator, key) for operator in ("StringEquals", "StringLike")
                for key in ("events:source", "events:detail-type"))}


def _condition_holds(condition: Optional[dict[str, Any]], call: Call) -> bool:
    """Whether every operator on every key of a statement's Condition holds for the call (IAM
    requires all); raises ValueError for one outside CONDITIONS."""
    tests = [(operator, key, values if isinstance(values, list) else [values])
             for operator, keys in (condition or {}).items() for key, values in keys.items()]
    for operator, key, _ in tests:
        if (operator, key) not in CONDITIONS:
            raise ValueError(f"the test cannot evaluate the condition {operator} {key}")
    for operator, key, values in tests:
        patterns = [_glob(p) if operator.endswith("StringLike") else re.compile(re.escape(p)) for p in values]
        if key.startswith("events:"):
            if call.event is None:  # a request that puts no event
                return False
            source, detail_type = call.event
            if not any(p.fullmatch(source if key == "events:source" else detail_type) for p in patterns):
                return False
        elif key == "dynamodb:LeadingKeys":
            if call.keys is None:  # a request that names no item (a Query's key is not read here)
                return False
            if not all(any(p.fullmatch(k) for p in patterns) for k in call.keys):
                return False
        elif call.prefix is None or not any(p.fullmatch(call.prefix) for p in patterns):
            return False  # no Prefix at all (HeadBucket, a whole-bucket list) fails it, as on AWS
    return True


def allowed(template: dict[str, Any], role: str, call: Call, parameters: Optional[dict[str, Any]] = None) -> bool:
    for statement in statements(template, role, parameters):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if statement["Effect"] != "Allow" or call.action not in actions:
            continue
        if any(_glob(p).fullmatch(call.resource) for p in _patterns(template, statement["Resource"])) \
                and _condition_holds(statement.get("Condition"), call):
            return True
    return False


def function_roles(template: dict[str, Any]) -> dict[str, str]:
    """function -> its role, by logical id."""
    return {logical: resource["Properties"]["Role"]["Fn::GetAtt"][0]
            for logical, resource in template["Resources"].items()
            if resource["Type"] == "AWS::Serverless::Function"}


def denied(template: dict[str, Any], log: CallLog, parameters: Optional[dict[str, Any]] = None) -> dict[str, list]:
    """function -> the calls its role does not allow (with one example of their keys or prefix)."""
    roles = function_roles(template)
    out = {}
    for function, calls in log.calls.items():
        missing = {(c.action, c.resource): c.keys or c.prefix for c in calls
                   if not allowed(template, roles[function], c, parameters)}
        if missing:
            out[function] = sorted(missing.items())
    return out


def made(log: CallLog, function: str, action: str, resource: str) -> bool:
    """Whether `function` made a call of `action` on a resource matching the glob `resource`."""
    return any(c.action == action and _glob(resource).fullmatch(c.resource) for c in log.calls[function])


# What a function's event source mapping does with its role (Lambda polls for the function):
# these grants are used by no code of it. From the template's event sources.
SQS_SOURCE_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                      "sqs:GetQueueAttributes")
STREAM_SOURCE_ACTIONS = ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                         "dynamodb:ListStreams")


def _source_grants(template: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    """role -> (action, resource) its functions' event source mappings use: a queue's receive,
    delete, visibility and attributes; a stream's reads and its on-failure destination's send."""
    out: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for function, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        role = resource["Properties"]["Role"]["Fn::GetAtt"][0]
        for event in resource["Properties"].get("Events", {}).values():
            source = event["Properties"]
            if event["Type"] == "SQS":
                queues = _patterns(template, source["Queue"])
                assert len(queues) == 1, f"{function} reads {source['Queue']}, no one queue of the stack"
                (queue,) = queues
                out[role] |= {(a, queue) for a in SQS_SOURCE_ACTIONS}
            elif event["Type"] == "DynamoDB":
                stream = re.sub(r"^\$\{(\w+)\.StreamArn\}$", r"\1/StreamArn", source["Stream"]["Fn::Sub"])
                out[role] |= {(a, stream) for a in STREAM_SOURCE_ACTIONS}
                failure = source.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
                if failure is not None:
                    out[role] |= {("sqs:SendMessage", p) for p in _patterns(template, failure)}
    return out


def _priority_family(resource: str) -> str:
    """The jobs queues and their DLQs by what the code does with them, not by priority: the
    adapters pick one of the three by the job's priority, so a call on one uses the grant of
    each (a scenario need not run every priority)."""
    return re.sub(r"^(JobsQueue|JobsDeadLetterQueue)(High|Low)$", r"\1", resource)


def unused(template: dict[str, Any], log: CallLog, parameters: Optional[dict[str, Any]] = None,
           roles: Optional[set[str]] = None, shared: bool = False) -> set[tuple[str, str, str]]:
    """(role, action, resource) granted (on the stack with `parameters`) that no recorded call of
    the role's functions used and no event source mapping of them uses; logs and X-Ray left out
    (every function writes both). A policy several roles hold is used by the calls of all their
    functions. `shared`: look only at the statements of such a policy."""
    functions: dict[str, set[str]] = defaultdict(set)
    for logical, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            functions[resource["Properties"]["Role"]["Fn::GetAtt"][0]].add(logical)
    sources = _source_grants(template)
    out = set()
    for role in sorted(roles or functions):
        for statement, holders in held_statements(template, role, parameters):
            if shared and len(holders) < 2:
                continue
            calls = [c for holder in holders for f in functions[holder] for c in log.calls.get(f, ())]
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            for action in actions:
                if action.startswith(("logs:", "xray:")):
                    continue
                for pattern in _patterns(template, statement["Resource"]):
                    if (action, pattern) in sources[role]:
                        continue
                    if not any(c.action == action and (_glob(pattern).fullmatch(c.resource)
                                                       or _priority_family(c.resource) == _priority_family(pattern))
                               and _condition_holds(statement.get("Condition"), c) for c in calls):
                        out.add((role, action, pattern))
    return out


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

    def recording_client(self, service, **kwargs):
        client = original(self, service, **kwargs)
        client.meta.events.register("before-parameter-build", calls.hook)
        return client

    monkeypatch.setattr(composition.Container, "client", recording_client)
    run = MaintenanceTasks.run

    def tagged(self, task, *args, **kwargs):
        calls.task = task
        try:
            return run(self, task, *args, **kwargs)
        finally:
            calls.task = None

    monkeypatch.setattr(MaintenanceTasks, "run", tagged)
    composition.use(None)
    return calls


# Each priority's worker has a role of its own: its calls are logged as its function's.
WORKER_FUNCTIONS = {"job_worker": "JobWorker", "job_worker_high": "JobWorkerHigh", "job_worker_low": "JobWorkerLow"}


def drain_as_each_worker(app, aws, log: CallLog, monkeypatch) -> None:
    """`drain`, each worker's calls logged as made by its own function."""
    for handler, function in WORKER_FUNCTIONS.items():
        def as_function(event, context, run=app.handler_map[handler], function=function):
            log.function = function
            return run(event, context)

        monkeypatch.setitem(app.handler_map, handler, as_function)
    drain(app, aws)


def _operator():
    token = issue_token(SECRET, user="op", tenant="ops", roles=["admin", "operator"])
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def test_every_call_of_every_function_is_allowed_by_its_role(template, log, app, client, aws, monkeypatch):
    steps = {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0}}
    stream_failures = aws["sqs"].create_queue(QueueName="iam-stream-failures")["QueueUrl"]
    monkeypatch.setenv("JOBPIPE_STREAM_FAILURE_QUEUE_URL", stream_failures)
    log.name(stream_failures, "StreamFailureQueue")
    erp_dead_letters = aws["sqs"].create_queue(QueueName="iam-erp-webhook-dlq")["QueueUrl"]
    monkeypatch.setenv("JOBPIPE_ERP_WEBHOOK_DLQ_URL", erp_dead_letters)
    log.name(erp_dead_letters, "ErpWebhookDeadLetterQueue")
    log.function = "APIHandler"
    # In a scope with a cache: its completion reaches cache invalidation with work to do.
    ok = client.http.post("/jobs", headers=auth(), body=json.dumps({**steps, "scope": "p-1"})).json_body
    client.http.post("/jobs", headers=auth(**{"Idempotency-Key": "k1"}), body=json.dumps(steps))
    failing = client.http.post("/jobs", headers=auth(), body=json.dumps(
        {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0, "fail_at": 1, "fail_mode": "fatal"}})).json_body
    # Each worker dead-letters to its own priority's DLQ: a high job failing for good too.
    client.http.post("/jobs", headers=auth(), body=json.dumps({"type": "demo.steps", "priority": "high", "payload": {
        "steps": 2, "step_ms": 0, "fail_at": 1, "fail_mode": "fatal"}}))
    retried = client.http.post("/jobs", headers=auth(), body=json.dumps(
        {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0, "fail_at": 1}})).json_body
    # Payload, result and an artifact each over the inline limit: all three go to S3 (jobs/<id>/).
    big = client.http.post("/jobs", headers=auth(), body=json.dumps({"type": "demo.outputs", "payload": {
        "artifact_bytes": 100_000, "result_bytes": 100_000, "pad": "p" * 70_000}})).json_body
    # A keyed replay of a large payload: the object it wrote before its key was found is deleted.
    keyed_big = json.dumps({"type": "demo.outputs", "payload": {"artifact_bytes": 10, "result_bytes": 10,
                                                                 "pad": "p" * 70_000}})
    first = client.http.post("/jobs", headers=auth(**{"Idempotency-Key": "k-big"}), body=keyed_big).json_body
    again = client.http.post("/jobs", headers=auth(**{"Idempotency-Key": "k-big"}), body=keyed_big).json_body
    assert again["id"] == first["id"], again
    held = client.http.post("/jobs", headers=auth(), body=json.dumps({**steps, "delay_seconds": 7200})).json_body
    # A parent whose worker spawns a child (its admission, and the read of its id).
    client.http.post("/jobs", headers=auth(), body=json.dumps(
        {"type": "demo.fanout", "payload": {"children": 1, "steps": 1, "step_ms": 0}}))
    client.http.get(f"/jobs/{ok['id']}", headers=auth())
    client.http.get("/jobs?limit=5", headers=auth())
    client.http.get("/jobs?status=queued", headers=auth())
    client.http.get("/jobs?type=demo.steps", headers=auth())
    client.http.post("/jobs/status", headers=auth(), body=json.dumps({"job_ids": [ok["id"], held["id"]]}))
    client.http.get(f"/api/jobinfo/{ok['id']}", headers=auth())
    client.http.put("/cache/p-1/steps-summary", headers=auth(), body=json.dumps({"n": 1}))
    client.http.get("/cache/p-1/steps-summary", headers=auth())
    client.http.get("/api/system/stats", headers=_operator())
    client.http.get("/api/system/dlq", headers=_operator())
    client.http.post("/api/system/maintenance/health-check", headers=_operator())
    # The tenant's counter left high (lost stream changes), and a fresh process: the worker's
    # admission of the spawned child counts the status index before it would refuse it.
    aws["ddb"].put_item(TableName="stats", Item={"pk": {"S": "TENANT#acme"}, "unfinished": {"N": "100000"}})
    composition.use(None)

    recorder = StreamRecorder(composition.container().store._ddb, aws["ddb"], "jobs")
    # A message that is no job message: parked on the DLQ once, on the worker's delivery ledger.
    aws["sqs"].send_message(QueueUrl=aws["jobs_url"], MessageBody="not json")
    aws["sqs"].send_message(QueueUrl=aws["low_url"], MessageBody="not json either")
    drain_as_each_worker(app, aws, log, monkeypatch)
    log.function = "APIHandler"
    assert client.http.get(f"/jobs/{big['id']}", headers=auth()).json_body["status"] == "completed"
    client.http.get(f"/jobs/{big['id']}/artifacts", headers=auth())
    assert "url" in client.http.get(f"/jobs/{big['id']}/artifacts/data.bin", headers=auth()).json_body
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

    class Sender:  # refuses one event for good: the bridge parks it on its dead-letter queue
        refused = json.loads(messages[0]["Body"])["detail"]["event_id"]

        def post(self, url, body, headers, timeout_s=None):
            return WebhookAnswer(422 if headers["X-Jobpipe-Event-Id"] == self.refused else 200)

    from chalicelib.ports import WebhookAnswer
    from chalicelib.subscribers.erp import ErpBridge

    composition.container().erp_bridge = ErpBridge(Sender(), "https://erp.example/hook", "x" * 32)
    log.function = "ErpBridge"
    erp_queue = aws["sqs"].create_queue(QueueName="iam-erp-webhook")["QueueUrl"]
    log.name(erp_queue, "ErpWebhookQueue")  # the parked event's message is deleted from it at once
    erp_arn = aws["sqs"].get_queue_attributes(QueueUrl=erp_queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    app.handler_map["erp_bridge"](sqs_event(messages[:5], erp_arn), LambdaContext(60))
    log.function = "CacheInvalidation"
    app.handler_map["cache_invalidation"](sqs_event(scoped), LambdaContext(60))

    log.function = "APIHandler"  # the submission is the API's (admission reads the stats table)
    lost = client.http.post("/jobs", headers=auth(), body=json.dumps(steps)).json_body
    # A job whose resends are spent: the reconciler reads its queue's depth before it fails it.
    spent = client.http.post("/jobs", headers=auth(), body=json.dumps(steps)).json_body
    _spend_dispatches(aws["ddb"], spent["id"])
    # A job item edited by hand (a newer version's status): the replay parks its record.
    edited = client.http.post("/jobs", headers=auth(), body=json.dumps(steps)).json_body
    _edit_by_hand(aws["ddb"], edited["id"])
    # A stream batch the event publisher gave up on: the reconciler replays it from the stream,
    # parking the record it cannot read on StreamFailureQueue.
    stream_arn, shard, records = read_stream(aws["ddb"], boto3.client("dynamodbstreams"), "jobs")
    log.name(stream_arn, "JobsTable/StreamArn")
    first, *_, last = [r["dynamodb"]["SequenceNumber"] for r in records]
    aws["sqs"].send_message(QueueUrl=stream_failures, MessageBody=on_failure_record(stream_arn, shard, first, last, 2))
    # A record no version reads (a status edited in by hand), parked whole: the reconciler takes
    # it, records the take, fails and hides it; an operator then gives it up.
    unreadable = as_delivered(copy.deepcopy(records[-1]))
    unreadable["dynamodb"]["NewImage"]["status"] = {"S": "paused"}
    parked = aws["sqs"].send_message(QueueUrl=stream_failures, MessageBody=parked_body(unreadable))["MessageId"]
    aws["sqs"].purge_queue(QueueUrl=aws["jobs_url"])
    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=json.dumps({"job_id": lost["id"], "attempt": 1}))
    # The letter of a job retention removed: the reconciler deletes it.
    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=json.dumps(
        {"job_id": "00000000-0000-4000-8000-000000000000", "attempt": 1}))
    assert client.http.get("/api/system/dlq", headers=_operator()).json_body["dead_letters"]["normal"]
    log.function = "Reconciler"
    scheduled = {"version": "0", "id": "e", "detail-type": "Scheduled Event", "source": "aws.events", "account": "1",
                 "time": "2026-11-30T12:00:00Z", "region": "us-east-1", "resources": [], "detail": {}}
    app.handler_map["reconciler"](scheduled, LambdaContext(120))
    app.handler_map["reconciler"]({**scheduled, "detail": {"maintenance_task": "health_check"}}, LambdaContext(120))
    log.function = "APIHandler"
    dropped = client.http.delete(f"/api/system/dlq/letters/{parked}?queue=stream_failure", headers=_operator())
    assert dropped.status_code == 202, dropped.body

    # The maintenance tasks, queued and run by a worker, three hours on: the finished jobs above
    # and a scratch object are removed, the statistics read.
    log.function = "APIHandler"
    for task in ("cleanup-runs?max_age_hours=1", "cleanup-temp-files?max_age_hours=1", "log-statistics"):
        assert client.http.post(f"/api/system/maintenance/{task}", headers=_operator()).status_code == 202
    aws["s3"].put_object(Bucket="jobs-bucket", Key="tmp/scratch.bin", Body=b"x")
    later = utcnow() + timedelta(hours=3)
    monkeypatch.setattr(composition.container().maintenance, "_clock", lambda: later)
    drain_as_each_worker(app, aws, log, monkeypatch)
    assert client.http.get(f"/jobs/{big['id']}", headers=auth()).status_code == 404

    assert set(log.calls) >= {"APIHandler", "JobWorker", "EventPublisher", "ErpBridge",
                              "CacheInvalidation", "Reconciler"}
    # The paths the narrowed grants serve were taken (a missing one would make this test vacuous).
    assert made(log, "APIHandler", "dynamodb:PutItem", "IdempotencyTable")
    assert made(log, "APIHandler", "s3:PutObject", "JobsBucket/jobs/*")
    assert made(log, "APIHandler", "s3:GetObject", "JobsBucket/jobs/*")
    assert made(log, "APIHandler", "dynamodb:UpdateItem", "StatsTable")
    assert made(log, "APIHandler", "s3:DeleteObject", "JobsBucket/jobs/*")
    assert made(log, "JobWorker", "s3:PutObject", "JobsBucket/jobs/*")
    assert made(log, "JobWorker", "s3:GetObject", "JobsBucket/jobs/*")
    assert made(log, "JobWorker", "dynamodb:PutItem", "IdempotencyTable")
    assert any(made(log, worker, "dynamodb:Query", "JobsTable/index/by_status") for worker in WORKER_FUNCTIONS.values())
    assert made(log, "ErpBridge", "dynamodb:BatchWriteItem", "IdempotencyTable")
    assert made(log, "ErpBridge", "sqs:SendMessage", "ErpWebhookDeadLetterQueue")
    assert made(log, "CacheInvalidation", "dynamodb:UpdateItem", "JobsTable")
    assert made(log, "Reconciler", "dynamodb:Query", "JobsTable/index/by_due")
    assert made(log, "Reconciler", "dynamodb:GetRecords", "JobsTable/StreamArn")
    assert made(log, "Reconciler", "events:PutEvents", "JobEventsBus")
    assert made(log, "Reconciler", "dynamodb:PutItem", "StatsTable")
    assert made(log, "Reconciler", "sqs:DeleteMessage", "StreamFailureQueue")
    assert made(log, "Reconciler", "sqs:ChangeMessageVisibility", "StreamFailureQueue")
    assert made(log, "Reconciler", "sqs:SendMessage", "StreamFailureQueue")
    assert made(log, "Reconciler", "sqs:GetQueueAttributes", "JobsQueue")
    assert made(log, "Reconciler", "sqs:DeleteMessage", "JobsDeadLetterQueue")
    assert not denied(template, log), denied(template, log)
    # Each publisher may put its own events on the bus and no other: a job status event there
    # reaches the ERP, signed, so only the stream's publishers (and its replay) may put one.
    status = Call("events:PutEvents", "JobEventsBus", event=("jobpipe", "job.status.changed"))
    announcement = Call("events:PutEvents", "JobEventsBus", event=("jobpipe", "cache.invalidated"))
    for role, own, other in (("EventPublisherRole", status, announcement), ("ReconcilerRole", status, announcement),
                             ("CacheInvalidationRole", announcement, status)):
        assert allowed(template, role, own) and not allowed(template, role, other), role
        assert not allowed(template, role, own._replace(event=("other", own.event[1]))), role
    RECORDED["queued"] = log


def _spend_dispatches(ddb: Any, job_id: str) -> None:
    """The job as its 24th unclaimed message leaves it, due an hour ago (written unrecorded)."""
    from chalicelib.adapters.dynamodb_items import due_keys, job_key
    from chalicelib.defaults import MAX_DISPATCHES
    from chalicelib.domain.job import isoformat

    due_at = isoformat(utcnow() - timedelta(hours=1))
    ddb.update_item(TableName="jobs", Key=job_key(job_id),
                    UpdateExpression="SET dispatches = :n, due_at = :due, gsi5sk = :sk",
                    ExpressionAttributeValues={":n": {"N": str(MAX_DISPATCHES)}, ":due": {"S": due_at},
                                               ":sk": {"S": due_keys(job_id, due_at)[1]}})


def _edit_by_hand(ddb: Any, job_id: str) -> None:
    """The job's item as a newer version might write it: a status this one cannot read (written
    unrecorded; its stream record is what the reconciler's replay meets)."""
    from chalicelib.adapters.dynamodb_items import job_key

    ddb.update_item(TableName="jobs", Key=job_key(job_id), UpdateExpression="SET #s = :s, version = :v",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={":s": {"S": "paused"}, ":v": {"N": "2"}})


def test_the_api_running_maintenance_inline_and_reading_every_dead_letter_queue_is_allowed(
        template, log, app, client, aws, monkeypatch):
    """UseTaskQueue=false: the clean-ups, the health check and the statistics run in the API
    function, on the grants the stack adds for it; with the defaults (queued tasks) it has none
    of them. Also the admission recount (the status index), a keyed replay refused by the quota
    (a read of its Idempotency-Key), and peek, depth and redrive of the subscribers' and the
    event bus's dead-letter queues."""
    sqs = aws["sqs"]
    queues = {"ErpWebhookQueue": ("erp-webhook", "JOBPIPE_ERP_WEBHOOK_QUEUE_URL"),
              "ErpWebhookDeadLetterQueue": ("erp-webhook-dlq", "JOBPIPE_ERP_WEBHOOK_DLQ_URL"),
              "ErpOutboundQueue": ("erp-outbound", "JOBPIPE_ERP_OUTBOUND_QUEUE_URL"),
              "ErpOutboundDeadLetterQueue": ("erp-outbound-dlq", "JOBPIPE_ERP_OUTBOUND_DLQ_URL"),
              "CacheInvalidationQueue": ("cache-invalidation", "JOBPIPE_CACHE_QUEUE_URL"),
              "CacheInvalidationDeadLetterQueue": ("cache-invalidation-dlq", "JOBPIPE_CACHE_DLQ_URL"),
              "EventDeliveryDeadLetterQueue": ("event-delivery-dlq", "JOBPIPE_EVENT_DELIVERY_DLQ_URL"),
              "StreamFailureQueue": ("stream-failure", "JOBPIPE_STREAM_FAILURE_QUEUE_URL")}
    for logical, (name, variable) in queues.items():
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        log.name(url, logical)
        monkeypatch.setenv(variable, url)
        if "DeadLetter" in logical or logical == "StreamFailureQueue":
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"detail": {"event_id": f"e-{name}"}}))
    # An event the bus could not deliver to the ERP bridge's queue: a redrive sends it there.
    target = "arn:aws:sqs:us-east-1:123456789012:erp-webhook"
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName="event-delivery-dlq")["QueueUrl"],
                     MessageBody=json.dumps({"detail": {"event_id": "e-delivered"}}),
                     MessageAttributes={"TARGET_ARN": {"DataType": "String", "StringValue": target}})
    monkeypatch.setenv("USE_TASK_QUEUE", "false")
    monkeypatch.setenv("JOBPIPE_TENANT_MAX_UNFINISHED_JOBS", "1")
    composition.use(None)

    log.function = "APIHandler"
    big = client.http.post("/jobs", headers=auth(), body=json.dumps(
        {"type": "demo.outputs", "payload": {"artifact_bytes": 100_000, "result_bytes": 100_000}})).json_body
    drain_as_each_worker(app, aws, log, monkeypatch)
    log.function = "APIHandler"
    # A counter left high (lost stream changes): admission counts the status index first.
    aws["ddb"].put_item(TableName="stats", Item={"pk": {"S": "TENANT#acme"}, "unfinished": {"N": "100"}})
    time.sleep(QUOTA_RECHECK_S)  # the count taken to admit `big` has stood in for its second
    keyed = {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}
    first = client.http.post("/jobs", headers=auth(**{"Idempotency-Key": "q-1"}), body=json.dumps(keyed))
    again = client.http.post("/jobs", headers=auth(**{"Idempotency-Key": "q-1"}), body=json.dumps(keyed))
    assert first.status_code == 202 and again.json_body["id"] == first.json_body["id"], again.body

    aws["s3"].put_object(Bucket="jobs-bucket", Key="tmp/scratch.bin", Body=b"x")
    later = utcnow() + timedelta(hours=3)  # the job above and the scratch object are then 3 h old
    monkeypatch.setattr(composition.container().maintenance, "_clock", lambda: later)
    operator = _operator()
    for task, query in (("cleanup-runs", "?max_age_hours=1"), ("cleanup-temp-files", "?max_age_hours=1"),
                        ("health-check", ""), ("log-statistics", "")):
        response = client.http.post(f"/api/system/maintenance/{task}{query}", headers=operator)
        assert response.status_code == 200 and response.json_body["task_id"] is None, response.body
        assert response.json_body["result"].get("healthy", True), response.body
    assert aws["s3"].list_objects_v2(Bucket="jobs-bucket").get("KeyCount") == 0
    assert client.http.get(f"/jobs/{big['id']}", headers=auth()).status_code == 404

    assert client.http.get("/api/system/stats", headers=operator).status_code == 200
    peeked = client.http.get("/api/system/dlq", headers=operator).json_body["dead_letters"]
    assert {name for name, letters in peeked.items() if letters} == {
        "erp_webhook", "erp_outbound", "cache_invalidation", "event_delivery", "stream_failure"}
    redriven = client.http.post("/api/system/dlq/redrive", headers=operator).json_body["redriven"]
    assert {name for name, moved in redriven.items() if moved["moved"]} == {"erp_webhook", "erp_outbound",
                                                                          "cache_invalidation", "event_delivery"}
    assert redriven["event_delivery"] == {"moved": 1, "failed": 1}  # the one naming no queue stays
    # A hand-made body on StreamFailureQueue, no batch's description: an operator deletes it.
    (stray,) = client.http.get("/api/system/dlq?queue=stream_failure", headers=operator).json_body[
        "dead_letters"]["stream_failure"]
    deleted = client.http.delete(f"/api/system/dlq/letters/{stray['message_id']}?queue=stream_failure", headers=operator)
    assert deleted.status_code == 200, deleted.body

    for action, resource in (("dynamodb:Query", "JobsTable/index/by_status"), ("dynamodb:GetItem", "IdempotencyTable"),
                             ("dynamodb:Query", "JobsTable/index/by_finished_day"),
                             ("dynamodb:BatchWriteItem", "JobsTable"), ("dynamodb:DescribeTable", "StatsTable"),
                             ("s3:ListBucket", "JobsBucket"), ("s3:DeleteObject", "JobsBucket/tmp/*"),
                             ("s3:DeleteObject", "JobsBucket/jobs/*"), ("events:DescribeEventBus", "JobEventsBus"),
                             ("sqs:ChangeMessageVisibility", "StreamFailureQueue"),
                             ("sqs:DeleteMessage", "ErpWebhookDeadLetterQueue"), ("sqs:SendMessage", "ErpWebhookQueue"),
                             ("sqs:DeleteMessage", "StreamFailureQueue")):
        assert made(log, "APIHandler", action, resource), (action, resource)
    inline = {"UseTaskQueue": "false"}
    assert not denied(template, log, inline), denied(template, log, inline)
    # With the default (tasks queued to the workers) the API has none of the clean-up grants.
    assert not allowed(template, "ApiHandlerRole", Call("dynamodb:BatchWriteItem", "JobsTable"))
    assert not allowed(template, "ApiHandlerRole", Call("events:DescribeEventBus", "JobEventsBus"))
    RECORDED["inline"] = log


# The calls of each scenario above, for the test below (which runs after them, in file order).
RECORDED: dict[str, CallLog] = {}
# Grants the scenarios do not reach, each on a path its function's code does take. Listed so
# that the set of unused grants is exact: one no code uses any more shows up as new.
NOT_DRIVEN_HERE = {
    # The job a conditional write returns is read whole: a claim-checked payload or result from S3.
    ("ReconcilerRole", "s3:GetObject", "JobsBucket/jobs/*"),
    # A lost attempt that was the job's last: its message is parked (lifecycle._dead_letter).
    *(("ReconcilerRole", "sqs:SendMessage", dlq) for dlq in
      ("JobsDeadLetterQueueHigh", "JobsDeadLetterQueue", "JobsDeadLetterQueueLow")),
}


def test_every_grant_is_used_by_its_functions_code_or_event_source(template):
    """The other way from the scenarios: a role grants no action on no resource that its
    functions' code (as the scenarios recorded it, both stacks' parameters) or their event
    source mappings use, but for the listed paths the scenarios do not take. A grant of the
    default stack is used only by what a default stack runs: the API's maintenance tasks, which
    run inline only with UseTaskQueue=false, use none of its grants there."""
    if set(RECORDED) != {"queued", "inline"}:
        pytest.skip("reads what both scenarios above recorded; run the module")
    default, inline = CallLog({}), CallLog({})
    for scenario, log in RECORDED.items():
        for function, calls in log.calls.items():
            inline.calls[function] |= calls
            untasked = function == "APIHandler" and scenario == "inline"
            default.calls[function] |= log.outside_tasks[function] if untasked else calls
    left = unused(template, default) | unused(template, inline, {"UseTaskQueue": "false"})
    assert left == NOT_DRIVEN_HERE, "\n".join(map(str, sorted(left ^ NOT_DRIVEN_HERE)))


def test_no_role_may_list_the_jobs_bucket_but_under_jobs_and_tmp(template):
    """The low worker (the clean-ups, and the API running them inline) lists a job's objects and
    the scratch objects, the normal one (the health check) the scratch objects, never the whole
    bucket: a listing naming no prefix (a HeadBucket too), or another one, is refused on every
    stack; the high worker lists nothing."""
    for parameters in ({}, {"UseTaskQueue": "false"}):
        for role in sorted(set(function_roles(template).values())):
            for prefix in (None, "", "other/", "jobs", "tmp", "jobsx/", "a/jobs/", "a/tmp/"):
                call = Call("s3:ListBucket", "JobsBucket", prefix=prefix)
                assert not allowed(template, role, call, parameters), (role, prefix, parameters)
    inline = {"UseTaskQueue": "false"}
    for prefix in ("tmp/", "jobs/00000000-0000-4000-8000-000000000000/"):
        assert allowed(template, "JobWorkerLowRole", Call("s3:ListBucket", "JobsBucket", prefix=prefix))
        assert allowed(template, "JobWorkerRole", Call("s3:ListBucket", "JobsBucket", prefix=prefix)) \
            == prefix.startswith("tmp/")
        assert not allowed(template, "JobWorkerHighRole", Call("s3:ListBucket", "JobsBucket", prefix=prefix))
        assert allowed(template, "ApiHandlerRole", Call("s3:ListBucket", "JobsBucket", prefix=prefix), inline)
        assert not allowed(template, "ApiHandlerRole", Call("s3:ListBucket", "JobsBucket", prefix=prefix))


def test_every_listing_the_scenarios_made_names_a_prefix_its_role_may_list(template):
    """What the workers (cleanup-runs, cleanup-temp-files, the health check) and the API running
    them inline listed above: each under one job's `jobs/<id>/` or under `tmp/`, each allowed."""
    if set(RECORDED) != {"queued", "inline"}:
        pytest.skip("reads what both scenarios above recorded; run the module")
    roles = function_roles(template)
    listed: dict[tuple[str, str], set[str]] = defaultdict(set)
    for scenario, parameters in (("queued", {}), ("inline", {"UseTaskQueue": "false"})):
        for function, calls in RECORDED[scenario].calls.items():
            for call in calls:
                if call.action != "s3:ListBucket":
                    continue
                assert call.prefix is not None and re.fullmatch(r"jobs/[0-9a-f-]{36}/|tmp/", call.prefix), call
                assert allowed(template, roles[function], call, parameters), (scenario, function, call)
                listed[scenario, function].add(call.prefix.split("/")[0])
    # The clean-ups are queued at low priority; the health check's probe, at normal, lists tmp/.
    assert listed == {("queued", "JobWorkerLow"): {"jobs", "tmp"}, ("queued", "JobWorker"): {"tmp"},
                      ("inline", "APIHandler"): {"jobs", "tmp"}}


# Shared grants the scenarios reach only inside a maintenance task, each on a path every
# priority's worker takes (so they stay in JobWorkersPolicy).
SHARED_NOT_DRIVEN_HERE = {
    # A result or artifact object whose record write failed is deleted (dynamodb_attempts.py,
    # artifacts.py); only clean-up's purges delete here.
    ("s3:DeleteObject", "JobsBucket/jobs/*"),
}


def test_what_the_priority_workers_share_is_used_by_work_each_of_them_does(template):
    """JobWorkersPolicy, which the three workers' roles hold, grants only what a job's run uses
    on any priority's worker. A maintenance task always runs at its type's priority (clean-ups
    low, the health check normal, the statistics high): what only a task uses belongs to the
    role of the worker of that priority, not to the two that never run it."""
    if "queued" not in RECORDED:
        pytest.skip("reads what the first scenario above recorded; run the module")
    outside = CallLog({})
    for function in WORKER_FUNCTIONS.values():
        outside.calls[function] = RECORDED["queued"].outside_tasks[function]
    left = {(action, resource) for _, action, resource in unused(template, outside, roles={"JobWorkerRole"}, shared=True)}
    assert left == SHARED_NOT_DRIVEN_HERE, "\n".join(map(str, sorted(left ^ SHARED_NOT_DRIVEN_HERE)))


def test_each_priority_worker_dead_letters_to_its_own_priority_only(template):
    """A worker parks only what its own queue delivered (a job runs on its priority's queue, and
    its letter goes to its priority's DLQ): its role may send to that DLQ and no other."""
    if "queued" not in RECORDED:
        pytest.skip("reads what the first scenario above recorded; run the module")
    roles = function_roles(template)
    dead_letter_queues = ("JobsDeadLetterQueueHigh", "JobsDeadLetterQueue", "JobsDeadLetterQueueLow")
    for function, own in (("JobWorkerHigh", "JobsDeadLetterQueueHigh"), ("JobWorker", "JobsDeadLetterQueue"),
                          ("JobWorkerLow", "JobsDeadLetterQueueLow")):
        sent = {c.resource for c in RECORDED["queued"].calls[function]
                if c.action == "sqs:SendMessage" and c.resource in dead_letter_queues}
        assert sent <= {own}, (function, sent)
        may = {q for q in dead_letter_queues if allowed(template, roles[function], Call("sqs:SendMessage", q))}
        assert may == {own}, (function, may)
    for function, own in (("JobWorkerHigh", "JobsDeadLetterQueueHigh"), ("JobWorker", "JobsDeadLetterQueue"),
                          ("JobWorkerLow", "JobsDeadLetterQueueLow")):
        assert made(RECORDED["queued"], function, "sqs:SendMessage", own), function


def test_the_reconciler_reads_and_writes_job_partitions_only(template):
    """It fails, retries, resends and records runs of jobs, and enqueues maintenance tasks; it
    completes none, so no scope's cache or task items (`SCOPE#…`) are its to touch."""
    if "queued" not in RECORDED:
        pytest.skip("reads what the first scenario above recorded; run the module")
    touched = {key.split("#")[0] for c in RECORDED["queued"].calls["Reconciler"]
               if c.resource == "JobsTable" and c.keys for key in c.keys}
    assert touched == {"JOB"}
    for action in ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"):
        assert allowed(template, "ReconcilerRole", Call(action, "JobsTable", keys=("JOB#j-1",))), action
        assert not allowed(template, "ReconcilerRole", Call(action, "JobsTable", keys=("SCOPE#acme#p-1",))), action


def test_the_clean_ups_delete_job_partitions_only(template):
    """cleanup-runs deletes a job's partition (its job, runs and artifacts) in BatchWriteItems,
    on the low worker and, inline, on the API: nothing else in the jobs table. Its grant is held
    to `JOB#*`, so a handler running on that worker (or a request path of the API) cannot wipe
    every tenant's scope caches and completions (`SCOPE#…`) in one request; their writes of
    those items (a completion's, PUT /cache) are item writes, not batches."""
    if set(RECORDED) != {"queued", "inline"}:
        pytest.skip("reads what both scenarios above recorded; run the module")
    for scenario, function in (("queued", "JobWorkerLow"), ("inline", "APIHandler")):
        batches = [c for c in RECORDED[scenario].calls[function]
                   if c.action == "dynamodb:BatchWriteItem" and c.resource == "JobsTable"]
        assert batches and {key.split("#")[0] for c in batches for key in c.keys} == {"JOB"}, (scenario, batches)
    inline = {"UseTaskQueue": "false"}
    for role, parameters in (("JobWorkerLowRole", {}), ("ApiHandlerRole", inline)):
        purge = Call("dynamodb:BatchWriteItem", "JobsTable", keys=("JOB#j-1", "JOB#j-2"))
        assert allowed(template, role, purge, parameters), role
        for keys in (("SCOPE#acme#p-1",), ("JOB#j-1", "SCOPE#acme#p-1"), ("T#acme",)):
            assert not allowed(template, role, purge._replace(keys=keys), parameters), (role, keys)
    for role in ("JobWorkerHighRole", "JobWorkerRole", "ApiHandlerRole"):
        assert not allowed(template, role, Call("dynamodb:BatchWriteItem", "JobsTable", keys=("JOB#j-1",))), role
