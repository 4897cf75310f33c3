"""JobLifecycle.rerun on the in-memory adapters: a finished job run again as a new job through
submit's admission (quota, job types, Idempotency-Key), the original left as it ended, and each
refusal writing and sending nothing."""
from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.adapters.memory import InMemoryJobQueue, InMemoryJobStore
from chalicelib.adapters.memory_blobs import InMemoryBlobStore
from chalicelib.domain.errors import (
    BlobNotFoundError,
    IdempotencyConflictError,
    InvalidRequestError,
    JobNotFinishedError,
    JobNotFoundError,
    QuotaExceededError,
    UnknownJobTypeError,
)
from chalicelib.domain.job import JobErrorInfo, isoformat
from chalicelib.domain.status import JobStatus
from chalicelib.job_types import build_registry
from chalicelib.job_types.maintenance import with_maintenance
from chalicelib.lifecycle import JobLifecycle
from chalicelib.maintenance import SYSTEM_TENANT, MaintenanceTasks, TaskControl, TaskRuns
from chalicelib.ports import JobMessage, JobQuery

STEPS = {"steps": 2, "step_ms": 0}


def failed_job(lifecycle, **submitted):
    """A job submitted with `submitted` whose one attempt failed for good."""
    job = lifecycle.submit(**{"tenant": "acme", "user": "ann", "type": "demo.steps", "payload": STEPS,
                              "priority": "high", "scope": "run-7", **submitted})
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    return lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="the ERP was down"), retryable=False)


def task_lifecycle(store, queue, clock):
    """A lifecycle whose registry has the maintenance tasks, as the service's has."""
    return JobLifecycle(store, queue, with_maintenance(build_registry(demo_types=True), tasks=lambda: None),
                        clock=clock)


def test_a_failed_job_runs_again_as_a_new_queued_job_and_the_original_stays_as_it_ended(lifecycle, store, queue,
                                                                                      clock):
    original = failed_job(lifecycle)
    assert original.status == JobStatus.FAILED
    sent_before = list(queue.sent)
    clock.advance(60)
    again = lifecycle.rerun(tenant="acme", user="bob", job_id=original.id)
    assert again.id != original.id and again.status == JobStatus.QUEUED and again.attempts == 0
    assert (again.tenant, again.type, again.payload, again.priority, again.scope) == (
        "acme", "demo.steps", original.payload, "high", "run-7")
    assert again.user == "bob"  # who asked for it to run again
    assert again.rerun_of == original.id and again.parent_id is None and again.error is None
    assert again.created_at == again.not_before == isoformat(clock.now)  # it starts now
    assert store.get(again.id, mark_gone=False) == again
    assert queue.sent == [*sent_before, (JobMessage(again.id, 1), "high", 0)]
    assert store.get(original.id, mark_gone=False) == original  # not written: same version, status, error


def test_a_submitted_job_is_no_rerun(lifecycle):
    job = lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS)
    assert job.rerun_of is None and job.public()["rerun_of"] is None


def test_completed_and_canceled_jobs_run_again_too(lifecycle):
    canceled = lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS)
    canceled = lifecycle.cancel("acme", canceled.id)
    completed = lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS)
    completed = lifecycle.complete(lifecycle.claim(JobMessage(completed.id, 1)).job, {"rows": 2})
    for finished in (canceled, completed):
        assert lifecycle.rerun(tenant="acme", user="ann", job_id=finished.id).rerun_of == finished.id


def test_a_rerun_of_a_rerun_names_the_job_it_ran_again(lifecycle):
    first = failed_job(lifecycle)
    second = lifecycle.cancel("acme", lifecycle.rerun(tenant="acme", user="ann", job_id=first.id).id)
    assert lifecycle.rerun(tenant="acme", user="ann", job_id=second.id).rerun_of == second.id


def test_a_rerun_starts_when_asked(lifecycle, queue, clock):
    original = failed_job(lifecycle)
    later = lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, delay_seconds=30)
    assert later.not_before == isoformat(clock.now + timedelta(seconds=30))
    assert queue.sent[-1] == (JobMessage(later.id, 1), "high", 30)
    at = clock.now + timedelta(days=2)
    held = lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, run_at=at)
    assert held.not_before == isoformat(at) and held.dispatches == 0  # held for the reconciler, as submit holds it


