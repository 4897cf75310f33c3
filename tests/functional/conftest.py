"""Functional tests: the Chalice test client over the real AWS adapters, on moto."""
from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from typing import Iterator, Optional

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib import composition
from chalicelib.adapters.clocks import ManualClock, SystemClock
from chalicelib.api.auth import issue_token
from tests.support.infra import create_table
from tests.support.fast_moto import botocore_models_read_once, moto_transactions_keep_what_they_touch  # noqa: F401 - fixtures
from tests.support.moto_fidelity import (  # noqa: F401 - fixtures
    moto_batch_writes_over_25_are_refused,
    moto_updates_too_large_are_refused_whole,
)

SECRET = "functional-test-secret-0123456789abcdef"


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    # botocore sends DynamoDB Streams requests to an account's own endpoint, which moto does not serve.
    monkeypatch.setenv("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "jobpipe")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "jobpipe-pipeline")
    with mock_aws():
        ddb = boto3.client("dynamodb")
        sqs = boto3.client("sqs")
        create_table(ddb, "JobsTable", "jobs")
        create_table(ddb, "IdempotencyTable", "idempotency")
        create_table(ddb, "StatsTable", "stats")
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="jobs-bucket")
        urls = {}
        for priority in ("high", "normal", "low"):
            urls[f"dlq_{priority}"] = dlq = sqs.create_queue(QueueName=f"jobs-{priority}-dlq")["QueueUrl"]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            urls[priority] = sqs.create_queue(
                QueueName=f"jobs-{priority}",
                Attributes={
                    "VisibilityTimeout": "5400",
                    "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "10"}),
                },
            )["QueueUrl"]
        events = boto3.client("events")
        events.create_event_bus(Name="job-events")
        env = {
            "JOBPIPE_EVENT_BUS": "job-events",
            "PROGRESS_MIN_INTERVAL_S": "0",
            "ERP_WEBHOOK_URL": "https://erp.example/hook",
            "ERP_WEBHOOK_SECRET": "functional-webhook-secret-0123456789abcdef",
            "JOBPIPE_TABLE": "jobs",
            "JOBPIPE_IDEMPOTENCY_TABLE": "idempotency",
            "JOBPIPE_QUEUE_URL_HIGH": urls["high"],
            "JOBPIPE_QUEUE_URL_NORMAL": urls["normal"],
            "JOBPIPE_QUEUE_URL_LOW": urls["low"],
            "JOBPIPE_DLQ_URL": urls["dlq_normal"],
            "JOBPIPE_DLQ_URL_HIGH": urls["dlq_high"],
            "JOBPIPE_DLQ_URL_LOW": urls["dlq_low"],
            "JOBPIPE_AUTH_SECRET": SECRET,
            "JOBPIPE_RETRY_BASE_S": "1",
            "JOBPIPE_STATS_TABLE": "stats",
            "JOBPIPE_BUCKET": "jobs-bucket",
            "JOBPIPE_DEMO_JOB_TYPES": "true",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        composition.use(None)
        yield {
            "ddb": ddb, "sqs": sqs, "s3": s3, "events": events, "jobs_url": urls["normal"], "dlq_url": urls["dlq_normal"],
            "high_url": urls["high"], "low_url": urls["low"],
            "dlq_high_url": urls["dlq_high"], "dlq_low_url": urls["dlq_low"],
        }
        composition.use(None)


@pytest.fixture
def app(aws):
    from app import app as chalice_app

    return chalice_app


@pytest.fixture
def client(app):
    with Client(app) as test_client:
        yield test_client


@pytest.fixture
def worker_clock(app, monkeypatch) -> ManualClock:
    """The worker's clock (the container's), standing still until the test moves it: a
    batch-mate's turn comes within its short lease and before the wait after which it is handed
    back, however long the job ahead of it takes on a busy machine; a test about that timing
    moves it itself."""
    manual = ManualClock()
    monkeypatch.setattr(composition.container(), "clock", manual)
    return manual


@contextmanager
def batch_turns_standing() -> Iterator[None]:
    """Within the block, a batch's timing (its mates' turns, hand-back and lease extensions) on
    a clock standing still, so every message delivered in one batch runs in it however slow the
    machine; each attempt's own timing (progress window, cancel polls, remaining time) keeps the
    system clock the runner was built on. A clock the test put in the container is left alone."""
    services = composition.container()
    system = services.clock
    if not isinstance(system, SystemClock):
        yield
        return
    services.runner  # built now, on the system clock: it keeps the one it is built with
    services.clock = ManualClock()
    try:
        yield
    finally:
        services.clock = system


def token(tenant: str = "acme", user: str = "ann", roles=None, ttl_s: int = 3600) -> str:
    return issue_token(SECRET, user=user, tenant=tenant, roles=roles, ttl_s=ttl_s)


def auth(tenant: str = "acme", user: str = "ann", **extra) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(tenant, user)}", "Content-Type": "application/json", **extra}


def submit_job(client, body: dict, headers: Optional[dict] = None) -> dict:
    """POST /jobs as acme's ann (or with `headers`), asserting it was accepted: the job."""
    response = client.http.post("/jobs", headers=headers or auth(), body=json.dumps(body))
    assert response.status_code == 202, response.body
    return response.json_body


def get_job(client, job_id: str, headers: Optional[dict] = None) -> dict:
    """GET /jobs/{job_id} as acme's ann (or with `headers`): the body, whatever the status code."""
    return client.http.get(f"/jobs/{job_id}", headers=headers or auth()).json_body


