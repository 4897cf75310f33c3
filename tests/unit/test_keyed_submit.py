"""JobLifecycle.submit with an Idempotency-Key, on the in-memory adapters: once per key, what a
replay answers, the key's lifetime, admission once per key, and concurrent first requests."""
from __future__ import annotations

import inspect
import threading
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.adapters.memory import InMemoryFinishedJobs
from chalicelib.api.requests import SubmitJobRequest
from chalicelib.adapters.memory_blobs import InMemoryArtifactStore, InMemoryBlobStore
from chalicelib.defaults import DISPATCH_GRACE_S, REPLAY_RESEND_AFTER_S
from chalicelib.domain.errors import (
    IdempotencyConflictError,
    InvalidRequestError,
    JobPurgedError,
    QuotaExceededError,
    StoreUnavailableError,
)
from chalicelib.domain.status import JobStatus
from chalicelib.domain.job import isoformat
from chalicelib.domain.submission_keys import request_hash
from chalicelib.ports import JobMessage

STEPS = {"steps": 2, "step_ms": 0}


def submit(lifecycle, key="order-1", **overrides):
    args = {"tenant": "acme", "user": "ann", "type": "demo.steps", "payload": STEPS, "idempotency_key": key,
            **overrides}
    return lifecycle.submit(**args)


def test_a_replay_returns_the_first_job_and_sends_nothing(lifecycle, store, queue, clock):
    first = submit(lifecycle)
    clock.advance(REPLAY_RESEND_AFTER_S - 1)
    again = submit(lifecycle)
    assert again == first and store.get(first.id, mark_gone=False) == first
    assert queue.sent == [(JobMessage(first.id, 1), "normal", 0)]


class RequestDied(BaseException):
    """The API's process ending under a request (a crash, its function's timeout): nothing after
    that point of the request runs, and its client gets no answer."""


def submit_dying_before_its_send(lifecycle, monkeypatch, **overrides):
    """A keyed submit whose request wrote its job and key, then died where it would send the
    message (a job held for a start beyond SQS's delay is sent none: its request ends well)."""
    def dies(*_, **__):
        raise RequestDied()

    with monkeypatch.context() as patch:
        patch.setattr(lifecycle.queue, "send", dies)
        try:
            submit(lifecycle, **overrides)
        except RequestDied:
            pass
    made = lifecycle.store.submission_key("acme", "order-1", now=int(lifecycle.clock().timestamp()))
    return lifecycle.store.get(made.job_id, mark_gone=False)


def test_a_replay_sends_the_message_its_first_request_died_before_sending(lifecycle, store, queue, clock,
                                                                          monkeypatch):
    """A client whose keyed submit got no answer repeats it, as the CLI tells it to. When the
    first request died between its write and its send, the job waits unclaimed with no message:
    the replay sends it, counted as a dispatch, once the job is REPLAY_RESEND_AFTER_S past its
    start (a live request sends within milliseconds of its write), and the job runs now, not
    when the reconciler's dispatch grace ends. Once: a later replay leaves the rest to the
    reconciler's schedule, which counts on from there."""
    made = submit_dying_before_its_send(lifecycle, monkeypatch)
    clock.advance(REPLAY_RESEND_AFTER_S)
    answered = submit(lifecycle)
    assert answered.id == made.id and answered.status == JobStatus.QUEUED
    assert queue.sent == [(JobMessage(made.id, 1, tenant="acme", timeout_s=made.timeout_s), "normal", 0)]
    resent = store.get(made.id, mark_gone=False)
    assert resent.dispatches == 2
    assert resent.due_at == isoformat(clock.now + timedelta(seconds=DISPATCH_GRACE_S))
    clock.advance(60)
    submit(lifecycle)
    assert len(queue.sent) == 1, "one resend a job: the next is the reconciler's"
    (message,) = queue.drain()
    assert lifecycle.claim(message).job.status == JobStatus.RUNNING


