import random
from datetime import timedelta

import pytest

from chalicelib.domain.errors import (
    AttemptEndedError,
    DeadLetterOwedError,
    InvalidRequestError,
    JobAlreadyFinishedError,
    JobNotFoundError,
    LetterUnconfirmedError,
    ProgressRejectedError,
    QueueUnavailableError,
    StaleJobError,
    StoreUnavailableError,
    UnknownJobTypeError,
    describe_failure,
)
from chalicelib.defaults import OWED_LETTER_WAIT_S
from chalicelib.domain.status import JobStatus
from chalicelib.domain.job import Job, JobErrorInfo, child_job_id, isoformat, parse_time
from chalicelib.job_types import build_registry
from chalicelib.job_types.maintenance import with_maintenance
from chalicelib.lifecycle import ClaimOutcome, JobLifecycle, ReconcileOutcome, retry_delay_s
from chalicelib.ports import ChangeSet, JobMessage
from tests.support.lost_answers import lose_next_answer
from tests.unit.conftest import fail_owing_its_letter

STEPS = {"steps": 4, "step_ms": 0}


def submit(lifecycle, **overrides):
    args = {"tenant": "acme", "user": "ann", "type": "demo.steps", "payload": STEPS, **overrides}
    return lifecycle.submit(**args)


def test_submit_stores_a_queued_job_and_enqueues_attempt_one(lifecycle, store, queue):
    job = submit(lifecycle, scope="project-1", delay_seconds=30)
    assert job.status == JobStatus.QUEUED
    assert job.version == 1 and job.attempts == 0 and job.max_attempts == 3
    assert store.get(job.id, mark_gone=False) == job
    assert queue.sent == [(JobMessage(job.id, 1), "normal", 30)]


def test_a_scheduled_job_is_created_when_submitted_and_starts_when_asked(lifecycle, clock):
    """`created_at` is when the job was accepted, `not_before` when it may start: a job
    scheduled a day ahead shows the two a day apart, not its start twice."""
    job = submit(lifecycle, delay_seconds=86_400)
    assert (job.created_at, job.not_before) == (isoformat(clock.now), isoformat(clock.now + timedelta(days=1)))


def test_submit_that_cannot_enqueue_keeps_the_job_for_the_reconciler(lifecycle, store, queue, clock):
    queue.fail_sends = True
    job = submit(lifecycle)
    assert store.get(job.id, mark_gone=False).status == JobStatus.QUEUED and queue.sent == []
    assert store.due(isoformat(clock.now), 10).jobs == []
    queue.fail_sends = False
    clock.advance(lifecycle.dispatch_grace_s)
    assert [j.id for j in store.due(isoformat(clock.now), 10).jobs] == [job.id]
    assert lifecycle.reconcile(store.get(job.id, mark_gone=False)) == ReconcileOutcome.REDISPATCHED
    assert queue.drain() == [JobMessage(job.id, 1)]


def test_another_tenant_sees_not_found(lifecycle):
    job = submit(lifecycle)
    with pytest.raises(JobNotFoundError):
        lifecycle.get("other", job.id)
    with pytest.raises(JobNotFoundError):
        lifecycle.cancel("other", job.id)


def test_claim_takes_the_attempt_once(lifecycle, store):
    job = submit(lifecycle)
    first = lifecycle.claim(JobMessage(job.id, 1))
    assert first.outcome == ClaimOutcome.RUN
    assert first.job.status == JobStatus.RUNNING and first.job.attempts == 1
    duplicate = lifecycle.claim(JobMessage(job.id, 1))
    assert duplicate.outcome == ClaimOutcome.DEFER
    # The run record is written when the attempt ends; until then the job shows it.
    assert store.runs(job.id) == []
    stored = store.get(job.id, mark_gone=False)
    assert [(r.attempt, r.status, r.started_at) for r in stored.runs(store.runs(job.id))] == [
        (1, JobStatus.RUNNING, first.job.attempt_started_at)]


class CountingStore:
    """The in-memory store, counting the calls the lifecycle makes of it."""

    def __init__(self, store):
        self._store = store
        self.calls = []

    def __getattr__(self, name):
        method = getattr(self._store, name)

        def call(*args, **kwargs):
            self.calls.append(name)
            return method(*args, **kwargs)

        return call


@pytest.fixture
def counted(store, queue, clock):
    from chalicelib.job_types import build_registry
    from chalicelib.lifecycle import JobLifecycle

    counting = CountingStore(store)
    return counting, JobLifecycle(counting, queue, build_registry(demo_types=True), clock=clock)


def test_a_claim_of_the_sent_message_is_one_write_and_no_read(counted, queue, clock):
    counting, lifecycle = counted
    job = submit(lifecycle)
    (message, _, _), = queue.sent
    assert (message.tenant, message.timeout_s) == ("acme", job.timeout_s)
    counting.calls.clear()
    claim = lifecycle.claim(message, time_left_s=job.timeout_s + 60)
    assert counting.calls == ["apply_expected"]
    assert claim.outcome == ClaimOutcome.RUN
    running = claim.job
    assert running == counting.get(job.id, mark_gone=False)
    assert (running.status, running.attempts, running.version) == (JobStatus.RUNNING, 1, job.version + 1)
    assert running.started_at == running.attempt_started_at == isoformat(clock.now)
    assert running.lease_expires_at == running.due_at == isoformat(clock.now + timedelta(seconds=job.timeout_s + 30))
    assert running.progress.step == "started" and running.payload == job.payload


def test_a_refused_claim_write_decides_on_the_job_it_returns_without_a_read(counted, queue, clock):
    counting, lifecycle = counted
    job = submit(lifecycle)
    (message, _, _), = queue.sent
    lifecycle.claim(message)
    counting.calls.clear()
    duplicate = lifecycle.claim(message)  # running under a live lease
    assert counting.calls == ["apply_expected"] and duplicate.outcome == ClaimOutcome.DEFER
    assert duplicate.retry_after_s == job.timeout_s + 31
    lifecycle.complete(counting.get(job.id, mark_gone=False), {"ok": True})
    counting.calls.clear()
    assert lifecycle.claim(message).outcome == ClaimOutcome.SKIP and counting.calls == ["apply_expected"]


def _claim_case(case: str, hinted: bool):
    """Run `case` on a fresh store; the delivery's message carries the claim's hints or not.
    Returns the claim and the job as stored after it."""
    from chalicelib.adapters.memory import InMemoryJobQueue, InMemoryJobStore
    from chalicelib.job_types import build_registry
    from chalicelib.lifecycle import JobLifecycle
    from tests.unit.conftest import FakeClock

    store, queue, clock = InMemoryJobStore(), InMemoryJobQueue(), FakeClock()
    random.seed(case)  # a retry's jittered wait drawn alike for the hinted claim and the read one
    lifecycle = JobLifecycle(store, queue, build_registry(demo_types=True), clock=clock)
    job = submit(lifecycle, delay_seconds=30 if case == "scheduled_later" else 0)
    (message, _, _), = queue.sent
    time_left_s = None
    if case == "cancel_requested":  # seen by the claim that takes over a lost attempt
        lifecycle.claim(message)
        lifecycle.cancel("acme", job.id)
        clock.advance(job.timeout_s + 31)
    if case == "lease_expired":
        lifecycle.claim(message)
        clock.advance(job.timeout_s + 31)
    if case == "no_time":
        time_left_s = job.timeout_s
    if case == "wrong_tenant":
        message = JobMessage(job.id, 1, tenant="other", timeout_s=message.timeout_s)
    if case == "old_attempt":  # a duplicate of attempt 1 while the job waits for attempt 2
        lifecycle.claim(message)
        lifecycle.fail_attempt(store.get(job.id, mark_gone=False), JobErrorInfo(code="x", message="y"), retryable=True)
        clock.advance(900)
    if case == "wrong_timeout":
        message = JobMessage(job.id, 1, tenant="acme", timeout_s=message.timeout_s + 100)
    if case == "canceled":
        lifecycle.cancel("acme", job.id)
    if not hinted:
        message = JobMessage(message.job_id, message.attempt)
    claim = lifecycle.claim(message, time_left_s=time_left_s)
    return claim, store.get(job.id, mark_gone=False)


@pytest.mark.parametrize("case", ["fresh", "cancel_requested", "lease_expired", "scheduled_later", "no_time",
                                  "wrong_tenant", "old_attempt", "wrong_timeout", "canceled"])
def test_a_claim_without_a_read_decides_exactly_like_a_claim_after_a_read(case):
    hinted, after_hinted = _claim_case(case, hinted=True)
    read, after_read = _claim_case(case, hinted=False)
    assert (hinted.outcome, hinted.reason, hinted.retry_after_s) == (read.outcome, read.reason, read.retry_after_s)
    assert after_hinted.model_dump(exclude={"id", "claim_id"}) == after_read.model_dump(exclude={"id", "claim_id"})
    if case in ("wrong_tenant", "wrong_timeout"):  # the record decides, not the message's hints
        assert after_hinted.tenant == "acme"
        assert after_hinted.lease_expires_at == isoformat(
            parse_time(after_hinted.attempt_started_at) + timedelta(seconds=after_hinted.timeout_s + 30))


@pytest.mark.parametrize("hinted", [True, False])
def test_a_delivery_more_than_a_second_early_waits_for_the_jobs_start(lifecycle, queue, clock, hinted):
    job = submit(lifecycle, delay_seconds=4)
    (message, _, _), = queue.sent
    clock.advance(1)  # the queue delivered the delayed message early (a redrive, a duplicate)
    claim = lifecycle.claim(message if hinted else JobMessage(job.id, 1))
    assert (claim.outcome, claim.retry_after_s) == (ClaimOutcome.DEFER, 3)
    assert lifecycle.get("acme", job.id).status == JobStatus.QUEUED


@pytest.mark.parametrize("hinted", [True, False])
@pytest.mark.parametrize("early_s, outcome, retry_after_s", [
    (0.5, ClaimOutcome.RUN, None), (1.0, ClaimOutcome.RUN, None), (1.5, ClaimOutcome.DEFER, 2)])
def test_a_delivery_up_to_a_second_early_starts_the_job_and_one_later_waits_whole_seconds(
        counted, queue, clock, hinted, early_s, outcome, retry_after_s):
    """A delayed message SQS delivers a little before the job's start (its clock and ours
    differ by that much) starts the job: a second's slack, so that it is not sent back to wait
    for less than SQS can delay it. Earlier than that, it waits the whole seconds that remain,
    rounded up so the message is not delivered early again. Both claims decide alike: the one
    without a read (one write) as the one after a read."""
    counting, lifecycle = counted
    job = submit(lifecycle, delay_seconds=5)
    (message, _, _), = queue.sent
    clock.advance(5 - early_s)
    counting.calls.clear()
    claim = lifecycle.claim(message if hinted else JobMessage(job.id, 1))
    assert (claim.outcome, claim.retry_after_s) == (outcome, retry_after_s)
    assert counting.calls == (["apply_expected"] if hinted else ["get", "apply"][:1 + (outcome == ClaimOutcome.RUN)])


@pytest.mark.parametrize("hinted", [True, False])
def test_a_delivery_of_a_job_removed_meanwhile_is_acknowledged_on_what_its_first_request_found(counted, queue, hinted):
    """A message of a job that is no longer there (purged by the clean-up while it waited, a
    late duplicate) is acknowledged, not deferred: no later delivery of it would find the job.
    The claim's first request tells it so, the refused write as the read for a message without
    hints: nothing is read after it."""
    counting, lifecycle = counted
    job = submit(lifecycle)
    (message, _, _), = queue.sent
    counting.delete_job(job.id)
    counting.calls.clear()
    claim = lifecycle.claim(message if hinted else JobMessage(job.id, 1))
    assert (claim.outcome, claim.job, claim.reason) == (ClaimOutcome.SKIP, None, "job does not exist")
    assert counting.calls == (["apply_expected"] if hinted else ["get"])


def test_a_claim_whose_job_keeps_changing_sends_its_delivery_back_for_a_second(lifecycle, store, queue, monkeypatch):
    """A claim that lost the race for its write every time it read the job gives up with its
    message deferred by a second, not at once: delivered again straight away, it would meet the
    same writes again, and as often as SQS can redeliver it."""
    from chalicelib.defaults import RACE_RETRIES

    job = submit(lifecycle)
    queue.sent.clear()
    real, writes = store.apply, []

    def another_write_first(current, expected, changes):
        writes.append(changes)
        real(current, expected, ChangeSet({"dispatches": current.dispatches}))  # the job moved on
        return real(current, expected, changes)

    monkeypatch.setattr(store, "apply", another_write_first)
    claim = lifecycle.claim(JobMessage(job.id, 1))
    assert (claim.outcome, claim.retry_after_s) == (ClaimOutcome.DEFER, 1)
    assert len(writes) == RACE_RETRIES
    assert store.get(job.id, mark_gone=False).status == JobStatus.QUEUED


