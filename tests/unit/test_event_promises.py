"""The event path against docs/events.md and seed 002: each test states a promise the docs make
(a 10-point move is an event, an earlier attempt's error is not a later event's, a late
completion event does not invalidate a fresher cache value). In-memory adapters only; every write is one
stream record, so the events a subscriber gets are `events_for_change` of consecutive
versions of the job."""
from __future__ import annotations

from chalicelib.adapters.memory_events import InMemoryCacheStore, InMemoryEventPublisher
from chalicelib.domain.caches import InvalidationRules
from chalicelib.domain.job import JobErrorInfo
from chalicelib.events.changes import events_for_change
from chalicelib.ports import JobMessage
from chalicelib.subscribers.cache import CacheInvalidator

STEPS = {"steps": 4, "step_ms": 0}
T = "2026-01-01T00:00:00.000Z"


class Tap:
    """The job's writes as the stream sees them: each call must be one write (one version)."""

    def __init__(self, store, job_id):
        self.store = store
        self.job_id = job_id
        self.last = store.get(job_id, mark_gone=False)
        self.events = events_for_change(None, self.last, T)

    def step(self):
        new = self.store.get(self.job_id, mark_gone=False)
        assert new.version == self.last.version + 1, "one write per step"
        produced = events_for_change(self.last, new, T)
        self.events += produced
        self.last = new
        return produced


def _submit(lifecycle, **extra):
    return lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS, **extra)


def test_a_move_of_exactly_ten_points_is_a_progress_event(lifecycle, store):
    """docs/events.md: `job.status.progress` when progress "moves by 10 points or more since the
    attempt's last event" (seed 002: "Significant progress changes (>=10%)"). 12.4 -> 22.4 is a
    move of 10 points, but 22.4 - 12.4 == 9.999999999999998 in floating point, so
    `is_notable_change` (domain/progress.py) says no and the ERP never hears of 22.4 (about
    one move in ten of 10.0 points at one decimal is lost this way)."""
    job = _submit(lifecycle)
    tap = Tap(store, job.id)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    tap.step()
    running = lifecycle.report_progress(running, 12.4)
    assert [e.progress for e in tap.step()] == [12.4]  # 0 -> 12.4: a move of 10 or more
    lifecycle.report_progress(running, 22.4)
    produced = tap.step()
    assert [(e.event_type, e.previous_progress, e.progress) for e in produced] == [
        ("job.status.progress", 12.4, 22.4)
    ]


def test_an_event_after_a_successful_retry_carries_no_error_of_the_failed_attempt(lifecycle, store, clock):
    """docs/events.md: events carry `error` "on failure" (the example progress event: `"error":
    null`). A job whose attempt 1 failed and was retried keeps attempt 1's error on its record:
    the claim of attempt 2 does not clear it and neither does the completion, so attempt 2's
    `running` event and the job's `completed` event both carry `{"code": "boom", ...}`: an ERP
    reading `error` sees a completed job as failed."""
    job = _submit(lifecycle)
    tap = Tap(store, job.id)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    tap.step()
    lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="attempt 1 broke"), retryable=True)
    (retrying,) = tap.step()
    assert retrying.status == "retrying" and retrying.error["code"] == "boom"  # the failure: right
    clock.advance(900)
    running = lifecycle.claim(JobMessage(job.id, 2)).job
    (started,) = tap.step()
    lifecycle.complete(running, {"ok": True})
    (completed,) = tap.step()
    assert (started.status, started.attempt) == ("running", 2)
    assert (completed.status, completed.attempt) == ("completed", 2)
    assert (started.error, completed.error) == (None, None)


LATE_EVENT_PROMISE = (
    "its own invalidation bumps a namespace's generation only if its last invalidation (`invalidated_at`, "
    "`invalidated_by`) is older than the job's `finished_at`, or as old and by another job"
)


