"""A job whose claim-checked payload or result object is gone (deleted by hand or by a bucket
rule), delivered to the real runner on the in-memory adapters: it ends at once, clearly, or
goes on when it does not need the object; it never fails delivery after delivery."""
import pytest
from pydantic import BaseModel

from chalicelib.adapters.clocks import ManualClock
from chalicelib.adapters.memory import InMemoryJobStore
from chalicelib.adapters.memory_blobs import InMemoryBlobStore
from chalicelib.defaults import CANCEL_POLL_INTERVAL_S
from chalicelib.domain.errors import DeadLetterOwedError
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.domain.status import JobStatus
from chalicelib.lifecycle import JobLifecycle
from chalicelib.ports import JobMessage
from chalicelib.worker.runner import JobRunner
from tests.support.lost_answers import lose_next_answer

BIG = {"data": "x" * 200}  # past the store's inline limit below: an object of its own


class Anything(BaseModel):
    data: object = None


@pytest.fixture
def blobs():
    return InMemoryBlobStore()


@pytest.fixture
def store(blobs):
    return InMemoryJobStore(blobs=blobs, inline_limit=64)


@pytest.fixture
def types(blobs):
    registry = JobTypeRegistry()
    registry.ran = []

    @registry.register("t.any", Anything)
    def anything(ctx, payload):
        registry.ran.append(ctx.job_id)
        return {"result": "r" * 200}

    @registry.register("t.parent", Anything)
    def parent(ctx, payload):
        return ctx.spawn("t.any", BIG)

    @registry.register("t.loses_its_payload", Anything)
    def loses_its_payload(ctx, payload):
        blobs.delete([f"jobs/{ctx.job_id}/payload.json"])  # a bucket rule, while the attempt runs
        registry.clock.advance(CANCEL_POLL_INTERVAL_S)  # so the cancel poll reads the store
        assert not ctx.cancelled()  # the cancel poll reads the record, not the objects
        registry.cancel(ctx.job_id)  # lands after the poll: the completion's write loses a race
        return payload.data

    return registry


@pytest.fixture
def env(store, queue, clock, types):
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    types.cancel = lambda job_id: lifecycle.cancel("acme", job_id)
    types.clock = ManualClock()  # the worker's, moved by the handler that polls for a cancel
    return lifecycle, JobRunner(lifecycle, types, clock=types.clock, progress_interval_s=0)


def _submitted(lifecycle, runner, queue, how: str):
    """A t.any job with a claim-checked payload, submitted `how`, and its first message."""
    if how == "child":
        lifecycle.submit(tenant="acme", user="ann", type="t.parent", payload={})
        (parent_message,) = queue.drain()
        child_id = runner.run(parent_message).result
        (message,) = queue.drain()
        return lifecycle.store.get(child_id, mark_gone=False), message
    key = "nightly-42" if how == "keyed" else None
    job = lifecycle.submit(tenant="acme", user="ann", type="t.any", payload=BIG, idempotency_key=key)
    (message,) = queue.drain()
    return job, message


@pytest.mark.parametrize("hints", [True, False], ids=["claimed-unread", "claimed-after-a-read"])
@pytest.mark.parametrize("how", ["submitted", "keyed", "child"])
def test_a_job_whose_payload_object_is_gone_fails_at_once_payload_gone(env, queue, blobs, types, how, hints):
    """The claim lands `running`, then finds the payload gone: the attempt fails for good with
    `payload_gone` (no retry, no handler run, its letter parked like any failed job's) and the
    delivery succeeds, so its message is deleted. A duplicate of it is acknowledged."""
    lifecycle, runner = env
    job, message = _submitted(lifecycle, runner, queue, how)
    assert job.payload == BIG
    blobs.delete([f"jobs/{job.id}/payload.json"])
    if not hints:  # a message without the claim's hints (sent before them, moved by hand)
        message = JobMessage(message.job_id, message.attempt)

    failed = runner.run(message)
    assert (failed.status, failed.attempts, failed.error.code) == (JobStatus.FAILED, 1, "payload_gone")
    assert failed.error.message == (f"the payload of job {job.id} is gone from the bucket (deleted by hand or "
                                    "by a lifecycle rule): no attempt can run it")
    assert types.ran == [] and queue.sent == []  # no handler run, no next attempt sent
    assert queue.dead == [(JobMessage(job.id, 1), {"code": "payload_gone", "message": failed.error.message})]
    stored = lifecycle.store.get(job.id, fetch=(), mark_gone=False)
    assert (stored.status, stored.dead_letter_owed) == (JobStatus.FAILED, None)
    [run] = lifecycle.store.runs(job.id)
    assert (run.attempt, run.status, run.error.code) == (1, JobStatus.FAILED, "payload_gone")
    again = runner.run(message)  # a duplicate delivery: acknowledged, nothing written
    assert (again.status, again.version, len(queue.dead)) == (JobStatus.FAILED, stored.version, 1)