def test_a_childs_rerun_is_a_top_level_job(lifecycle, store):
    parent = lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS, scope="run-7")
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    child = lifecycle.spawn(running, 0, type="demo.steps", payload=STEPS)
    child = lifecycle.cancel("acme", child.id)
    again = lifecycle.rerun(tenant="acme", user="ann", job_id=child.id)
    assert again.parent_id is None and again.rerun_of == child.id and again.scope == "run-7"
    assert store.get(parent.id, mark_gone=False).children == [child.id]  # the parent lists its own child only


@pytest.mark.parametrize("status", ["queued", "running", "retrying"])
def test_an_unfinished_job_is_refused_and_nothing_is_written(lifecycle, store, queue, status):
    job = lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS)
    if status != "queued":
        job = lifecycle.claim(JobMessage(job.id, 1)).job
    if status == "retrying":
        job = lifecycle.fail_attempt(job, JobErrorInfo(code="boom", message="once"), retryable=True)
    assert job.status.value == status
    sent, listed = list(queue.sent), _all(store)
    with pytest.raises(JobNotFinishedError, match=f"job {job.id} is {status}") as refused:
        lifecycle.rerun(tenant="acme", user="ann", job_id=job.id)
    assert refused.value.code == "job_not_finished" and refused.value.details == {"status": status}
    assert queue.sent == sent and _all(store) == listed


def test_an_unknown_job_or_another_tenants_is_not_found(lifecycle, store, queue):
    original = failed_job(lifecycle)
    sent, listed = list(queue.sent), _all(store)
    for tenant, job_id in (("globex", original.id), ("acme", "no-such-job")):
        with pytest.raises(JobNotFoundError, match=f"job {job_id} not found"):
            lifecycle.rerun(tenant=tenant, user="bob", job_id=job_id)
    assert queue.sent == sent and _all(store) == listed


def test_a_payload_whose_object_is_gone_is_refused_as_gone(clock):
    blobs = InMemoryBlobStore(clock)
    store = InMemoryJobStore(blobs=blobs, inline_limit=16)
    queue = InMemoryJobQueue()
    lifecycle = JobLifecycle(store, queue, build_registry(demo_types=True), clock=clock)
    kept = failed_job(lifecycle)  # its payload past the store's inline limit: kept in the bucket
    assert store.get(kept.id, fetch=(), mark_gone=False).payload == {"claim_check": {"bytes": len(b'{"steps":2,"step_ms":0,"fail_at":null,"fail_mode":"retry","message_chars":0}')}}
    assert lifecycle.rerun(tenant="acme", user="ann", job_id=kept.id).payload == kept.payload  # read back

    gone = failed_job(lifecycle)
    blobs.delete([key for key in list(blobs.objects) if gone.id in key])
    sent, listed = list(queue.sent), _all(store)
    with pytest.raises(BlobNotFoundError, match=f"the payload of job {gone.id} is gone") as refused:
        lifecycle.rerun(tenant="acme", user="ann", job_id=gone.id)
    assert refused.value.code == "blob_not_found"
    assert queue.sent == sent and _all(store) == listed
    kept_again = lifecycle.rerun(tenant="acme", user="ann", job_id=kept.id, idempotency_key="again-3")
    blobs.delete([key for key in list(blobs.objects) if kept.id in key and kept_again.id not in key])
    # its key, repeated once the object is gone, still answers the job it made
    assert lifecycle.rerun(tenant="acme", user="ann", job_id=kept.id, idempotency_key="again-3") == kept_again


def test_a_type_no_longer_registered_is_refused_as_submit_refuses_it(lifecycle, store, queue, clock):
    original = failed_job(lifecycle)
    without_demo = JobLifecycle(store, queue, build_registry(demo_types=False), clock=clock)
    with pytest.raises(UnknownJobTypeError, match="unknown job type 'demo.steps'"):
        without_demo.rerun(tenant="acme", user="ann", job_id=original.id)


def test_a_maintenance_task_runs_again_only_with_the_authority_to_start_one(store, queue, clock):
    lifecycle = task_lifecycle(store, queue, clock)
    task = lifecycle.submit(tenant=SYSTEM_TENANT, user="ops", type="maintenance.health_check", payload={})
    task = lifecycle.cancel(SYSTEM_TENANT, task.id)
    with pytest.raises(UnknownJobTypeError, match="unknown job type 'maintenance.health_check'"):
        lifecycle.rerun(tenant=SYSTEM_TENANT, user="ops", job_id=task.id)
    again = lifecycle.rerun(tenant=SYSTEM_TENANT, user="ops", job_id=task.id, internal=True)
    assert again.type == "maintenance.health_check" and again.rerun_of == task.id


