"""The subscribers as a model, published event to ERP and cache: random interleavings of jobs
completing and failing (the real JobLifecycle and JobRunner writing the in-memory store with its
scope caches), the jobs table's stream read by the real StreamConsumer (batches read again,
publishing the same ids), the bus routing each event by the template's own rules
(infra/resources.json) to the ERP bridge's queue, `erp-outbound` and cache invalidation, both
delivering at least once, and SQS batches of 1-10 visible messages in any order handed to the
real `erp_bridge` and `cache_invalidation` functions of app.py (Powertools batch processing,
the delivery ledger, the ERP bridge's signing, the dead-letter queue) over the in-memory ports.
The ERP answers 2xx, refuses an event for good (422), answers 5xx or 429 with Retry-After, is
unreachable, never answers, or keeps a POST it answers too late; the ledger's table is down at
either request; the cache store is down; the bridge's process dies before a POST, after the ERP
kept one, before the ledger's close or after it (the batch's answer lost); time passes (leases
lapse); messages past maxReceiveCount go to the subscriber's DLQ and an operator redrives it.

What must hold, as docs/events.md and docs/reliability.md promise:
- no event silently lost: each event the bus routed to the bridge is, after every step, kept by
  the ERP, on the bridge's queue or on its dead-letter queue; once the faults stop and the
  operator redrives the DLQ, the ERP has every one of them;
- with the ledger, the ERP keeps an event more than once only through a window docs/events.md
  names: the bridge died (or its ledger did not answer the close) after the ERP kept a POST and
  before the batch's records were closed, or the ERP kept a POST whose answer came too late; each
  window one copy more at most. With `ErpReceiverDeduplicates=true` no ledger is touched;
- every POST of one event carries the same body, signature and headers, the signature verifies
  and `X-Jobpipe-Event-Id` is the body's `event_id`;
- a refusal (4xx other than 408, 425, 429) is on the DLQ with its reason after that invocation,
  its message gone from the queue, parked once per message; every other failure is hidden for
  the documented backoff (30 s doubling to 15 min, or the Retry-After asked, up to an hour), so a
  message reaches the DLQ by maxReceiveCount only after that whole budget (about 24 h) unless
  the function died on some of its receives;
- `erp-outbound` gets every job.status.* event, the envelope with `detail` as documented, every
  copy of an event the same;
- cache: no value stored before a completion is ever read after it (the completion's own write
  invalidates); the event path never invalidates a value recomputed after the completion it
  announces; once drained, each scope's tasks hold the latest completion per type and each
  completion was announced by `cache.invalidated` under one id."""
from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from pydantic import BaseModel

from chalicelib import composition
from chalicelib.adapters.dynamodb_stream import job_change
from chalicelib.adapters.memory import InMemoryDeadLetterQueue, InMemoryJobQueue, InMemoryJobStore
from chalicelib.adapters.memory_events import InMemoryCacheStore, InMemoryDeliveryLedger, InMemoryEventPublisher
from chalicelib.composition import Container
from chalicelib.defaults import (
    DELIVERY_RECORD_TTL_S,
    WEBHOOK_RETRY_AFTER_MAX_S,
    WEBHOOK_TIMEOUT_S,
    WEBHOOK_TRANSIENT_4XX,
)
from chalicelib.domain.errors import FatalJobError, StoreUnavailableError, WebhookDeliveryError
from chalicelib.domain.events import SOURCE, event_id_for
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.events.stream import StreamConsumer
from chalicelib.lifecycle import JobLifecycle
from chalicelib.observability import logger
from chalicelib.ports import WebhookAnswer
from chalicelib.settings import Settings
from chalicelib.subscribers.cache import CacheInvalidator, load_rules
from chalicelib.subscribers.erp import EVENT_ID_HEADER, SIGNATURE_HEADER, ErpBridge, verify
from chalicelib.worker.runner import JobRunner
from tests.support.infra import resources
from tests.support.job_writes import RecordingJobs
from tests.support.model_clock import ModelTime
from tests.unit.conftest import FakeClock

pytestmark = pytest.mark.timeout(900)  # shrinking a failure to its shortest steps can take minutes

ERP_URL = "https://erp.example/hook"
SECRET = "model-webhook-secret-0123456789abcdef"
TENANTS = ("acme", "globex")
SCOPES = (None, "run-1", "run-2")
JOB_TYPES = ("demo.steps", "demo.sleep", "model.plain")  # two the rules file names, one it does not
FUNCTION_TIMEOUT_S = 60  # the subscriber functions' timeout (infra/resources.json)
SETTLE_ROUNDS = 400
# The documented retry budget: a message failing on every receive is hidden 30 s, 60 s ... 15 min
# between its maxReceiveCount receives before the redrive policy parks it (about 24 h).
DOCUMENTED_BUDGET_S = 23 * 3600