@pytest.mark.parametrize("hinted", [True, False])
def test_an_attempt_is_taken_only_with_its_timeout_and_the_margin_left_in_the_invocation(counted, queue, hinted):
    from chalicelib.defaults import INVOCATION_MARGIN_S

    counting, lifecycle = counted
    job = submit(lifecycle)
    (message, _, _), = queue.sent
    message = message if hinted else JobMessage(job.id, 1)
    short = lifecycle.claim(message, time_left_s=job.timeout_s + INVOCATION_MARGIN_S - 0.5)
    assert (short.outcome, short.retry_after_s) == (ClaimOutcome.DEFER, 0)
    counting.calls.clear()
    enough = lifecycle.claim(message, time_left_s=job.timeout_s + INVOCATION_MARGIN_S)
    assert enough.outcome == ClaimOutcome.RUN
    assert counting.calls == (["apply_expected"] if hinted else ["get", "apply"])


@pytest.mark.parametrize("hinted", [True, False])
def test_a_job_whose_cancel_was_requested_before_it_started_is_canceled_not_run(lifecycle, store, queue, hinted):
    """A record an earlier version left queued with its cancel requested: no delivery runs it."""
    job = submit(lifecycle)
    (message, _, _), = queue.sent
    store.apply(job, JobStatus.QUEUED, ChangeSet({"cancel_requested": True}))
    claim = lifecycle.claim(message if hinted else JobMessage(job.id, 1))
    assert (claim.outcome, claim.reason) == (ClaimOutcome.SKIP, "cancel requested before start")
    assert store.get(job.id, mark_gone=False).status == JobStatus.CANCELED


@pytest.mark.parametrize("hinted", [True, False])
def test_a_later_attempt_keeps_the_jobs_first_start(lifecycle, store, queue, clock, hinted):
    """`started_at` is when the job first started, whichever path claims a later attempt: the
    write without a read (the retry's own message) as the one after a read."""
    job = submit(lifecycle)
    queue.sent.clear()
    first = lifecycle.claim(JobMessage(job.id, 1)).job
    lifecycle.fail_attempt(first, JobErrorInfo(code="boom", message="it broke"), retryable=True)
    clock.advance(900)
    (message, _, _), = queue.sent
    assert message.attempt == 2
    second = lifecycle.claim(message if hinted else JobMessage(job.id, 2)).job
    assert second.started_at == first.started_at != second.attempt_started_at
    assert store.get(job.id, mark_gone=False).started_at == first.started_at


def test_a_claim_that_loses_a_race_decides_again_on_the_job_read_anew(lifecycle, store, queue, monkeypatch):
    """Another write landed between the claim's read and its write (a cancel request answered,
    the reconciler's bookkeeping): the claim reads the job again and takes it, rather than
    sending the delivery back as if the job kept changing."""
    job = submit(lifecycle)
    queue.sent.clear()
    real = store.apply

    def another_write_first(current, expected, changes):
        monkeypatch.setattr(store, "apply", real)
        real(current, expected, ChangeSet({"dispatches": current.dispatches}))
        return real(current, expected, changes)

    monkeypatch.setattr(store, "apply", another_write_first)
    claim = lifecycle.claim(JobMessage(job.id, 1))
    assert claim.outcome == ClaimOutcome.RUN and claim.job.attempts == 1


def test_expired_lease_is_taken_over_as_a_lost_worker(lifecycle, queue, clock):
    job = submit(lifecycle)
    queue.drain()
    lifecycle.claim(JobMessage(job.id, 1))
    clock.advance(job.timeout_s + 31)
    takeover = lifecycle.claim(JobMessage(job.id, 1))
    assert takeover.outcome == ClaimOutcome.SKIP
    assert takeover.job.status == JobStatus.RETRYING
    assert takeover.job.error.code == "worker_lost"
    (message, _, delay), = queue.sent
    assert message == JobMessage(job.id, 2) and 1 <= delay <= 900


@pytest.mark.parametrize("hinted", [True, False])
def test_a_lease_is_over_at_its_end_for_the_claim_as_for_the_reconciler(lifecycle, store, queue, clock, hinted):
    """At the moment its lease ends the reconciler finds a running job due (lost), so a
    delivery of its message then takes the attempt over too, rather than waiting on it."""
    job = submit(lifecycle)
    (message, _, _), = queue.sent
    queue.sent.clear()
    running = lifecycle.claim(message).job
    clock.now = parse_time(running.lease_expires_at)
    takeover = lifecycle.claim(message if hinted else JobMessage(job.id, 1))
    assert (takeover.outcome, takeover.reason) == (ClaimOutcome.SKIP, "took over an abandoned attempt")
    assert takeover.job.status == JobStatus.RETRYING and takeover.job.error.code == "worker_lost"


@pytest.mark.parametrize("hinted", [True, False])
def test_the_next_attempt_runs_without_the_failed_attempts_error(lifecycle, store, queue, clock, hinted):
    """The failed attempt's error is kept on its run record; the job running its next attempt
    shows none (seed 002: `error` is the job's outcome, null while it runs)."""
    job = submit(lifecycle)
    queue.sent.clear()
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=True)
    (message, _, _), = queue.sent
    clock.advance(900)
    second = lifecycle.claim(message if hinted else JobMessage(job.id, 2))
    assert second.outcome == ClaimOutcome.RUN and second.job.attempts == 2
    assert second.job.error is None and store.get(job.id, mark_gone=False).error is None
    assert [(r.attempt, r.error.code) for r in store.runs(job.id)] == [(1, "boom")]


@pytest.mark.parametrize("hinted", [True, False])
def test_a_claim_whose_answer_was_lost_does_not_run_an_attempt_ended_meanwhile(lifecycle, store, queue, clock,
                                                                               hinted):
    """The claim landed, its answer was lost, and by the time the delivery read the record back
    (a store slow for longer than the lease) the reconciler had ended that attempt `worker_lost`
    and sent the next: the record still shows this delivery's claim, but no attempt of it runs,
    or the handler would run beside the next attempt's. The delivery fails and comes back."""
    job = submit(lifecycle)
    (message, _, _), = queue.sent
    message = message if hinted else JobMessage(job.id, 1)
    queue.sent.clear()
    write = "apply_expected" if hinted else "apply"
    real = getattr(store, write)

    def landed_unanswered(*args, **kwargs):
        real(*args, **kwargs)
        setattr(store, write, real)  # the reconciler's own writes are answered
        clock.advance(job.timeout_s + 31)
        assert lifecycle.reconcile(store.get(job.id, mark_gone=False)) == ReconcileOutcome.LEASE_EXPIRED
        raise StoreUnavailableError("the table did not answer")

    setattr(store, write, landed_unanswered)
    with pytest.raises(StoreUnavailableError):
        lifecycle.claim(message)
    after = store.get(job.id, mark_gone=False)
    assert (after.status, after.attempts, after.error.code) == (JobStatus.RETRYING, 1, "worker_lost")
    assert [m for m, _, _ in queue.sent] == [JobMessage(job.id, 2)]


def test_an_unanswered_claim_leaves_the_attempt_another_delivery_claimed_alone(lifecycle, store, queue, monkeypatch):
    """This delivery's claim did not land, a duplicate's did, and the answer to this one was
    lost: the record shows an attempt running under the other delivery's claim. Its payload
    unreadable here, this delivery fails and comes back; it does not fail the attempt the other
    delivery runs (`payload_unavailable`), which would run its handler beside the next one."""
    from dataclasses import replace

    job = submit(lifecycle)
    (message, _, _), = queue.sent
    real_apply, real_get = store.apply_expected, store.get

    def a_duplicate_claimed_first(job_id, tenant, expected, changes, **kwargs):
        real_apply(job_id, tenant, expected, replace(changes, fields={**changes.fields, "claim_id": "duplicate"}),
                   **kwargs)
        raise StoreUnavailableError("the table did not answer")

    def payload_unreadable(job_id, **kwargs):
        if kwargs.get("fetch", True):
            raise StoreUnavailableError("the bucket did not answer")
        return real_get(job_id, **kwargs)

    monkeypatch.setattr(store, "apply_expected", a_duplicate_claimed_first)
    monkeypatch.setattr(store, "get", payload_unreadable)
    with pytest.raises(StoreUnavailableError, match="table"):
        lifecycle.claim(message)
    after = real_get(job.id, mark_gone=False)
    assert (after.status, after.attempts, after.claim_id, after.error) == (JobStatus.RUNNING, 1, "duplicate", None)


def test_an_unanswered_claim_whose_attempt_was_taken_over_before_its_payload_was_read_does_not_run(
        lifecycle, store, queue, clock, monkeypatch):
    """The claim landed unanswered and the record showed it; before its payload was read, the
    attempt outlived its lease and another delivery claimed the next one. The job as read with
    its payload decides: another claim's attempt is not this delivery's to run."""
    job = submit(lifecycle)
    (message, _, _), = queue.sent
    real_get = store.get
    lose_next_answer(monkeypatch, store, "apply_expected")

    def taken_over_before_the_payload_read(job_id, **kwargs):
        if kwargs.get("fetch", True):
            monkeypatch.setattr(store, "get", real_get)
            clock.advance(job.timeout_s + 31)
            assert lifecycle.reconcile(real_get(job_id, mark_gone=False)) == ReconcileOutcome.LEASE_EXPIRED
            clock.advance(900)
            assert lifecycle.claim(JobMessage(job_id, 2)).outcome == ClaimOutcome.RUN
        return real_get(job_id, **kwargs)

    monkeypatch.setattr(store, "get", taken_over_before_the_payload_read)
    with pytest.raises(StoreUnavailableError, match="table"):
        lifecycle.claim(message)
    after = real_get(job.id, mark_gone=False)
    assert (after.status, after.attempts) == (JobStatus.RUNNING, 2)


@pytest.mark.parametrize("kind, ends", [  # demo.steps has 3 attempts, demo.fanout 1
    ({"type": "demo.steps"}, JobStatus.RETRYING), ({"type": "demo.fanout", "payload": {"children": 1}}, JobStatus.FAILED)])
def test_an_unanswered_claim_whose_payload_stays_unreadable_is_acknowledged_with_its_attempt_given_back(
        lifecycle, store, queue, monkeypatch, kind, ends):
    """The claim landed unanswered and the record shows it, but its payload cannot be read
    again: the delivery is acknowledged (SKIP, nothing for the runner to run) with the attempt
    already ended `payload_unavailable`, retried while attempts remain as a lost worker's is,
    not left running under a lease for the reconciler to find."""
    job = submit(lifecycle, **kind)
    (message, _, _), = queue.sent
    queue.sent.clear()
    real_get = store.get
    lose_next_answer(monkeypatch, store, "apply_expected")

    def payload_unreadable(job_id, **kwargs):
        if kwargs.get("fetch", True):
            raise StoreUnavailableError("the bucket did not answer")
        return real_get(job_id, **kwargs)

    monkeypatch.setattr(store, "get", payload_unreadable)
    claim = lifecycle.claim(message)
    assert (claim.outcome, claim.reason) == (ClaimOutcome.SKIP, "the attempt's payload could not be read")
    after = real_get(job.id, mark_gone=False)
    assert claim.job == after and (after.status, after.attempts, after.error.code) == (ends, 1, "payload_unavailable")
    assert [m.attempt for m, _, _ in queue.sent] == ([2] if ends == JobStatus.RETRYING else [])


@pytest.mark.parametrize("hint", [{"tenant": "acme"}, {"timeout_s": 60}])
def test_a_message_moved_by_hand_with_one_hint_is_claimed_after_a_read(counted, queue, hint):
    """A hint without the other is no hint: the claim reads the job and takes it, rather than
    trying a write without a read that names no tenant (refused, whatever the job)."""
    from chalicelib.ports import job_message_of

    counting, lifecycle = counted
    job = submit(lifecycle)
    queue.sent.clear()
    counting.calls.clear()
    claim = lifecycle.claim(job_message_of({"job_id": job.id, "attempt": 1, **hint}))
    assert claim.outcome == ClaimOutcome.RUN
    assert (claim.job.status, claim.job.attempts) == (JobStatus.RUNNING, 1)
    assert counting.calls == ["get", "apply"]


def test_the_reconciler_leaves_a_job_that_is_not_due_as_it_is(lifecycle, store, queue, clock):
    """A pass acts on the jobs its page read as due; one claimed or sent again since (read back
    after its stale write) is due later: left as it is, not failed `worker_lost` under a live
    lease, nor sent a second message within its grace. Due, each is acted on."""
    queued = submit(lifecycle)
    running = lifecycle.claim(JobMessage(submit(lifecycle).id, 1)).job
    queue.sent.clear()
    clock.advance(lifecycle.dispatch_grace_s - 1)
    for job in (queued, running):
        assert lifecycle.reconcile(store.get(job.id, mark_gone=False)) == ReconcileOutcome.SKIPPED
    assert store.get(running.id, mark_gone=False).status == JobStatus.RUNNING and queue.sent == []
    clock.advance(running.timeout_s + 31)
    assert lifecycle.reconcile(store.get(queued.id, mark_gone=False)) == ReconcileOutcome.REDISPATCHED
    assert lifecycle.reconcile(store.get(running.id, mark_gone=False)) == ReconcileOutcome.LEASE_EXPIRED