def job_items(aws, job_id: str) -> list[dict]:
    """Every item of the job's partition in the jobs table (its own, its runs, its artifacts)."""
    return aws["ddb"].query(TableName="jobs", KeyConditionExpression="pk = :pk",
                            ExpressionAttributeValues={":pk": {"S": f"JOB#{job_id}"}})["Items"]


def job_objects(aws, job_id: str) -> list[str]:
    """The keys of the job's objects in the jobs bucket (claim-checks, results, artifacts)."""
    listed = aws["s3"].list_objects_v2(Bucket="jobs-bucket", Prefix=f"jobs/{job_id}/")
    return [o["Key"] for o in listed.get("Contents", [])]


def receive_all(aws, url_key: str = "jobs_url") -> list[dict]:
    """Every visible message on a queue (delays ignored by draining what is there now)."""
    messages = []
    while True:
        batch = aws["sqs"].receive_message(
            QueueUrl=aws[url_key], MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)


def sqs_event(messages: list[dict], queue_arn: str = "arn:aws:sqs:us-east-1:123456789012:jobs-normal") -> dict:
    """An SQS Lambda event with each record's own messageId (Chalice's generator repeats one)
    and its message attributes, as an event source mapping delivers them."""
    return {
        "Records": [
            {
                "messageId": m.get("MessageId", str(uuid.uuid4())),
                "receiptHandle": m.get("ReceiptHandle", "rh"),
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": (m.get("Attributes") or {}).get("ApproximateReceiveCount", "1")},
                "messageAttributes": {name: {"stringValue": a.get("StringValue"), "dataType": a["DataType"]}
                                      for name, a in (m.get("MessageAttributes") or {}).items()},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


class LambdaContext:
    """A Lambda context with the worker's real timeout (Chalice's test client gives 3 s)."""

    function_name = "job_worker"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:job_worker"

    def __init__(self, timeout_s: float = 900) -> None:
        import time as _time

        self._deadline = _time.monotonic() + timeout_s
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        import time as _time

        return int((self._deadline - _time.monotonic()) * 1000)


WORKERS = {"high_url": ("job_worker_high", "high"), "jobs_url": ("job_worker", "normal"),
           "low_url": ("job_worker_low", "low")}


def drain(app, aws, *, rounds: int = 10) -> None:
    """Deliver what is on the three job queues to their worker functions until all are empty
    (waiting out the short retry delays). What is on a queue goes as one batch, each run in it
    (batch_turns_standing): none is handed back to the queue because a job ahead took long."""
    with batch_turns_standing():
        _drain(app, aws, rounds)


def _drain(app, aws, rounds: int) -> None:
    import time as _time

    for _ in range(rounds):
        delivered = False
        for url_key, (function, priority) in WORKERS.items():
            messages = receive_all(aws, url_key)
            if messages:
                delivered = True
                invoke_worker(app, sqs_event(messages, f"arn:aws:sqs:us-east-1:123456789012:jobs-{priority}"),
                              function=function)
        if not delivered:
            if not any(receive_all_peek(aws, k) for k in WORKERS):
                return  # nothing delayed either: nothing to wait for
            _time.sleep(1.1)


def receive_when_due(aws, url_key: str = "jobs_url", within_s: float = 10) -> list[dict]:
    """What the queue holds, waiting for delayed messages (a retry's) to come due: [] only once
    it holds none, visible or delayed, or `within_s` has passed."""
    import time as _time

    deadline = _time.monotonic() + within_s
    messages = receive_all(aws, url_key)
    while not messages and receive_all_peek(aws, url_key) and _time.monotonic() < deadline:
        _time.sleep(0.25)
        messages = receive_all(aws, url_key)
    return messages


def receive_all_peek(aws, url_key: str) -> int:
    attributes = aws["sqs"].get_queue_attributes(
        QueueUrl=aws[url_key], AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesDelayed"])


def invoke_worker(app, event: dict, timeout_s: float = 900, function: str = "job_worker") -> dict:
    return app.handler_map[function](event, LambdaContext(timeout_s))


@pytest.fixture
def tap(aws):
    """A rule on the bus sending every jobpipe event to a test queue: a function returning the
    event envelopes that arrived since it was last called."""
    url = aws["sqs"].create_queue(QueueName="tap")["QueueUrl"]
    arn = aws["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws["events"].put_rule(Name="tap", EventBusName="job-events", EventPattern=json.dumps({"source": ["jobpipe"]}))
    aws["events"].put_targets(Rule="tap", EventBusName="job-events", Targets=[{"Id": "tap", "Arn": arn}])
    return lambda: [json.loads(m["Body"]) for m in receive_all({**aws, "tap": url}, "tap")]


def times_out(**request):
    from botocore.exceptions import ReadTimeoutError

    raise ReadTimeoutError(endpoint_url="https://sqs.us-east-1.amazonaws.com")


class TimingOut:
    """A client whose `methods` time out (botocore's ReadTimeoutError); the rest pass through."""

    def __init__(self, client, *methods):
        self._client, self._methods = client, set(methods)

    def __getattr__(self, name):
        return times_out if name in self._methods else getattr(self._client, name)

    def get_paginator(self, operation):
        paginator = self._client.get_paginator(operation)
        if operation in self._methods:
            paginator.paginate = times_out
        return paginator