@pytest.mark.parametrize("overrides, waited", [
    ({}, REPLAY_RESEND_AFTER_S - 1),  # its request may still be about to send
    ({"delay_seconds": 300}, 300 + REPLAY_RESEND_AFTER_S - 1),  # its message is delayed until its start
    ({"delay_seconds": 3600}, 3000),  # held for the reconciler: no message before its start nears
])
def test_a_replay_sends_nothing_for_a_job_not_yet_past_its_start(lifecycle, store, queue, clock, monkeypatch,
                                                                  overrides, waited):
    submit_dying_before_its_send(lifecycle, monkeypatch, **overrides)
    clock.advance(waited)
    submit(lifecycle, **overrides)
    assert queue.sent == []


def test_a_replay_sends_nothing_for_a_job_a_worker_claimed(lifecycle, store, queue, clock):
    """Claimed (running, retrying, finished): its message did arrive."""
    submit(lifecycle)
    lifecycle.claim(queue.drain()[0])
    clock.advance(60)
    submit(lifecycle)
    assert queue.sent == []


@pytest.mark.parametrize("failing", ["store", "queue"])
def test_a_replay_is_answered_its_job_when_the_resend_fails(lifecycle, store, queue, clock, monkeypatch, failing):
    """The resend is the replay's extra: a store or queue that does not answer it leaves the
    job as it was (its dispatch not counted) for the reconciler, and the client its answer."""
    made = submit_dying_before_its_send(lifecycle, monkeypatch)
    clock.advance(REPLAY_RESEND_AFTER_S)
    if failing == "queue":
        queue.fail_sends = True
    else:
        def refuses(*_, **__):
            raise StoreUnavailableError("jobs table unavailable")
        monkeypatch.setattr(store, "apply", refuses)
    assert submit(lifecycle).id == made.id
    monkeypatch.undo()
    assert store.get(made.id, mark_gone=False).dispatches == 1
    assert queue.sent == []


# Per field of POST /jobs's body (SubmitJobRequest), a request that differs from `submit`'s in it alone.
ANOTHER_REQUEST = {
    "type": lambda clock: {"type": "demo.sleep", "payload": {"seconds": 0}},
    "payload": lambda clock: {"payload": {"steps": 3, "step_ms": 0}},
    "priority": lambda clock: {"priority": "high"},
    "delay_seconds": lambda clock: {"delay_seconds": 5},
    "run_at": lambda clock: {"run_at": clock.now + timedelta(hours=1)},
    "scope": lambda clock: {"scope": "p-1"},
}


def test_the_same_key_with_another_request_is_a_conflict(lifecycle, queue, clock):
    """Each field of POST /jobs's body counts in the key's request hash, so a new field is one
    a replay is compared on: it must reach JobLifecycle.submit (the route passes the body's
    fields as its keywords), which hashes every keyword but NOT_THE_REQUEST (lifecycle/admission.py)."""
    fields = set(SubmitJobRequest.model_fields)
    assert fields == set(ANOTHER_REQUEST), (
        f"give each field of SubmitJobRequest another value in ANOTHER_REQUEST: {sorted(fields ^ set(ANOTHER_REQUEST))}")
    taken = set(inspect.signature(lifecycle.submit).parameters)
    assert fields <= taken, f"JobLifecycle.submit takes no {sorted(fields - taken)}: POST /jobs would answer 500"
    submit(lifecycle)
    for field, another in ANOTHER_REQUEST.items():
        with pytest.raises(IdempotencyConflictError, match="already used for a different request"):
            submit(lifecycle, **another(clock))
            pytest.fail(f"a replay with another {field} is answered the first job: "
                        f"{field} is hashed by JobLifecycle.submit only if NOT_THE_REQUEST leaves it out")
    assert len(queue.sent) == 1


def test_keys_are_per_tenant_and_per_key(lifecycle):
    first = submit(lifecycle)
    assert submit(lifecycle, tenant="globex").id != first.id
    assert submit(lifecycle, key="order-2").id != first.id


def test_a_key_answers_for_its_lifetime_then_names_a_new_job(lifecycle, clock):
    first = submit(lifecycle)
    clock.advance(lifecycle.key_ttl_s)
    assert submit(lifecycle).id == first.id  # still kept at the last second
    clock.advance(1)
    second = submit(lifecycle, payload={"steps": 3, "step_ms": 0})  # any request: the key is free again
    assert second.id != first.id
    assert submit(lifecycle, payload={"steps": 3, "step_ms": 0}).id == second.id