def test_a_late_completion_event_does_not_invalidate_a_value_recomputed_after_it(lifecycle, store, clock):
    """docs/events.md (Scope caches) states the event path's condition as LATE_EVENT_PROMISE
    (not `invalidated_by` alone, which a later completion's write has changed). Two jobs of one
    type complete in the same scope (A, then B); each completion's own write invalidated the
    namespace. A reader recomputes after both and PUTs with the generation its miss reported.
    B's event comes, then A's, late (the queue backed off, or the stream batch was replayed):
    `invalidated_by` is B, not A, yet neither bumps the generation: the fresh value stays a hit."""
    from pathlib import Path

    doc = " ".join((Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text().split())
    assert LATE_EVENT_PROMISE in doc
    caches = InMemoryCacheStore()
    store.caches = caches
    lifecycle.caches_of = lambda job_type: ("steps-summary",) if job_type == "demo.steps" else ()
    taps = {}
    finished = []
    for _ in range(2):
        job = _submit(lifecycle, scope="proj")
        tap = taps[job.id] = Tap(store, job.id)
        running = lifecycle.claim(JobMessage(job.id, 1)).job
        tap.step()
        clock.advance(1)
        lifecycle.complete(running, {"ok": True})
        (event,) = tap.step()
        finished.append(event)
    a, b = finished
    miss = caches.get("acme", "proj", "steps-summary")
    assert not miss.hit and miss.invalidated_by == b.job_id  # both completions invalidated it
    caches.put("acme", "proj", "steps-summary", {"sum": 2}, T, expected_generation=miss.generation)
    invalidator = CacheInvalidator(caches, InvalidationRules.model_validate({"demo.steps": ["steps-summary"]}),
                                   InMemoryEventPublisher())
    invalidator.handle(b)  # B's event: its own write did it, nothing more
    assert caches.get("acme", "proj", "steps-summary").hit
    invalidator.handle(a)  # A's event, late
    after = caches.get("acme", "proj", "steps-summary")
    assert after.hit, f"recomputed value invalidated again by the older completion {after.invalidated_by}"


def _documented_verification():
    """The receiver's check as docs/events.md writes it, to run as a receiver would."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    (code,) = re.findall(r"`(hmac\.compare_digest\(.+?\))`", doc)
    return compile(code, "docs/events.md", "eval")


def test_a_receiver_implementing_the_documented_check_verifies_every_delivery(lifecycle, store):
    """docs/events.md: a receiver verifies `X-Jobpipe-Signature` with the documented line, on the
    body as received and the secret as configured (text), whatever the event's text."""
    import hashlib
    import hmac
    import json

    from chalicelib.subscribers.erp import ErpBridge

    secret = "s3cret-ünïcode-" + "k" * 32
    tap = Tap(store, _submit(lifecycle).id)
    detail = json.loads(tap.events[0].model_dump_json())
    detail["message"] = "naïve → 処理中 \U0001F600 \"quoted\" \\ </script>"
    body, headers = ErpBridge(object(), "https://erp.example/hook", secret).request_for(detail)
    check = _documented_verification()
    names = {"hmac": hmac, "hashlib": hashlib, "sha256": hashlib.sha256, "secret": secret}
    assert eval(check, {**names, "body": body, "header": headers["X-Jobpipe-Signature"]})
    assert json.loads(body)["event_id"] == headers["X-Jobpipe-Event-Id"]
    tampered = body.replace(b'"status":"queued"', b'"status":"failed"')
    assert tampered != body
    assert not eval(check, {**names, "body": tampered, "header": headers["X-Jobpipe-Signature"]})


def test_an_events_timestamp_is_the_streams_second_and_can_read_before_finished_at(lifecycle, clock):
    """docs/events.md: `timestamp` is DynamoDB Streams' ApproximateCreationDateTime, whole
    seconds on AWS, so a job that ended at .734 s shows a timestamp of .000 s, before its
    `finished_at`; `finished_at` is the time to take as the job's end."""
    from datetime import datetime

    from chalicelib.adapters.dynamodb_items import job_key, job_to_item
    from chalicelib.adapters.dynamodb_stream import job_change
    from chalicelib.domain.job import parse_time

    job = lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    clock.advance(2.734)
    done = lifecycle.complete(running, {"ok": True})
    assert done.finished_at.endswith(".734Z")
    second = int(parse_time(done.finished_at).timestamp())  # as AWS sends it: the second, rounded down
    change = job_change({"dynamodb": {"Keys": job_key(done.id), "ApproximateCreationDateTime": float(second),
                                      "OldImage": job_to_item(running), "NewImage": job_to_item(done)}})
    (event,) = events_for_change(change.old, change.new, change.timestamp)
    assert event.finished_at == done.finished_at
    assert event.timestamp == datetime.fromtimestamp(second, parse_time(done.finished_at).tzinfo).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")
    assert event.timestamp.endswith(".000Z") and event.timestamp < event.finished_at


def test_a_stream_record_without_a_creation_time_is_timed_by_the_write_it_carries(lifecycle, clock):
    """A record carrying no ApproximateCreationDateTime (an emulator's) is timed by the latest
    time the job's new image names, not by when it is read: the same timestamp on every
    delivery and on a replay hours later, never after the write."""
    from chalicelib.adapters.dynamodb_items import job_key, job_to_item
    from chalicelib.adapters.dynamodb_stream import job_change

    job = lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    clock.advance(2.5)
    done = lifecycle.complete(running, {"ok": True})
    writes = [(None, job, job.created_at), (job, running, running.attempt_started_at),
              (running, done, done.finished_at)]
    for old, new, written in writes:
        record = {"dynamodb": {"Keys": job_key(new.id), "NewImage": job_to_item(new),
                               **({"OldImage": job_to_item(old)} if old else {})}}
        first = job_change(record).timestamp
        clock.advance(3600)  # read again an hour later: a redelivery, a replay
        assert first == job_change(record).timestamp == written, new.status


def test_reports_coalesced_past_two_milestones_are_one_event_from_the_last_one(lifecycle, store):
    """docs/events.md: an event is of a write. 5, 30 and 60 reported within one 2 s window are
    written once, at 60: one `job.status.progress` whose previous_progress is the last event's
    (the running transition's 0), so a receiver reads 25 and 50 as reached between them."""
    from chalicelib.adapters.clocks import ManualClock
    from chalicelib.worker.progress import ProgressReporter

    job = _submit(lifecycle)
    tap = Tap(store, job.id)
    running = lifecycle.claim(JobMessage(job.id, 1)).job
    tap.step()
    window = ManualClock(start=1000.0)
    reporter = ProgressReporter(running, lifecycle.record_progress, clock=window, min_interval_s=2.0)
    for percent in (5, 30, 60):
        reporter.report(percent)
    window.advance(2.0)
    assert [(e.event_type, e.previous_progress, e.progress) for e in tap.step()] == [
        ("job.status.progress", 0, 60)]


def test_events_of_racing_completions_do_not_invalidate_a_value_recomputed_after_both(lifecycle, store, clock):
    """docs/events.md (Scope caches): neither a redelivered event nor a late one "invalidates a
    second time a value recomputed after those completions". Two jobs of one type complete in
    one scope at once, as a fan-out's children do: B's completion lands after A's, its
    `finished_at` taken a moment before A's (or in the same millisecond), so the namespace's
    last invalidation reads older than A's completion, or as old and by another job. Each
    completion's own write invalidated it, and a reader recomputes after both: no delivery of
    either event (each twice, in any order) may make that value a miss."""
    from datetime import timedelta

    caches = InMemoryCacheStore()
    store.caches = caches
    lifecycle.caches_of = lambda job_type: ("steps-summary",) if job_type == "demo.steps" else ()
    invalidator = CacheInvalidator(caches, InvalidationRules.model_validate({"demo.steps": ["steps-summary"]}),
                                   InMemoryEventPublisher())
    for b_earlier_by_ms in (1, 0):  # B's time a millisecond before A's, then the same millisecond
        taps, running = {}, []
        for _ in range(2):
            job = _submit(lifecycle, scope=f"race-{b_earlier_by_ms}")
            taps[job.id] = Tap(store, job.id)
            running.append(lifecycle.claim(JobMessage(job.id, 1)).job)
            taps[job.id].step()
        clock.advance(1)
        events = []
        for job, back_ms in zip(running, (0, b_earlier_by_ms)):  # A lands first, then B
            clock.now -= timedelta(milliseconds=back_ms)
            lifecycle.complete(job, {"ok": True})
            (event,) = taps[job.id].step()
            events.append(event)
        a, b = events
        scope = a.scope
        miss = caches.get("acme", scope, "steps-summary")
        caches.put("acme", scope, "steps-summary", {"sum": 2}, T, expected_generation=miss.generation)
        for event in (a, b, a, b):
            invalidator.handle(event)
            entry = caches.get("acme", scope, "steps-summary")
            assert entry.hit, (f"B {b_earlier_by_ms} ms before A: the value recomputed after both completions "
                               f"was invalidated again by {event.job_id == a.job_id and 'A' or 'B'}'s event")