def test_a_finished_job_left_due_without_a_letter_owed_leaves_the_due_index(lifecycle, store, queue, clock):
    """A finished job owing no dead letter has nothing left to reconcile: the pass that reads
    it removes its due time, rather than reading it again on every pass."""
    job = submit(lifecycle)
    queue.sent.clear()
    canceled = lifecycle.cancel("acme", job.id)
    left = store.apply(canceled, JobStatus.CANCELED, ChangeSet({"due_at": isoformat(clock.now)}))
    assert [j.id for j in store.due(isoformat(clock.now), 10).jobs] == [job.id]
    assert lifecycle.reconcile(left) == ReconcileOutcome.SKIPPED
    assert store.get(job.id, mark_gone=False).due_at is None and store.due(isoformat(clock.now), 10).jobs == []
    assert queue.sent == [] and queue.dead == []


def test_a_finished_job_owing_no_letter_leaves_the_due_index_on_the_page_it_was_read_from(
        lifecycle, store, queue, clock, monkeypatch):
    """A finished job owing no dead letter is settled on the due page's read: one write (its
    due time removed) and no read of its record, which only a job owing a letter needs (its
    letter may have been parked since the page was read)."""
    job = submit(lifecycle)
    canceled = lifecycle.cancel("acme", job.id)
    left = store.apply(canceled, JobStatus.CANCELED, ChangeSet({"due_at": isoformat(clock.now)}))
    real, reads = store.get, []

    def counted(*args, **kwargs):
        reads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "get", counted)
    assert lifecycle.reconcile(left) == ReconcileOutcome.SKIPPED
    assert reads == []
    assert real(job.id, mark_gone=False).due_at is None


def test_a_lease_whose_next_send_failed_is_said_as_the_send_that_failed(lifecycle, store, queue, clock):
    """The lease's write landed and the next attempt's message did not go: the error raised is
    the queue's refusal (a QueueUnavailableError, `queue_unavailable: <what was not sent>`) with
    the outcome that stands beside it, so whoever takes it for the refusal it is says which
    send failed, not an empty text."""
    job = submit(lifecycle)
    running = lifecycle.claim(queue.drain()[0]).job
    clock.advance(running.timeout_s + 31)
    queue.fail_sends = True
    with pytest.raises(QueueUnavailableError) as raised:
        lifecycle.reconcile(store.get(job.id, mark_gone=False))
    assert raised.value.outcome == ReconcileOutcome.LEASE_EXPIRED
    assert raised.value.message and raised.value.message == raised.value.cause.message
    assert describe_failure(raised.value) == describe_failure(raised.value.cause)
    assert store.get(job.id, mark_gone=False).error.code == "worker_lost"


def test_a_held_job_read_as_due_early_is_due_again_when_sqs_can_delay_its_message(lifecycle, store, queue, clock):
    """A job starting further ahead than SQS can delay a message (15 minutes) is released by the
    pass that finds it due within that reach, its message delayed to its start."""
    from chalicelib.defaults import SQS_MAX_DELAY_S

    job = submit(lifecycle, delay_seconds=7200)
    queue.sent.clear()
    early = store.apply(job, JobStatus.QUEUED, ChangeSet({"due_at": isoformat(clock.now)}))
    assert lifecycle.reconcile(early) == ReconcileOutcome.SKIPPED and queue.sent == []
    start = parse_time(job.not_before)
    assert store.get(job.id, mark_gone=False).due_at == isoformat(start - timedelta(seconds=SQS_MAX_DELAY_S))


def test_a_job_waiting_in_a_backlog_is_looked_at_again_by_the_time_its_last_message_expires(
        lifecycle, store, queue, clock):
    from chalicelib.defaults import JOBS_QUEUE_RETENTION_S

    job = submit(lifecycle)
    queue.sent.clear()
    kept_until = parse_time(job.not_before or job.created_at) + timedelta(seconds=JOBS_QUEUE_RETENTION_S)
    clock.now = kept_until - timedelta(seconds=60)
    bound = store.apply(job, JobStatus.QUEUED, ChangeSet({"dispatches": lifecycle.max_dispatches,
                                                          "due_at": isoformat(clock.now)}))
    assert lifecycle.reconcile(bound, waiting=lambda priority: True) == ReconcileOutcome.BACKLOGGED
    assert store.get(job.id, mark_gone=False).due_at == isoformat(kept_until)


def test_an_undeliverable_job_says_which_attempt_no_worker_claimed(lifecycle, store, queue, clock):
    """GET /jobs/{id} of a job failed `undeliverable` names the attempt none of its messages
    started (the next one: a retrying job's second, not the first that ran and failed) and how
    many messages went, so its owner can tell a job that never ran from one that ran once."""
    job = submit(lifecycle)
    running = lifecycle.claim(queue.drain()[0]).job
    lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=True)
    retrying = store.get(job.id, mark_gone=False)
    clock.now = parse_time(retrying.not_before)
    bound = store.apply(retrying, JobStatus.RETRYING, ChangeSet({"dispatches": lifecycle.max_dispatches,
                                                                 "due_at": isoformat(clock.now)}))
    assert lifecycle.reconcile(bound) == ReconcileOutcome.UNDELIVERABLE
    failed = store.get(job.id, mark_gone=False)
    assert (failed.status, failed.error.code) == (JobStatus.FAILED, "undeliverable")
    assert failed.error.message.startswith(
        f"no worker claimed attempt 2 after {lifecycle.max_dispatches} messages; "), failed.error.message


def test_a_retrying_jobs_next_message_dead_lettered_fails_the_job(lifecycle, store, queue, clock):
    """Nothing will start attempt 2 once its message sits on a dead-letter queue: the job fails
    `dead_lettered`, as a queued job's does. A letter of the attempt that failed is left alone."""
    job = submit(lifecycle)
    queue.sent.clear()
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    retrying = lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=True)
    assert lifecycle.fail_dead_lettered(retrying, JobMessage(job.id, 1)) == ReconcileOutcome.SKIPPED
    assert lifecycle.fail_dead_lettered(retrying, JobMessage(job.id, 2)) == ReconcileOutcome.DEAD_LETTERED
    failed = store.get(job.id, mark_gone=False)
    assert (failed.status, failed.error.code) == (JobStatus.FAILED, "dead_lettered")


def test_a_letter_of_the_next_attempt_of_a_job_canceled_since_leaves_it_canceled(lifecycle, store, queue, clock):
    """A retrying job canceled before its next attempt's message came back from the dead-letter
    queue ended as its owner asked: that letter finds nothing left to run, and the job is not
    turned into a failure (`dead_lettered`) it never had."""
    job = submit(lifecycle)
    running = lifecycle.claim(queue.drain()[0]).job
    lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=True)
    lifecycle.cancel("acme", job.id)
    canceled = store.get(job.id, mark_gone=False)
    assert (canceled.status, canceled.attempts) == (JobStatus.CANCELED, 1)
    assert lifecycle.fail_dead_lettered(canceled, JobMessage(job.id, 2)) == ReconcileOutcome.SKIPPED
    after = store.get(job.id, mark_gone=False)
    assert (after.status, after.version) == (JobStatus.CANCELED, canceled.version)


def test_an_owed_letter_is_parked_by_the_pass_at_the_moment_it_is_due(lifecycle, store, queue, clock):
    """An owed letter's due time is when it is parked, as a lease's end is when it is over: a
    pass at that very moment parks it, as the due index (`due_at` at or before now) gave it."""
    job = submit(lifecycle)
    fail_owing_its_letter(lifecycle, queue)
    owing = store.get(job.id, mark_gone=False)
    clock.now = parse_time(owing.due_at)
    assert [j.id for j in store.due(isoformat(clock.now), 10).jobs] == [job.id]
    assert lifecycle.reconcile(owing) == ReconcileOutcome.OWED_LETTER_PARKED
    assert [m for m, _ in queue.dead] == [JobMessage(job.id, 1)]


def test_a_letter_of_another_attempt_found_on_the_dlq_leaves_the_owed_mark(lifecycle, store, queue, clock):
    """A failed job owes the letter of the attempt it failed on; a message of an earlier attempt
    found on a dead-letter queue is not that letter, and clearing the mark for it would lose it."""
    job = submit(lifecycle)
    running = lifecycle.claim(queue.drain()[0]).job
    lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=True)
    clock.advance(900)
    queue.sent.append((JobMessage(job.id, 2), "normal", 0))
    fail_owing_its_letter(lifecycle, queue)
    owing = store.get(job.id, mark_gone=False)
    assert owing.dead_letter_owed == 2
    assert lifecycle.owed_letter_found(owing, JobMessage(job.id, 1)) == ReconcileOutcome.SKIPPED
    assert store.get(job.id, mark_gone=False).dead_letter_owed == 2
    assert lifecycle.owed_letter_found(owing, JobMessage(job.id, 2)) == ReconcileOutcome.OWED_LETTER_FOUND
    assert store.get(job.id, mark_gone=False).dead_letter_owed is None


def test_a_released_message_is_delayed_to_the_jobs_start_rounded_up(lifecycle, store, queue, clock):
    """A message is delayed in whole seconds: rounded up, it is never delivered before the
    job's start (a claim takes one at most a second early)."""
    job = submit(lifecycle)
    queue.sent.clear()
    start = clock.now + timedelta(seconds=1.5)
    due = store.apply(job, JobStatus.QUEUED, ChangeSet({"not_before": isoformat(start), "due_at": isoformat(clock.now),
                                                              "dispatches": 0}))
    assert lifecycle.reconcile(due) == ReconcileOutcome.RELEASED
    assert queue.sent == [(JobMessage(job.id, 1), "normal", 2)]


def test_a_submitted_message_is_delayed_to_the_jobs_start_rounded_up(lifecycle, queue, clock):
    """A `run_at` between whole seconds: the first message's delay, as a released one's, is
    rounded up, so the job is never delivered before the start it was asked for."""
    job = submit(lifecycle, run_at=clock.now + timedelta(seconds=10.25))
    assert queue.sent == [(JobMessage(job.id, 1), "normal", 11)]


def test_a_resend_the_queue_refused_is_reported_so_even_when_its_count_cannot_be_taken_back(
        lifecycle, store, queue, clock, monkeypatch):
    """The queue refused the message and the store then refused to take its dispatch back: the
    pass is told the queue did not answer (the job stays due, counted one dispatch more)."""
    job = submit(lifecycle)
    queue.sent.clear()
    clock.advance(lifecycle.dispatch_grace_s)
    queue.fail_sends = True
    real, writes = store.apply, []

    def the_second_write_unanswered(*args, **kwargs):
        writes.append(args[2].fields)
        if len(writes) == 2:
            raise StoreUnavailableError("the table did not answer")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "apply", the_second_write_unanswered)
    with pytest.raises(QueueUnavailableError):
        lifecycle.reconcile(store.get(job.id, mark_gone=False))
    assert [w.get("dispatches") for w in writes] == [job.dispatches + 1, job.dispatches]
    assert store.get(job.id, mark_gone=False).dispatches == job.dispatches + 1


def test_a_resend_the_queue_refused_whose_job_was_claimed_meanwhile_is_reported_as_the_refusal(
        lifecycle, store, queue, clock, monkeypatch):
    """The queue refused the resend, and before its dispatch was taken back an earlier message
    of the job was claimed (the take-back's write is then stale, and the claim's count stands):
    the pass is still told the queue did not answer, not that a worker got there first, which it
    counts as a race and says nothing of."""
    job = submit(lifecycle)
    queue.sent.clear()
    clock.advance(lifecycle.dispatch_grace_s)
    queue.fail_sends = True
    real, writes = store.apply, []

    def claimed_before_the_second_write(*args, **kwargs):
        writes.append(args[2].fields)
        if len(writes) == 2:
            monkeypatch.setattr(store, "apply", real)
            assert lifecycle.claim(JobMessage(job.id, 1)).job.status == JobStatus.RUNNING
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "apply", claimed_before_the_second_write)
    with pytest.raises(QueueUnavailableError):
        lifecycle.reconcile(store.get(job.id, mark_gone=False))
    assert [w.get("dispatches") for w in writes] == [job.dispatches + 1, job.dispatches]
    assert store.get(job.id, mark_gone=False).status == JobStatus.RUNNING


def test_stale_version_write_is_refused(lifecycle, store):
    job = submit(lifecycle)
    lifecycle.claim(JobMessage(job.id, 1))
    with pytest.raises(StaleJobError):
        store.apply(job, JobStatus.QUEUED, ChangeSet({"status": JobStatus.RUNNING}))


def test_cancel_queued_is_immediate(lifecycle):
    job = submit(lifecycle)
    canceled = lifecycle.cancel("acme", job.id)
    assert canceled.status == JobStatus.CANCELED and canceled.finished_at
    assert lifecycle.claim(JobMessage(job.id, 1)).outcome == ClaimOutcome.SKIP


def test_a_job_canceled_before_it_started_shows_its_cancel_request(lifecycle, store):
    job = submit(lifecycle)
    canceled = lifecycle.cancel("acme", job.id)
    assert canceled.cancel_requested and store.get(job.id, mark_gone=False).cancel_requested


