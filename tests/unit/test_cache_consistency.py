"""A completion invalidates its scope's caches in its own write (the in-memory twin of the
DynamoDB transaction), and the event path does not invalidate a second time."""
from chalicelib.adapters.clocks import SystemClock
from chalicelib.adapters.memory import InMemoryJobStore
from chalicelib.adapters.memory_events import InMemoryCacheStore, InMemoryEventPublisher
from chalicelib.domain.events import JobEvent
from chalicelib.domain.status import JobStatus
from chalicelib.domain.events import JobEvent
from chalicelib.job_types import build_registry
from chalicelib.lifecycle import JobLifecycle
from chalicelib.subscribers.cache import CacheInvalidator, load_rules
from chalicelib.worker.runner import JobRunner

registry = build_registry(demo_types=True)

RULES = load_rules()


def make(queue, clock):
    caches = InMemoryCacheStore()
    store = InMemoryJobStore(caches)
    lifecycle = JobLifecycle(store, queue, registry, clock=clock, caches_of=RULES.namespaces_for)
    return caches, store, lifecycle, JobRunner(lifecycle, registry, clock=SystemClock(), progress_interval_s=0)


def run(lifecycle, runner, queue, **submission):
    job = lifecycle.submit(tenant="acme", user="ann", **submission)
    for message in queue.drain():
        runner.run(message)
    return lifecycle.store.get(job.id, mark_gone=False)


def test_the_completion_write_invalidates_what_the_rules_name(queue, clock):
    caches, store, lifecycle, runner = make(queue, clock)
    caches.put("acme", "p-1", "steps-summary", {"old": 1}, "2026-01-01T00:00:00.000Z")
    caches.put("acme", "p-1", "other", {"old": 1}, "2026-01-01T00:00:00.000Z")
    job = run(lifecycle, runner, queue, type="demo.steps", payload={"steps": 1, "step_ms": 0}, scope="p-1")
    assert job.status == JobStatus.COMPLETED
    entry = caches.get("acme", "p-1", "steps-summary")
    assert not entry.hit and entry.generation == 1 and entry.invalidated_by == job.id
    assert entry.invalidated_at == job.finished_at
    assert caches.get("acme", "p-1", "steps-report").generation == 1
    assert caches.get("acme", "p-1", "other").hit


def test_the_completion_write_records_the_scopes_task_completion(queue, clock):
    """`/scopes/{scope}/tasks` shows a completion as soon as the job reads completed, as a
    worker's `prep.timestamp()` did: recorded in the completion's own write, also for a type
    whose completion invalidates no namespace."""
    caches, store, lifecycle, runner = make(queue, clock)
    steps = run(lifecycle, runner, queue, type="demo.steps", payload={"steps": 1, "step_ms": 0}, scope="p-4")
    model = run(lifecycle, runner, queue, type="demo.model", payload={"step_ms": 0}, scope="p-4")
    assert steps.status == model.status == JobStatus.COMPLETED and RULES.namespaces_for("demo.model") == []
    assert sorted((c.type, c.completed_at, c.job_id) for c in caches.completions("acme", "p-4")) == [
        ("demo.model", model.finished_at, model.id), ("demo.steps", steps.finished_at, steps.id)]
    failed = run(lifecycle, runner, queue, type="demo.steps", scope="p-5",
                 payload={"steps": 1, "step_ms": 0, "fail_at": 1, "fail_mode": "fatal"})
    assert failed.status == JobStatus.FAILED and caches.completions("acme", "p-5") == []


def test_only_a_completion_with_a_scope_invalidates(queue, clock):
    caches, store, lifecycle, runner = make(queue, clock)
    caches.put("acme", "p-2", "steps-summary", {"old": 1}, "2026-01-01T00:00:00.000Z")
    failed = run(lifecycle, runner, queue, type="demo.steps", scope="p-2",
                 payload={"steps": 1, "step_ms": 0, "fail_at": 1, "fail_mode": "fatal"})
    assert failed.status == JobStatus.FAILED
    run(lifecycle, runner, queue, type="demo.steps", payload={"steps": 1, "step_ms": 0})
    assert caches.get("acme", "p-2", "steps-summary").hit


def test_the_event_path_does_not_invalidate_what_the_completion_did(queue, clock):
    caches, store, lifecycle, runner = make(queue, clock)
    job = run(lifecycle, runner, queue, type="demo.steps", payload={"steps": 1, "step_ms": 0}, scope="p-3")
    caches.put("acme", "p-3", "steps-summary", {"fresh": 1}, job.finished_at, expected_generation=1)
    publisher = InMemoryEventPublisher()
    event = JobEvent(event_id="e1", event_type="job.status.changed", timestamp=job.finished_at, job_id=job.id,
                     status="completed", progress=100, attempt=1, previous_status="running", previous_progress=100,
                     tenant="acme",
                     type="demo.steps", scope="p-3", version=job.version)
    announced = CacheInvalidator(caches, RULES, publisher).handle(event)
    assert announced.namespaces == ["steps-summary", "steps-report"]
    assert caches.get("acme", "p-3", "steps-summary").hit  # stored after the completion: still good
    # another job's completion does invalidate again
    assert caches.invalidate("acme", "p-3", "steps-summary", "another-job", job.finished_at) == 2


def test_a_completion_with_no_scope_writes_no_scopes_caches(queue, clock):
    caches, store, lifecycle, runner = make(queue, clock)
    job = run(lifecycle, runner, queue, type="demo.steps", payload={"steps": 1, "step_ms": 0})
    assert job.status == JobStatus.COMPLETED and job.scope is None
    assert caches.completions("acme", "") == [] and caches.get("acme", "", "steps-summary").generation == 0
