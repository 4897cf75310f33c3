"""The pipeline as a model, submit to published event: random interleavings of submissions
(keyed or not, each priority, started now, later or beyond SQS's delay), deliveries run by the
real JobRunner whose handler follows a script (progress, a cancel or its lease lapsing while it
runs, then it returns, fails, raises, times out or its process dies), duplicate and lost
messages, cancels, reconciler passes, time passing, the jobs queues and the jobs table not
answering (the table also going away while a handler runs, back or not by the worker's first
wait for its outcome), and the jobs table's stream read by the real
StreamConsumer while the bus and the stats table fail now and then (a batch retried, then given up on and replayed
by the reconciler from StreamFailureQueue), over the in-memory adapters.

After every step: each write follows the table (one version at a time, progress never lower
within an attempt), and every published event is the one of a stream write, the same each time
it is published again, and a job's distinct status events chain one status to the next. Once
the faults stop and time passes, every job has finished or waits for its start, no failed job
owes its dead letter, and, the
stream drained, each status change was published as exactly one event (by id: a stream batch
retried or replayed publishes its events again under the same ids, which subscribers drop, as
docs/events.md says) and counted once.

tests/functional/test_lifecycle_model.py drives the lifecycle's writes one by one (stalled
workers waking, children, redrives); this one drives them as the worker and the stream run them."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from pydantic import BaseModel

from chalicelib.adapters.dynamodb_stream import job_change
from chalicelib.adapters.memory import InMemoryJobQueue, InMemoryJobStore, InMemoryQueueOperations
from chalicelib.adapters.memory_events import InMemoryEventPublisher
from chalicelib.adapters.memory_stats import InMemoryStatsStore
from chalicelib.adapters.memory_stream import InMemoryChangeStream, InMemoryFailedStreamBatches
from chalicelib.defaults import LEASE_GRACE_S, REPLAY_RESEND_AFTER_S
from chalicelib.domain.errors import (
    FatalJobError,
    IdempotencyConflictError,
    JobAlreadyFinishedError,
    JobTimeoutError,
    QueueUnavailableError,
    StoreUnavailableError,
)
from chalicelib.domain.events import STATUS_CHANGED, event_id_for
from chalicelib.domain.job import parse_time
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.domain.status import JobStatus
from chalicelib.events.replay import StreamReplay
from chalicelib.events.stream import StreamConsumer
from chalicelib.lifecycle import JobLifecycle
from chalicelib.reconciler import Reconciler
from chalicelib.worker.runner import DeferredDelivery, JobRunner
from tests.support.jobs_queue_model import VISIBILITY_S, Message, SimulatedJobsQueue
from tests.support.job_writes import RecordingJobs, check_at_rest, check_write
from tests.support.model_clock import ModelTime
from tests.unit.conftest import FakeClock

pytestmark = pytest.mark.timeout(900)  # shrinking a failure to its shortest steps can take minutes

TENANTS = ("acme", "globex")
JOB_TYPE = "model.scripted"
TIMEOUT_S = 60
REDELIVERY_S = 30  # a failed delivery is held this long before it comes back
STREAM_ARN = "arn:aws:dynamodb:us-east-1:000000000000:table/jobpipe-jobs/stream/model"
STREAM_TRIES = 3  # deliveries of a failing stream batch before the mapping gives up on it
SETTLE_ROUNDS = 40

# What a handler does before it ends, and how it ends.
STEPS = ("progress", "progress", "check_cancel", "cancel", "lease_lapses", "store_blip", "store_down")
ENDS = ("return", "return", "return", "fail_job", "raise", "fatal", "timeout", "crash")


class ProcessDied(KeyboardInterrupt):
    """The worker's process dies mid-run: the runner lets a KeyboardInterrupt through without
    writing an outcome, as a process that is gone writes none."""


class Scripted(BaseModel):
    n: int = 0


class OutageStore(InMemoryJobStore):
    """The in-memory store, down while `down`: each call refused (StoreUnavailableError) before
    it reads or writes anything, as a throttled or unreachable table's are past botocore's tries."""

    down = False

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if not name.startswith("_") and callable(value) and super().__getattribute__("down"):
            def refused(*args: Any, **kwargs: Any) -> Any:
                raise StoreUnavailableError(f"the store does not answer ({name})")
            return refused
        return value


class OutageStats(InMemoryStatsStore):
    """The stats table, refusing a batch's counts whole while `down`."""

    down = False

    def record_batch(self, deltas: Any) -> int:
        if self.down:
            raise StoreUnavailableError("the stats table does not answer")
        return super().record_batch(deltas)


class OutageTime(ModelTime):
    """The model's time, where the worker's wait for a store that does not answer passes."""

    def __init__(self, now: Any, advance: Any) -> None:
        super().__init__(now)
        self._advance = advance

    def sleep(self, seconds: float) -> None:
        self._advance(seconds)