def test_a_cancel_that_loses_a_race_to_another_write_cancels_the_job_read_again(lifecycle, store, monkeypatch):
    job = submit(lifecycle)
    real = store.apply

    def another_write_first(current, expected, changes):
        monkeypatch.setattr(store, "apply", real)
        real(current, expected, ChangeSet({"dispatches": current.dispatches}))  # the reconciler's bookkeeping
        return real(current, expected, changes)

    monkeypatch.setattr(store, "apply", another_write_first)
    assert lifecycle.cancel("acme", job.id).status == JobStatus.CANCELED
    assert store.get(job.id, mark_gone=False).status == JobStatus.CANCELED


def test_a_cancel_that_keeps_losing_races_answers_a_conflict_and_cancels_nothing(lifecycle, store, monkeypatch):
    """Each write of the cancel met another write first: after RACE_RETRIES tries it gives up
    with StaleJobError (`conflict`: the tenant tries again), never answering the job as read as
    if the cancel had been written."""
    from chalicelib.defaults import RACE_RETRIES

    job = submit(lifecycle)
    real, tries = store.apply, []

    def another_write_first(current, expected, changes):
        tries.append(changes)
        real(current, expected, ChangeSet({"dispatches": current.dispatches}))  # the reconciler's bookkeeping
        return real(current, expected, changes)

    monkeypatch.setattr(store, "apply", another_write_first)
    with pytest.raises(StaleJobError, match="kept changing"):
        lifecycle.cancel("acme", job.id)
    assert len(tries) == RACE_RETRIES
    assert store.get(job.id, mark_gone=False).status == JobStatus.QUEUED


@pytest.mark.parametrize("started", [False, True])
def test_a_cancel_answers_the_job_with_its_payload_when_the_payload_lives_in_s3(queue, clock, started):
    """POST /jobs/{id}/cancel answers the job as GET shows it: a payload claim-checked to S3 is
    read back for the answer, not shown as its placeholder, whether the cancel ended the job or
    asked its running attempt to stop."""
    from chalicelib.adapters.memory import InMemoryJobStore
    from chalicelib.adapters.memory_blobs import InMemoryBlobStore

    store = InMemoryJobStore(blobs=InMemoryBlobStore(), inline_limit=16)
    lifecycle = JobLifecycle(store, queue, build_registry(demo_types=True), clock=clock)
    job = submit(lifecycle)
    assert store.get(job.id, fetch=(), mark_gone=False).payload != job.payload  # the record holds a placeholder
    if started:
        lifecycle.claim(JobMessage(job.id, 1))
    answered = lifecycle.cancel("acme", job.id)
    assert (answered.status, answered.cancel_requested) == (
        JobStatus.RUNNING if started else JobStatus.CANCELED, True)
    assert answered.payload == job.payload


@pytest.mark.parametrize("meanwhile", ["completed", "retrying"])
def test_a_cancel_whose_running_attempt_ended_before_its_request_landed_decides_on_the_end(
        lifecycle, store, monkeypatch, meanwhile):
    """The cancel read the job running; its attempt ended before the request was written, so
    the request is refused and the cancel decides again: a completed job is finished (409), a
    retrying one is canceled at once."""
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    real = store.apply_expected

    def the_attempt_ends_first(*args, **kwargs):
        monkeypatch.setattr(store, "apply_expected", real)
        if meanwhile == "completed":
            lifecycle.complete(running, {"ok": True})
        else:
            lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=True)
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "apply_expected", the_attempt_ends_first)
    if meanwhile == "completed":
        with pytest.raises(JobAlreadyFinishedError):
            lifecycle.cancel("acme", job.id)
        assert store.get(job.id, mark_gone=False).status == JobStatus.COMPLETED
    else:
        assert lifecycle.cancel("acme", job.id).status == JobStatus.CANCELED
        assert store.get(job.id, mark_gone=False).status == JobStatus.CANCELED


def test_a_job_canceled_between_attempts_does_not_carry_the_failed_attempts_error(lifecycle, store):
    """A retrying job canceled before its next attempt: the cancel ended no attempt, so the job
    (and its `canceled` event, which the ERP gets) has no error; the failed attempt's error
    stays on its run record, as it does when the next attempt starts or the job completes."""
    from chalicelib.events.changes import events_for_change

    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    error = JobErrorInfo(code="handler_error", message="RuntimeError: transient")
    retrying = lifecycle.fail_attempt(running, error, retryable=True)
    assert retrying.status == JobStatus.RETRYING and retrying.error == error
    canceled = lifecycle.cancel("acme", job.id)
    assert canceled.status == JobStatus.CANCELED and canceled.error is None
    assert store.get(job.id, mark_gone=False).error is None
    (event,) = events_for_change(retrying, store.get(job.id, mark_gone=False), "2026-01-01T00:00:00.000Z")
    assert event.status == "canceled" and event.error is None
    assert [r.error for r in store.runs(job.id)] == [error]


def test_cancel_running_only_requests_and_finished_is_refused(lifecycle):
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    requested = lifecycle.cancel("acme", job.id)
    assert requested.status == JobStatus.RUNNING and requested.cancel_requested
    canceled = lifecycle.mark_canceled(running)  # stale version: re-read and still applied
    assert canceled.status == JobStatus.CANCELED
    with pytest.raises(JobAlreadyFinishedError):
        lifecycle.cancel("acme", job.id)


def test_a_cancel_of_a_job_removed_between_its_read_and_its_write_is_not_found(lifecycle, store):
    """The job was read running, then removed (finished and purged by a clean-up) before the
    cancel request's write: 404, as for any job that is not there, not a 500."""
    job = submit(lifecycle)
    lifecycle.claim(JobMessage(job.id, 1))
    read = store.get

    def read_then_removed(job_id, *args, **kwargs):
        found = read(job_id, *args, **kwargs)
        store.delete_job(job_id)
        return found

    store.get = read_then_removed
    with pytest.raises(JobNotFoundError):
        lifecycle.cancel("acme", job.id)


def test_a_cancel_request_lands_however_often_the_handler_reports_progress(lifecycle, store):
    """A handler reporting with `force=True` in a loop writes its job every few milliseconds,
    each write a new version: the cancel request, conditioned on the running attempt rather
    than on the version it read, lands anyway instead of losing every race and answering
    409 `conflict` for a job that could never be canceled while it ran."""
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    percent = iter(range(1, 100))
    read = store.get

    def read_then_report(job_id, *args, **kwargs):  # the handler writes between every read and write
        found = read(job_id, *args, **kwargs)
        store.record_progress(job_id, 1, running.progress.model_copy(update={"percent": next(percent)}))
        return found

    store.get = read_then_report
    requested = lifecycle.cancel("acme", job.id)
    assert requested.status == JobStatus.RUNNING and requested.cancel_requested
    del store.get
    stored = store.get(job.id, mark_gone=False)
    assert stored.cancel_requested and stored.attempts == 1 and stored.progress.percent >= 1
    assert lifecycle.cancel("acme", job.id).cancel_requested  # asked again: the same answer


def test_progress_is_monotonic_and_clamped(lifecycle):
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    running = lifecycle.report_progress(running, 40, "a", "m")
    assert running.progress.percent == 40 and running.progress.step == "a"
    with pytest.raises(ProgressRejectedError) as info:
        lifecycle.report_progress(running, 10)
    assert "cannot decrease" in info.value.message
    assert lifecycle.report_progress(running, 250).progress.percent == 100


def test_slow_progress_is_announced_every_10_points_since_the_last_event_and_at_milestones(lifecycle, clock):
    """Seed 002: an event at each milestone and at each move of 10 points or more, measured
    from the attempt's last event, so throttled writes of 4 points each still make events."""
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    assert running.event_percent == 0  # the running transition carries 0 %
    announced = []
    for percent in (0, 4, 8, 12, 16, 20, 23, 26, 30, 34, 37, 41, 45, 49, 52, 90, 100):
        before = running.event_percent
        running = lifecycle.report_progress(running, percent)
        if running.event_percent != before:
            announced.append(percent)
    assert announced == [12, 23, 26, 37, 49, 52, 90, 100]
    retried = lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="x"), retryable=True)
    clock.now = parse_time(retried.not_before)  # its wait (1 or 2 s, drawn at random) is over
    again = lifecycle.claim(JobMessage(job.id, 2)).job
    assert retried.status == JobStatus.RETRYING and again.event_percent == 0  # each attempt starts over


def test_a_retried_attempts_slow_progress_is_announced_from_its_own_running_event(lifecycle, clock):
    """Seed 002 for a later attempt: its claim makes the running event its mark (0 %, its own
    attempt), so its throttled writes of 4 points make an event once they moved 10, as the
    first attempt's do, however far the earlier attempt's last event had got."""
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    running = lifecycle.report_progress(running, 60)  # an event of attempt 1
    assert (running.event_percent, running.event_attempt) == (60, 1)
    retried = lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="x"), retryable=True)
    clock.now = parse_time(retried.not_before)
    again = lifecycle.claim(JobMessage(job.id, 2)).job
    assert (again.event_percent, again.event_mark) == (0, 0)
    announced = []
    for percent in (4, 8, 12):
        before = again.event_percent
        again = lifecycle.report_progress(again, percent)
        if again.event_percent != before:
            announced.append(percent)
    assert announced == [12]


def test_progress_from_a_finished_attempt_is_refused(lifecycle, store):
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    lifecycle.complete(running, {"ok": True})
    with pytest.raises(ProgressRejectedError):
        store.record_progress(job.id, 1, running.progress.model_copy(update={"percent": 100}))


def test_retry_then_fail_and_dead_letter(lifecycle, queue, clock):
    from chalicelib.domain.job import JobErrorInfo

    job = submit(lifecycle)
    queue.drain()
    error = JobErrorInfo(code="boom", message="it broke")
    for attempt in (1, 2):
        clock.advance(900)  # past the retry's backoff
        running = lifecycle.claim(JobMessage(job.id, attempt)).job
        after = lifecycle.fail_attempt(running, error, retryable=True)
        assert after.status == JobStatus.RETRYING
        assert queue.drain() == [JobMessage(job.id, attempt + 1)]
    clock.advance(900)
    running = lifecycle.claim(JobMessage(job.id, 3)).job
    final = lifecycle.fail_attempt(running, error, retryable=True)
    assert final.status == JobStatus.FAILED and final.error.code == "boom"
    assert queue.dead == [(JobMessage(job.id, 3), {"code": "boom", "message": "it broke"})]
    assert [r.status for r in lifecycle.store.runs(job.id)] == [JobStatus.FAILED] * 3


def test_an_attempt_whose_payload_lives_in_s3_keeps_it_through_its_progress_writes(queue, clock):
    """A progress write answers the record, the payload in S3 shown as its placeholder: the
    attempt goes on with the payload it was claimed with, which its handler reads."""
    from chalicelib.adapters.memory import InMemoryJobStore
    from chalicelib.adapters.memory_blobs import InMemoryBlobStore

    store = InMemoryJobStore(blobs=InMemoryBlobStore(), inline_limit=16)
    lifecycle = JobLifecycle(store, queue, build_registry(demo_types=True), clock=clock)
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    assert running.payload == job.payload != store.get(job.id, fetch=(), mark_gone=False).payload
    for percent in (30, 60):
        running = lifecycle.report_progress(running, percent)
        assert running.progress.percent == percent and running.payload == job.payload


@pytest.mark.parametrize("outcome", ["complete", "fail", "cancel"])
def test_a_late_worker_does_not_end_the_attempt_that_replaced_its_own(lifecycle, store, queue, clock, outcome):
    """Attempt 1 outlived its lease and attempt 2 runs under another delivery; the worker of
    attempt 1, slow but alive, ends its attempt on the job it holds. Its write is refused (the
    version moved) and the job read again runs attempt 2: that one is not its to end."""
    job = submit(lifecycle)
    queue.sent.clear()
    first = lifecycle.claim(JobMessage(job.id, 1)).job
    clock.advance(first.timeout_s + 31)
    assert lifecycle.reconcile(store.get(job.id, mark_gone=False)) == ReconcileOutcome.LEASE_EXPIRED
    clock.advance(900)
    second = lifecycle.claim(JobMessage(job.id, 2)).job
    with pytest.raises(StaleJobError, match="attempt 1 of job .* is no longer running"):
        if outcome == "complete":
            lifecycle.complete(first, {"late": True})
        elif outcome == "fail":
            lifecycle.fail_attempt(first, JobErrorInfo(code="boom", message="late"), retryable=False)
        else:
            lifecycle.mark_canceled(first)
    assert store.get(job.id, mark_gone=False) == second


def test_an_outcome_whose_job_was_removed_meanwhile_is_a_lost_race(lifecycle, store, monkeypatch):
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job

    def refused(*args, **kwargs):
        raise StaleJobError("the version moved")

    monkeypatch.setattr(store, "apply", refused)
    monkeypatch.setattr(store, "get", lambda *args, **kwargs: None)  # removed by hand meanwhile
    with pytest.raises(StaleJobError):
        lifecycle.complete(running, {"ok": True})


def test_an_outcome_written_after_a_lost_race_answers_the_attempts_payload(queue, clock):
    """The job read again after a lost race is the record alone (its payload in S3 a
    placeholder): the outcome answers the job with the payload the attempt ran on."""
    from chalicelib.adapters.memory import InMemoryJobStore
    from chalicelib.adapters.memory_blobs import InMemoryBlobStore
    from chalicelib.domain.job import Progress

    store = InMemoryJobStore(blobs=InMemoryBlobStore(), inline_limit=16)
    lifecycle = JobLifecycle(store, queue, build_registry(demo_types=True), clock=clock)
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    store.record_progress(job.id, 1, Progress(percent=10))  # the version moves under the attempt
    completed = lifecycle.complete(running, {"ok": True})
    assert completed.status == JobStatus.COMPLETED and completed.payload == job.payload