def test_quota_refuses_a_rerun_before_anything_is_written(lifecycle, store, queue):
    original = failed_job(lifecycle)
    sent, listed = list(queue.sent), _all(store)

    def refuse(tenant):
        raise QuotaExceededError("acme has 2 jobs waiting, as many as it may", retry_after_s=5)

    with pytest.raises(QuotaExceededError):
        lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, admit=refuse)
    assert queue.sent == sent and _all(store) == listed


def test_a_keyed_rerun_answers_its_job_again_and_a_key_names_one_request(lifecycle, queue):
    original = failed_job(lifecycle)
    other = failed_job(lifecycle)
    first = lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, idempotency_key="again-1")
    sent = list(queue.sent)
    assert lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, idempotency_key="again-1") == first
    assert queue.sent == sent

    def refuse(tenant):
        raise QuotaExceededError("full", retry_after_s=5)

    # a replay is answered even once the quota would refuse a new job, as a keyed submit's is
    assert lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, idempotency_key="again-1",
                           admit=refuse) == first
    for conflicting in (
        lambda: lifecycle.rerun(tenant="acme", user="ann", job_id=other.id, idempotency_key="again-1"),
        lambda: lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, delay_seconds=5,
                                idempotency_key="again-1"),
        lambda: lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS, priority="high",
                                 scope="run-7", idempotency_key="again-1"),
    ):
        with pytest.raises(IdempotencyConflictError):
            conflicting()
    assert queue.sent == sent


def _all(store):
    return {job_id: store.get(job_id, fetch=(), mark_gone=False) for job_id in list(store._jobs)}


def test_a_keyed_rerun_replayed_after_its_original_was_removed_answers_the_job_it_made(lifecycle, store, queue):
    """A client that timed out repeats its keyed rerun: the answer is the job the key made, even
    when the original has since been removed (retention, or its payload object gone), as long as
    the key is kept. Without the key, or under a key that made nothing for this job, it is 404."""
    original = failed_job(lifecycle)
    made = lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, idempotency_key="again-2")
    unrelated = lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS,
                                 idempotency_key="plain-1")
    store.mark_purging(original.id)
    store.delete_job(original.id)
    sent = list(queue.sent)
    assert lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, idempotency_key="again-2") == made
    for key in (None, "plain-1", "never-used"):
        with pytest.raises(JobNotFoundError, match=f"job {original.id} not found"):
            lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, idempotency_key=key)
    with pytest.raises(JobNotFoundError):  # another tenant's key of the same name answers nothing
        lifecycle.rerun(tenant="globex", user="gil", job_id=original.id, idempotency_key="again-2")
    assert queue.sent == sent and unrelated.rerun_of is None


def test_a_rerun_is_made_under_the_id_its_caller_gave(lifecycle):
    """POST /jobs/{id}/rerun and a maintenance task's rerun name the new job (`new_id`) and tell
    a job made from a keyed replay's answer by its id: one made under another id would be taken
    for a replay, left out of `jobs_submitted`, and a task's rerun answered as made by an
    earlier rerun under its Idempotency-Key."""
    from chalicelib.domain.job import new_job_id

    original = failed_job(lifecycle)
    given = new_job_id()
    assert lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, new_id=given).id == given


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_a_key_that_is_no_key_is_refused_when_the_original_is_gone_too(lifecycle, store, key):
    """A rerun of a removed job looks its key up first (a replay still answers): a key that is
    no key is refused 400 as a submit's is, not looked up and answered 404 (nor sent to
    DynamoDB, which refuses an empty key as a request it cannot serve)."""
    original = failed_job(lifecycle)
    store.mark_purging(original.id)
    store.delete_job(original.id)
    with pytest.raises(InvalidRequestError, match="Idempotency-Key"):
        lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, idempotency_key=key)


def test_a_keyed_rerun_replayed_once_its_key_expired_and_its_original_was_removed_is_not_found(
        lifecycle, store, clock):
    """A key past `key_ttl_s` answers nothing though DynamoDB's TTL has not taken its record yet
    (it may lag by days): the rerun it made is no answer to a rerun of a removed job then."""
    original = failed_job(lifecycle)
    lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, idempotency_key="again-4")
    store.mark_purging(original.id)
    store.delete_job(original.id)
    clock.advance(lifecycle.key_ttl_s + 1)
    assert store._keys[("acme", "again-4")] is not None  # the record is still there
    with pytest.raises(JobNotFoundError, match=f"job {original.id} not found"):
        lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, idempotency_key="again-4")