def test_a_replay_whose_job_was_purged_says_so_and_when_the_key_is_free(lifecycle, store, queue, clock):
    first = submit(lifecycle)
    blobs = InMemoryBlobStore()
    InMemoryFinishedJobs(store, InMemoryArtifactStore(blobs, jobs=store), blobs).purge(first.id)
    with pytest.raises(JobPurgedError, match=f"job {first.id}, made with this Idempotency-Key") as refused:
        submit(lifecycle)
    key_expires = store.submission_key("acme", "order-1", now=0).expires_at
    assert refused.value.details["job_id"] == first.id
    assert refused.value.details["key_expires_at"] == isoformat(datetime.fromtimestamp(key_expires, timezone.utc))
    assert len(queue.sent) == 1  # nothing sent again
    clock.advance(lifecycle.key_ttl_s + 1)
    assert submit(lifecycle).id != first.id  # once the key expired it makes a new job


def test_a_replay_whose_jobs_payload_object_is_gone_answers_the_job_as_recorded(clock):
    """A job whose payload went to S3 and whose object is gone (the bucket's lifecycle, an
    operator) is answered to a replay of its key as GET /jobs/{id} shows it: its payload named
    in `gone`, not an error for an object the answer does not need."""
    from chalicelib.adapters.memory import InMemoryJobQueue, InMemoryJobStore
    from chalicelib.job_types import build_registry
    from chalicelib.lifecycle import JobLifecycle

    blobs = InMemoryBlobStore(clock)
    store = InMemoryJobStore(blobs=blobs, inline_limit=16)  # the payload goes to the bucket
    lifecycle = JobLifecycle(store, InMemoryJobQueue(), build_registry(demo_types=True), clock=clock)
    first = submit(lifecycle)
    blobs.delete(list(blobs.objects))
    again = submit(lifecycle)
    assert again.id == first.id and again.gone == ["payload"]


@pytest.mark.parametrize("key", ["", "k" * 256, "line\nbreak"])
def test_a_key_that_is_no_key_is_refused_before_anything_is_written(lifecycle, store, queue, key):
    with pytest.raises(InvalidRequestError, match="Idempotency-Key"):
        submit(lifecycle, key=key)
    assert queue.sent == [] and store.submission_key("acme", key, now=0) is None


def test_admission_counts_a_key_once(lifecycle, queue):
    admitted = []
    bound = {"open": True}

    def admit(tenant):
        if not bound["open"]:
            raise QuotaExceededError("too many", retry_after_s=10)
        admitted.append(tenant)

    first = submit(lifecycle, admit=admit)
    bound["open"] = False
    assert submit(lifecycle, admit=admit) == first  # refused by the quota, answered from the key
    with pytest.raises(IdempotencyConflictError):
        submit(lifecycle, admit=admit, payload={"steps": 3, "step_ms": 0})
    with pytest.raises(QuotaExceededError):
        submit(lifecycle, key="order-2", admit=admit)  # a new key is a new job: refused
    with pytest.raises(QuotaExceededError):
        lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS, admit=admit)
    assert admitted == ["acme"] and len(queue.sent) == 1


def test_a_refused_request_under_an_expired_key_is_refused_not_answered_its_old_job(lifecycle, store, queue, clock):
    """A key kept past `key_ttl_s` names no job, though its record stays until DynamoDB's TTL
    takes it (up to days later): a request under it is a new job, so one the quota refuses is
    refused (429), never answered the job the key made a day before."""
    first = submit(lifecycle)
    clock.advance(lifecycle.key_ttl_s + 1)
    assert store._keys[("acme", "order-1")].job_id == first.id  # the record is still there

    def full(tenant):
        raise QuotaExceededError("too many", retry_after_s=10)

    with pytest.raises(QuotaExceededError):
        submit(lifecycle, admit=full)
    assert len(queue.sent) == 1


def test_concurrent_first_requests_under_one_key_make_one_job(lifecycle, store, queue):
    start = threading.Barrier(8)
    jobs, errors = [], []

    def one():
        start.wait()
        try:
            jobs.append(submit(lifecycle))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({job.id for job in jobs}) == 1 and len(jobs) == 8
    assert len(queue.sent) == 1


