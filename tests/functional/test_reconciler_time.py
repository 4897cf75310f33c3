"""The reconciler's pass keeps to its invocation's time when AWS answers as slowly as its clients
allow: on moto, with the Reconciler function's settings as the template deploys it."""
from __future__ import annotations

import json
from pathlib import Path

import boto3

from chalicelib import composition
from chalicelib.defaults import LEASE_GRACE_S
from chalicelib.events import replay
from chalicelib.lifecycle import JobLifecycle
from chalicelib.ports import JobMessage
from chalicelib.settings import load_settings
from chalicelib.worker.scheduled import run_reconciler_pass
from tests.functional.test_stream_replay import described, stream_of_jobs_table
from tests.support.clocks import SteppedClock as Clock

STEPS = {"steps": 2, "step_ms": 0}
TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "resources.json"


class SlowAws:
    """Every request sent takes what one whose every try times out takes with the process's
    client limits (botocore's standard retries: a wait of up to 2^(n-1) s after the nth try, 5 s
    more where an answer asked for later); the invocation's time is counted in those seconds."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.spent_s = 0.0
        self.slow = False
        self.request_s = 0.0

    def limits(self, connect_s: float, read_s: float, attempts: int) -> None:
        waits = sum(min(2 ** (n - 1), 20) + 5 for n in range(1, attempts))
        self.request_s = attempts * (connect_s + read_s) + waits

    def sent(self, **_request) -> None:
        if self.slow:
            self.spent_s += self.request_s

    def get_remaining_time_in_millis(self) -> int:
        return int((self.timeout_s - self.spent_s) * 1000)


def slow_reconciler_function(monkeypatch) -> tuple[composition.Container, SlowAws]:
    """The Reconciler function's container, its settings as the template deploys them, on an AWS
    whose every request takes its limits' worst time once `slow` is set."""
    function = json.loads(TEMPLATE.read_text())["Resources"]["Reconciler"]["Properties"]
    for name, value in function["Environment"]["Variables"].items():
        if isinstance(value, str):
            monkeypatch.setenv(name, value)
    settings = load_settings()
    slow = SlowAws(function["Timeout"])
    slow.limits(settings.aws_connect_timeout_s, settings.aws_read_timeout_s, settings.aws_max_attempts)
    session = boto3.session.Session()
    session.events.register("before-send", slow.sent)
    return composition.Container(settings, session=session), slow


def ended_in_time(services: composition.Container, slow: SlowAws, result: dict) -> None:
    assert slow.spent_s <= slow.timeout_s, f"the pass ran {slow.spent_s:g} s of a {slow.timeout_s} s invocation"
    assert result["counts"].get("out_of_time") == 1
    assert not [e for e in result["errors"] if e.startswith("reconciler log")]
    assert services.reconciler_log.summary()["last_pass"]["started_at"] == result["started_at"]


def test_a_pass_ends_and_records_itself_inside_its_invocation_however_slow_aws_answers(aws, monkeypatch):
    """A slow outage (every request answered only once its tries are spent) must not carry a pass
    past its function's timeout: cut off, it leaves no `reconciler pass` line and no record, and
    Lambda runs it again beside the passes the schedule starts meanwhile."""
    services, slow = slow_reconciler_function(monkeypatch)
    clock = Clock()
    lifecycle = JobLifecycle(services.store, services.queue, services.registry, clock=clock)
    monkeypatch.setattr(services, "lifecycle", lifecycle)
    for _ in range(6):  # their workers died: each lease ends `worker_lost`, its retry sent
        job = lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS)
        lifecycle.claim(JobMessage(job.id, 1, tenant=job.tenant, timeout_s=job.timeout_s))
        aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=json.dumps({"job_id": job.id, "attempt": 1}))
    clock.advance(job.timeout_s + LEASE_GRACE_S + 1)

    slow.slow = True
    result = run_reconciler_pass(services, slow)
    slow.slow = False
    ended_in_time(services, slow, result)


def test_a_step_of_many_requests_stops_sending_them_once_the_pass_is_out_of_time(aws, monkeypatch):
    """A failed stream batch's replay sends one request after another (its description, the
    stream's iterator and records, the events, the counts): once the pass is out of time none is
    started, so the batch is left for a later pass and this one still ends and records itself."""
    url = aws["sqs"].create_queue(QueueName="stream-failures")["QueueUrl"]
    monkeypatch.setenv("JOBPIPE_STREAM_FAILURE_QUEUE_URL", url)
    services, slow = slow_reconciler_function(monkeypatch)
    monkeypatch.setattr(replay, "redelivery_wait_s", lambda *args: 0)
    submit_job_on(services)
    arn, shard, records = stream_of_jobs_table()
    aws["sqs"].send_message(QueueUrl=url, MessageBody=described(arn, shard, records))

    slow.slow = True
    result = run_reconciler_pass(services, slow)
    slow.slow = False
    ended_in_time(services, slow, result)
    assert "stream_batch_replayed" not in result["counts"]


def submit_job_on(services: composition.Container) -> None:
    services.lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS)