def test_a_keyed_rerun_replayed_after_both_payloads_went_answers_its_job_as_recorded(clock):
    """The original removed and the rerun's own payload object gone too (the bucket's lifecycle
    took both): the replay answers the job the key made as GET /jobs/{id} shows it, its payload
    named in `gone`, not an error for an object the answer does not need."""
    blobs = InMemoryBlobStore(clock)
    store = InMemoryJobStore(blobs=blobs, inline_limit=16)
    lifecycle = JobLifecycle(store, InMemoryJobQueue(), build_registry(demo_types=True), clock=clock)
    original = failed_job(lifecycle)  # its payload past the store's inline limit: kept in the bucket
    made = lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, idempotency_key="again-5")
    store.mark_purging(original.id)
    store.delete_job(original.id)
    blobs.delete(list(blobs.objects))
    again = lifecycle.rerun(tenant="acme", user="ann", job_id=original.id, idempotency_key="again-5")
    assert again.id == made.id and again.gone == ["payload"]


def test_a_keyed_task_start_answers_the_task_it_made_and_inline_refuses_the_key(store, queue, clock):
    """TaskRuns.start keyed as POST /jobs: the same task and parameters under a key answer the
    task it made, sending nothing; another task, other parameters or the task's rerun under it
    are IdempotencyConflictError. Inline a key is refused before the task runs."""
    lifecycle = task_lifecycle(store, queue, clock)
    runs = TaskRuns(lambda: None, lambda: lifecycle, inline=False)
    first = runs.start("cleanup_runs", {"max_age_hours": 48}, user="ops", idempotency_key="k1", control=TaskControl)
    assert first.made and first.job.type == "maintenance.cleanup_runs"
    sent = list(queue.sent)
    again = runs.start("cleanup_runs", {"max_age_hours": 48}, user="other", idempotency_key="k1", control=TaskControl)
    assert (again.job, again.made) == (first.job, False) and queue.sent == sent
    for task, payload in (("cleanup_runs", {"max_age_hours": 24}), ("cleanup_temp_files", {"max_age_hours": 48})):
        with pytest.raises(IdempotencyConflictError):
            runs.start(task, payload, user="ops", idempotency_key="k1", control=TaskControl)
    ended = lifecycle.cancel(SYSTEM_TENANT, first.job.id)
    with pytest.raises(IdempotencyConflictError):
        runs.rerun(ended, user="ops", idempotency_key="k1", control=TaskControl)
    assert queue.sent == sent and [j.id for j in store.list_jobs(JobQuery(tenant=SYSTEM_TENANT)).jobs] == [ended.id]

    def never() -> MaintenanceTasks:
        raise AssertionError("an inline start under a key ran the task")

    inline = TaskRuns(never, lambda: lifecycle, inline=True)
    with pytest.raises(InvalidRequestError, match="USE_TASK_QUEUE=false"):
        inline.start("health_check", {}, user="ops", idempotency_key="k2", control=TaskControl)


def test_a_task_started_is_the_callers_and_inline_runs_with_the_defaults_of_what_it_was_not_given(
        store, queue, clock):
    """Queued, the task is a job of SYSTEM_TENANT made for the operator who started it; inline,
    a parameter left out (the route passes only those given) runs at its default."""
    lifecycle = task_lifecycle(store, queue, clock)
    queued = TaskRuns(lambda: None, lambda: lifecycle, inline=False).start(
        "health_check", {}, user="ops-ann", control=TaskControl)
    assert (queued.job.tenant, queued.job.user, queued.job.type) == (SYSTEM_TENANT, "ops-ann", "maintenance.health_check")

    class Tasks:
        def run(self, task, payload, control):
            return {"task": task, "payload": payload}

    inline = TaskRuns(Tasks, lambda: lifecycle, inline=True).start("cleanup_runs", {}, user="ops-ann",
                                                                    control=TaskControl)
    assert inline.result == {"task": "cleanup_runs", "payload": {"max_age_hours": 24}}


def test_a_queued_rerun_of_a_continued_cleanup_is_the_rerunning_operators_and_starts_a_new_chain(
        store, queue, clock):
    """A rerun of the fourth run of a clean-up's chain is made for the operator who asked it,
    with the task's parameters, its count of runs from 0: counted on from the old chain, it
    would stop continuing sooner."""
    lifecycle = task_lifecycle(store, queue, clock)
    runs = TaskRuns(lambda: None, lambda: lifecycle, inline=False)
    fourth = runs.start("cleanup_runs", {"max_age_hours": 48, "follow_up": 3}, user="ops", control=TaskControl).job
    ended = lifecycle.cancel(SYSTEM_TENANT, fourth.id)
    again = runs.rerun(ended, user="ops-bob", idempotency_key=None, control=TaskControl).job
    assert again.payload == {"max_age_hours": 48, "follow_up": 0} and again.user == "ops-bob"