def test_the_request_hash_refuses_a_value_no_request_holds():
    """Only JSON data and times are part of a request: anything else is a caller's mistake, never
    hashed as something else (null)."""
    with pytest.raises(TypeError, match="object is not part of a job request"):
        request_hash({"type": "t", "payload": {"x": object()}})


def test_the_request_hash_ignores_layout_but_not_content():
    one = {"type": "t", "payload": {"a": 1, "b": [1, 2]}, "scope": None}
    assert request_hash(one) == request_hash({"scope": None, "payload": {"b": [1, 2], "a": 1}, "type": "t"})
    assert request_hash(one) != request_hash({**one, "payload": {"a": 1, "b": [2, 1]}})
    assert request_hash(one) != request_hash({**one, "scope": "s"})


def test_a_replay_giving_run_at_at_another_offset_is_the_same_request(lifecycle, clock):
    """One instant, written at another UTC offset (a client in Berlin retrying what a server in
    UTC sent first) makes the same job: a replay, not 409 idempotency_conflict. Another instant
    is another request."""
    from datetime import timedelta, timezone

    at = clock.now + timedelta(hours=2)
    first = submit(lifecycle, run_at=at)
    assert submit(lifecycle, run_at=at.astimezone(timezone(timedelta(hours=1)))).id == first.id
    assert submit(lifecycle, run_at=at.astimezone(timezone(timedelta(hours=-5, minutes=-30)))).id == first.id
    with pytest.raises(IdempotencyConflictError):
        submit(lifecycle, run_at=at.replace(tzinfo=timezone(timedelta(hours=1))))  # the same wall clock, an hour earlier
    year_one = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))  # no UTC date: hashed as written
    assert submit(lifecycle, key="order-2", run_at=year_one).id == submit(lifecycle, key="order-2", run_at=year_one).id


# Requests and the hash each one's key has stored since keys began: a replay of any of them must
# keep matching its stored key whatever the code computing the hash turns into (else, for a day
# after a deploy, a retry under its key would be refused 409 idempotency_conflict).
STORED_HASHES = [
    ({},
     "30e24d6bd840689e9c35ed6531906b004e774fc1acea4922b94e1b7fff894826"),
    ({"priority": "high", "scope": "p-1", "delay_seconds": 5},
     "5a9a1e8f943e5a308d084c00c423ab1a7af956e495395e9eb3b9de3c21f16518"),
    ({"type": "demo.sleep", "payload": {"seconds": 0}, "priority": "low"},
     "25e5a0dc172fc87a6266b3ef45a0c2bb0e9ccd524c5e6fa50a17fc0b003bb887"),
    ({"run_at": datetime(2026, 1, 31, 9, 0, tzinfo=timezone(timedelta(hours=1))), "payload": {"step_ms": 0, "steps": 4}},
     "360e7b306966a868eea2ff281aee4e79c80f20bde78aa85238be058f118df380"),
]


@pytest.mark.parametrize("request_, stored", STORED_HASHES)
def test_a_request_hashes_as_its_key_has_been_stored(lifecycle, store, request_, stored):
    submit(lifecycle, **request_)
    assert store.submission_key("acme", "order-1", now=0).request_hash == stored


# The hash of each STORED_HASHES request as the job it made takes it (SubmissionKey.taken_hash),
# as keys have stored it since they kept it: the payload its type asks for, the priority left out
# when it is the type's own.
STORED_TAKEN_HASHES = [
    "30e24d6bd840689e9c35ed6531906b004e774fc1acea4922b94e1b7fff894826",
    "5a9a1e8f943e5a308d084c00c423ab1a7af956e495395e9eb3b9de3c21f16518",
    "cf9e84c16a9d3c2eeae8b20da1786b7b86149c8aec551f0b5918de4a26d78252",
    "360e7b306966a868eea2ff281aee4e79c80f20bde78aa85238be058f118df380",
]


@pytest.mark.parametrize("request_, taken", [(request_, taken) for (request_, _), taken
                                             in zip(STORED_HASHES, STORED_TAKEN_HASHES, strict=True)])
