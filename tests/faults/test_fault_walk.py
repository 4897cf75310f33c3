"""Every AWS request of a job's life, one at a time, made to fail: nothing stuck, lost or counted
twice.

A life runs every function through the app's handler map on moto, with the real adapters the
composition root builds: the user submits (and, in one life, cancels), the workers take the
jobs queues' messages, the change-stream function the table's stream, the ERP bridge and cache
invalidation the queues the bus's rules fill, and the reconciler passes; between rounds the
clocks move on (DynamoDB's, SQS's, the workers'), so leases end, delays come due and what a
function failed comes back, as on AWS. Each case runs a life again with its one request
(counted in the order the process's clients send them):

- `refused`: answered with a retryable error once botocore's retries are spent (nothing applied);
- `lost`: applied, its answer lost, and botocore's second try answered (refused, for a
  conditional write, by the first one's result); on a client that never tries again (the dead
  letter's), the caller sees the read timeout;
- `lost_all`: applied, and every answer lost (the caller sees a read timeout).

Then what a user relies on: the job ends as it should, GET /jobs/{id} says so, each status change
reached the bus under one event id (none missing, none under two), the ERP got each event once,
the cache and the counters agree, and no message is left on a queue, nor a dead letter but the
one a job failed for good leaves."""
from __future__ import annotations

import json
import time
from collections import Counter
from datetime import timedelta
from functools import partial
from typing import Any, Optional

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from pydantic import BaseModel

from chalicelib import composition
from chalicelib.adapters.clocks import ManualClock
from chalicelib.adapters.dynamodb_ledger import DynamoDeliveryLedger
from chalicelib.adapters.dynamodb_stream import as_delivered
from chalicelib.adapters.memory_events import InMemoryWebhookSender
from chalicelib.aws_requests import AwsRequestCounter
from chalicelib.defaults import DELIVERY_RECORD_TTL_S
from chalicelib.domain.errors import RetryableJobError
from chalicelib.domain.job import utcnow
from chalicelib.subscribers.erp import ErpBridge
from tests.functional.conftest import LambdaContext, auth, receive_all, sqs_event
from tests.functional.test_reconciler import scheduled_event

SERVICES = ("dynamodb", "sqs", "s3", "events", "dynamodbstreams")
FAULTS = ("refused", "lost", "lost_all")
SCOPE = "proj-walk"
# Past every wait a round may leave: a lease (timeout + grace), the jobs queues' visibility
# (5400 s here), an owed letter's wait (2 h), a retry's delay.
ROUND_S = 7500
MAX_ROUNDS = 8
ACCOUNT = "123456789012"


