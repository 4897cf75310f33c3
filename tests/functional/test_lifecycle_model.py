"""The lifecycle as a model: random interleavings of what the cloud does to jobs — duplicate,
late and lost messages, workers that crash or fall behind, cancels at any moment, failed
sends, the reconciler's passes, an operator's redrive, handlers spawning children and time
passing — over the in-memory adapters. After every step the safety rules hold (only the
table's transitions, one event per status change, counters equal to the jobs, one live attempt
per job, an outcome from its own attempt, every child on its parent and spawned by a live
attempt); at the end, once the faults stop, workers and the reconciler bring every job to an end.

Hypothesis shrinks a failure to the shortest sequence of steps that breaks a rule (which can
take minutes: hence the longer timeout). In-memory only; it sits in this tier for its ~10 s.
`--hypothesis-show-statistics` shows how often claims, stale writes and wake-ups happened."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from chalicelib.adapters.dynamodb_stream import job_change
from chalicelib.adapters.memory import InMemoryJobQueue, InMemoryJobStore, InMemoryQueueOperations
from chalicelib.adapters.memory_stats import InMemoryStatsStore
from chalicelib.domain.errors import AttemptEndedError, JobAlreadyFinishedError, JobCancelledError, ProgressRejectedError, QueueUnavailableError, StaleJobError
from chalicelib.domain.events import STATUS_CHANGED
from chalicelib.domain.job import Job, JobErrorInfo, child_job_id
from chalicelib.domain.status import JobStatus
from chalicelib.events.changes import events_for_change
from chalicelib.events.stream import record_changes
from chalicelib.job_types import build_registry
from chalicelib.lifecycle import ClaimOutcome, JobLifecycle
from chalicelib.reconciler import Reconciler
from tests.support.jobs_queue_model import VISIBILITY_S, Message, SimulatedJobsQueue
from tests.support.job_writes import RecordingJobs, check_at_rest, check_write
from tests.unit.conftest import FakeClock

pytestmark = pytest.mark.timeout(900)

TENANTS = ("acme", "globex")
SETTLE_ROUNDS = 60


@dataclass
class Worker:
    """An attempt a worker process holds: the job as its claim (or last write) returned it."""
    job: Job
    message: Message
    reported: float = 0.0
    spawned: int = 0
    ended: bool = field(default=False)


class LifecycleModel(SimulatedJobsQueue, RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.clock = FakeClock()
        self.stream: list[dict[str, Any]] = []
        self.store = InMemoryJobStore()
        self.store._jobs = RecordingJobs(self.stream)
        self.queue = InMemoryJobQueue()
        self.lifecycle = JobLifecycle(self.store, self.queue, build_registry(demo_types=True), clock=self.clock)
        self.reconciler = Reconciler(self.lifecycle, InMemoryQueueOperations(self.queue))
        self.stats = InMemoryStatsStore()
        # Each invariant keeps its own place in the stream: hypothesis runs them in name order,
        # so a shared one would leave the later ones nothing to read.
        self.checked = 0  # stream records held to the transition table
        self.counted = 0  # stream records the stats have consumed
        self.messages: list[Message] = []
        self.workers: list[Worker] = []
        self.stalled: list[Worker] = []
        self.jobs: list[str] = []
        self.outcomes: dict[str, int] = {}  # job id -> the attempt whose completion was written

    # -- the world ---------------------------------------------------------------------------

    def live_workers(self) -> list[Worker]:
        return [w for w in self.workers if not w.ended]

    def end(self, worker: Worker, *, delete_message: bool = True) -> None:
        worker.ended = True
        if delete_message and worker.message in self.messages:
            self.messages.remove(worker.message)

    # -- rules -------------------------------------------------------------------------------

    @rule(tenant=st.sampled_from(TENANTS), delay=st.sampled_from([0, 0, 5, 120, 2000]),
          kind=st.sampled_from(["demo.steps", "demo.sleep", "demo.sleep"]))
    def submit(self, tenant: str, delay: int, kind: str) -> None:
        payload = {"steps": 3, "step_ms": 0} if kind == "demo.steps" else {"seconds": 0}
        job = self.lifecycle.submit(tenant=tenant, user="ann", type=kind, payload=payload,
                                    delay_seconds=delay, job_id=f"job-{len(self.jobs):03d}")
        self.jobs.append(job.id)
        self.collect_sent()

    @precondition(lambda self: self.visible())
    @rule(data=st.data(), time_left=st.sampled_from([None, None, None, None, 5.0]))
    def deliver(self, data: st.DataObject, time_left: Optional[float]) -> None:
        message = data.draw(st.sampled_from(self.visible()))
        if not self.receive(message):  # the redrive policy parked it
            return
        try:
            claim = self.lifecycle.claim(message.body, time_left_s=time_left)
        except QueueUnavailableError:  # a takeover's retry not sent: the delivery failed, it comes back
            self.collect_sent()
            message.visible_at = self.now() + 30
            return
        event(f"claim {claim.outcome.value} {claim.reason}")
        self.collect_sent()
        if claim.outcome == ClaimOutcome.RUN:
            message.visible_at = self.now() + VISIBILITY_S
            self.workers.append(Worker(claim.job, message))
        elif claim.outcome == ClaimOutcome.DEFER:
            message.visible_at = self.now() + (claim.retry_after_s or 0)
        else:
            self.messages.remove(message)

    @precondition(lambda self: self.messages)
    @rule(data=st.data(), fault=st.sampled_from(["duplicate", "lose"]))
    def message_fault(self, data: st.DataObject, fault: str) -> None:
        """SQS delivers at least once; a purge or an operator's mistake loses a message."""
        self.duplicate_or_lose(data.draw(st.sampled_from(self.messages)), fault)

    @precondition(lambda self: self.live_workers())
    @rule(data=st.data(), action=st.sampled_from(["progress", "progress", "complete", "fail", "give_up", "stall",
                                                  "spawn"]),
          step=st.sampled_from([1, 9, 10, 25, 40]))
    def worker_acts(self, data: st.DataObject, action: str, step: int) -> None:
        """A worker reports progress, ends its attempt, or its process dies or stalls (a pause,
        a partition): then nothing is written and the message stays hidden."""
        worker = data.draw(st.sampled_from(self.live_workers()))
        if action == "stall":
            self.end(worker, delete_message=False)
            self.stalled.append(worker)
        else:
            self.act(worker, action, step)

    @precondition(lambda self: self.stalled)
    @rule(data=st.data(), action=st.sampled_from(["progress", "complete", "fail", "spawn"]))
    def stalled_worker_wakes(self, data: st.DataObject, action: str) -> None:
        """A stalled attempt's process wakes up, maybe long after its lease, and writes as if
        nothing happened: what it writes lands only while its attempt is still the job's."""
        worker = data.draw(st.sampled_from(self.stalled))
        stored = self.store.get(worker.job.id, mark_gone=False)
        event(f"wakes: {'same' if stored.attempts == worker.job.attempts else 'later'} attempt {stored.status.value}")
        self.stalled.remove(worker)
        worker.ended = False
        self.act(worker, action, 10)

    def act(self, worker: Worker, action: str, step: int) -> None:
        attempt = worker.job.attempts
        if action == "spawn":
            self.spawn(worker)
        elif action == "progress":
            percent = min(100.0, worker.reported + step)
            try:
                worker.job = self.lifecycle.report_progress(worker.job, percent, step="step")
            except ProgressRejectedError:
                self.end(worker)  # the attempt is over: the runner stops the handler
                return
            worker.reported = percent
            if worker.job.cancel_requested:
                self.stop(worker, lambda job: self.lifecycle.mark_canceled(job))
        elif action == "complete":
            def finish(job: Job) -> Job:
                done = self.lifecycle.complete(job, {"attempt": attempt})
                self.outcomes[job.id] = attempt
                return done
            self.stop(worker, finish)
        else:
            error = JobErrorInfo(code="handler_error", message="boom")
            self.stop(worker, lambda job: self.lifecycle.fail_attempt(job, error, retryable=action == "fail"))

    def spawn(self, worker: Worker) -> None:
        """The handler spawns its next child: made, sent and listed while its attempt is the
        job's running one and no cancel was requested; refused, with nothing written, once it
        is not (and the job ends canceled once it was)."""
        worker.spawned += 1
        stored = self.store.get(worker.job.id, mark_gone=False)
        live = stored.status == JobStatus.RUNNING and stored.attempts == worker.job.attempts
        child_id = child_job_id(worker.job.id, worker.job.attempts, worker.spawned)
        try:
            child = self.lifecycle.spawn(worker.job, worker.spawned, type="demo.sleep", payload={"seconds": 0})
        except AttemptEndedError:
            assert not live and self.store.get(child_id, mark_gone=False) is None
            self.end(worker)  # the handler stops: its attempt is over
            return
        except JobCancelledError:
            assert live and stored.cancel_requested and self.store.get(child_id, mark_gone=False) is None
            self.stop(worker, lambda job: self.lifecycle.mark_canceled(job))  # the runner ends it canceled
            return
        assert live, f"attempt {worker.job.attempts} of {worker.job.id} spawned {child.id} after it ended"
        assert not stored.cancel_requested, f"{worker.job.id} spawned {child.id} after its cancel was requested"
        self.jobs.append(child.id)
        self.collect_sent()

    def stop(self, worker: Worker, write) -> None:
        """The attempt's last write; a stale attempt's is refused and changes nothing. A write
        whose follow-up send fails reports the delivery failed: its message comes back."""
        try:
            write(worker.job)
            event("stop: written")
        except StaleJobError:
            event("stop: stale refused")
        except QueueUnavailableError:
            self.collect_sent()
            self.end(worker, delete_message=False)
            worker.message.visible_at = self.now()
            return
        self.collect_sent()
        self.end(worker)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.jobs))
        tenant = self.store.get(job_id, mark_gone=False).tenant
        try:
            self.lifecycle.cancel(tenant, job_id)
        except JobAlreadyFinishedError:
            pass

    @rule(seconds=st.sampled_from(["next", "next", 1, 40, 700, 4000]))
    def wait(self, seconds) -> None:
        """Time passes: a while, or up to the next moment a message shows or a job is due."""
        if seconds == "next":
            seconds = self.until_next_moment()
        self.clock.advance(seconds)

    @rule()
    def reconcile(self) -> None:
        self.reconciler.run_pass()
        self.collect_sent()

    @precondition(lambda self: self.queue.dead)
    @rule(priority=st.sampled_from(["high", "normal", "low"]))
    def redrive(self, priority: str) -> None:
        """An operator moves a dead-letter queue's messages back to its queue."""
        InMemoryQueueOperations(self.queue).redrive(priority, 10)
        for body, sent_priority, _ in self.queue.sent:
            self.messages.append(Message(body, sent_priority, self.now()))
        self.queue.sent.clear()

    @rule(down=st.booleans())
    def queue_outage(self, down: bool) -> None:
        self.queue.fail_sends = down

    # -- what must hold after every step ---------------------------------------------------------

    @invariant()
    def writes_follow_the_table(self) -> None:
        fresh, self.checked = self.stream[self.checked:], len(self.stream)
        for record in fresh:
            change = job_change(record)
            check_write(change.old, change.new)

    @invariant()
    def one_event_per_status_change_and_counters_add_up(self) -> None:
        fresh = [job_change(r) for r in self.stream[self.counted:]]
        self.counted = len(self.stream)
        for change in fresh:
            events = events_for_change(change.old, change.new, "2026-01-01T00:00:00Z")
            changed = change.old is None or change.old.status != change.new.status
            assert [e.event_type for e in events if e.event_type == STATUS_CHANGED] == (
                [STATUS_CHANGED] if changed else [])
        record_changes(fresh, self.stats)
        jobs = list(self.store._jobs.values())
        actual = Counter(j.status.value for j in jobs)
        assert {k: v for k, v in self.stats.status_counts().items() if v} == dict(actual)
        for tenant in TENANTS:
            assert self.stats.unfinished(tenant) == sum(
                1 for j in jobs if j.tenant == tenant and not j.status.is_terminal)

    @invariant()
    def one_live_attempt_per_job(self) -> None:
        for job in self.store._jobs.values():
            current = [w for w in self.live_workers()
                       if w.job.id == job.id and w.job.attempts == job.attempts and job.status == JobStatus.RUNNING]
            assert len(current) <= 1, f"{job.id} attempt {job.attempts} runs {len(current)} times"
            check_at_rest(job)
            if job.parent_id is not None:
                assert job.id in self.store._jobs[job.parent_id].children, f"{job.id} is not on its parent"

    @invariant()
    def an_outcome_belongs_to_the_last_attempt(self) -> None:
        for job in self.store._jobs.values():
            if job.status == JobStatus.COMPLETED:
                assert job.result == {"attempt": job.attempts} == {"attempt": self.outcomes[job.id]}
                assert job.error is None

    # -- and in the end, nothing stays stuck ---------------------------------------------------

    def completing(self, job: Job) -> Job:
        """Complete `job`'s attempt with its number as the result, kept as the job's outcome
        only once the write landed: a worker whose attempt was taken over (its lease ended, a
        later attempt completed the job) is refused and leaves the outcome as it is."""
        done = self.lifecycle.complete(job, {"attempt": job.attempts})
        self.outcomes[job.id] = job.attempts
        return done

    def teardown(self) -> None:
        if not hasattr(self, "store"):
            return
        self.queue.fail_sends = False
        for _ in range(SETTLE_ROUNDS):
            for worker in self.live_workers():
                self.stop(worker, self.completing)
            for message in self.visible():
                claim = self.lifecycle.claim(message.body)
                self.collect_sent()
                if claim.outcome == ClaimOutcome.RUN:
                    self.lifecycle.complete(claim.job, {"attempt": claim.job.attempts})
                    self.outcomes[claim.job.id] = claim.job.attempts
                    self.messages.remove(message)
                elif claim.outcome == ClaimOutcome.DEFER:
                    message.visible_at = self.now() + (claim.retry_after_s or 0)
                else:
                    self.messages.remove(message)
            self.clock.advance(600)
            self.reconciler.run_pass()
            self.collect_sent()
        stuck = {j.id: j.status.value for j in self.store._jobs.values() if not j.status.is_terminal}
        assert not stuck, f"still unfinished after {SETTLE_ROUNDS} rounds of workers and reconciler: {stuck}"
        self.writes_follow_the_table()
        self.one_event_per_status_change_and_counters_add_up()
        self.an_outcome_belongs_to_the_last_attempt()


LifecycleModel.TestCase.settings = settings(
    max_examples=200, stateful_step_count=100, deadline=None, database=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_lifecycle_model = LifecycleModel.TestCase