def test_a_keyed_queued_rerun_of_a_task_repeated_answers_the_task_it_made_as_not_made_again(store, queue, clock):
    lifecycle = task_lifecycle(store, queue, clock)
    runs = TaskRuns(lambda: None, lambda: lifecycle, inline=False)
    ended = lifecycle.cancel(SYSTEM_TENANT, runs.start("health_check", {}, user="ops", control=TaskControl).job.id)
    first = runs.rerun(ended, user="ops", idempotency_key="k1", control=TaskControl)
    again = runs.rerun(ended, user="ops", idempotency_key="k1", control=TaskControl)
    assert first.made and (again.job.id, again.made) == (first.job.id, False)


def test_an_inline_rerun_of_an_unfinished_task_or_under_a_key_runs_nothing(store, queue, clock):
    """Inline as queued, only a finished task runs again; and inline an Idempotency-Key is
    refused, as for a start: nothing is kept to answer its repeat."""
    lifecycle = task_lifecycle(store, queue, clock)
    queued = TaskRuns(lambda: None, lambda: lifecycle, inline=False).start("health_check", {}, user="ops",
                                                                            control=TaskControl).job

    def never() -> MaintenanceTasks:
        raise AssertionError("the task ran")

    inline = TaskRuns(never, lambda: lifecycle, inline=True)
    with pytest.raises(JobNotFinishedError):
        inline.rerun(queued, user="ops", idempotency_key=None, control=TaskControl)
    ended = lifecycle.cancel(SYSTEM_TENANT, queued.id)
    with pytest.raises(InvalidRequestError, match="USE_TASK_QUEUE=false"):
        inline.rerun(ended, user="ops", idempotency_key="k1", control=TaskControl)


def test_a_keyed_queued_rerun_of_a_removed_task_is_found_under_its_key_only(store, queue, clock):
    """Once the clean-up removed a task, the rerun a key made of it is still answered under that
    key (queued, the key is kept); asked without a key, there is none to look under."""
    lifecycle = task_lifecycle(store, queue, clock)
    runs = TaskRuns(lambda: None, lambda: lifecycle, inline=False)
    ended = lifecycle.cancel(SYSTEM_TENANT, runs.start("health_check", {}, user="ops", control=TaskControl).job.id)
    made = runs.rerun(ended, user="ops", idempotency_key="k1", control=TaskControl).job
    store.mark_purging(ended.id)
    store.delete_job(ended.id)
    assert runs.rerun_made(ended.id, idempotency_key="k1").id == made.id
    assert runs.rerun_made(ended.id, idempotency_key=None) is None


def test_an_inline_rerun_of_a_removed_task_looks_for_no_kept_key():
    """Inline nothing is kept under an Idempotency-Key, so a keyed rerun of a task the clean-up
    removed has no task it made to answer with: rerun_made answers None without building the
    lifecycle or reading the table (the rerun then answers the task not found)."""
    def no_lifecycle() -> JobLifecycle:
        raise AssertionError("an inline rerun looked for a kept key")

    inline = TaskRuns(lambda: None, no_lifecycle, inline=True)
    assert inline.rerun_made("gone-task", idempotency_key="k1") is None


def test_a_rerun_whose_message_was_not_sent_is_sent_by_the_reconciler_and_runs(lifecycle, store, queue, clock):
    """The queue does not take the rerun's first message: the rerun is stored queued with its due
    time all the same (answered 202), and the reconciler sends it once it is due."""
    from chalicelib.adapters.memory import InMemoryQueueOperations
    from chalicelib.defaults import DISPATCH_GRACE_S
    from chalicelib.reconciler import Reconciler

    original = failed_job(lifecycle)
    queue.drain()
    queue.fail_sends = True
    again = lifecycle.rerun(tenant="acme", user="bob", job_id=original.id)
    queue.fail_sends = False
    assert again.status == JobStatus.QUEUED and queue.drain() == []
    clock.advance(DISPATCH_GRACE_S + 1)
    assert Reconciler(lifecycle, InMemoryQueueOperations(queue)).run_pass().counts == {"redispatched": 1}
    assert lifecycle.claim(queue.drain()[0]).job.id == again.id