# -- the stack's routing, as the template declares it -------------------------------------------

TEMPLATE = resources()
QUEUES = {  # queue -> (its rule, its subscriber function or None)
    "erp_webhook": ("ErpWebhookRule", "ErpWebhookQueue", "erp_bridge"),
    "erp_outbound": ("ErpOutboundRule", "ErpOutboundQueue", None),
    "cache_invalidation": ("CacheInvalidationRule", "CacheInvalidationQueue", "cache_invalidation"),
}
# The detail fields docs/events.md lists for every status event.
DOCUMENTED_DETAIL = {"event_id", "event_type", "timestamp", "job_id", "status", "progress", "attempt",
                     "previous_status", "previous_progress", "step", "message", "tenant", "type", "scope",
                     "version", "error"}
ENVELOPE = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}


def _accepts(allowed: Any, value: Any) -> bool:
    if not isinstance(allowed, dict):
        return value == allowed
    if "prefix" in allowed:
        return isinstance(value, str) and value.startswith(allowed["prefix"])
    if allowed == {"wildcard": "*"}:
        return isinstance(value, str)
    if "anything-but" in allowed:
        excluded = allowed["anything-but"]
        return value not in (excluded if isinstance(excluded, list) else [excluded])
    raise AssertionError(f"the model does not read the pattern {allowed}")


def matches(pattern: dict[str, Any], envelope: dict[str, Any]) -> bool:
    """EventBridge's matching, for the pattern forms the template uses."""
    for key, allowed in pattern.items():
        value = envelope.get(key)
        if isinstance(allowed, dict):
            if not isinstance(value, dict) or not matches(allowed, value):
                return False
        elif not any(_accepts(a, value) for a in allowed):
            return False
    return True


def envelope_of(published: Any, clock: FakeClock, n: int) -> dict[str, Any]:
    """What an EventBridge rule puts on its SQS target: the envelope (`n`th of the bus), `detail` the event."""
    return {"version": "0", "id": str(uuid.UUID(int=n)), "detail-type": published.detail_type, "source": SOURCE,
            "account": "000000000000", "time": clock.now.isoformat(), "region": "us-east-1", "resources": [],
            "detail": json.loads(published.model_dump_json())}


# -- the parts outside jobpipe, and faults on the in-memory adapters -----------------------------


class ProcessDied(KeyboardInterrupt):
    """The subscriber's process dies: nothing after it runs, no batch answer is given (Powertools
    lets it through, as it lets through anything not an Exception)."""


@dataclass
class Post:
    event_id: str
    body: bytes
    headers: dict[str, str]
    kept: bool


class Erp:
    """The ERP's webhook receiver (the WebhookSender port, as the real one reaches it): keeps
    every POST it accepts (it does not deduplicate), answers as its `mode` says, refuses the
    events of `refused_jobs` for good. `crash_before` / `crash_after`: the POST (counted from 0
    in this invocation) before or after which the bridge's process dies."""

    def __init__(self, model: "SubscriberModel") -> None:
        self.model = model
        self.mode = "ok"
        self.refused_jobs: set[str] = set()
        self.posts: list[Post] = []
        self.crash_before: Optional[int] = None
        self.crash_after: Optional[int] = None
        self.concurrent_at: Optional[int] = None
        self.beside: list[Any] = []  # the concurrent bridge's batch
        self.in_invocation = 0
        self.kept_now: list[str] = []  # kept in this invocation
        self.answered: dict[str, WebhookAnswer] = {}  # event id -> this invocation's answer

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: Optional[float] = None) -> WebhookAnswer:
        assert url == ERP_URL
        n, self.in_invocation = self.in_invocation, self.in_invocation + 1
        if n == self.crash_before:
            raise ProcessDied()
        if n == self.concurrent_at:
            self.concurrent_at = None
            self.model.concurrent_bridge()
        limit = WEBHOOK_TIMEOUT_S if timeout_s is None else min(timeout_s, WEBHOOK_TIMEOUT_S)
        event_id = json.loads(body)["event_id"]
        job_id = json.loads(body)["job_id"]

        def sent(kept: bool) -> None:
            self.posts.append(Post(event_id, bytes(body), dict(headers), kept))
            if kept:
                self.kept_now.append(event_id)

        if self.mode == "down":
            raise WebhookDeliveryError(f"webhook unreachable: {url}")
        if self.mode in ("timeout", "late"):  # no answer within the bound; a late one kept the POST
            self.model.clock.advance(limit)
            sent(kept=self.mode == "late")
            if self.mode == "late":
                self.model.windows[event_id] += 1  # the ERP has it; the bridge cannot know
            raise WebhookDeliveryError.unanswered(limit)
        if self.mode == "slow":  # answered within the bound, slowly: the invocation's time runs out
            self.model.clock.advance(min(3.0, limit))
        if job_id in self.refused_jobs:
            sent(kept=False)
            answer = WebhookAnswer(422, reason="Unprocessable Entity", text="unknown job")
        elif self.mode == "5xx":
            sent(kept=False)
            answer = WebhookAnswer(503)
        elif self.mode == "429":
            sent(kept=False)
            answer = WebhookAnswer(429, retry_after_s=1800.5)
        else:
            sent(kept=True)
            answer = WebhookAnswer(200)
        self.answered[event_id] = answer
        if n == self.crash_after:
            raise ProcessDied()
        return answer