class Faults:
    """A before-call hook on each of the process's clients: every call is counted in order
    (service.Operation), and the call at `target` fails as `kind` says."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.target: Optional[int] = None
        self.kind = ""
        self.armed = False
        self.counter = AwsRequestCounter()

    def attach(self, service: str, client: Any) -> None:
        client.meta.events.register("before-call.*.*", partial(self._before, service, client))
        self.counter.attach(client)

    def _targeted(self, service: str, model: Any) -> bool:
        """Count the call, armed; whether it is the one at `target`."""
        if not self.armed:
            return False
        self.calls.append(f"{service}.{model.name}")
        return len(self.calls) - 1 == self.target

    @staticmethod
    def _applied(client: Any, model: Any, params: Any, context: Any) -> None:
        """The call sent once, applied; its answer never comes back."""
        try:
            client._make_request(model, params, context)
        except Exception:  # noqa: BLE001 - lost, whatever it was
            pass

    def _before(self, service: str, client: Any, model: Any, params: Any, context: Any, **_: Any) -> None:
        if not self._targeted(service, model):
            return None
        if self.kind == "refused":
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                               "ResponseMetadata": {"HTTPStatusCode": 400}}, model.name)
        self._applied(client, model, params, context)
        if self.kind == "lost_all" or client.meta.config.retries.get("total_max_attempts") == 1:
            raise ReadTimeoutError(endpoint_url=client.meta.endpoint_url)
        return None  # botocore's second try, answered


class WalkTime:
    """The one clock a life's AWS and functions read, moved by `advance`: DynamoDB's records (the
    lifecycle's clock), SQS's delays and visibility (moto's), the workers' batch timing."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from moto.sqs import models

        self.offset_s = 0.0
        real_time, real_millis = models.unix_time, models.unix_time_millis
        monkeypatch.setattr(models, "unix_time", lambda *a: real_time(*a) + self.offset_s)
        monkeypatch.setattr(models, "unix_time_millis", lambda *a: real_millis(*a) + self.offset_s * 1000)
        self.worker = ManualClock()

    def now(self) -> Any:
        return utcnow() + timedelta(seconds=self.offset_s)

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds
        self.worker.advance(seconds)


class Life:
    """One job's life on moto, every function run as its trigger would run it."""

    def __init__(self, app: Any, client: Any, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                 faults: Optional[Faults] = None) -> None:
        self.app, self.client, self.aws = app, client, aws
        self.time = WalkTime(monkeypatch)
        self.faults = faults or Faults()
        self.erp = InMemoryWebhookSender()
        self._wire(composition.container())
        self.queues = {k: aws[k] for k in ("high_url", "jobs_url", "low_url")}
        self.subscriber_queues = {"erp_bridge": self._rule_queue("jobpipe-erp-webhook"),
                                  "cache_invalidation": self._rule_queue("jobpipe-cache-invalidation")}
        self.tap = self._rule_queue("walk-tap")
        self.bus: list[dict[str, Any]] = []
        self.stream_done = 0
        self._records: list[dict[str, Any]] = []
        self._shard_iterator: Optional[str] = None
        self.streams = boto3.client("dynamodbstreams")
        self.job_id: Optional[str] = None
        self.canceled = False
        put = client.http.put(f"/cache/{SCOPE}/steps-summary", headers=auth(), body=json.dumps({"n": 1}))
        assert put.status_code == 200, put.body
        self._deliver_stream()

    def _wire(self, services: composition.Container) -> None:
        """`services`, the process's container, made the life's: its clients' requests counted
        and failed, its clocks the walk's, its ERP the life's, the walk's job types registered."""
        self.services = services
        for service in SERVICES:
            self.faults.attach(service, services.client(service))
        self.faults.attach("sqs", services.client("sqs", single_try=True))  # the dead letters'
        services.lifecycle.clock = self.time.now
        services.clock = self.time.worker
        # The ERP bridge's delivery records on the walk's clock too: a lease a lost answer left
        # lapses as the life's time moves on.
        services.delivery_ledgers["erp_bridge"] = DynamoDeliveryLedger(
            services.client("dynamodb"), services.settings.idempotency_table_name, "erp_bridge",
            ttl_s=DELIVERY_RECORD_TTL_S, clock=lambda: time.time() + self.time.offset_s)
        services.erp_bridge = ErpBridge(self.erp, "https://erp.example/hook", "functional-webhook-secret-0123456789abcdef")
        self._register_types()

    def _register_types(self) -> None:
        registry = self.services.registry

        class Empty(BaseModel):
            pass

        @registry.register("walk.retried", Empty, max_attempts=3, timeout_s=600)
        def retried(ctx, payload):
            ctx.progress(50, step="half", force=True)
            if ctx.attempt == 1:
                raise RetryableJobError("the first attempt fails", code="walk_failure")
            return {"attempt": ctx.attempt}

        @registry.register("walk.canceled", Empty, max_attempts=3, timeout_s=600)
        def canceled(ctx, payload):
            ctx.progress(50, step="half", force=True)
            if not self.canceled:
                self.canceled = True
                self.user_cancels()
            ctx.check_cancelled(fresh=True)
            return {"attempt": ctx.attempt}

    def _rule_queue(self, name: str) -> str:
        """A queue the bus's rule for jobpipe's job events fills (as ErpWebhookRule and
        CacheInvalidationRule do; which events each subscriber acts on is its own filter)."""
        sqs, events = self.aws["sqs"], self.aws["events"]
        url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        pattern = {"source": ["jobpipe"]}
        if name == "jobpipe-erp-webhook":
            pattern["detail-type"] = [{"prefix": "job.status."}]
        if name == "jobpipe-cache-invalidation":
            pattern.update({"detail-type": ["job.status.changed"], "detail": {"status": ["completed"]}})
        events.put_rule(Name=name, EventBusName="job-events", EventPattern=json.dumps(pattern))
        events.put_targets(Rule=name, EventBusName="job-events", Targets=[{"Id": name, "Arn": arn}])
        return url

    # -- the user ------------------------------------------------------------------------------

    def user_submits(self, body: dict[str, Any]) -> None:
        """POST /jobs with an idempotency key, sent again while the answer is a 5xx."""
        headers = auth(**{"Idempotency-Key": "walk-1"})
        for _ in range(3):
            response = self.client.http.post("/jobs", headers=headers, body=json.dumps(body))
            if response.status_code < 500:
                break
        assert response.status_code == 202, response.body
        self.job_id = response.json_body["id"]

    def user_cancels(self) -> None:
        for _ in range(3):
            response = self.client.http.delete(f"/jobs/{self.job_id}", headers=auth())
            if response.status_code < 500:
                break
        assert response.status_code == 202, response.body

    # -- AWS -----------------------------------------------------------------------------------

    def _deliver_queue(self, url: str, function: str, batch: int = 10) -> None:
        """An SQS event source mapping: what is visible, in batches, to `function`; what it did
        not fail deleted (all of a batch whose invocation failed comes back)."""
        sqs = self.aws["sqs"]
        messages = receive_all({"q": url, "sqs": sqs}, "q")
        arn = f"arn:aws:sqs:us-east-1:{ACCOUNT}:{url.rsplit('/', 1)[-1]}"
        for start in range(0, len(messages), batch):
            chunk = messages[start:start + batch]
            try:
                answer = self.app.handler_map[function](sqs_event(chunk, arn), LambdaContext(900))
                failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
            except Exception:  # noqa: BLE001 - a failed invocation: its whole batch comes back
                continue
            for message in chunk:
                if message["MessageId"] not in failed:
                    try:
                        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                    except ClientError:
                        pass  # the function deleted it itself

    def _stream(self) -> list[dict[str, Any]]:
        """Every record on the table's stream: those read before, and the page after them."""
        if self._shard_iterator is None:
            arn = self.aws["ddb"].describe_table(TableName="jobs")["Table"]["LatestStreamArn"]
            shard = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
            self._shard_iterator = self.streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        page = self.streams.get_records(ShardIterator=self._shard_iterator, Limit=1000)
        self._records += page["Records"]
        self._shard_iterator = page.get("NextShardIterator") or self._shard_iterator
        return self._records

    def _deliver_stream(self) -> None:
        """The stream's mapping: the records after the last batch that succeeded, 100 a batch; a
        failed batch is delivered again (the next round)."""
        records = self._stream()
        while self.stream_done < len(records):
            batch = records[self.stream_done:self.stream_done + 100]
            try:
                self.app.handler_map["event_publisher"]({"Records": [as_delivered(r) for r in batch]}, LambdaContext(60))
            except Exception:  # noqa: BLE001 - delivered again
                return
            self.stream_done += len(batch)

    def _collect_bus(self) -> None:
        self.bus += [json.loads(m["Body"]) for m in receive_all({"q": self.tap, "sqs": self.aws["sqs"]}, "q")]

    def reconcile(self) -> dict[str, Any]:
        try:
            return self.app.handler_map["reconciler"](scheduled_event({}), LambdaContext(120))
        except Exception as exc:  # noqa: BLE001 - the schedule runs it again
            return {"counts": {"failed_invocation": 1}, "errors": [repr(exc)]}

    def _round(self) -> dict[str, Any]:
        for key, function in (("high_url", "job_worker_high"), ("jobs_url", "job_worker"),
                              ("low_url", "job_worker_low")):
            self._deliver_queue(self.queues[key], function)
        self._deliver_stream()
        for function, url in self.subscriber_queues.items():
            self._deliver_queue(url, function)
        self._collect_bus()
        return self.reconcile()

    def left_on(self, url: str) -> int:
        attributes = self.aws["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return sum(int(attributes[a]) for a in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                                                "ApproximateNumberOfMessagesDelayed"))

    def quiet(self) -> bool:
        """The job finished, nothing on the queues the functions take, the stream delivered."""
        item = self.aws["ddb"].get_item(TableName="jobs", Key={"pk": {"S": f"JOB#{self.job_id}"}, "sk": {"S": "JOB"}})
        if item["Item"]["status"]["S"] not in ("completed", "failed", "canceled"):
            return False
        urls = [*self.queues.values(), *self.subscriber_queues.values()]
        return self.stream_done == len(self._stream()) and not any(self.left_on(u) for u in urls)

    def live(self, body: dict[str, Any]) -> int:
        """The whole life; the rounds it took to settle."""
        self.faults.counter.take()  # what the set-up sent is not the life's
        self.faults.armed = True
        try:
            self.user_submits(body)
            for round_ in range(MAX_ROUNDS):
                counts = self._round()["counts"]
                if self.quiet() and not counts:
                    return round_ + 1
                self.time.advance(ROUND_S)
            raise AssertionError(f"not settled after {MAX_ROUNDS} rounds")
        finally:
            self.faults.armed = False
            self._collect_bus()

    # -- what the user relies on ---------------------------------------------------------------

    def check(self, ends: str, failed_attempt: int = 1) -> None:
        """What the user relies on, the job ending `ends`; a failed one's dead letter is of its
        attempt `failed_attempt`."""
        job = self.client.http.get(f"/jobs/{self.job_id}", headers=auth()).json_body
        assert job["status"] == ends, job
        events = [e["detail"] for e in self.bus
                  if e["detail-type"].startswith("job.status.") and e["detail"]["job_id"] == self.job_id]
        by_id = {e["event_id"]: e for e in events}
        changes = sorted((e for e in by_id.values() if e["event_type"] == "job.status.changed"),
                         key=lambda e: e["version"])
        steps = [(e["previous_status"], e["status"]) for e in changes]
        assert steps and steps[0] == (None, "queued") and steps[-1][1] == ends, steps
        assert all(a[1] == b[0] for a, b in zip(steps, steps[1:])), f"a status change never reached the bus: {steps}"
        versions = Counter(e["version"] for e in by_id.values())
        assert max(versions.values()) == 1, f"one change published under two event ids: {versions}"
        posted = Counter(json.loads(body)["event_id"] for _, body, _ in self.erp.posts)
        assert posted == Counter(list(by_id)), "the ERP got each event of the job once"
        cache = self.client.http.get(f"/cache/{SCOPE}/steps-summary", headers=auth())
        invalidates = ends == "completed" and job["type"] == "demo.steps"
        assert cache.status_code == (404 if invalidates else 200), cache.body
        counts = {k: v for k, v in self.services.stats.status_counts().items() if v}
        assert counts == {ends: 1}, counts
        assert self.services.stats.unfinished("acme") == 0
        for url in (*self.queues.values(), *self.subscriber_queues.values(), self.aws["dlq_high_url"],
                    self.aws["dlq_low_url"]):
            assert self.left_on(url) == 0, url
        self.time.advance(ROUND_S)  # a letter a lost receive left in flight shows again
        letters = [json.loads(m["Body"]) for m in receive_all(self.aws, "dlq_url")]
        assert [(m["job_id"], m["attempt"]) for m in letters] == (
            [(self.job_id, failed_attempt)] if ends == "failed" else [])


STEPS = {"steps": 2, "step_ms": 0}
LIVES: dict[str, tuple[dict[str, Any], str]] = {
    "completes": ({"type": "demo.steps", "payload": STEPS, "scope": SCOPE}, "completed"),
    "fails": ({"type": "demo.steps", "payload": {**STEPS, "fail_at": 2, "fail_mode": "fatal"}, "scope": SCOPE}, "failed"),
    "canceled": ({"type": "walk.canceled", "payload": {}, "scope": SCOPE}, "canceled"),
    "retried": ({"type": "walk.retried", "payload": {}, "scope": SCOPE}, "completed"),
}


# Each life's requests without a fault, in the order the process's clients send them: what the
# walk fails one at a time. A change that adds, drops or moves a request on a job's path shows
# here first, and its new request is walked too.
REQUESTS: dict[str, tuple[str, ...]] = {
    "completes": (
        "dynamodb.GetItem", "dynamodb.TransactWriteItems", "sqs.SendMessage", *["dynamodb.UpdateItem"] * 3,
        "dynamodb.TransactWriteItems", "events.PutEvents", *["dynamodb.TransactWriteItems"] * 2,
        "dynamodb.BatchWriteItem", "dynamodb.UpdateItem", "events.PutEvents", *["sqs.ReceiveMessage"] * 9,
        *["dynamodb.Query"] * 8, "dynamodb.UpdateItem", *["sqs.ReceiveMessage"] * 9, *["dynamodb.Query"] * 8,
        "dynamodb.UpdateItem",
    ),
    "fails": (
        "dynamodb.GetItem", "dynamodb.TransactWriteItems", "sqs.SendMessage", *["dynamodb.UpdateItem"] * 2,
        "dynamodb.TransactWriteItems", "sqs.SendMessage", "dynamodb.UpdateItem", "events.PutEvents",
        *["dynamodb.TransactWriteItems"] * 2, "dynamodb.BatchWriteItem", *["sqs.ReceiveMessage"] * 10,
        "dynamodb.BatchGetItem", "sqs.ChangeMessageVisibilityBatch", *["dynamodb.Query"] * 8,
        "dynamodb.UpdateItem",
    ),
    "canceled": (
        "dynamodb.GetItem", "dynamodb.TransactWriteItems", "sqs.SendMessage", *["dynamodb.UpdateItem"] * 2,
        "dynamodb.GetItem", "dynamodb.UpdateItem", "dynamodb.GetItem", "dynamodb.TransactWriteItems",
        "dynamodb.GetItem", "dynamodb.TransactWriteItems", "events.PutEvents",
        *["dynamodb.TransactWriteItems"] * 2, "dynamodb.BatchWriteItem", *["sqs.ReceiveMessage"] * 9,
        *["dynamodb.Query"] * 8, "dynamodb.UpdateItem",
    ),
    "retried": (
        "dynamodb.GetItem", "dynamodb.TransactWriteItems", "sqs.SendMessage", *["dynamodb.UpdateItem"] * 2,
        "dynamodb.TransactWriteItems", "sqs.SendMessage", "events.PutEvents",
        *["dynamodb.TransactWriteItems"] * 2, "dynamodb.BatchWriteItem", *["sqs.ReceiveMessage"] * 9,
        *["dynamodb.Query"] * 8, *["dynamodb.UpdateItem"] * 3, "dynamodb.TransactWriteItems",
        "events.PutEvents", *["dynamodb.TransactWriteItems"] * 2, "dynamodb.BatchWriteItem",
        "dynamodb.UpdateItem", "events.PutEvents", *["sqs.ReceiveMessage"] * 9, *["dynamodb.Query"] * 8,
        "dynamodb.UpdateItem", *["sqs.ReceiveMessage"] * 9, *["dynamodb.Query"] * 8, "dynamodb.UpdateItem",
    ),
}
# A read applied twice is a read answered once: `lost` is the life without a fault.
READS = {"dynamodb.GetItem", "dynamodb.Query", "dynamodb.BatchGetItem", "s3.GetObject"}
# Cases the walk finds wrong, each with the defect it shows.
KNOWN: dict[tuple[str, int, str], str] = {}


def walk_cases(kinds: tuple[str, ...], *, not_for_reads: str,
               known: Optional[dict[tuple[str, int, str], str]] = None) -> list[Any]:
    """A case per request of each life and kind: `not_for_reads` (a kind that applies its
    request, which for a read is no fault) not for a read; those `known` finds wrong xfail."""
    params = []
    for name, requests in REQUESTS.items():
        for index, request in enumerate(requests):
            for kind in kinds:
                if kind == not_for_reads and request in READS:
                    continue
                reason = (known or {}).get((name, index, kind))
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                params.append(pytest.param(name, index, kind, id=f"{name}-{index}-{request}-{kind}", marks=marks))
    return params


@pytest.fixture
def life(app, client, aws, monkeypatch) -> Life:
    return Life(app, client, aws, monkeypatch)


@pytest.mark.parametrize("name", LIVES)
def test_each_life_sends_the_requests_the_walk_fails(life, name):
    """The walk's list is the life's: every request, as the process's request counter counts them."""
    body, ends = LIVES[name]
    life.live(body)
    counted = life.faults.counter.take()
    life.check(ends)
    assert tuple(life.faults.calls) == REQUESTS[name]
    assert sum(counted.values()) == len(REQUESTS[name]), counted


@pytest.mark.parametrize("name, index, kind", walk_cases(FAULTS, not_for_reads="lost", known=KNOWN))
def test_a_life_with_one_request_failed_ends_as_it_should(life, name, index, kind):
    body, ends = LIVES[name]
    life.faults.target, life.faults.kind = index, kind
    life.live(body)
    assert len(life.faults.calls) > index, "the request the case fails was sent"
    life.check(ends)