def end_attempt(lifecycle, running, outcome: str, report):
    """`running`'s attempt ended `outcome` (retrying, failed, canceled or completed) with the
    handler's last `report`, as the worker ends one."""
    if outcome == "canceled":
        return lifecycle.mark_canceled(running, last_progress=report)
    if outcome == "completed":
        return lifecycle.complete(running, {"ok": True}, last_progress=report)
    return lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"),
                                  retryable=outcome == "retrying", last_progress=report)


@pytest.mark.parametrize("outcome", ["retrying", "failed", "canceled"])
def test_an_outcomes_last_report_behind_the_progress_written_leaves_the_progress_as_it_is(lifecycle, store,
                                                                                           outcome):
    """Progress never decreases within an attempt: a last report below what the job shows
    is not written with the outcome."""
    from chalicelib.domain.job import Progress

    job = submit(lifecycle)
    running = lifecycle.report_progress(lifecycle.claim(JobMessage(job.id, 1)).job, 60, step="sixty")
    report = Progress(percent=30, step="thirty")
    after = end_attempt(lifecycle, running, outcome, report)
    assert after.status.value == outcome
    assert (after.progress.percent, after.progress.step) == (60, "sixty")
    assert store.get(job.id, mark_gone=False).progress.percent == 60


def test_a_retrying_job_starts_when_its_next_attempts_message_is_due(lifecycle, store, queue, clock):
    """The retrying job shows when its next attempt may start (the message's delay), and is due
    to the reconciler one dispatch grace after that, should no worker claim the attempt."""
    job = submit(lifecycle)
    queue.sent.clear()
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    retrying = lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=True)
    (message, _, delay), = queue.sent
    start = clock.now + timedelta(seconds=delay)
    assert message == JobMessage(job.id, 2)
    assert retrying.not_before == isoformat(start) and retrying.dispatches == 1
    assert retrying.due_at == isoformat(start + timedelta(seconds=lifecycle.dispatch_grace_s))
    assert store.get(job.id, mark_gone=False).due_at == retrying.due_at


def test_a_progress_write_whose_answer_was_lost_is_decided_again_on_the_record(lifecycle, store, monkeypatch):
    """An announcing write landed and its answer was lost: the mark it was decided from moved.
    The write is decided again on the job read back, and lands, not refused as a race three
    times over."""
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    running = lifecycle.report_progress(running, 20)
    lose_next_answer(monkeypatch, store, "record_progress", StaleJobError("the event mark moved"))
    after = lifecycle.report_progress(running, 30)
    assert after.progress.percent == 30 and after.event_percent == 30


def test_a_progress_write_given_a_percent_past_100_records_100(lifecycle, store):
    """A Progress handed over as it came (no report_progress in between) is clamped too."""
    from chalicelib.domain.job import Progress

    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    after = lifecycle.record_progress(running, Progress(percent=250, step="over"))
    assert after.progress.percent == 100 == store.get(job.id, mark_gone=False).progress.percent


@pytest.mark.parametrize("write, refused_by", [
    ("progress", "record_progress"), ("complete", "apply"), ("fail", "apply"), ("cancel", "apply")])
def test_a_write_whose_job_keeps_changing_gives_up_as_a_lost_race(lifecycle, store, monkeypatch, write, refused_by):
    """Every try of a progress write or of the outcome refused while the attempt still runs (its
    event mark, its version moved): after its tries it raises StaleJobError (the delivery fails
    and comes back), never answers the job as if the report were written or the attempt ended."""
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job

    def moved(*args, **kwargs):
        raise StaleJobError("the job moved")

    monkeypatch.setattr(store, refused_by, moved)
    writes = {
        "progress": lambda: lifecycle.report_progress(running, 30),
        "complete": lambda: lifecycle.complete(running, {"ok": True}),
        "fail": lambda: lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=True),
        "cancel": lambda: lifecycle.mark_canceled(running),
    }
    with pytest.raises(StaleJobError, match="kept changing"):
        writes[write]()
    stored = store.get(job.id, mark_gone=False)
    assert (stored.status, stored.progress.percent) == (JobStatus.RUNNING, 0)


def test_each_attempts_run_is_recorded_under_its_own_attempt(lifecycle, store, queue, clock):
    """GET /jobs/{id}/runs shows each attempt with its own outcome and from its own start, not
    the job's first."""
    job = submit(lifecycle)
    queue.drain()
    starts = []
    for attempt in (1, 2, 3):
        clock.advance(900)
        running = lifecycle.claim(JobMessage(job.id, attempt)).job
        starts.append(running.attempt_started_at)
        if attempt < 3:
            lifecycle.fail_attempt(running, JobErrorInfo(code=f"boom{attempt}", message="it broke"), retryable=True)
    lifecycle.complete(running, {"ok": True})
    assert [(r.attempt, r.status, r.error and r.error.code) for r in store.runs(job.id)] == [
        (1, JobStatus.FAILED, "boom1"), (2, JobStatus.FAILED, "boom2"), (3, JobStatus.COMPLETED, None)]
    assert [r.started_at for r in store.runs(job.id)] == starts and len(set(starts)) == 3


@pytest.mark.parametrize("outcome", ["completed", "failed", "canceled"])
def test_a_finished_job_keeps_no_lease_and_expires_two_days_after_its_retention(lifecycle, store, clock, outcome):
    """docs/data-model.md: a job's record gets `expires_at` when it finishes, two days after its
    retention ends (the daily clean-up, which finds the job through it, goes first). Its lease
    and due time go: nothing reconciles a finished job."""
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    clock.advance(5)
    if outcome == "completed":
        lifecycle.complete(running, {"ok": True})
    elif outcome == "failed":
        lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=False)
    else:
        lifecycle.cancel("acme", job.id)
        lifecycle.mark_canceled(store.get(job.id, mark_gone=False))
    after = store.get(job.id, mark_gone=False)
    assert after.status.value == outcome and after.finished_at == isoformat(clock.now)
    assert after.expires_at == int(clock.now.timestamp()) + 7 * 86400 + 2 * 86400
    assert (after.lease_expires_at, after.due_at) == (None, None)


def test_no_write_moves_a_job_along_a_transition_the_table_does_not_allow(lifecycle, store):
    from chalicelib.domain.errors import InvalidTransitionError
    from chalicelib.lifecycle.transitions import transition

    job = submit(lifecycle)
    lifecycle.cancel("acme", job.id)
    canceled = store.get(job.id, mark_gone=False)
    for target in JobStatus:
        with pytest.raises(InvalidTransitionError, match=f"cannot go from canceled to {target.value}"):
            transition(canceled, target)
    with pytest.raises(InvalidTransitionError):
        transition(job, JobStatus.RETRYING)
    with pytest.raises(InvalidTransitionError):
        lifecycle._finish(canceled, JobStatus.FAILED)
    assert store.get(job.id, mark_gone=False) == canceled


@pytest.mark.parametrize("outcome", ["retrying", "failed", "canceled", "completed"])
def test_a_report_written_with_an_attempts_end_is_stamped_when_it_is_written(lifecycle, clock, outcome):
    """The report a handler made and the throttle had not written yet goes out with the
    outcome's own write: it came without a time, and the job showed `progress.updated_at`
    null after it (seed 002's job always has one), its event's time falling back to the
    attempt's start, before the progress events published ahead of it. A completion's 100 %
    lends the report's message, stamped alike."""
    from chalicelib.domain.job import Progress

    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    clock.advance(7)
    report = Progress(percent=75, step="failed", message="it broke")
    after = end_attempt(lifecycle, running, outcome, report)
    assert after.status.value == outcome
    assert (after.progress.percent, after.progress.message) == (100 if outcome == "completed" else 75, "it broke")
    assert after.progress.updated_at == isoformat(clock.now)


def test_a_completion_keeps_the_last_reports_message_and_details_and_its_own_message_first(lifecycle):
    """A completion writes 100 %, step `completed`: its own message when it gives one, else the
    last report's; the last report's details. The last report is the one not yet written when
    there is one (its details, not those of the report before), else the one the job shows."""
    from chalicelib.domain.job import Progress

    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    running = lifecycle.report_progress(running, 60, step="rows", message="row 600 of 1000")
    running = lifecycle.record_progress(running, running.progress.model_copy(update={"details": {"rows": 600}}))
    done = lifecycle.complete(running, {"ok": True})
    assert (done.progress.percent, done.progress.step) == (100, "completed")
    assert (done.progress.message, done.progress.details) == ("row 600 of 1000", {"rows": 600})

    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    running = lifecycle.record_progress(running, Progress(percent=60, message="row 600", details={"rows": 600}))
    report = Progress(percent=90, message="row 900", details={"rows": 900})
    done = lifecycle.complete(running, {"ok": True}, message="all rows read", last_progress=report)
    assert (done.progress.message, done.progress.details) == ("all rows read", {"rows": 900})
    measured = lifecycle.completed_as(running, message="all rows read", last_progress=report)
    assert (measured.status, measured.progress.message, measured.progress.step) == (
        JobStatus.COMPLETED, "all rows read", "completed")


@pytest.mark.parametrize("outcome", ["retrying", "failed", "canceled"])
def test_an_outcomes_last_report_at_the_percent_written_is_written_with_it(lifecycle, store, outcome):
    """A report that moved the message but not the percent is the attempt's latest word: it is
    written with the outcome, not dropped as behind what the job shows."""
    from chalicelib.domain.job import Progress

    job = submit(lifecycle)
    running = lifecycle.report_progress(lifecycle.claim(JobMessage(job.id, 1)).job, 60, message="row 600")
    report = Progress(percent=60, message="row 601 is not a number")
    after = end_attempt(lifecycle, running, outcome, report)
    assert after.status.value == outcome
    assert store.get(job.id, mark_gone=False).progress.message == "row 601 is not a number"


def test_a_failure_of_a_job_whose_cancel_was_requested_writes_its_last_report_with_the_cancel(lifecycle, store):
    """The handler failed after a cancel request: the job is canceled, with the report it made
    and had not written yet, as a failure or a cancel would write it."""
    from chalicelib.domain.job import Progress

    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    lifecycle.cancel("acme", job.id)
    after = lifecycle.fail_attempt(store.get(job.id, mark_gone=False), JobErrorInfo(code="boom", message="it broke"),
                                   retryable=True, last_progress=Progress(percent=75, message="row 750"))
    assert after.status == JobStatus.CANCELED
    assert (after.progress.percent, after.progress.message) == (75, "row 750")


def test_retry_delay_grows_and_is_capped():
    assert 1 <= retry_delay_s(1, base_s=2) <= 2
    assert 8 <= retry_delay_s(4, base_s=2) <= 16
    assert retry_delay_s(30, base_s=2) <= 900


def test_retry_delay_is_drawn_from_half_the_ceiling_to_all_of_it_both_ends_included():
    """docs/jobs.md: 1-2 s after attempt 1, 4-8 s after attempt 3 (the chance that 300 even
    draws miss one of five values is below 10⁻²⁸)."""
    assert {retry_delay_s(1, base_s=2) for _ in range(300)} == {1, 2}
    assert {retry_delay_s(3, base_s=2) for _ in range(300)} == {4, 5, 6, 7, 8}
    assert {retry_delay_s(30, base_s=2, cap_s=900) for _ in range(300)} <= set(range(450, 901))
    assert {retry_delay_s(1, base_s=1) for _ in range(50)} == {1}


def test_the_longest_retry_delay_is_what_sqs_can_delay_a_message(monkeypatch):
    """However many attempts failed, the draw's top is SQS's 900 s: a longer delay is refused
    by the queue and the retry's message would not be sent."""
    from chalicelib.defaults import SQS_MAX_DELAY_S

    monkeypatch.setattr(random, "randint", lambda low, high: high)  # the top of the range drawn
    assert retry_delay_s(30, base_s=2) == SQS_MAX_DELAY_S


def test_a_retry_waits_the_backoff_of_the_attempt_that_failed_on_the_deployments_base(store, queue, clock):
    """The retry after attempt n waits `retry_delay_s(n)` on the base the deployment sets
    (JOBPIPE_RETRY_BASE_S): 30-60 s after attempt 1 and 60-120 s after attempt 2 on a base of 60 s, in
    the message's delay and the job's `not_before` alike (many draws, so each range is met)."""
    lifecycle = JobLifecycle(store, queue, build_registry(demo_types=True), clock=clock, retry_base_s=60)
    error = JobErrorInfo(code="boom", message="it broke")
    waits = {1: set(), 2: set()}
    for _ in range(40):
        job = submit(lifecycle)
        queue.sent.clear()
        for attempt in (1, 2):
            running = lifecycle.claim(JobMessage(job.id, attempt)).job
            retried = lifecycle.fail_attempt(running, error, retryable=True)
            (message, _, delay), = queue.sent
            assert message == JobMessage(job.id, attempt + 1)
            assert retried.not_before == isoformat(clock.now + timedelta(seconds=delay))
            waits[attempt].add(delay)
            queue.sent.clear()
            clock.now = parse_time(retried.not_before)
    assert min(waits[1]) >= 30 and max(waits[1]) <= 60 and len(waits[1]) > 10
    assert min(waits[2]) >= 60 and max(waits[2]) <= 120 and len(waits[2]) > 10