def test_a_request_is_taken_as_its_key_has_stored_it(lifecycle, store, request_, taken):
    """A retry spelling a default out that its first request left to it (or the other way
    round) is answered by the taken hash alone: were the code taking a request to turn into
    another (the payload with its defaults filled in, the type's own priority named), every key
    stored before a deploy would refuse such a retry 409 idempotency_conflict for the day it is
    kept."""
    submit(lifecycle, **request_)
    assert store.submission_key("acme", "order-1", now=0).taken_hash == taken


def test_a_default_spelled_out_is_the_request_that_left_it_out(lifecycle, queue):
    """A field given at the value the job would take anyway (the type's priority, no delay, no
    start time, no scope) is the same request as one leaving it out, either way round."""
    first = submit(lifecycle)
    assert submit(lifecycle, priority="normal", delay_seconds=0, run_at=None, scope=None).id == first.id
    spelled = submit(lifecycle, key="order-2", priority="normal")
    assert submit(lifecycle, key="order-2").id == spelled.id
    with pytest.raises(IdempotencyConflictError):
        submit(lifecycle, key="order-2", priority="low")
    assert len(queue.sent) == 2


def test_a_payload_is_compared_as_the_job_takes_it(lifecycle, queue):
    """Payload fields at their default, left out or spelled out, are one request; so are values
    the type's model reads as the same one (a float field given 1 or 1.0)."""
    first = submit(lifecycle)
    assert submit(lifecycle, payload={**STEPS, "fail_mode": "retry", "message_chars": 0}).id == first.id
    slept = submit(lifecycle, key="order-2", type="demo.sleep", payload={"seconds": 1})
    assert submit(lifecycle, key="order-2", type="demo.sleep", payload={"seconds": 1.0}).id == slept.id
    with pytest.raises(IdempotencyConflictError):
        submit(lifecycle, payload={**STEPS, "message_chars": 1})
    assert len(queue.sent) == 2


def test_a_key_stored_before_requests_were_taken_as_the_job_takes_them_still_answers(lifecycle, store):
    """A record written before keys kept the request as the job takes it has its hash as sent
    alone: the request sent again as it was is answered its job."""
    from dataclasses import replace

    first = submit(lifecycle, priority="normal")
    record = store.submission_key("acme", "order-1", now=0)
    assert record.request_hash == "d0849aabf71da357b3321f6a7e8cb5bd192223e6671044f36406248a5d04a973"  # as sent
    store._keys[("acme", "order-1")] = replace(record, taken_hash=None)
    assert submit(lifecycle, priority="normal").id == first.id
    with pytest.raises(IdempotencyConflictError):
        submit(lifecycle, priority="high")


def test_a_keyword_added_to_submit_counts_only_once_given_so_stored_keys_still_match():
    """A request keyword added later (here `labels`) is hashed when a request gives it; one that
    leaves it at its default hashes as before it existed."""
    from chalicelib.lifecycle.admission import hashed_request

    def submit_with_labels(self, *, tenant, user, type, payload, priority=None, delay_seconds=0, run_at=None,
                           scope=None, labels=None, job_id=None, idempotency_key=None, admit=None):
        return hashed_request(inspect.signature(submit_with_labels), locals())

    asked = {"tenant": "acme", "user": "ann", "type": "demo.steps", "payload": STEPS, "idempotency_key": "order-1"}
    assert request_hash(submit_with_labels(None, **asked)) == STORED_HASHES[0][1]
    assert request_hash(submit_with_labels(None, **asked, labels=["x"])) != STORED_HASHES[0][1]
    someone_else = {**asked, "tenant": "globex", "user": "bob", "job_id": "j", "idempotency_key": "k", "admit": print}
    assert submit_with_labels(None, **someone_else) == submit_with_labels(None, **asked)  # who and how: not hashed


def test_every_keyword_submit_hashes_from_the_start_or_leaves_out_is_one_it_takes():
    """A keyword renamed away from FIRST_KEYED or NOT_THE_REQUEST would change every stored
    key's hash (or hash who submits)."""
    from chalicelib.lifecycle.admission import FIRST_KEYED, NOT_THE_REQUEST

    from chalicelib.lifecycle import JobLifecycle

    taken = set(inspect.signature(JobLifecycle.submit).parameters)
    assert FIRST_KEYED | NOT_THE_REQUEST <= taken, sorted((FIRST_KEYED | NOT_THE_REQUEST) - taken)