class ModelLedger(InMemoryDeliveryLedger):
    """The in-memory ledger, with the faults of its table: `down` at "begin" or "finish" (it
    raises StoreUnavailableError, nothing written), and the process dying before the close."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.down: set[str] = set()
        self.crash_at_finish = False
        self.requests = 0
        self.finished = False

    def begin(self, event_ids, lease_s):
        self.requests += 1
        if "begin" in self.down:
            raise StoreUnavailableError("the idempotency table did not answer")
        return super().begin(event_ids, lease_s)

    def finish(self, delivered, failed):
        self.requests += 1
        if self.crash_at_finish:
            raise ProcessDied()
        if "finish" in self.down:
            raise StoreUnavailableError("the idempotency table did not answer")
        super().finish(delivered, failed)
        self.finished = True


class ModelCacheStore(InMemoryCacheStore):
    """The in-memory cache store; `down`: the cache consumer's requests are not answered (the
    worker's completion transaction is not modelled failing: it would leave the job unfinished)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def invalidate(self, *args: Any) -> int:
        if self.down:
            raise StoreUnavailableError("the jobs table did not answer")
        return super().invalidate(*args)

    def record_completion(self, *args: Any) -> tuple[str, ...]:
        if self.down:
            raise StoreUnavailableError("the jobs table did not answer")
        return super().record_completion(*args)


class Context:
    """The Lambda context: what is left of the invocation runs on the model's clock."""

    function_name = "subscriber"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:subscriber"

    def __init__(self, model: "SubscriberModel") -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._model = model
        self._ends = model.now() + FUNCTION_TIMEOUT_S

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - self._model.now()) * 1000))


@dataclass
class Message:
    id: str
    body: str
    event_id: Optional[str]
    visible_at: float
    receives: int = 0
    first_received: Optional[float] = None
    died_on: int = 0  # receives whose invocation gave no answer


@dataclass
class Queue:
    name: str
    arn: str
    max_receives: int
    visibility_s: int
    messages: list[Message] = field(default_factory=list)
    dead: list[Message] = field(default_factory=list)  # moved by the redrive policy


class Outcome(BaseModel):
    fail: bool = False


# -- the model -----------------------------------------------------------------------------------