def test_a_retry_asked_to_wait_longer_than_sqs_can_delay_waits_the_longest_delay(lifecycle, queue, clock):
    """A refusal asking for more than SQS's 900 s (a quota's window) is retried after 900 s: the
    next attempt's message sent with the longest delay SQS takes, not refused for a longer one
    (which would leave the job retrying with no message to start it)."""
    from chalicelib.defaults import SQS_MAX_DELAY_S

    job = submit(lifecycle)
    queue.sent.clear()
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    retried = lifecycle.fail_attempt(running, JobErrorInfo(code="quota", message="wait"), retryable=True,
                                     retry_after_s=3600)
    assert queue.sent == [(JobMessage(job.id, 2), "normal", SQS_MAX_DELAY_S)]
    assert retried.not_before == isoformat(clock.now + timedelta(seconds=SQS_MAX_DELAY_S))


def test_a_retrys_lost_message_is_sent_again_however_many_messages_attempt_1_took(store, queue, clock):
    """Each attempt's message has the whole `max_dispatches`: the retry's counts one, however
    many attempt 1's took to be claimed, so a lost message of the retry is sent again before
    the job is failed `undeliverable`, as a lost first one is."""
    lifecycle = JobLifecycle(store, queue, build_registry(demo_types=True), clock=clock, max_dispatches=2)
    job = submit(lifecycle)
    queue.sent.clear()  # attempt 1's message lost: sent again, its second and last
    clock.advance(lifecycle.dispatch_grace_s)
    assert lifecycle.reconcile(store.get(job.id, mark_gone=False)) == ReconcileOutcome.REDISPATCHED
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    retried = lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=True)
    queue.sent.clear()  # attempt 2's message lost
    clock.now = parse_time(retried.due_at)
    assert lifecycle.reconcile(store.get(job.id, mark_gone=False)) == ReconcileOutcome.REDISPATCHED
    assert [m for m, _, _ in queue.sent] == [JobMessage(job.id, 2)]
    assert store.get(job.id, mark_gone=False).status == JobStatus.RETRYING


def test_spawned_children_are_linked_and_idempotent_within_an_attempt(lifecycle, store, queue):
    parent = submit(lifecycle, scope="proj")
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    first = lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS)
    again = lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS)
    second = lifecycle.spawn(running, 2, type="demo.steps", payload=STEPS, scope="elsewhere")
    assert first.id == again.id != second.id
    assert first.parent_id == parent.id and first.scope == "proj" and second.scope == "elsewhere"
    assert first.tenant == "acme" and first.user == "ann"
    assert store.get(parent.id, mark_gone=False).children == [first.id, second.id]
    assert [m.job_id for m, _, _ in queue.sent].count(first.id) == 1
    with pytest.raises(UnknownJobTypeError, match="unknown job type 'nope'"):
        lifecycle.spawn(running, 3, type="nope", payload={})
    assert store.get(parent.id, mark_gone=False).children == [first.id, second.id]


@pytest.mark.parametrize("read_first", [False, True])
def test_a_type_at_the_longest_timeout_register_accepts_is_claimed_by_a_fresh_invocation(store, queue, clock, read_first):
    """A fresh 900 s invocation has a little less than 900 s left when it claims (its start,
    earlier claims of its batch): the longest registrable timeout must still fit, on the
    one-write claim and on the claim after a read alike."""
    from pydantic import BaseModel

    from chalicelib.defaults import CLAIM_HEADROOM_S, MAX_JOB_TIMEOUT_S, WORKER_TIMEOUT_S
    from chalicelib.job_types import build_registry
    from chalicelib.lifecycle import JobLifecycle

    class Empty(BaseModel):
        pass

    registry = build_registry(demo_types=False).copy()
    registry.register("longest.job", Empty, timeout_s=MAX_JOB_TIMEOUT_S)(lambda ctx, p: None)
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    job = lifecycle.submit(tenant="acme", user="ann", type="longest.job", payload={})
    message = queue.drain()[0]
    if read_first:  # a message without hints (sent before they existed, moved by hand)
        message = JobMessage(message.job_id, message.attempt)
    claim = lifecycle.claim(message, time_left_s=WORKER_TIMEOUT_S - CLAIM_HEADROOM_S + 0.001)
    assert claim.outcome == ClaimOutcome.RUN and store.get(job.id, mark_gone=False).status == JobStatus.RUNNING


@pytest.mark.parametrize("scope", ["runs/42", "a#b", "a b", "..", ".", "x" * 257])
def test_a_spawned_child_is_refused_a_scope_no_route_reaches(lifecycle, store, scope):
    """A child's scope is checked as a submitted one is: a handler's `ctx.spawn(scope=...)` never
    makes a job whose completion records land under a key no scope route can read."""
    parent = submit(lifecycle)
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    with pytest.raises(InvalidRequestError):
        lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS, scope=scope)
    assert store.get(parent.id, mark_gone=False).children == []


def test_a_handler_cannot_spawn_a_maintenance_task(store, queue, clock):
    """A tenant's job spawning `maintenance.cleanup_runs` would run a task that deletes every
    tenant's finished jobs: a built-in type is as unknown to ctx.spawn as to POST /jobs."""
    registry = with_maintenance(build_registry(demo_types=True), tasks=lambda: None)
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    parent = submit(lifecycle)
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    with pytest.raises(UnknownJobTypeError, match="unknown job type 'maintenance.cleanup_runs'"):
        lifecycle.spawn(running, 1, type="maintenance.cleanup_runs", payload={})
    assert store.get(parent.id, mark_gone=False).children == [] and [m.job_id for m, _, _ in queue.sent] == [parent.id]


def test_a_child_keeps_the_scope_its_parent_was_accepted_with(lifecycle, store):
    """A job accepted while `/` was still taken in a scope spawns children under that scope."""
    parent = submit(lifecycle, scope="runs/42")  # the domain's submit stores what the API accepted
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    assert lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS).scope == "runs/42"


@pytest.mark.parametrize("then", ["next attempt running", "completed"])
def test_an_attempt_that_lost_its_lease_spawns_no_child(lifecycle, store, queue, clock, then):
    """A paused worker whose lease ran out wakes and spawns: its attempt is no longer the job's
    (the next one runs, or the job has ended), so no child is made, sent or listed on the parent."""
    parent = submit(lifecycle)
    stale = lifecycle.claim(JobMessage(parent.id, 1)).job
    clock.advance(stale.timeout_s + 31)
    assert lifecycle.claim(JobMessage(parent.id, 1)).outcome == ClaimOutcome.SKIP  # worker_lost: retrying
    clock.advance(900)
    current = lifecycle.claim(JobMessage(parent.id, 2)).job
    if then == "completed":
        lifecycle.complete(current, {"ok": True})
    before, queue.sent[:] = store.get(parent.id, mark_gone=False), []
    with pytest.raises(AttemptEndedError, match=f"attempt 1 of job {parent.id}"):
        lifecycle.spawn(stale, 1, type="demo.steps", payload=STEPS)
    assert store.get(child_job_id(parent.id, 1, 1), mark_gone=False) is None
    assert queue.sent == [] and store.get(parent.id, mark_gone=False) == before


def test_a_spawned_child_is_never_left_off_its_parent(lifecycle, store, queue):
    """The child and its place in the parent's `children` are one write: a worker that dies
    (or a store that stops answering) between making the child and listing it must not leave
    a child running that its parent does not list."""
    parent = submit(lifecycle)
    running = lifecycle.claim(JobMessage(parent.id, 1)).job

    def dies(*args, **kwargs):
        raise StoreUnavailableError("the worker died here")

    store.add_child = dies
    try:
        child_id = lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS).id
    except StoreUnavailableError:
        child_id = child_job_id(parent.id, 1, 1)
    made = store.get(child_id, mark_gone=False) is not None
    assert made == (child_id in store.get(parent.id, mark_gone=False).children)
    assert made == (child_id in [m.job_id for m, _, _ in queue.sent])


def on_its_last_attempt(lifecycle, clock):
    """A job whose first two attempts failed, and its third (its last) running."""
    job = submit(lifecycle)
    for attempt in (1, 2):
        clock.advance(900)  # past the retry's backoff
        lifecycle.fail_attempt(lifecycle.claim(JobMessage(job.id, attempt)).job,
                               JobErrorInfo(code="boom", message="it broke"), retryable=True)
    clock.advance(900)
    return job, lifecycle.claim(JobMessage(job.id, 3)).job


@pytest.mark.parametrize("ended_by", ["worker", "reconciler"])
def test_a_dead_letter_the_queue_refused_is_parked_by_the_message_coming_back(lifecycle, store, queue, clock, ended_by):
    """The failed write lands before the dead letter is sent: when the send fails the job reads
    failed with its error, and the attempt's message, delivered again (its delivery failed, or
    the worker that ran it died), parks it then. Once, however often it comes back."""
    job, running = on_its_last_attempt(lifecycle, clock)
    queue.fail_sends = True
    with pytest.raises(QueueUnavailableError):
        if ended_by == "worker":
            lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=False)
        else:
            clock.advance(running.timeout_s + 3600)
            lifecycle.reconcile(store.get(job.id, mark_gone=False))
    failed = store.get(job.id, mark_gone=False)
    assert failed.status == JobStatus.FAILED and queue.dead == []
    queue.fail_sends = False
    for _ in range(2):
        assert lifecycle.claim(JobMessage(job.id, 3)).outcome == ClaimOutcome.SKIP
    reason = {"code": failed.error.code, "message": failed.error.message}
    assert queue.dead == [(JobMessage(job.id, 3), reason)]
    assert "dead_letter_owed" not in store.get(job.id, mark_gone=False).public()


def test_a_retry_whose_message_the_queue_refused_holds_no_lease_and_says_what_starts_it(lifecycle, store, queue):
    """The job is written retrying, its attempt's lease gone with it, before the next attempt's
    message is sent; the queue refusing that send is NextAttemptUnsentError, naming the
    message that was not sent and the one whose return starts the attempt."""
    from chalicelib.domain.errors import NextAttemptUnsentError

    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    queue.fail_sends = True
    with pytest.raises(NextAttemptUnsentError) as info:
        lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=True)
    retrying = store.get(job.id, mark_gone=False)
    assert retrying.status == JobStatus.RETRYING and retrying.lease_expires_at is None
    assert info.value.job.status == JobStatus.RETRYING
    assert "the message of attempt 2 was not sent" in info.value.message
    assert "the message of attempt 1 starts it" in info.value.message


def test_a_dead_letter_the_queue_refused_is_left_to_the_reconciler_for_the_owed_wait(lifecycle, store, queue, clock):
    """Should the attempt's message never come back, the failed job is due to the reconciler
    OWED_LETTER_WAIT_S after its failure, which parks the letter then; not sooner, when the
    message coming back would park it too."""
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    queue.fail_sends = True
    with pytest.raises(DeadLetterOwedError):
        lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=False)
    queue.fail_sends = False
    clock.advance(OWED_LETTER_WAIT_S - 1)
    assert store.due(isoformat(clock.now), 10).jobs == []
    clock.advance(1)
    (due,) = store.due(isoformat(clock.now), 10).jobs
    assert lifecycle.reconcile(due) == ReconcileOutcome.OWED_LETTER_PARKED
    assert queue.dead == [(JobMessage(job.id, 1), {"code": "boom", "message": "it broke"})]


@pytest.mark.parametrize("ended_by", ["worker", "reconciler"])
def test_a_dead_letter_whose_answer_was_lost_is_parked_once(lifecycle, store, queue, clock, ended_by):
    """A letter sent whose answer never came may be on its queue: the job stays owing it, the
    delivery ends, and the message coming back seconds later parks nothing (sent again, the
    letter was there twice). The reconciler's pass, which reads the dead-letter queue before
    its due jobs, finds the letter and clears the mark; the owed wait then parks nothing."""
    job, running = on_its_last_attempt(lifecycle, clock)
    queue.lose_letter_answers = True
    if ended_by == "worker":
        lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=False)
    else:
        clock.advance(running.timeout_s + 3600)
        assert lifecycle.reconcile(store.get(job.id, mark_gone=False)) == ReconcileOutcome.LEASE_EXPIRED
    queue.lose_letter_answers = False
    failed = store.get(job.id, mark_gone=False)
    assert failed.status == JobStatus.FAILED and failed.dead_letter_owed == 3 and len(queue.dead) == 1
    for _ in range(2):  # its message comes back
        assert lifecycle.claim(JobMessage(job.id, 3)).outcome == ClaimOutcome.SKIP
    assert len(queue.dead) == 1
    assert lifecycle.owed_letter_found(failed, JobMessage(job.id, 3)) == ReconcileOutcome.OWED_LETTER_FOUND
    clock.advance(OWED_LETTER_WAIT_S + 1)
    assert lifecycle.reconcile(store.get(job.id, mark_gone=False)) == ReconcileOutcome.SKIPPED
    assert len(queue.dead) == 1 and store.get(job.id, mark_gone=False).dead_letter_owed is None