def test_a_duplicate_of_a_completed_job_whose_result_object_is_gone_is_acknowledged(env, queue, blobs, types):
    """The refused claim reads the record, its result gone: the job is completed, the message
    acknowledged, not failed at each delivery until the redrive policy parks it."""
    lifecycle, runner = env
    job = lifecycle.submit(tenant="acme", user="ann", type="t.any", payload={})
    (message,) = queue.drain()
    assert runner.run(message).status == JobStatus.COMPLETED
    blobs.delete([f"jobs/{job.id}/result-0001.json"])
    for duplicate in (message, JobMessage(job.id, 1)):
        seen = runner.run(duplicate)
        assert (seen.status, seen.gone) == (JobStatus.COMPLETED, ["result"])
    assert types.ran == [job.id] and queue.dead == []


def test_a_payload_object_gone_while_its_attempt_runs_lets_the_attempt_end(env, queue, types):
    """The attempt has its payload already; its cancel polls and its outcome's write decide on
    the record, so a payload deleted meanwhile does not fail it, and a lost race re-reads the
    record the same way."""
    lifecycle, runner = env
    job = lifecycle.submit(tenant="acme", user="ann", type="t.loses_its_payload", payload=BIG)
    (message,) = queue.drain()
    done = runner.run(message)
    assert (done.status, done.result, done.cancel_requested) == (JobStatus.COMPLETED, BIG["data"], True)
    assert lifecycle.store.get(job.id, mark_gone=True).gone == ["payload"]


def test_spawning_a_child_again_answers_it_as_recorded_when_its_payload_object_is_gone(env, queue, blobs):
    """The same index spawned again in the same attempt returns the existing child: its record,
    the payload it no longer has named in `gone`, not BlobNotFoundError into the parent's handler."""
    lifecycle, _ = env
    lifecycle.submit(tenant="acme", user="ann", type="t.parent", payload={})
    (message,) = queue.drain()
    parent = lifecycle.claim(message).job
    child = lifecycle.spawn(parent, 1, type="t.any", payload=BIG)
    blobs.delete([f"jobs/{child.id}/payload.json"])
    again = lifecycle.spawn(parent, 1, type="t.any", payload=BIG)
    assert (again.id, again.status, again.gone) == (child.id, JobStatus.QUEUED, ["payload"])


def test_two_deliveries_that_park_the_owed_letter_of_a_job_whose_payload_is_gone_both_end_with_its_record(
        env, queue, blobs):
    """The job failed `payload_gone` while its dead-letter queue did not answer: it owes its
    letter, and two deliveries of its message park it at once. The one whose clearing of the
    mark finds it cleared already ends with the job as stored (its payload read as gone), not
    with nothing or an error that would fail the delivery each time it comes back."""
    lifecycle, runner = env
    job, message = _submitted(lifecycle, runner, queue, "submitted")
    blobs.delete([f"jobs/{job.id}/payload.json"])
    queue.fail_sends = True
    with pytest.raises(DeadLetterOwedError):
        runner.run(message)
    queue.fail_sends = False
    owing = lifecycle.store.get(job.id, fetch=(), mark_gone=False)  # what both deliveries read
    assert (owing.status, owing.dead_letter_owed) == (JobStatus.FAILED, 1)
    first = lifecycle.park_owed_letter(owing)
    second = lifecycle.park_owed_letter(owing)
    assert first.dead_letter_owed is None
    assert (second.status, second.dead_letter_owed, second.gone) == (JobStatus.FAILED, None, ["payload"])
    assert second.version == lifecycle.store.get(job.id, fetch=(), mark_gone=False).version
    assert [m for m, _ in queue.dead] == [JobMessage(job.id, 1)] * 2, "parked twice rather than not at all"


@pytest.mark.parametrize("hints", [True, False], ids=["claimed-unread", "claimed-after-a-read"])
def test_a_claim_whose_answer_was_lost_finds_a_gone_payload_as_an_answered_one_does(
        env, queue, blobs, types, monkeypatch, hints):
    """The claim landed and its answer was lost; the delivery reads the record back, finds its
    claim there, and reads the job with its payload, which is gone: the attempt fails for good
    `payload_gone` as after an answered claim, not BlobNotFoundError failing the delivery each
    time its message comes back."""
    lifecycle, runner = env
    job, message = _submitted(lifecycle, runner, queue, "submitted")
    blobs.delete([f"jobs/{job.id}/payload.json"])
    if not hints:
        message = JobMessage(message.job_id, message.attempt)
    lose_next_answer(monkeypatch, lifecycle.store, "apply_expected" if hints else "apply")
    failed = runner.run(message)
    assert (failed.status, failed.attempts, failed.error.code) == (JobStatus.FAILED, 1, "payload_gone")
    assert types.ran == [] and queue.sent == []
    assert [m for m, _ in queue.dead] == [JobMessage(job.id, 1)]