class SubscriberModel(RuleBasedStateMachine):
    @initialize(deduplicates=st.booleans())
    def start(self, deduplicates: bool) -> None:
        self.clock = FakeClock()
        self.deduplicates = deduplicates
        self.stream: list[dict[str, Any]] = []
        self.caches = ModelCacheStore()
        self.store = InMemoryJobStore(self.caches)
        self.store._jobs = RecordingJobs(self.stream, clock=self.now)
        self.job_queue = InMemoryJobQueue()
        self.rules = load_rules()
        registry = JobTypeRegistry()
        for job_type in JOB_TYPES:
            registry.register(job_type, Outcome, max_attempts=1, timeout_s=60)(self.handler)
        self.lifecycle = JobLifecycle(self.store, self.job_queue, registry, clock=self.clock,
                                      caches_of=self.rules.namespaces_for)
        self.runner = JobRunner(self.lifecycle, registry, clock=ModelTime(self.now), progress_interval_s=0)
        self.publisher = InMemoryEventPublisher()
        self.consumer = StreamConsumer(job_change, self.publisher)
        self.serial = 0
        self.outages = 0
        self.log_level = logger.level
        logger.setLevel(logging.CRITICAL)  # some thousand invocations a run: their lines cost more than they do
        self.read_to = 0  # stream records handed to the consumer
        self.routed_to = 0  # published events the bus routed
        self.queues = {name: Queue(name, f"arn:aws:sqs:us-east-1:000000000000:{name}",
                                   TEMPLATE[logical]["Properties"]["RedrivePolicy"]["maxReceiveCount"],
                                   TEMPLATE[logical]["Properties"]["VisibilityTimeout"])
                       for name, (_, logical, _) in QUEUES.items()}
        self.patterns = {name: TEMPLATE[rule]["Properties"]["EventPattern"] for name, (rule, _, _) in QUEUES.items()}

        # The subscribers' services: the real container, its ports in memory.
        self.settings = Settings(table_name="jobs", idempotency_table_name="idempotency", queue_url_high="h",
                                 queue_url_normal="n", queue_url_low="l", dead_letter_url="d",
                                 erp_webhook_url=ERP_URL, erp_webhook_secret=SECRET,
                                 erp_webhook_dlq_url="erp-dlq", erp_receiver_deduplicates=deduplicates)
        self.erp = Erp(self)
        self.ledger = ModelLedger(ttl_s=DELIVERY_RECORD_TTL_S, clock=self.now)
        self.erp_dlq = InMemoryDeadLetterQueue()
        self.sqs = InMemoryJobQueue()  # the subscribers' queues' SetVisibility and DeleteMessage
        composition.use(self.services())
        from app import app

        self.functions = app.handler_map

        self.routed: dict[str, set[str]] = {name: set() for name in QUEUES}  # queue -> event ids routed
        self.windows: Counter[str] = Counter()  # event id -> copies more the ERP may keep
        self.refusals: Counter[str] = Counter()  # event id -> refusals not followed by a park
        self.parked_messages: set[str] = set()
        self.completed_at: dict[str, int] = {}  # job id -> stream index of its completion
        self.outbound: dict[str, dict[str, Any]] = {}  # event id -> its detail, as first seen

    def teardown(self) -> None:
        composition.use(None)
        if hasattr(self, "store"):
            try:
                self.settle()
            finally:
                logger.setLevel(self.log_level)

    # -- the world -----------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now.timestamp()

    def handler(self, ctx: Any, payload: Outcome) -> Any:
        if payload.fail:
            raise FatalJobError("the model failed it")
        return {"ok": True}

    def route(self, copies: int = 1) -> None:
        """The bus: each event published since, to every queue whose rule matches it (`copies`
        times: EventBridge delivers at least once)."""
        for published in self.publisher.published[self.routed_to:]:
            self.serial += 1
            envelope = envelope_of(published, self.clock, self.serial)
            for name, pattern in self.patterns.items():
                if matches(pattern, envelope):
                    for _ in range(copies):
                        self.enqueue(name, json.dumps(envelope), published.event_id)
        self.routed_to = len(self.publisher.published)

    def enqueue(self, name: str, body: str, event_id: Optional[str]) -> None:
        self.routed[name].add(event_id)
        self.serial += 1  # ids the same on every run: what the model draws from may not depend on chance
        self.queues[name].messages.append(Message(f"m-{self.serial:05d}", body, event_id, self.now()))

    def visible(self, name: str) -> list[Message]:
        """The queue's visible messages; those received maxReceiveCount times go to its DLQ first."""
        queue = self.queues[name]
        for message in [m for m in queue.messages if m.visible_at <= self.now() and m.receives >= queue.max_receives]:
            queue.messages.remove(message)
            queue.dead.append(message)
            self.dead_lettered(name, message)
        return [m for m in queue.messages if m.visible_at <= self.now()]

    def dead_lettered(self, name: str, message: Message) -> None:
        event(f"{name}: dead-lettered by the redrive policy")
        if message.died_on == 0:
            spent = self.now() - message.first_received
            assert spent >= DOCUMENTED_BUDGET_S, (
                f"{message.event_id} dead-lettered after {spent:.0f} s of {name}'s retries, "
                f"short of the documented ~24 h")

    def invoke(self, name: str, batch: list[Message], *, lose_answer: bool = False) -> bool:
        """One invocation of `name`'s function with `batch`; whether it answered. What it does
        not answer comes back after the visibility it set, or the queue's visibility timeout."""
        queue = self.queues[name]
        records = []
        for message in batch:
            message.receives += 1
            message.first_received = message.first_received or self.now()
            records.append({
                "messageId": message.id, "receiptHandle": f"{message.id}#{message.receives}", "body": message.body,
                "attributes": {"ApproximateReceiveCount": str(message.receives)}, "messageAttributes": {},
                "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": queue.arn, "awsRegion": "us-east-1"})
        started = self.now()
        for message in batch:  # in flight: hidden for the queue's visibility timeout
            message.visible_at = started + queue.visibility_s
        try:
            answer = self.functions[QUEUES[name][2]]({"Records": records}, Context(self))
        except ProcessDied:
            answer = None
            event(f"{name}: process died")
        if lose_answer:
            answer = None
            event(f"{name}: answer lost")
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]} if answer is not None else set()
        for message, record in zip(batch, records):
            handle = record["receiptHandle"]
            if handle in self.sqs.acknowledged:
                queue.messages.remove(message) if message in queue.messages else None
            elif answer is None or message.id in failed:
                message.died_on += answer is None
                # SQS counts a visibility from the receive, or from the call that set it (during the invocation)
                message.visible_at = started + self.sqs.visibility.get(handle, queue.visibility_s)
            elif message in queue.messages:
                queue.messages.remove(message)
        return answer is not None

    # -- rules: jobs, the stream, the bus ----------------------------------------------------------

    @rule(tenant=st.sampled_from(TENANTS), job_type=st.sampled_from(JOB_TYPES), scope=st.sampled_from(SCOPES),
          fail=st.sampled_from([False, False, True]))
    def job_runs(self, tenant: str, job_type: str, scope: Optional[str], fail: bool) -> None:
        """A job is submitted and a worker runs it to its end."""
        self.serial += 1
        self.lifecycle.submit(tenant=tenant, user="ann", type=job_type, payload={"fail": fail}, scope=scope,
                              job_id=f"job-{self.serial:05d}")
        for message in self.job_queue.drain():
            before = len(self.stream)
            job = self.runner.run(message)
            if job is not None and job.status.value == "completed":
                self.completed_at[job.id] = next(
                    i for i in range(before, len(self.stream))
                    if self.stream[i]["dynamodb"]["NewImage"]["status"]["S"] == "completed")

    @rule(size=st.integers(1, 8), copies=st.sampled_from([1, 1, 2]))
    def stream_delivers(self, size: int, copies: int) -> None:
        batch = self.stream[self.read_to:self.read_to + size]
        if batch:
            assert self.consumer.consume(batch) is None
            self.read_to += len(batch)
            self.route(copies)

    @precondition(lambda self: self.read_to)
    @rule(data=st.data())
    def stream_delivers_again(self, data: st.DataObject) -> None:
        """A stream batch delivered again (a partial failure, bisected): the same ids published again."""
        start = data.draw(st.integers(0, self.read_to - 1))
        assert self.consumer.consume(self.stream[start:data.draw(st.integers(start + 1, self.read_to))]) is None
        self.route()

    @precondition(lambda self: any(q.messages for q in self.queues.values()))
    @rule(data=st.data())
    def bus_delivers_again(self, data: st.DataObject) -> None:
        """EventBridge delivers at least once: a copy of an event lands on a queue again."""
        name = data.draw(st.sampled_from([n for n, q in self.queues.items() if q.messages]))
        message = data.draw(st.sampled_from(self.queues[name].messages))
        self.enqueue(name, message.body, message.event_id)

    # -- rules: the subscribers and their faults ---------------------------------------------------

    @precondition(lambda self: self.visible("erp_webhook"))
    @rule(data=st.data(), size=st.integers(1, 10),
          mode=st.sampled_from(["ok", "ok", "ok", "slow", "5xx", "429", "down", "timeout", "late"]),
          death=st.sampled_from([None, None, None, "before_post", "after_post", "before_close", "after_close",
                                 "concurrent"]),
          ledger_down=st.sampled_from([None, None, None, "begin", "finish"]))
    def erp_bridge_runs(self, data: st.DataObject, size: int, mode: str, death: Optional[str],
                        ledger_down: Optional[str]) -> None:
        batch = data.draw(st.permutations(self.visible("erp_webhook")))[:size]
        at = data.draw(st.integers(0, len(batch) - 1))  # the POST a death or a concurrent bridge comes at
        if death == "concurrent":
            self.erp.beside = data.draw(st.permutations([m for m in self.visible("erp_webhook") if m not in batch]))[:size]
        self.erp.mode = mode
        self.run_bridge(batch, crash_before=at if death == "before_post" else None,
                        crash_after=at if death == "after_post" else None,
                        concurrent_at=at if death == "concurrent" else None,
                        crash_at_finish=death == "before_close", lose_answer=death == "after_close",
                        ledger_down=ledger_down)

    def run_bridge(self, batch: list[Message], *, crash_before: Optional[int] = None,
                   crash_after: Optional[int] = None, concurrent_at: Optional[int] = None,
                   crash_at_finish: bool = False, lose_answer: bool = False,
                   ledger_down: Optional[str] = None) -> None:
        """One invocation of the bridge with `batch` and the faults given, then what it must have done."""
        erp, ledger = self.erp, self.ledger
        erp.in_invocation, erp.kept_now, erp.answered = 0, [], {}
        erp.crash_before, erp.crash_after, erp.concurrent_at = crash_before, crash_after, concurrent_at
        ledger.crash_at_finish, ledger.down, ledger.finished = crash_at_finish, {ledger_down} - {None}, False
        dlq_before = Counter(self.parked_event_ids())
        requests = ledger.requests
        self.parked_beside: Counter[str] = Counter()  # what a concurrent bridge parked meanwhile
        answered = self.invoke("erp_webhook", batch, lose_answer=lose_answer)
        ledger.crash_at_finish, ledger.down = False, set()
        if self.deduplicates:
            assert ledger.requests == requests, "the bridge touched its ledger for a deduplicating ERP"
        elif not ledger.finished:  # kept by the ERP, and no record closed: the documented window
            for event_id in erp.kept_now:
                event("erp_webhook: kept, its record left open")
                self.windows[event_id] += 1
        self.check_refusals(batch, dlq_before + self.parked_beside, answered)
        if answered:
            self.check_backoffs(batch)

    def concurrent_bridge(self) -> None:
        """Another bridge takes messages the first left visible while it waits for the ERP's answer."""
        batch, self.erp.beside = self.erp.beside, []
        if not batch:
            return
        event("erp_webhook: two bridges at once")
        erp, ledger = self.erp, self.ledger
        saved = (erp.in_invocation, erp.kept_now, erp.answered, erp.crash_before, erp.crash_after,
                 ledger.crash_at_finish, set(ledger.down), ledger.finished)
        before = Counter(self.parked_event_ids())
        self.run_bridge(batch)
        self.parked_beside = Counter(self.parked_event_ids()) - before
        (erp.in_invocation, erp.kept_now, erp.answered, erp.crash_before, erp.crash_after,
         ledger.crash_at_finish, ledger.down, ledger.finished) = saved

    @precondition(lambda self: self.visible("cache_invalidation"))
    @rule(data=st.data(), size=st.integers(1, 10), down=st.sampled_from([False, False, False, True]),
          lose_answer=st.sampled_from([False, False, False, True]))
    def cache_invalidation_runs(self, data: st.DataObject, size: int, down: bool, lose_answer: bool) -> None:
        batch = data.draw(st.permutations(self.visible("cache_invalidation")))[:size]
        before = {key: self.caches.get(*key) for key in self.caches.items}
        self.caches.down = down
        try:
            answered = self.invoke("cache_invalidation", batch, lose_answer=lose_answer)
        finally:
            self.caches.down = False
        if answered:
            self.check_backoffs(batch)
        handled = [json.loads(m.body)["detail"] for m in batch]
        for key, entry in before.items():
            after = self.caches.get(*key)
            if entry.hit:
                event("cache: a value was stored when its event came")
            if entry.hit and not after.hit:  # this batch invalidated it: by a completion after the value
                tenant, scope, namespace = key
                assert any(d["tenant"] == tenant and d["scope"] == scope and namespace in self.rules.namespaces_for(d["type"])
                           and (entry.value["stream_at"] <= self.completed_at[d["job_id"]]
                                # ports.CacheStore.invalidate: a completion at the very time of the
                                # last invalidation, by another job, invalidates again
                                or (entry.invalidated_at == (d["finished_at"] or d["timestamp"])
                                    and entry.invalidated_by != d["job_id"]))
                           for d in handled), (
                    f"{key}: a value recomputed after the completion was invalidated again by {handled}")

    @precondition(lambda self: self.queues["erp_outbound"].messages)
    @rule(data=st.data(), size=st.integers(1, 10))
    def erp_outbound_is_read(self, data: st.DataObject, size: int) -> None:
        """An ERP consumer reads `erp-outbound` as docs/events.md tells it: unwrap `detail`, keep
        each `event_id` once."""
        queue = self.queues["erp_outbound"]
        for message in data.draw(st.permutations(queue.messages))[:size]:
            self.read_outbound(message)

    def read_outbound(self, message: Message) -> None:
        envelope = json.loads(message.body)
        assert set(envelope) == ENVELOPE, sorted(envelope)
        detail = envelope["detail"]
        assert envelope["detail-type"] == detail["event_type"] and envelope["source"] == SOURCE
        assert DOCUMENTED_DETAIL <= set(detail), sorted(DOCUMENTED_DETAIL - set(detail))
        first = self.outbound.setdefault(detail["event_id"], detail)
        assert first == detail, f"two copies of {detail['event_id']} differ"
        self.queues["erp_outbound"].messages.remove(message)

    @rule(data=st.data())
    def cache_reader(self, data: st.DataObject) -> None:
        """A reader as docs/events.md asks: on a miss, recompute and PUT with If-Match of the
        generation the miss reported (the value remembers the stream's length then)."""
        tenant, scope = data.draw(st.sampled_from(TENANTS)), data.draw(st.sampled_from(SCOPES[1:]))
        namespace = data.draw(st.sampled_from(sorted({n for t in JOB_TYPES for n in self.rules.namespaces_for(t)})))
        entry = self.caches.get(tenant, scope, namespace)
        if not entry.hit:
            self.caches.put(tenant, scope, namespace, {"stream_at": len(self.stream)}, self.clock.now.isoformat(),
                            expected_generation=entry.generation)

    @precondition(lambda self: self.jobs_seen())
    @rule(data=st.data(), fixed=st.booleans())
    def erp_refuses(self, data: st.DataObject, fixed: bool) -> None:
        """The ERP refuses a job's events for good (422), or is fixed and takes them all."""
        if fixed:
            self.erp.refused_jobs.clear()
        else:
            self.erp.refused_jobs.add(data.draw(st.sampled_from(self.jobs_seen())))

    @precondition(lambda self: self.parked_event_ids() or any(q.dead for q in self.queues.values()))
    @rule()
    def operator_redrives(self) -> None:
        """`POST /api/system/dlq/redrive?queue=...`: every dead letter back on its queue, as it came."""
        self.redrive()

    @precondition(lambda self: self.queues["erp_webhook"].messages and not self.outages)
    @rule(mode=st.sampled_from(["5xx", "down", "timeout"]), hours=st.sampled_from([2, 30]))
    def erp_outage(self, mode: str, hours: int) -> None:
        """The ERP fails every POST for hours while the bridge keeps trying: within the retry
        budget nothing is dead-lettered; past it, the redrive policy parks what is left."""
        self.outages += 1  # one an example: a day of retries is some thousand invocations
        ends = self.now() + hours * 3600
        self.erp.mode = mode
        while self.now() < ends and self.queues["erp_webhook"].messages:
            while batch := self.visible("erp_webhook")[:10]:
                self.run_bridge(batch)
            self.wait("next")
        self.erp.mode = "ok"

    @rule(seconds=st.sampled_from(["next", "next", 1, 61, 400, 3600, 30 * 3600]))
    def wait(self, seconds: Any) -> None:
        if seconds == "next":
            moments = [m.visible_at for q in self.queues.values() for m in q.messages if m.visible_at > self.now()]
            seconds = min(moments) - self.now() if moments else 1
        self.clock.advance(seconds)

    # -- helpers ---------------------------------------------------------------------------------

    def jobs_seen(self) -> list[str]:
        return sorted(self.store._jobs)

    def parked_event_ids(self) -> list[str]:
        return [json.loads(body)["detail"]["event_id"] for body, _ in self.erp_dlq.parked]

    def redrive(self) -> None:
        for body, _ in self.erp_dlq.parked:
            self.enqueue("erp_webhook", body, json.loads(body)["detail"]["event_id"])
        self.erp_dlq.parked.clear()
        for name, queue in self.queues.items():
            for message in queue.dead:
                self.enqueue(name, message.body, message.event_id)
            queue.dead.clear()

    def check_refusals(self, batch: list[Message], dlq_before: Counter[str], answered: bool) -> None:
        """A refused event is parked with its reason at once, its message deleted; once per message."""
        added = Counter(self.parked_event_ids()) - dlq_before
        refused = {e for e, a in self.erp.answered.items()
                   if 400 <= a.status < 500 and a.status not in WEBHOOK_TRANSIENT_4XX}
        assert set(added) <= refused, f"parked without a refusal: {set(added) - refused}"
        for event_id in refused:
            messages = [m for m in batch if m.event_id == event_id]
            assert added[event_id] <= 1, f"{event_id} parked {added[event_id]} times from one batch"
            if added[event_id]:
                event("erp_webhook: a refused event parked")
                assert not any(m.id in self.parked_messages for m in messages), f"{event_id}'s message parked twice"
                reason = next(r for b, r in reversed(self.erp_dlq.parked) if json.loads(b)["detail"]["event_id"] == event_id)
                assert reason == f"ERP webhook refused event {event_id}: HTTP 422 Unprocessable Entity: unknown job"
                # Deleted at once; a copy behind it in the batch is too, unless the process died first.
                gone = [m for m in messages if m not in self.queues["erp_webhook"].messages]
                assert gone and (len(gone) == len(messages) or not answered), "a parked event's message stayed"
                self.parked_messages.update(m.id for m in gone)

    def check_backoffs(self, batch: list[Message]) -> None:
        """Each failed record hidden for its documented backoff, or the Retry-After it was asked."""
        for message in batch:
            wait = self.sqs.visibility.get(f"{message.id}#{message.receives}")
            if wait is None:
                continue
            backoff = self.settings.redelivery_wait_s(message.receives)
            answer = self.erp.answered.get(message.event_id) if message in self.queues["erp_webhook"].messages else None
            if answer is not None and answer.retry_after_s:
                assert wait == max(backoff, min(WEBHOOK_RETRY_AFTER_MAX_S, int(answer.retry_after_s) + 1)), wait
            else:
                assert wait == backoff, (message.event_id, message.receives, wait, backoff)

    # -- what must hold after every step ---------------------------------------------------------

    @invariant()
    def no_event_silently_lost(self) -> None:
        if not hasattr(self, "erp"):
            return
        kept = {p.event_id for p in self.erp.posts if p.kept}
        waiting = {m.event_id for m in self.queues["erp_webhook"].messages + self.queues["erp_webhook"].dead}
        lost = self.routed["erp_webhook"] - kept - waiting - set(self.parked_event_ids())
        assert not lost, f"events neither at the ERP, on the bridge's queue nor on its DLQ: {sorted(lost)}"

    @invariant()
    def every_copy_the_same(self) -> None:
        if not hasattr(self, "erp"):
            return
        first: dict[str, Post] = {}
        for post in self.erp.posts:
            assert verify(SECRET, post.body, post.headers[SIGNATURE_HEADER]), post
            assert post.headers[EVENT_ID_HEADER] == post.event_id
            seen = first.setdefault(post.event_id, post)
            assert (seen.body, seen.headers) == (post.body, post.headers), f"{post.event_id} sent two ways"

    @invariant()
    def no_stale_cache_read(self) -> None:
        """Once a job reads completed, no value stored before its completion is a hit."""
        if not hasattr(self, "caches"):
            return
        for (tenant, scope, namespace) in list(self.caches.items):
            entry = self.caches.get(tenant, scope, namespace)
            if not entry.hit:
                continue
            for job_id, at in self.completed_at.items():
                job = self.store._jobs[job_id]
                if (job.tenant, job.scope) == (tenant, scope) and namespace in self.rules.namespaces_for(job.type):
                    assert entry.value["stream_at"] > at, f"{namespace} of {scope} stale after {job_id} completed"

    # -- and in the end --------------------------------------------------------------------------

    def settle(self) -> None:
        """The faults stop, the stream drains, the operator redrives, the queues drain."""
        self.erp.mode = "ok"
        self.erp.refused_jobs.clear()
        self.erp.crash_before = self.erp.crash_after = None
        self.ledger.down = set()
        composition.use(self.services())
        try:
            if self.read_to < len(self.stream):
                assert self.consumer.consume(self.stream[self.read_to:]) is None
                self.read_to = len(self.stream)
            self.route()
            self.redrive()
            for _ in range(SETTLE_ROUNDS):
                for name in ("erp_webhook", "cache_invalidation"):
                    while batch := self.visible(name)[:10]:
                        if name == "erp_webhook":
                            self.run_bridge(batch)
                        else:
                            self.invoke(name, batch)
                for message in list(self.queues["erp_outbound"].messages):
                    self.read_outbound(message)
                if not any(q.messages or q.dead for q in self.queues.values()) and not self.erp_dlq.parked:
                    break
                self.redrive()
                self.wait("next")
            else:
                raise AssertionError(f"still undelivered after {SETTLE_ROUNDS} rounds")
        finally:
            composition.use(None)
        self.check_the_end()

    def services(self) -> Container:
        """The subscribers' container: the real one, its ports the model's in-memory ones."""
        services = Container(self.settings)
        services.queue = self.sqs
        services.erp_bridge = ErpBridge(self.erp, ERP_URL, SECRET)
        services.erp_dead_letters = self.erp_dlq
        services.delivery_ledgers["erp_bridge"] = self.ledger
        services.cache_invalidator = CacheInvalidator(self.caches, self.rules, self.publisher)
        return services

    def check_the_end(self) -> None:
        self.no_event_silently_lost()
        self.every_copy_the_same()
        self.no_stale_cache_read()
        kept = Counter(p.event_id for p in self.erp.posts if p.kept)
        never = self.routed["erp_webhook"] - set(kept)
        assert not never, f"never reached the ERP: {sorted(never)}"
        if any(n > 1 for n in kept.values()):
            event(f"the ERP kept an event more than once ({'deduplicating' if self.deduplicates else 'in a window'})")
        if not self.deduplicates:
            extra = {e: n for e, n in kept.items() if n > 1 + self.windows[e]}
            assert not extra, f"kept more often than the documented windows allow: {extra}"
        status_events = {e.event_id for e in self.publisher.published if e.event_type.startswith("job.status.")}
        assert set(self.outbound) == status_events, "erp-outbound did not get every job.status.* event"
        assert self.routed["erp_webhook"] == status_events
        # Cache: the latest completion per type, and one announcement id per completion.
        for job_id in self.completed_at:
            job = self.store._jobs[job_id]
            if job.scope is None:
                continue
            latest = max((j for j in self.store._jobs.values() if (j.tenant, j.scope, j.type) == (job.tenant, job.scope, job.type)
                          and j.status.value == "completed"), key=lambda j: j.finished_at)
            recorded = {c.type: c for c in self.caches.completions(job.tenant, job.scope)}
            assert recorded[job.type].completed_at == latest.finished_at, (job.type, recorded, latest.finished_at)
        announced = {e.event_id for e in self.publisher.published if e.event_type == "cache.invalidated"}
        completions = {event_id_for(j, self.store._jobs[j].version, kind="cache")
                       for j in self.completed_at if self.store._jobs[j].scope is not None}
        assert announced == completions, "each completion with a scope announced once, by its id"


SubscriberModel.TestCase.settings = settings(
    max_examples=300, stateful_step_count=50, deadline=None, database=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_subscriber_model = SubscriberModel.TestCase