def test_a_dead_letter_whose_answer_was_lost_and_that_never_landed_is_parked_when_owed(lifecycle, store, queue,
                                                                                       clock):
    """The send whose answer was lost had not reached the queue: no pass finds the letter, and
    the pass OWED_LETTER_WAIT_S after the failure parks it, once."""
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job

    def lost(message, **kwargs):
        raise LetterUnconfirmedError("the dead letter was sent and its answer lost")

    real, queue.dead_letter = queue.dead_letter, lost
    failed = lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=False)
    queue.dead_letter = real
    assert failed.dead_letter_owed == 1
    assert lifecycle.claim(JobMessage(job.id, 1)).outcome == ClaimOutcome.SKIP and queue.dead == []
    clock.advance(OWED_LETTER_WAIT_S + 1)
    assert lifecycle.reconcile(store.get(job.id, mark_gone=False)) == ReconcileOutcome.OWED_LETTER_PARKED
    assert queue.dead == [(JobMessage(job.id, 1), {"code": "boom", "message": "it broke"})]
    assert lifecycle.claim(JobMessage(job.id, 1)).outcome == ClaimOutcome.SKIP and len(queue.dead) == 1


@pytest.mark.parametrize("refusal", [StoreUnavailableError("the table did not answer"),
                                     StaleJobError("another write landed first")])
def test_a_letter_sent_unanswered_whose_unconfirmed_mark_was_not_written_leaves_the_failure_as_written(
        lifecycle, store, queue, refusal):
    """The dead letter was sent and its answer lost, and the write marking it unconfirmed was
    not answered or lost a race: the failure stands as written (failed, owing its letter) and
    the delivery is not failed for a mark that only spares a second letter. Without the mark, a
    later delivery of the attempt's message sends the letter again: two letters rather than none."""
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    real_dead_letter, real_apply = queue.dead_letter, store.apply

    def lost(message, **kwargs):
        raise LetterUnconfirmedError("the dead letter was sent and its answer lost")

    def apply(current, expected, changes):
        if "dead_letter_unconfirmed" in changes.fields:
            raise refusal
        return real_apply(current, expected, changes)

    queue.dead_letter, store.apply = lost, apply
    failed = lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=False)
    queue.dead_letter, store.apply = real_dead_letter, real_apply
    assert (failed.status, failed.dead_letter_owed, failed.dead_letter_unconfirmed) == (JobStatus.FAILED, 1, None)
    assert failed == store.get(job.id, mark_gone=False)
    assert lifecycle.claim(JobMessage(job.id, 1)).outcome == ClaimOutcome.SKIP
    assert queue.dead == [(JobMessage(job.id, 1), {"code": "boom", "message": "it broke"})]


@pytest.mark.parametrize("how", ["the process dies", "the store does not answer the mark"])
def test_a_letter_the_failing_delivery_did_not_park_is_parked_by_the_next_one(lifecycle, store, queue, how):
    """The job is written `failed` owing its letter, in the same write: a worker that dies
    before the dead-letter queue took it (out of memory, the function's timeout), or whose
    store does not answer after the queue did not either, leaves a job that still owes it, and
    the attempt's message parks it when it comes back. Written after the failure instead, the
    mark was lost with the process and the letter with it."""
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job

    class Died(BaseException):
        pass

    real_dead_letter, real_apply = queue.dead_letter, store.apply

    def dead_letter(message, **kwargs):
        if how == "the process dies":
            raise Died()
        raise QueueUnavailableError("the dead-letter queue did not answer")

    def apply(job, expected, changes):
        if how != "the process dies" and "status" not in changes.fields:  # any write after the failure
            raise StoreUnavailableError("the table did not answer")
        return real_apply(job, expected, changes)

    queue.dead_letter, store.apply = dead_letter, apply
    with pytest.raises((Died, QueueUnavailableError)):
        lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=False)
    queue.dead_letter, store.apply = real_dead_letter, real_apply
    failed = store.get(job.id, mark_gone=False)
    assert failed.status == JobStatus.FAILED and failed.dead_letter_owed == 1 and queue.dead == []
    assert lifecycle.claim(JobMessage(job.id, 1)).outcome == ClaimOutcome.SKIP
    assert queue.dead == [(JobMessage(job.id, 1), {"code": "boom", "message": "it broke"})]
    assert store.get(job.id, mark_gone=False).dead_letter_owed is None


@pytest.mark.parametrize("status, owed, attempt, owes", [
    (JobStatus.FAILED, 2, 2, True),
    (JobStatus.FAILED, 2, 1, False),  # an earlier attempt's message: its letter is not the one owed
    (JobStatus.FAILED, None, 2, False),
    (JobStatus.CANCELED, 2, 2, False),  # only a failure owes a letter
    (JobStatus.RETRYING, 2, 2, False),
])
def test_a_job_owes_the_dead_letter_of_the_attempt_it_failed_on_only(status, owed, attempt, owes):
    """The one decision the reconciler (a letter found on a DLQ) and the lifecycle (clearing the
    mark) both rest on."""
    job = Job(id="j", type="t", tenant="x", user="u", created_at="2026-01-01T00:00:00.000Z", status=status, attempts=2, dead_letter_owed=owed)
    assert job.owes_dead_letter(attempt) is owes


def test_a_failed_job_whose_letter_was_parked_owes_none(lifecycle, store, queue):
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    failed = lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=False)
    assert failed.dead_letter_owed is None and store.get(job.id, mark_gone=False).dead_letter_owed is None
    assert len(queue.dead) == 1
    assert lifecycle.claim(JobMessage(job.id, 1)).outcome == ClaimOutcome.SKIP
    assert len(queue.dead) == 1  # a later delivery parks nothing


def test_a_dead_letter_sent_at_once_is_not_sent_again_by_a_later_delivery(lifecycle, store, queue):
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=False)
    assert lifecycle.claim(JobMessage(job.id, 1)).outcome == ClaimOutcome.SKIP
    assert len(queue.dead) == 1


def test_an_owed_letter_parked_while_the_store_does_not_answer_leaves_the_job_owing_it(lifecycle, queue, store,
                                                                                       monkeypatch):
    """The letter is parked but the mark's clearing does not answer: the delivery goes on with
    the job as it read it, the mark left (a later delivery parks the letter again rather than
    never), instead of with nothing."""
    job = submit(lifecycle)
    fail_owing_its_letter(lifecycle, queue)
    owing = store.get(job.id, mark_gone=False)

    def does_not_answer(*args, **kwargs):
        raise StoreUnavailableError("the jobs table did not answer")

    monkeypatch.setattr(store, "apply", does_not_answer)
    assert lifecycle.park_owed_letter(owing) == owing
    assert [m for m, _ in queue.dead] == [JobMessage(job.id, 1)]
    assert store.get(job.id, mark_gone=False).dead_letter_owed == 1


def test_an_owed_letter_parked_by_two_deliveries_answers_the_job_as_stored_to_the_later(lifecycle, queue, store):
    """Two deliveries of the failed attempt's message both park its owed letter; the one whose
    clearing of the mark lost the race answers the job as stored then, owing nothing, not the
    job it read, which still owed it."""
    job = submit(lifecycle)
    fail_owing_its_letter(lifecycle, queue)
    owing = store.get(job.id, mark_gone=False)
    first = lifecycle.park_owed_letter(owing)
    later = lifecycle.park_owed_letter(owing)
    assert first.dead_letter_owed is None and later.dead_letter_owed is None
    assert later == store.get(job.id, mark_gone=True) and later.version == first.version


def test_a_completion_drops_the_error_an_earlier_attempt_left_on_the_job(lifecycle, store):
    """A version that kept the failed attempt's error on the job as it claimed the next one left
    it there; the attempt that completes the job leaves none: its outcome is the result."""
    job = submit(lifecycle)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    left = store.apply(running, JobStatus.RUNNING, ChangeSet({"error": JobErrorInfo(code="boom", message="attempt 0")}))
    done = lifecycle.complete(left, {"ok": True})
    assert done.error is None and store.get(job.id, mark_gone=False).error is None


@pytest.mark.parametrize("when, refused", [
    ({"delay_seconds": -1}, "must not be negative"),
    ({"delay_seconds": 10, "run_at": "zoned"}, "not both"),
    ({"run_at": "naive"}, "needs a time zone"),
    ({"delay_seconds": 365 * 24 * 3600 + 1}, "at most 365 days ahead"),
])
def test_a_start_that_cannot_be_kept_is_refused_and_nothing_stored(lifecycle, store, queue, clock, when, refused):
    run_at = {"zoned": clock.now + timedelta(minutes=5), "naive": (clock.now + timedelta(minutes=5)).replace(tzinfo=None)}
    when = {k: run_at.get(v, v) if isinstance(v, str) else v for k, v in when.items()}
    with pytest.raises(InvalidRequestError, match=refused):
        submit(lifecycle, **when)
    assert queue.sent == [] and store.count_unfinished("acme", 10) == 0


def test_a_start_past_the_longest_schedule_names_the_bound_in_its_refusal(lifecycle, clock):
    """A `run_at` more than MAX_SCHEDULE_S ahead passes POST /jobs's model (only `delay_seconds`
    is bounded there) and is refused here: the 400's details name the longest delay taken, in
    seconds, so a client can schedule within it without reading the docs."""
    from chalicelib.defaults import MAX_SCHEDULE_S

    with pytest.raises(InvalidRequestError) as refused:
        submit(lifecycle, run_at=clock.now + timedelta(seconds=MAX_SCHEDULE_S + 1))
    assert refused.value.details == {"max_delay_seconds": MAX_SCHEDULE_S}


def test_a_start_exactly_the_longest_schedule_ahead_is_taken_and_held(lifecycle, store, queue, clock):
    from chalicelib.defaults import MAX_SCHEDULE_S, SQS_MAX_DELAY_S

    job = submit(lifecycle, delay_seconds=MAX_SCHEDULE_S)
    start = clock.now + timedelta(seconds=MAX_SCHEDULE_S)
    assert job.not_before == isoformat(start) and queue.sent == []
    assert (job.dispatches, job.due_at) == (0, isoformat(start - timedelta(seconds=SQS_MAX_DELAY_S)))


def test_a_start_within_sqs_delay_is_sent_at_once_and_due_after_its_grace(lifecycle, queue, clock):
    from chalicelib.defaults import DISPATCH_GRACE_S, SQS_MAX_DELAY_S

    job = submit(lifecycle, delay_seconds=SQS_MAX_DELAY_S)
    start = clock.now + timedelta(seconds=SQS_MAX_DELAY_S)
    assert [(m.job_id, delay) for m, _, delay in queue.sent] == [(job.id, SQS_MAX_DELAY_S)]
    assert (job.dispatches, job.due_at) == (1, isoformat(start + timedelta(seconds=DISPATCH_GRACE_S)))


def test_a_start_a_second_past_sqs_delay_is_held_not_sent(lifecycle, store, queue, clock):
    """SQS delays a message at most SQS_MAX_DELAY_S (a longer delay is refused): a job starting
    one second later has no message yet, held for the reconciler to release once its start is
    within SQS's delay."""
    from chalicelib.defaults import SQS_MAX_DELAY_S

    job = submit(lifecycle, delay_seconds=SQS_MAX_DELAY_S + 1)
    assert queue.sent == [] and job.dispatches == 0
    assert job.due_at == isoformat(clock.now + timedelta(seconds=1))


def test_a_spawn_is_refused_a_priority_or_payload_a_submit_would_be(lifecycle, store):
    from chalicelib.defaults import MAX_JSON_DEPTH
    from chalicelib.domain.errors import PayloadTooDeepError

    parent = submit(lifecycle)
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    with pytest.raises(InvalidRequestError, match="priority must be high, normal or low, not 'urgent'"):
        lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS, priority="urgent")
    deep: dict = {}
    for _ in range(MAX_JSON_DEPTH):
        deep = {"d": deep}
    with pytest.raises(PayloadTooDeepError) as raised:
        lifecycle.spawn(running, 1, type="demo.steps", payload=deep)
    assert raised.value.details == {"limit": MAX_JSON_DEPTH - 1}
    assert store.get(parent.id, mark_gone=False).children == []


def test_a_keyed_rerun_of_a_removed_job_whose_rerun_is_removed_too_is_not_found(lifecycle, store):
    """The key still answers while kept, but the job it made is gone as well: not found, as a
    rerun of a removed job without a key is."""
    original = submit(lifecycle)
    running = lifecycle.claim(JobMessage(original.id, 1)).job
    lifecycle.complete(running, {"ok": True})
    made = lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, idempotency_key="again-1")
    store.delete_job(original.id)
    store.delete_job(made.id)
    with pytest.raises(JobNotFoundError):
        lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, idempotency_key="again-1")


def test_a_spawn_past_the_most_children_is_refused_but_one_made_already_is_answered(lifecycle, store):
    from chalicelib.defaults import MAX_CHILDREN
    from chalicelib.domain.errors import TooManyChildrenError

    parent = submit(lifecycle)
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    first = lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS, listed=MAX_CHILDREN - 1)
    with pytest.raises(TooManyChildrenError) as refused:
        lifecycle.spawn(running, 2, type="demo.steps", payload=STEPS, listed=MAX_CHILDREN)
    assert refused.value.details == {"limit": MAX_CHILDREN}
    assert lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS, listed=MAX_CHILDREN).id == first.id
    assert store.get(parent.id, mark_gone=False).children == [first.id]