class PipelineModel(SimulatedJobsQueue, RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.clock = FakeClock()
        self.stream: list[dict[str, Any]] = []
        self.change_stream = InMemoryChangeStream(STREAM_ARN)
        self.change_stream._records = self.stream  # the table's stream is what the store wrote
        self.store = OutageStore()
        self.store._jobs = RecordingJobs(self.stream, clock=self.now)
        self.queue = InMemoryJobQueue()
        registry = JobTypeRegistry()
        registry.register(JOB_TYPE, Scripted, max_attempts=3, timeout_s=TIMEOUT_S)(self.handler)
        self.lifecycle = JobLifecycle(self.store, self.queue, registry, clock=self.clock)
        self.store_back_on_wait = False
        self.runner = JobRunner(self.lifecycle, registry, clock=OutageTime(self.now, self.worker_waits),
                                progress_interval_s=0)
        self.publisher = InMemoryEventPublisher()
        self.stats = OutageStats()
        self.consumer = StreamConsumer(job_change, self.publisher, self.stats)
        self.failed_batches = InMemoryFailedStreamBatches(clock=self.now)
        self.reconciler = Reconciler(self.lifecycle, InMemoryQueueOperations(self.queue),
                                     replay=StreamReplay(self.failed_batches, self.change_stream, self.consumer))
        self.position = 0  # the stream mapping's place: records before it were handed to the consumer
        self.tries = 0  # deliveries of the batch at `position` that failed
        self.checked = 0
        self.changes: list[Any] = []  # the stream's records, decoded once
        self.writes: dict[tuple[str, int], Any] = {}  # (job id, version) -> the job as written
        self.status_changes: dict[str, Any] = {}  # event id -> the job as a status change wrote it
        self.messages: list[Message] = []
        self.jobs: list[str] = []
        self.keys: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self.script: list[str] = []
        self.published: dict[str, Any] = {}  # event id -> the event, as first published
        self.seen_events = 0

    # -- the world ---------------------------------------------------------------------------

    def handler(self, ctx: Any, payload: Scripted) -> Any:
        """Does what the delivery's script says; what it reports, checks and raises goes
        through the real JobContext and runner."""
        percent = 0.0
        for step in self.script:
            if step == "progress":
                percent = min(100.0, ctx.progress_percent + 30)
                ctx.progress(percent, step="model")
            elif step == "check_cancel":
                if ctx.cancelled():
                    return None
            elif step == "cancel":
                self.cancel_job(ctx.job_id)
            elif step in ("store_blip", "store_down"):  # the store stops answering as the handler runs on
                self.store.down = True
                self.store_back_on_wait = step == "store_blip"  # back by the worker's first wait
            elif step == "lease_lapses":  # the handler runs on past its lease; the reconciler ends the attempt
                self.clock.advance(TIMEOUT_S + LEASE_GRACE_S + 1)
                self.reconcile()
            elif step == "fail_job":
                raise ctx.fail("model_failed", "the script failed it")
            elif step == "raise":
                raise RuntimeError("the script raised")
            elif step == "fatal":
                raise FatalJobError("the script gave up")
            elif step == "timeout":
                ctx.expire()
                raise JobTimeoutError(f"handler exceeded its timeout of {TIMEOUT_S} s")
            elif step == "crash":
                raise ProcessDied()
        return {"attempt": ctx.attempt}

    def worker_waits(self, seconds: float) -> None:
        """The worker waits for a store that did not take an outcome: time passes, and a blip ends."""
        self.clock.advance(seconds)
        if self.store_back_on_wait:
            self.store.down = self.store_back_on_wait = False

    def cancel_job(self, job_id: str) -> None:
        try:
            self.lifecycle.cancel(self.store._jobs[job_id].tenant, job_id)
        except (JobAlreadyFinishedError, StoreUnavailableError):
            pass  # 409, or 503: the caller asks again
        self.collect_sent()

    def run(self, message: Message, script: list[str], time_left_s: Optional[float] = None) -> None:
        """One delivery of `message`, as the worker function handles it."""
        if not self.receive(message):  # the redrive policy parked it
            return
        message.visible_at = self.now() + VISIBILITY_S  # hidden while received
        self.script = script
        try:
            left = self.runner.run(message.body, time_left_s=time_left_s)
        except DeferredDelivery as deferred:
            event("delivery deferred")
            message.visible_at = self.now() + (deferred.retry_after_s or REDELIVERY_S)
        except ProcessDied:
            event("process died")  # nothing answers for it: it comes back after the visibility timeout
        except (QueueUnavailableError, StoreUnavailableError) as exc:  # a send, a letter or a write failed: again soon
            event(f"delivery failed: {type(exc).__name__}")
            message.visible_at = self.now() + REDELIVERY_S
        else:
            event(f"delivery left the job {left.status.value if left else None}")
            self.messages.remove(message)
        self.collect_sent()

    def deliver_stream(self, size: int) -> None:
        """The stream mapping hands the consumer its next batch; a batch whose events did not all
        go out is delivered again, and after STREAM_TRIES described to StreamFailureQueue."""
        batch = self.stream[self.position:self.position + size]
        if not batch:
            return
        try:
            published = self.consumer.consume(batch) is None
        except StoreUnavailableError:  # its events went out; its counts did not: the batch fails
            published = False
        if published:
            self.position += len(batch)
            self.tries = 0
            return
        self.tries += 1
        event("stream batch failed")
        if self.tries >= STREAM_TRIES:
            event("stream batch given up")
            first, last = batch[0]["dynamodb"]["SequenceNumber"], batch[-1]["dynamodb"]["SequenceNumber"]
            self.failed_batches.put(STREAM_ARN, self.change_stream.shard_id, first, last, len(batch))
            self.position += len(batch)
            self.tries = 0

    # -- rules -------------------------------------------------------------------------------

    @rule(tenant=st.sampled_from(TENANTS), start=st.sampled_from([0, 0, 5, 120, 2000, "run_at"]),
          priority=st.sampled_from([None, None, "high", "low"]), key=st.sampled_from([None, None, "k1", "k2"]),
          n=st.integers(0, 1))
    def submit(self, tenant: str, start: Any, priority: Optional[str], key: Optional[str], n: int) -> None:
        request: dict[str, Any] = {"type": JOB_TYPE, "payload": {"n": n}, "priority": priority}
        if start == "run_at":
            request["run_at"] = self.clock.now + timedelta(seconds=3600)
        else:
            request["delay_seconds"] = start
        first = self.keys.get((tenant, key)) if key is not None else None
        written = len(self.stream)
        before = self.store._jobs.get(first[1]) if first is not None else None  # read past an outage
        try:
            job = self.lifecycle.submit(tenant=tenant, user="ann", job_id=f"job-{len(self.jobs):03d}",
                                        idempotency_key=key, **request)
        except StoreUnavailableError:  # 503: nothing written, the client submits again
            assert len(self.stream) == written, "a submission the store refused wrote something"
            return
        except IdempotencyConflictError:
            assert first is not None and first[0] != request
            assert len(self.stream) == written, "a refused submission wrote something"
            return
        if first is not None:  # the key's first request answered, nothing written or sent ...
            assert first[0] == request and job.id == first[1]
            # ... but for the first message of a job still unclaimed a while past its start, once
            unclaimed = before is not None and before.status == JobStatus.QUEUED and before.dispatches == 1 \
                and self.clock.now >= parse_time(before.not_before) + timedelta(seconds=REPLAY_RESEND_AFTER_S)
            sent = [(m.job_id, m.attempt) for m, _, _ in self.queue.sent]
            assert (len(self.stream) - written, sent) == ((1, [(job.id, 1)]) if unclaimed else (0, []))
            self.collect_sent()
            return
        assert job.priority == (priority or "normal")
        self.jobs.append(job.id)
        if key is not None:
            self.keys[(tenant, key)] = (request, job.id)
        self.collect_sent()

    @precondition(lambda self: self.visible())
    @rule(data=st.data(), steps=st.lists(st.sampled_from(STEPS), max_size=3), end=st.sampled_from(ENDS),
          time_left=st.sampled_from([None, None, None, 5.0]))
    def deliver(self, data: st.DataObject, steps: list[str], end: str, time_left: Optional[float]) -> None:
        self.run(data.draw(st.sampled_from(self.visible())), [*steps, end], time_left)

    @precondition(lambda self: self.messages)
    @rule(data=st.data(), fault=st.sampled_from(["duplicate", "lose"]))
    def message_fault(self, data: st.DataObject, fault: str) -> None:
        """SQS delivers at least once; a purge or an operator's mistake loses a message."""
        self.duplicate_or_lose(data.draw(st.sampled_from(self.messages)), fault)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self.cancel_job(data.draw(st.sampled_from(self.jobs)))

    @rule(seconds=st.sampled_from(["next", "next", 1, 40, 700, 4000]))
    def wait(self, seconds: Any) -> None:
        """Time passes: a while, or up to the next moment a message shows or a job is due."""
        if seconds == "next":
            seconds = self.until_next_moment()
        self.clock.advance(seconds)

    @rule()
    def reconcile(self) -> None:
        for outcome in self.reconciler.run_pass().counts:
            event(f"reconciler: {outcome}")
        self.collect_sent()

    @rule(down=st.booleans())
    def queue_outage(self, down: bool) -> None:
        self.queue.fail_sends = down

    @rule(down=st.booleans())
    def store_outage(self, down: bool) -> None:
        self.store.down = down

    @rule(down=st.booleans())
    def stats_outage(self, down: bool) -> None:
        self.stats.down = down

    @rule(size=st.integers(1, 6))
    def stream_delivers(self, size: int) -> None:
        self.deliver_stream(size)

    @rule(failures=st.integers(1, 4))
    def bus_fails(self, failures: int) -> None:
        """The next PutEvents calls fail (the bus throttled or away)."""
        self.publisher.fail_next = failures

    # -- what must hold after every step ---------------------------------------------------------

    @invariant()
    def writes_follow_the_table(self) -> None:
        changes = self.decoded()
        for change in changes[self.checked:]:
            check_write(change.old, change.new)
        self.checked = len(changes)
        for job in self.store._jobs.values():
            check_at_rest(job)

    @invariant()
    def events_are_the_streams(self) -> None:
        """Each published event is its write's, the same whenever it is published again, and a
        job's distinct status events chain from its creation on."""
        fresh = self.publisher.published[self.seen_events:]
        self.seen_events = len(self.publisher.published)
        for event in fresh:
            first = self.published.setdefault(event.event_id, event)
            assert first == event, f"{event.event_id} published as {first} and as {event}"
            assert event.event_id == event_id_for(event.job_id, event.version)
            written = self.version_of(event.job_id, event.version)
            assert written is not None and written.status.value == event.status, event
        chains: dict[str, list[Any]] = {}
        for event in self.published.values():
            if event.event_type == STATUS_CHANGED:
                chains.setdefault(event.job_id, []).append(event)
        for job_id, events in chains.items():
            events.sort(key=lambda e: e.version)
            for before, after in zip(events, events[1:]):
                assert after.previous_status != after.status, after
                if after.previous_status != before.status:  # an event between them is still to come
                    assert self.status_change_between(job_id, before.version, after.version), (before, after)

    def decoded(self) -> list[Any]:
        """The stream's job changes so far, each record decoded once."""
        for record in self.stream[len(self.changes):]:
            change = job_change(record)
            self.changes.append(change)
            self.writes[(change.new.id, change.new.version)] = change.new
            if change.old is None or change.old.status != change.new.status:
                self.status_changes[event_id_for(change.new.id, change.new.version)] = change.new
        return self.changes

    def version_of(self, job_id: str, version: int) -> Optional[Any]:
        self.decoded()
        return self.writes.get((job_id, version))

    def status_change_between(self, job_id: str, low: int, high: int) -> bool:
        self.decoded()
        return any(job.id == job_id and low < job.version < high for job in self.status_changes.values())

    # -- and in the end, nothing stuck, nothing unannounced --------------------------------------

    def teardown(self) -> None:
        if not hasattr(self, "store"):
            return
        self.queue.fail_sends = False
        self.store.down = False
        self.stats.down = False
        self.publisher.fail_next = 0
        for _ in range(SETTLE_ROUNDS):
            for message in self.visible():
                if message in self.messages:
                    self.run(message, ["return"])
            self.clock.advance(900)
            self.reconcile()
        waiting = {j.id: j.status.value for j in self.store._jobs.values()
                   if not j.status.is_terminal and not (j.not_before and parse_time(j.not_before) > self.clock.now)}
        assert not waiting, f"still unfinished after {SETTLE_ROUNDS} rounds of workers and reconciler: {waiting}"
        parked = {(message.job_id, message.attempt) for message, _ in self.queue.dead if message is not None}
        owed = {j.id: j.dead_letter_owed for j in self.store._jobs.values()
                if j.dead_letter_owed is not None and (j.id, j.dead_letter_owed) not in parked}
        assert not owed, f"failed jobs whose dead letter was never parked: {owed}"
        self.writes_follow_the_table()
        while self.position < len(self.stream):
            self.deliver_stream(100)
        for _ in range(8):  # each failed replay waits a minute, doubling per try
            self.clock.advance(3600)
            self.reconciler.run_pass()
        assert not self.failed_batches.waiting(), "a failed stream batch was never replayed"
        self.events_are_the_streams()
        self.decoded()
        expected = self.status_changes
        announced = {i for i, e in self.published.items() if e.event_type == STATUS_CHANGED}
        assert announced == set(expected), (
            f"status changes never published: {sorted(set(expected) - announced)}; "
            f"published with no status change: {sorted(announced - set(expected))}")
        jobs = list(self.store._jobs.values())
        counted = {k: v for k, v in self.stats.status_counts().items() if v}
        assert counted == dict(Counter(j.status.value for j in jobs)), "status changes not counted once each"


PipelineModel.TestCase.settings = settings(
    max_examples=300, stateful_step_count=80, deadline=None, database=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_pipeline_model = PipelineModel.TestCase