def test_a_spawn_told_nothing_of_the_children_counts_those_its_parent_lists(lifecycle, store):
    """Without `listed` a spawn counts the children the parent it is given lists: one listing
    MAX_CHILDREN is refused the next, nothing made, as one told it lists them is."""
    from chalicelib.defaults import MAX_CHILDREN
    from chalicelib.domain.errors import TooManyChildrenError

    parent = submit(lifecycle)
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    full = running.model_copy(update={"children": [f"child-{i}" for i in range(MAX_CHILDREN)]})
    with pytest.raises(TooManyChildrenError):
        lifecycle.spawn(full, 1, type="demo.steps", payload=STEPS)
    assert store.get(child_job_id(parent.id, 1, 1), mark_gone=False) is None


def spawned_meanwhile(monkeypatch, lifecycle, store, running, *, then=None):
    """`store.create_child`'s next call finds its place taken: another worker's spawn of the
    same place (the same request) made the child just before, and the write is refused
    StaleJobError as the store refuses it; `then(child)` after. The method as it was from then on."""
    real = store.create_child

    def raced(child, attempt):
        monkeypatch.setattr(store, "create_child", real)
        made = lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS)
        try:
            real(child, attempt)
        finally:
            if then is not None:
                then(made)

    monkeypatch.setattr(store, "create_child", raced)


def test_a_spawn_that_lost_the_race_for_its_place_answers_the_child_made_and_sends_it_once(
        lifecycle, store, queue, monkeypatch):
    """Two spawns of one place at once (a handler's retry beside its first try): the one whose
    write meets the other's child answers that child, listed once and sent once, by the spawn
    that made it: a second message would run the child twice."""
    parent = submit(lifecycle)
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    spawned_meanwhile(monkeypatch, lifecycle, store, running)
    child = lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS)
    assert child.id == child_job_id(parent.id, 1, 1)
    assert store.get(parent.id, mark_gone=False).children == [child.id]
    assert [m.job_id for m, _, _ in queue.sent] == [parent.id, child.id]


def test_a_spawn_that_lost_the_race_to_a_child_gone_at_once_is_unanswered(lifecycle, store, queue, monkeypatch):
    """The child that took the place is gone when read back (removed as soon as made): what the
    place holds is not known, so the spawn is the store's StoreUnavailableError, which the
    handler's retry of the spawn (`held`) answers, not an error of its own."""
    parent = submit(lifecycle)
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    spawned_meanwhile(monkeypatch, lifecycle, store, running, then=lambda made: store._jobs.pop(made.id))
    with pytest.raises(StoreUnavailableError, match="could not read back child"):
        lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS)


def test_a_spawn_that_lost_the_race_to_a_child_whose_payload_went_answers_it_as_recorded(
        store, queue, clock, monkeypatch):
    """The child that took the place, read back with its payload object gone: it is answered as
    recorded, its payload named in `gone`, as a spawn finding it there before its write is."""
    from chalicelib.adapters.memory import InMemoryJobStore
    from chalicelib.adapters.memory_blobs import InMemoryBlobStore

    blobs = InMemoryBlobStore(clock)
    store = InMemoryJobStore(blobs=blobs, inline_limit=16)  # payloads go to the bucket
    lifecycle = JobLifecycle(store, queue, build_registry(demo_types=True), clock=clock)
    parent = submit(lifecycle)
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    spawned_meanwhile(monkeypatch, lifecycle, store, running,
                      then=lambda made: blobs.delete([key for key in list(blobs.objects) if made.id in key]))
    child = lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS)
    assert child.id == child_job_id(parent.id, 1, 1) and child.gone == ["payload"]


def the_next_attempt(lifecycle, clock, running):
    """`running`'s attempt failed (retryable) and the next one claimed."""
    lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="the worker went away"), retryable=True)
    clock.advance(900)
    return lifecycle.claim(JobMessage(running.id, running.attempts + 1)).job


def test_a_retried_parent_takes_on_the_child_of_the_latest_attempt_that_made_one(lifecycle, store, queue, clock):
    """Attempt 1 spawned child 1; attempt 2 ended before spawning; attempt 3 asks for child 1
    again: it takes on attempt 1's, reading the places its attempts listed, not only attempt
    2's, which holds nothing (the child's work is not run twice)."""
    parent = submit(lifecycle)
    first = lifecycle.claim(JobMessage(parent.id, 1)).job
    made = lifecycle.spawn(first, 1, type="demo.steps", payload=STEPS)
    first = store.get(parent.id, mark_gone=False)
    third = the_next_attempt(lifecycle, clock, the_next_attempt(lifecycle, clock, first))
    assert third.attempts == 3
    assert lifecycle.spawn(third, 1, type="demo.steps", payload=STEPS).id == made.id
    assert store.get(child_job_id(parent.id, 3, 1), mark_gone=False) is None


def test_a_retried_parent_makes_anew_the_child_its_earlier_attempt_made_that_was_canceled(
        lifecycle, store, queue, clock):
    """A child canceled (by a client) will not do its work: a retried parent asking for it again
    makes a new one, as for one that failed."""
    parent = submit(lifecycle)
    first = lifecycle.claim(JobMessage(parent.id, 1)).job
    made = lifecycle.spawn(first, 1, type="demo.steps", payload=STEPS)
    lifecycle.cancel("acme", made.id)
    second = the_next_attempt(lifecycle, clock, store.get(parent.id, mark_gone=False))
    again = lifecycle.spawn(second, 1, type="demo.steps", payload=STEPS)
    assert again.id == child_job_id(parent.id, 2, 1) != made.id and again.status == JobStatus.QUEUED


def test_a_retried_parent_makes_anew_the_child_whose_result_object_is_gone(store, queue, clock):
    """An earlier attempt's child that completed, its result object since gone from the bucket:
    taken on, its result could not be read back, so a retried parent asking for it again makes
    a new one."""
    from chalicelib.adapters.memory import InMemoryJobStore
    from chalicelib.adapters.memory_blobs import InMemoryBlobStore

    blobs = InMemoryBlobStore(clock)
    store = InMemoryJobStore(blobs=blobs, inline_limit=200)  # the payload kept inline, the result in the bucket
    lifecycle = JobLifecycle(store, queue, build_registry(demo_types=True), clock=clock)
    parent = submit(lifecycle)
    first = lifecycle.claim(JobMessage(parent.id, 1)).job
    made = lifecycle.spawn(first, 1, type="demo.steps", payload=STEPS)
    lifecycle.complete(lifecycle.claim(JobMessage(made.id, 1)).job, {"data": "r" * 300})
    blobs.delete([key for key in list(blobs.objects) if made.id in key and "result" in key])
    assert store.get(made.id, mark_gone=True).gone == ["result"]
    second = the_next_attempt(lifecycle, clock, store.get(parent.id, mark_gone=False))
    assert lifecycle.spawn(second, 1, type="demo.steps", payload=STEPS).id == child_job_id(parent.id, 2, 1)


def test_a_held_spawn_sends_its_child_at_once_only_while_it_waits_for_its_first_message(
        lifecycle, store, queue, monkeypatch):
    """A spawn the store did not answer made its child but sent nothing: spawned again (`held`)
    it sends the child's first message with no delay, as a spawn sends one; a child canceled
    meanwhile is sent nothing (no attempt of it will run)."""
    parent = submit(lifecycle)
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    queue.sent.clear()
    for index in (1, 2):
        lose_next_answer(monkeypatch, store, "create_child")
        with pytest.raises(StoreUnavailableError):
            lifecycle.spawn(running, index, type="demo.steps", payload=STEPS)
    made, canceled = child_job_id(parent.id, 1, 1), child_job_id(parent.id, 1, 2)
    lifecycle.cancel("acme", canceled)
    assert queue.sent == []
    assert lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS, held=True).id == made
    assert lifecycle.spawn(running, 2, type="demo.steps", payload=STEPS, held=True).id == canceled
    assert queue.sent == [(JobMessage(made, 1), "normal", 0)]


def test_a_passed_over_child_whose_payload_object_is_gone_is_taken_on_as_recorded(queue, clock, monkeypatch):
    """The child an unanswered spawn made, passed over by another request, its payload object
    gone by the time the handler asks for it again: taken on as recorded (its payload named in
    `gone`; its type, priority and scope are the request's), not made a second time."""
    from chalicelib.adapters.memory import InMemoryJobStore
    from chalicelib.adapters.memory_blobs import InMemoryBlobStore
    from chalicelib.domain.errors import ChildPlaceTakenError

    blobs = InMemoryBlobStore(clock)
    store = InMemoryJobStore(blobs=blobs, inline_limit=16)  # payloads go to the bucket
    lifecycle = JobLifecycle(store, queue, build_registry(demo_types=True), clock=clock)
    parent = submit(lifecycle)
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    other = {"steps": 9, "step_ms": 0}
    lose_next_answer(monkeypatch, store, "create_child")
    with pytest.raises(StoreUnavailableError):
        lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS)
    with pytest.raises(ChildPlaceTakenError):
        lifecycle.spawn(running, 1, type="demo.steps", payload=other, held=True)
    lifecycle.spawn(running, 2, type="demo.steps", payload=other)
    passed = child_job_id(parent.id, 1, 1)
    blobs.delete([key for key in list(blobs.objects) if passed in key])
    again = lifecycle.spawn(running, 3, type="demo.steps", payload=STEPS, untaken=[1])
    assert again.id == passed and again.gone == ["payload"]
    assert store.get(child_job_id(parent.id, 1, 3), mark_gone=False) is None


@pytest.mark.parametrize("another", [{"type": "q.other"}, {"priority": "high"}, {"scope": "elsewhere"}],
                         ids=["type", "priority", "scope"])
def test_a_spawn_of_a_taken_place_asking_another_type_priority_or_scope_is_refused(store, queue, clock, another):
    """A place's child is the one asked for only with its type, priority and scope too, not its
    payload alone: a spawn asking otherwise is another request's (ChildPlaceTakenError), never
    answered a child that runs other work, at another priority or under another scope."""
    from pydantic import BaseModel

    from chalicelib.domain.errors import ChildPlaceTakenError
    from chalicelib.domain.registry import JobTypeRegistry

    class Empty(BaseModel):
        pass

    types = JobTypeRegistry()
    for name in ("q.parent", "q.child", "q.other"):
        types.register(name, Empty)(lambda ctx, payload: None)
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    parent = lifecycle.submit(tenant="acme", user="ann", type="q.parent", payload={})
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    made = lifecycle.spawn(running, 1, type="q.child", payload={})
    with pytest.raises(ChildPlaceTakenError) as taken:
        lifecycle.spawn(running, 1, **{"type": "q.child", "payload": {}, **another})
    assert taken.value.child_id == made.id


def test_a_spawn_is_admitted_as_a_submit_is_and_a_child_made_already_is_answered_without(lifecycle, store, queue):
    from chalicelib.domain.errors import QuotaExceededError

    def full(tenant):
        raise QuotaExceededError("tenant has 2 unfinished jobs", retry_after_s=10)

    parent = submit(lifecycle)
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    queue.drain()
    with pytest.raises(QuotaExceededError):
        lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS, admit=full)
    assert store.get(parent.id, mark_gone=False).children == [] and queue.sent == []
    made = lifecycle.spawn(running, 2, type="demo.steps", payload=STEPS)
    assert lifecycle.spawn(running, 2, type="demo.steps", payload=STEPS, admit=full).id == made.id


@pytest.mark.parametrize("given, runs_at", [(None, "high"), ("low", "low")])
def test_a_child_runs_at_its_parents_priority_unless_given_one_and_starts_at_once(lifecycle, queue, clock,
                                                                                 given, runs_at):
    parent = submit(lifecycle, priority="high")
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    queue.drain()
    child = lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS, priority=given)
    assert child.priority == runs_at and child.not_before == isoformat(clock.now)
    assert queue.sent == [(JobMessage(child.id, 1, tenant="acme", timeout_s=child.timeout_s), runs_at, 0)]


def test_a_rerun_given_a_payload_runs_with_it_and_otherwise_with_the_originals(lifecycle, store):
    """A maintenance task's rerun passes its parameters without its run's bookkeeping (a new
    chain of runs): the new job runs with the payload given, the original keeps its own, and a
    rerun given none runs with the original's."""
    original = submit(lifecycle)
    lifecycle.complete(lifecycle.claim(JobMessage(original.id, 1)).job, {"ok": True})
    given = {"steps": 1, "step_ms": 0}
    assert given != STEPS

    def steps(job):  # the payload as stored: its model's defaults filled in
        payload = store.get(job.id, fetch=("payload",), mark_gone=False).payload
        return {name: payload[name] for name in STEPS}

    made = lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, payload=given)
    assert (steps(made), steps(original)) == (given, STEPS)
    again = lifecycle.rerun(tenant="acme", user="ann", job_id=original.id)
    assert steps(again) == STEPS
