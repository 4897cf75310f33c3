"""The transition -> event mapping, stream-order publishing, and the subscribers' rules."""
import json
import re

import pytest

from chalicelib.adapters.memory_events import InMemoryCacheStore, InMemoryEventPublisher
from chalicelib.domain.caches import InvalidationRules
from chalicelib.domain.errors import EventPublishError, WebhookDeliveryError, WebhookRefusedError
from chalicelib.domain.events import event_id_for
from chalicelib.domain.job import Job, JobErrorInfo, Progress
from chalicelib.domain.status import JobStatus
from chalicelib.events.changes import events_for_change
from chalicelib.events.publishing import publish_changes
from chalicelib.ports import JobChange, WebhookAnswer
from chalicelib.subscribers.cache import CacheInvalidator, load_rules
from chalicelib.subscribers.erp import ErpBridge, sign, verify

T = "2026-01-01T00:00:00.000Z"


def job(version=1, status=JobStatus.QUEUED, percent=0.0, attempts=0, **extra):
    return Job(id="job-1", type="demo.steps", tenant="acme", user="ann", created_at=T, version=version,
               status=status, attempts=attempts, progress=Progress(percent=percent, step="s", message="m"), **extra)


def test_creation_is_a_transition_into_queued():
    (event,) = events_for_change(None, job(), T)
    assert event.event_type == "job.status.changed"
    assert (event.previous_status, event.status, event.previous_progress) == (None, "queued", None)
    assert event.event_id == event_id_for("job-1", 1)


def test_status_change_carries_the_seeds_fields():
    old = job(2, JobStatus.RUNNING, 40, attempts=1)
    new = job(3, JobStatus.FAILED, 40, attempts=1, error=JobErrorInfo(code="boom", message="x"))
    (event,) = events_for_change(old, new, T)
    detail = json.loads(event.model_dump_json())
    assert {k: detail[k] for k in ("status", "previous_status", "progress", "previous_progress", "attempt", "version")} == {
        "status": "failed", "previous_status": "running", "progress": 40, "previous_progress": 40,
        "attempt": 1, "version": 3,
    }
    assert detail["error"] == {"code": "boom", "message": "x"}
    for field in ("event_id", "event_type", "timestamp", "job_id", "step", "message", "tenant", "type", "scope"):
        assert field in detail


@pytest.mark.parametrize("announced, expected", [(False, []), (True, ["job.status.progress"])])
def test_a_progress_write_is_an_event_when_it_announced_its_progress(announced, expected):
    """The write side decides (lifecycle.record_progress moves `event_percent`); the stream
    side publishes what the write announced, measured from the attempt's last event."""
    old = job(4, JobStatus.RUNNING, 21.0, attempts=1, event_percent=15.0)
    new = job(5, JobStatus.RUNNING, 26.0, attempts=1, event_percent=26.0 if announced else 15.0)
    events = events_for_change(old, new, T)
    assert [e.event_type for e in events] == expected
    if events:
        assert (events[0].previous_progress, events[0].progress) == (15.0, 26.0)


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING])
def test_a_write_that_leaves_progress_at_zero_publishes_nothing(status):
    """A cancel request, the reconciler's due-time bookkeeping or a handler's "started" report
    bump the version at 0 %: the 0 milestone went out with the transition, not again."""
    attempts = 1 if status == JobStatus.RUNNING else 0
    old = job(4, status, 0.0, attempts=attempts)
    for change in ({"cancel_requested": True}, {"due_at": "2026-01-01T00:05:00.000Z"},
                   {"progress": Progress(percent=0.0, step="started", message="Beginning processing")}):
        assert events_for_change(old, job(5, status, 0.0, attempts=attempts).model_copy(update=change), T) == []


def test_a_transition_says_the_progress_of_the_write_before_it_not_the_attempts_last_event():
    """A status change's `previous_progress` is what the job showed just before it (its last
    write's percent): a subscriber drawing a job's progress sees where it stood when it ended.
    Only a progress event measures from the attempt's last event."""
    old = job(4, JobStatus.RUNNING, 21.0, attempts=1, event_percent=15.0, event_attempt=1)
    (event,) = events_for_change(old, job(5, JobStatus.COMPLETED, 100.0, attempts=1), T)
    assert (event.previous_progress, event.progress) == (21.0, 100.0)


def test_a_write_that_starts_another_attempt_without_a_status_change_is_no_progress_event():
    """The mark belongs to its attempt: a write under another attempt moves it without having
    announced progress (no write does so today: a claim is a transition), and a progress event
    measured from another attempt's mark would say a move the job never made."""
    old = job(4, JobStatus.RUNNING, 40.0, attempts=1, event_percent=40.0, event_attempt=1)
    new = job(5, JobStatus.RUNNING, 0.0, attempts=2, event_percent=0.0, event_attempt=2)
    assert events_for_change(old, new, T) == []


def test_a_step_longer_than_a_label_is_cut_to_one_in_the_event():
    """A step is a label (MAX_LABEL_CHARS), checked where progress is written; a record that
    holds a longer one (an older version's, an edit by hand) still gives an event that carries
    no more than a label, as the error's code does."""
    from chalicelib.defaults import MAX_LABEL_CHARS

    new = job(2, JobStatus.RUNNING, attempts=1).model_copy(
        update={"progress": Progress(percent=0.0, step="s" * (MAX_LABEL_CHARS + 5))})
    (event,) = events_for_change(job(1), new, T)
    assert event.step == "s" * (MAX_LABEL_CHARS - 1) + "\u2026"


def test_a_progress_event_carries_no_error_even_when_the_record_holds_one():
    """The error is a transition's (failed, retrying): a progress event of a record still
    holding an earlier attempt's error (a version that kept it on the next attempt) says none,
    so no subscriber takes a running job for a failing one."""
    earlier = JobErrorInfo(code="boom", message="x")
    old = job(4, JobStatus.RUNNING, 20.0, attempts=2, event_percent=20.0, error=earlier)
    new = job(5, JobStatus.RUNNING, 50.0, attempts=2, event_percent=50.0, error=earlier)
    (event,) = events_for_change(old, new, T)
    assert (event.event_type, event.error) == ("job.status.progress", None)


def test_an_error_longer_than_its_limits_is_cut_in_the_event():
    """An event carries an error's code as a label (MAX_LABEL_CHARS) and its message as an
    event text (MAX_EVENT_TEXT_CHARS), whatever the record holds: an entry keeps under
    PutEvents' size limit and a subscriber's field under what it stores."""
    from chalicelib.defaults import MAX_EVENT_TEXT_CHARS, MAX_LABEL_CHARS

    error = JobErrorInfo(code="c" * (MAX_LABEL_CHARS + 1), message="m" * (MAX_EVENT_TEXT_CHARS + 1))
    (event,) = events_for_change(job(2, JobStatus.RUNNING, attempts=1),
                                 job(3, JobStatus.FAILED, attempts=1, error=error), T)
    assert event.error == {"code": "c" * (MAX_LABEL_CHARS - 1) + "\u2026",
                           "message": "m" * (MAX_EVENT_TEXT_CHARS - 1) + "\u2026"}


def test_only_an_ended_job_s_event_says_when_it_finished():
    """`finished_at` is a terminal status's (docs/events.md): a record that holds one while the
    job has not ended (an edit by hand, a restore) gives an event that says no end."""
    new = job(2, JobStatus.RUNNING, attempts=1, finished_at="2026-01-01T00:01:00.000Z")
    (event,) = events_for_change(job(1), new, T)
    assert event.finished_at is None


def test_replayed_or_deleted_records_produce_nothing():
    assert events_for_change(job(3), job(3), T) == []
    assert events_for_change(job(3), None, T) == []


def test_a_record_that_is_no_newer_write_of_its_job_produces_nothing():
    """Only a write that raised the version is one: an item put back as it was (a restore, an
    edit by hand) would otherwise publish a transition again, under an id already used."""
    running = job(3, JobStatus.RUNNING, 40, attempts=1)
    for version in (3, 2):
        assert events_for_change(running, job(version, JobStatus.COMPLETED, 100, attempts=1), T) == []


def test_an_event_id_is_read_when_it_is_one_to_max_event_id_chars_long():
    from chalicelib.defaults import MAX_EVENT_ID_CHARS
    from chalicelib.domain.events import event_detail

    for event_id in ("e", "e" * MAX_EVENT_ID_CHARS):
        assert event_detail(json.dumps({"detail": {"event_id": event_id}})) == {"event_id": event_id}
    for event_id in ("", "e" * (MAX_EVENT_ID_CHARS + 1)):
        with pytest.raises(ValueError, match="not a jobpipe event"):
            event_detail(json.dumps({"detail": {"event_id": event_id}}))


def test_an_event_text_is_cut_to_its_limit_with_an_ellipsis_only_when_longer():
    from chalicelib.domain.events import clip

    assert clip("abc", 3) == "abc" and clip(None, 3) is None
    assert clip("abcd", 3) == "ab\u2026"


def test_a_subscriber_reads_an_event_with_fields_a_newer_version_added():
    from chalicelib.domain.events import JobEvent

    detail = json.loads(completed().model_dump_json())
    assert JobEvent.read({**detail, "added_later": {"x": 1}}) == JobEvent.model_validate(detail)


def test_a_bare_detail_is_read_as_the_event_it_is():
    """A subscriber's queue may hold an event's detail without the EventBridge envelope (a
    message sent by hand, a redrive tool that kept only the detail): it is still the event,
    not a body to refuse."""
    from chalicelib.domain.events import event_detail

    assert event_detail(json.dumps({"event_id": "e", "status": "queued"})) == {"event_id": "e", "status": "queued"}


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '"text"', json.dumps({"detail": "text"}),
                                  json.dumps({"detail": {"event_id": 12345}}), json.dumps({"detail": {}})])
def test_a_body_that_is_no_jobpipe_event_is_refused_naming_it(body):
    """Whatever a queue holds that is no event (no JSON, no object, an id that is no text), the
    subscriber is told so as one ValueError that quotes the body: it fails alone, never its
    batch's ledger request with a TypeError or an AttributeError."""
    from chalicelib.domain.events import event_detail

    with pytest.raises(ValueError, match="not a jobpipe event: " + re.escape(repr(body[:200]))):
        event_detail(body)


def test_an_event_id_is_its_write_s_and_its_kind_s():
    """Each kind of event of one job write has its own id: a cache invalidation that shares its
    completion's id would be dropped as that event's duplicate by a subscriber of both."""
    assert event_id_for("job-1", 3, "cache") != event_id_for("job-1", 3)
    assert event_id_for("job-1", 3, "cache") == event_id_for("job-1", 3, "cache")


def test_an_event_s_whole_percents_are_written_without_a_fraction():
    """Seed 002 writes a whole percent as `50`, not `50.0`: a subscriber decoding it into an
    integer (Go's and Rust's JSON libraries) refuses `50.0`. Both the progress and the previous
    one; any other percent as it is."""
    old = job(4, JobStatus.RUNNING, 20.0, attempts=1)
    (event,) = events_for_change(old, job(5, JobStatus.FAILED, 40.0, attempts=1), T)
    detail = json.loads(event.model_dump_json())
    assert (detail["progress"], detail["previous_progress"]) == (40, 20)
    assert isinstance(detail["progress"], int) and isinstance(detail["previous_progress"], int)
    (event,) = events_for_change(old, job(5, JobStatus.FAILED, 33.33, attempts=1), T)
    assert json.loads(event.model_dump_json())["progress"] == 33.33


def test_publishing_builds_events_that_carry_exactly_their_fields():
    """What jobpipe publishes is its contract (docs/events.md): building an event refuses a
    field it does not define and one it must carry left out, so no event goes out with a field
    a subscriber was never told of, or without the job it is about. Subscribers read with
    `JobEvent.read`, which leaves unknown fields out instead."""
    from pydantic import ValidationError

    from chalicelib.domain.events import CacheInvalidatedEvent, JobEvent

    detail = json.loads(completed().model_dump_json())
    with pytest.raises(ValidationError):
        JobEvent.model_validate({**detail, "added_later": 1})
    cache = {"event_id": "e", "timestamp": T, "tenant": "acme", "scope": "proj", "namespaces": ["n"],
             "job_id": "job-1", "type": "demo.steps"}
    assert CacheInvalidatedEvent.model_validate(cache).job_id == "job-1"
    with pytest.raises(ValidationError):
        CacheInvalidatedEvent.model_validate({**cache, "added_later": 1})
    with pytest.raises(ValidationError):
        CacheInvalidatedEvent.model_validate({k: v for k, v in cache.items() if k != "job_id"})


def test_same_write_gives_the_same_event_id():
    a = events_for_change(job(1), job(2, JobStatus.RUNNING, attempts=1), T)[0]
    b = events_for_change(job(1), job(2, JobStatus.RUNNING, attempts=1), "2027-01-01T00:00:00.000Z")[0]
    assert a.event_id == b.event_id


def changes(n):
    out, previous = [], None
    statuses = [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED]
    for i in range(n):
        current = job(i + 1, statuses[min(i, 2)] if i < 3 else JobStatus.COMPLETED, attempts=1 if i else 0)
        out.append(JobChange(f"seq-{i}", previous, current, T))
        previous = current
    return out


def test_publishing_keeps_stream_order_and_reports_where_it_stopped():
    publisher = InMemoryEventPublisher()
    assert publish_changes(changes(3), publisher) is None
    assert [e.status for e in publisher.published] == ["queued", "running", "completed"]
    failing = InMemoryEventPublisher()
    failing.fail_next = 1
    assert publish_changes(changes(3), failing) == "seq-0"


def test_a_publisher_that_cannot_say_which_events_failed_stops_the_batch_at_its_first():
    """An EventPublishError naming no unpublished events may have lost any of them: the stream
    is retried from the first change of the chunk, not taken for all published."""
    from chalicelib.domain.errors import EventPublishError

    class Unsure:
        def publish(self, events):
            raise EventPublishError("PutEvents did not answer")

    assert EventPublishError("PutEvents did not answer").unpublished == []
    assert publish_changes(changes(3), Unsure()) == "seq-0"


def test_eventbridge_adapter_retries_failed_entries_and_raises_what_never_went_through():
    from chalicelib.adapters.eventbridge import EventBridgePublisher

    events = events_for_change(None, job(), T) + events_for_change(job(1), job(2, JobStatus.RUNNING, attempts=1), T)

    class Client:
        def __init__(self, failures):
            self.calls, self.failures = [], failures

        def put_events(self, Entries):
            self.calls.append([json.loads(e["Detail"])["event_id"] for e in Entries])
            failed = self.failures.pop(0) if self.failures else set()
            results = [{"ErrorCode": "InternalFailure"} if i in failed else {"EventId": "x"} for i in range(len(Entries))]
            return {"FailedEntryCount": len(failed), "Entries": results}

    client = Client([{1}])
    EventBridgePublisher(client, "bus", sleep=lambda s: None).publish(events)
    assert client.calls == [[events[0].event_id, events[1].event_id], [events[1].event_id]]
    stubborn = Client([{0}] * 10)
    with pytest.raises(EventPublishError) as info:
        EventBridgePublisher(stubborn, "bus", sleep=lambda s: None).publish(events)
    assert info.value.unpublished == [events[0].event_id]


def completed(scope="proj", type_="demo.steps", version=7):
    old = job(version - 1, JobStatus.RUNNING, 90, attempts=1, scope=scope)
    new = old.model_copy(update={"status": JobStatus.COMPLETED, "version": version,
                                 "progress": Progress(percent=100)}, deep=True)
    return events_for_change(old, new, T)[0]


def test_completion_invalidates_the_rules_namespaces_in_one_write_each():
    store, publisher = InMemoryCacheStore(), InMemoryEventPublisher()
    rules = InvalidationRules.model_validate({"demo.steps": ["a", "b"]})
    for ns in ("a", "b", "c"):
        store.put("acme", "proj", ns, {"v": ns}, T)
    writes_before = store.writes
    announcement = CacheInvalidator(store, rules, publisher).handle(completed())
    assert store.writes - writes_before == 1 + 2  # the completion time + one per namespace
    assert [store.get("acme", "proj", ns).hit for ns in ("a", "b", "c")] == [False, False, True]
    assert announcement.namespaces == ["a", "b"] and publisher.published == [announcement]
    assert [c.job_id for c in store.completions("acme", "proj")] == ["job-1"]


def test_a_completion_is_recorded_and_invalidates_as_of_the_jobs_end_not_its_stream_second():
    """An event's `timestamp` is the stream's second, which can read before the job's
    `finished_at` (docs/events.md): the scope's task and its namespaces take the job's end, the
    time its own completion write took, so that write and this event agree on one time."""
    store = InMemoryCacheStore()
    rules = InvalidationRules.model_validate({"demo.steps": ["a"]})
    ended = "2026-01-01T00:00:00.734Z"
    event = completed().model_copy(update={"finished_at": ended})
    assert event.timestamp == T
    CacheInvalidator(store, rules, InMemoryEventPublisher()).handle(event)
    assert [(c.completed_at, c.job_id) for c in store.completions("acme", "proj")] == [(ended, "job-1")]
    assert store.get("acme", "proj", "a").invalidated_at == ended


def test_a_cache_announcement_has_its_own_event_id_the_same_on_every_redelivery():
    """Consumers deduplicate every jobpipe event on `event_id` (docs/events.md): the
    `cache.invalidated` of a completion carries the same id each time its event is redelivered,
    and never the completion's own id, which a consumer of both would take for a copy of the
    completion and drop."""
    rules = InvalidationRules.model_validate({"demo.steps": ["a"]})
    invalidator = CacheInvalidator(InMemoryCacheStore(), rules, InMemoryEventPublisher())
    event = completed()
    first, again = invalidator.handle(event), invalidator.handle(event)
    assert first.event_id == again.event_id != event.event_id


def test_no_invalidation_on_enqueue_start_or_without_scope():
    store, publisher = InMemoryCacheStore(), InMemoryEventPublisher()
    invalidator = CacheInvalidator(store, InvalidationRules.model_validate({"demo.steps": ["a"]}), publisher)
    (queued,) = events_for_change(None, job(scope="proj"), T)
    (started,) = events_for_change(job(1, scope="proj"), job(2, JobStatus.RUNNING, attempts=1, scope="proj"), T)
    assert invalidator.handle(queued) is None and invalidator.handle(started) is None
    assert invalidator.handle(completed(scope=None)) is None
    assert store.writes == 0 and publisher.published == []


def test_a_completed_job_without_scope_is_said_to_invalidate_nothing():
    said = []
    invalidator = CacheInvalidator(InMemoryCacheStore(), InvalidationRules.model_validate({"demo.steps": ["a"]}),
                                   InMemoryEventPublisher(), log=lambda message, extra: said.append((message, extra)))
    assert invalidator.handle(completed(scope=None)) is None
    assert said == [("completed job has no scope; no cache to invalidate", {"job_id": "job-1"})]


def test_shipped_rules_are_valid_and_bad_rules_are_refused():
    assert "steps-summary" in load_rules().namespaces_for("demo.steps")
    with pytest.raises(ValueError):
        InvalidationRules.model_validate({"demo.steps": ["has space"]})


class Answering:
    """A webhook sender that answers every POST with `answer`, keeping each request's body and headers."""

    def __init__(self, answer: WebhookAnswer) -> None:
        self.answer = answer
        self.sent: list[tuple[bytes, dict]] = []

    def post(self, url, body, headers, timeout_s=None):
        self.sent.append((body, headers))
        return self.answer


def test_erp_bridge_signs_and_refuses_non_2xx():
    sender = Answering(WebhookAnswer(204))
    detail = json.loads(completed().model_dump_json())
    assert ErpBridge(sender, "http://erp/hook", "k" * 32).deliver(detail) == 204
    assert ErpBridge(Answering(WebhookAnswer(200)), "http://erp/hook", "k" * 32).deliver(detail) == 200
    assert ErpBridge(Answering(WebhookAnswer(299)), "http://erp/hook", "k" * 32).deliver(detail) == 299  # any 2xx
    body, headers = sender.sent[0]
    assert headers["X-Jobpipe-Event-Id"] == detail["event_id"]
    assert verify("k" * 32, body, headers["X-Jobpipe-Signature"])
    assert headers["X-Jobpipe-Signature"] == sign("k" * 32, body) and not verify("other", body, headers["X-Jobpipe-Signature"])
    with pytest.raises(WebhookDeliveryError):
        ErpBridge(Answering(WebhookAnswer(500)), "http://erp/hook", "k" * 32).deliver(detail)


def test_a_request_with_no_signature_does_not_verify():
    """`verify` is what a receiver in Python checks a POST with (tests/support/webhook_receiver.py
    does): one that came with no signature header (None from a headers lookup) is not from
    jobpipe, and says so, rather than raising inside the receiver."""
    body, _ = ErpBridge(object(), "http://erp/hook", "k" * 32).request_for(json.loads(completed().model_dump_json()))
    assert verify("k" * 32, body, None) is False and verify("k" * 32, body, "") is False


def test_a_refusal_with_no_body_names_its_status_and_reason_only():
    """The parked event's `reason` (what GET /api/system/dlq shows) ends with the answer's body
    when there is one; an ERP that refuses with an empty body is read as `HTTP 410 Gone`, not
    with a dangling separator that suggests a body was cut."""
    sender = Answering(WebhookAnswer(410, reason="Gone", text=""))
    detail = json.loads(completed().model_dump_json())
    with pytest.raises(WebhookRefusedError) as raised:
        ErpBridge(sender, "http://erp/hook", "k" * 32).deliver(detail)
    assert raised.value.message == f"ERP webhook refused event {detail['event_id']}: HTTP 410 Gone"


@pytest.mark.parametrize("status, refused", [
    (400, True), (401, True), (403, True), (404, True), (409, True), (410, True), (422, True), (499, True),
    (408, False), (425, False), (429, False), (500, False), (503, False),
    (199, False), (300, False), (302, False), (308, False), (399, False),
])
def test_erp_bridge_tells_a_refusal_for_good_from_a_failure_worth_retrying(status, refused):
    sender = Answering(WebhookAnswer(status, reason="Nope", text='{"error": "no"}'))
    detail = json.loads(completed().model_dump_json())
    with pytest.raises(WebhookDeliveryError) as raised:
        ErpBridge(sender, "http://erp/hook", "k" * 32).deliver(detail)
    assert isinstance(raised.value, WebhookRefusedError) is refused
    if refused:
        assert raised.value.message == f'ERP webhook refused event {detail["event_id"]}: HTTP {status} Nope: {{"error": "no"}}'
        assert raised.value.details["status"] == status


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_erp_bridge_names_where_a_redirect_it_does_not_follow_points(status):
    """An ERP that moved its webhook (to https, to a new path) answers every POST with a
    redirect, never followed: each event is retried for a day, and the operator who reads the
    failure is told where the ERP now is, to set ErpWebhookUrl to, not only the status."""
    sender = Answering(WebhookAnswer(status, location="https://erp.example/v2/hook"))
    detail = json.loads(completed().model_dump_json())
    with pytest.raises(WebhookDeliveryError) as raised:
        ErpBridge(sender, "http://erp.example/hook", "k" * 32).deliver(detail)
    assert not isinstance(raised.value, WebhookRefusedError)
    assert raised.value.message == (f"ERP webhook answered {status} for event {detail['event_id']}: "
                                    "a redirect to https://erp.example/v2/hook, not followed")
    assert raised.value.details["location"] == "https://erp.example/v2/hook"


def test_erp_bridge_body_is_the_detail_as_compact_sorted_ascii_json():
    """What docs/events.md tells receivers they verify: the same detail gives the same bytes
    (and signature) whatever order its keys arrived in from the bus."""
    detail = json.loads(completed().model_dump_json())
    detail["message"] = "déjà vu"
    bridge = ErpBridge(Answering(WebhookAnswer(204)), "http://erp/hook", "k" * 32)
    body, headers = bridge.request_for(dict(reversed(list(detail.items()))))
    assert body == json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    assert b"d\\u00e9j\\u00e0 vu" in body and list(json.loads(body)) == sorted(detail)
    assert (body, headers) == bridge.request_for(detail)


def test_erp_bridge_names_itself_as_every_http_client_does():
    """A POST naming no User-Agent is refused 403 by common web application firewall rules (AWS
    WAF's core rule set blocks it by default): an ERP behind one parked every event for good."""
    _, headers = ErpBridge(object(), "http://erp/hook", "k" * 32).request_for(json.loads(completed().model_dump_json()))
    assert headers["User-Agent"] == "jobpipe-erp-bridge"


def test_erp_bridge_posts_json_naming_the_event_s_id_and_type():
    """What docs/events.md tells a receiver it gets: a JSON body said as one (a framework reads
    the body by its Content-Type), signed, the event's id and type in their own headers (a
    receiver routes on X-Jobpipe-Event-Type without parsing the body) and the bridge's name."""
    detail = json.loads(completed().model_dump_json())
    sender = Answering(WebhookAnswer(204))
    ErpBridge(sender, "http://erp/hook", "k" * 32).deliver(detail)
    ((body, headers),) = sender.sent
    assert headers == {"Content-Type": "application/json", "User-Agent": "jobpipe-erp-bridge",
                       "X-Jobpipe-Signature": sign("k" * 32, body), "X-Jobpipe-Event-Id": detail["event_id"],
                       "X-Jobpipe-Event-Type": "job.status.changed"}


def test_erp_bridge_failures_carry_the_answer_they_were_read_from():
    """What `deliver` says its errors carry: a refusal its status, reason phrase and the start
    of the body; a failure its status and the Retry-After asked for, a location only for a
    redirect that named one; an event no header can carry which field it was, and no status."""
    detail = json.loads(completed().model_dump_json())

    def failure(answer: WebhookAnswer, event: dict = detail) -> WebhookDeliveryError:
        with pytest.raises(WebhookDeliveryError) as raised:
            ErpBridge(Answering(answer), "http://erp/hook", "k" * 32).deliver(event)
        return raised.value

    assert failure(WebhookAnswer(422, reason="Unprocessable Entity", text="no such job")).details == {
        "status": 422, "reason": "Unprocessable Entity", "text": "no such job"}
    assert failure(WebhookAnswer(503, retry_after_s=30.0, reason="Busy")).details == {"status": 503, "retry_after_s": 30.0}
    assert failure(WebhookAnswer(303, location="https://erp/v2")).details == {
        "status": 303, "retry_after_s": None, "location": "https://erp/v2"}
    assert failure(WebhookAnswer(204), {**detail, "event_type": "job status\n"}).details == {
        "status": None, "field": "event_type"}


@pytest.mark.parametrize("event_id, sent", [
    ("job-1 v7", True), ("~!", True), ("x", True),
    (" job-1", False), ("job-1 ", False), ("job-1\t", False), ("job\x7f1", False), ("jöb-1", False),
])
def test_erp_bridge_sends_an_event_id_its_header_carries_as_it_is_and_parks_any_other(event_id, sent):
    """A receiver strips a header value's spaces at either end, and its id would then differ
    from the signed body's: such an id is refused for good, nothing POSTed, the reason parked
    with it naming the field and its header; one with a space inside, or of printable ASCII
    only, goes out as it is."""
    sender = Answering(WebhookAnswer(204))
    detail = {**json.loads(completed().model_dump_json()), "event_id": event_id}
    bridge = ErpBridge(sender, "http://erp/hook", "k" * 32)
    if sent:
        assert bridge.deliver(detail) == 204
        assert sender.sent[0][1]["X-Jobpipe-Event-Id"] == event_id
    else:
        with pytest.raises(WebhookRefusedError) as raised:
            bridge.deliver(detail)
        assert raised.value.details == {"status": None, "field": "event_id"} and sender.sent == []
        assert "its event_id holds characters the X-Jobpipe-Event-Id header cannot carry" in raised.value.message


def test_erp_bridge_delivers_an_event_that_names_no_type_with_an_empty_type_header():
    """A hand-made event (one redriven with its type left out) is no reason to park: it goes
    out, its X-Jobpipe-Event-Type empty rather than a made-up type a receiver would route on."""
    sender = Answering(WebhookAnswer(204))
    detail = json.loads(completed().model_dump_json())
    del detail["event_type"]
    assert ErpBridge(sender, "http://erp/hook", "k" * 32).deliver(detail) == 204
    assert sender.sent[0][1]["X-Jobpipe-Event-Type"] == ""


def test_erp_bridge_refuses_a_secret_too_short_to_sign_with_only_when_it_has_a_url():
    """Events are never sent weakly signed: a bridge given its URL and a secret one character
    short refuses to exist, saying which setting to fix; one with no URL sends nothing and
    judges no secret."""
    from chalicelib.defaults import SECRET_MIN_CHARS

    with pytest.raises(WebhookDeliveryError) as raised:
        ErpBridge(object(), "http://erp/hook", "k" * (SECRET_MIN_CHARS - 1))
    assert raised.value.message == (f"ERP_WEBHOOK_SECRET must be at least {SECRET_MIN_CHARS} characters when "
                                    f"ERP_WEBHOOK_URL is set (it has {SECRET_MIN_CHARS - 1})")
    ErpBridge(object(), "http://erp/hook", "k" * SECRET_MIN_CHARS)
    ErpBridge(object(), "", "")


def test_erp_bridge_posts_with_the_least_time_left_it_accepts_and_not_with_less():
    from chalicelib.defaults import WEBHOOK_MIN_TIMEOUT_S

    timeouts = []

    class Sender:
        def post(self, url, body, headers, timeout_s=None):
            timeouts.append(timeout_s)
            return WebhookAnswer(204)

    bridge = ErpBridge(Sender(), "http://erp/hook", "k" * 32)
    detail = json.loads(completed().model_dump_json())
    assert bridge.deliver(detail, within_s=WEBHOOK_MIN_TIMEOUT_S) == 204
    with pytest.raises(WebhookDeliveryError, match="too little of the invocation is left"):
        bridge.deliver(detail, within_s=WEBHOOK_MIN_TIMEOUT_S - 0.01)
    assert timeouts == [WEBHOOK_MIN_TIMEOUT_S]


def test_a_full_erp_batch_of_slow_posts_fits_its_function_with_the_close_margin():
    """Ten POSTs at the sender's timeout, then the delivery records closed: a larger batch
    would have its last events cut off on every slow spell, failing and coming back."""
    from pathlib import Path

    import app
    from chalicelib.defaults import DELIVERY_CLOSE_MARGIN_S, WEBHOOK_TIMEOUT_S
    from chalicelib.subscribers.handlers import ERP_BRIDGE

    (source,) = [s for s in app.app.event_sources if s.name == ERP_BRIDGE]
    resources = json.loads((Path(__file__).resolve().parents[2] / "infra" / "resources.json").read_text())
    timeout_s = resources["Resources"]["ErpBridge"]["Properties"]["Timeout"]
    assert source.batch_size * WEBHOOK_TIMEOUT_S + DELIVERY_CLOSE_MARGIN_S <= timeout_s


def test_the_subscribers_take_the_fullest_batch_sqs_gives_a_function_without_a_window():
    """Ten messages an invocation, the most SQS hands a function with no batching window: the
    ERP bridge's ledger costs two requests a batch and its connection one handshake a batch
    (docs/events.md, docs/capacity.md), so a smaller batch costs more of both and more
    invocations, the cache invalidation's more invocations."""
    import app
    from chalicelib.subscribers.handlers import CACHE_INVALIDATION, ERP_BRIDGE

    sizes = {s.name: s.batch_size for s in app.app.event_sources if s.name in (ERP_BRIDGE, CACHE_INVALIDATION)}
    assert sizes == {ERP_BRIDGE: 10, CACHE_INVALIDATION: 10}


class CountingPublisher:
    def __init__(self):
        self.calls = []

    def publish(self, events):
        self.calls.append(list(events))


def _creations(count, message="m"):
    return [JobChange(f"seq-{i}", None, job(1).model_copy(update={"id": f"job-{i}", "progress": Progress(
        percent=0, step="s", message=message)}), T) for i in range(count)]


def test_events_of_many_records_and_jobs_share_put_events_calls_of_ten():
    publisher = CountingPublisher()
    assert publish_changes(_creations(23), publisher) is None
    assert [len(call) for call in publisher.calls] == [10, 10, 3]


def test_a_put_events_call_stays_under_its_size_limit(monkeypatch):
    # Events carry clipped texts (a few KB at most), so ten fit in 256 KB; a smaller limit
    # shows the calls are split by size as well as by count.
    from chalicelib.events import publishing
    from chalicelib.events.publishing import entry_size

    monkeypatch.setattr(publishing, "PUT_EVENTS_MAX_BYTES", 8 * 1024)
    publisher = CountingPublisher()
    assert publish_changes(_creations(10, message="x" * 60_000), publisher) is None
    assert len(publisher.calls) > 1
    assert all(sum(entry_size(e) for e in call) <= 8 * 1024 for call in publisher.calls)
    assert sum(len(call) for call in publisher.calls) == 10


def test_an_entry_is_sized_as_put_events_counts_it():
    """PutEvents counts an entry's Source, DetailType and Detail in UTF-8 bytes (the 256 KB of
    a call): a size short of any of them, or counting characters where a text is not ASCII,
    lets a call go over and be refused whole."""
    from chalicelib.adapters.eventbridge import EventBridgePublisher
    from chalicelib.events.publishing import entry_size

    written = job(1).model_copy(update={"progress": Progress(percent=0, step="s", message="d\u00e9j\u00e0 vu \u2026")})
    (event,) = events_for_change(None, written, T)
    entry = EventBridgePublisher(None, "jobs")._entry(event)
    assert entry_size(event) == sum(len(entry[key].encode("utf-8")) for key in ("Source", "DetailType", "Detail"))


def test_a_put_events_call_is_filled_up_to_its_size_limit_exactly(monkeypatch):
    """Each call takes as many events as fit, the last one's bytes reaching the limit included;
    the next call starts empty."""
    from chalicelib.events import publishing
    from chalicelib.events.publishing import entry_size

    creations = _creations(7)
    (size,) = {entry_size(event) for c in creations for event in events_for_change(c.old, c.new, c.timestamp)}
    monkeypatch.setattr(publishing, "PUT_EVENTS_MAX_BYTES", 3 * size)
    publisher = CountingPublisher()
    assert publish_changes(creations, publisher) is None
    assert [len(call) for call in publisher.calls] == [3, 3, 1]
    monkeypatch.setattr(publishing, "PUT_EVENTS_MAX_BYTES", 3 * size - 1)
    publisher = CountingPublisher()
    assert publish_changes(creations, publisher) is None
    assert [len(call) for call in publisher.calls] == [2, 2, 2, 1], "a byte over the limit starts the next call"


def test_publishing_stops_at_the_first_change_whose_event_was_refused(monkeypatch):
    """Entries ahead of the refused one went out: the stream is retried from the refused one's
    change, not from the start of the call, and the line counts the refused entries only."""
    from chalicelib.adapters.eventbridge import EventBridgePublisher
    from chalicelib.observability import logger

    class RefusingTheSecond:
        def put_events(self, Entries):
            results = [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
                       if json.loads(e["Detail"])["status"] == "running" else {"EventId": "x"} for e in Entries]
            return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}

    lines = []
    monkeypatch.setattr(logger, "warning", lambda message, *args, extra=None, **kwargs: lines.append(extra))
    assert publish_changes(changes(3), EventBridgePublisher(RefusingTheSecond(), "bus", sleep=lambda s: None)) == "seq-1"
    assert [(line["sequence_number"], line["unpublished"]) for line in lines] == [("seq-1", 1)]


def test_retry_after_is_read_as_seconds_or_an_http_date():
    from datetime import datetime, timezone

    from chalicelib.adapters.webhook import retry_after_s

    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert retry_after_s("120", now) == 120
    assert retry_after_s(" 7 ", now) == 7
    assert retry_after_s("Thu, 01 Jan 2026 12:05:00 GMT", now) == 300
    assert retry_after_s("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0  # a date gone by: now
    assert retry_after_s("Thu, 01 Jan 2026 12:05:00 -0000", now) == 300  # a zone read as none: UTC
    assert retry_after_s("Thu, 01 Jan 2026 14:05:00 +0200", now) == 300  # an offset kept, not read as UTC
    # RFC 9110's delay-seconds are ASCII digits: "²" is a digit to str.isdigit, not to float(),
    # and raised out of the POST an ERP had answered 2xx, which was then delivered again.
    for unreadable in (None, "", "soon", "-5", "1.5e3", "\u00b2", "\u0661\u0662"):
        assert retry_after_s(unreadable, now) is None


def test_a_retry_after_date_whose_year_no_datetime_holds_is_unreadable_not_raised():
    """An HTTP-date far past year 9999 ("1 Jan 99999 ...") was read as none, but one whose year
    overflows a C int ("1 Jan 99999999999 ...") raised OverflowError out of the POST the ERP
    had answered, which the bridge then delivered again. Both are unreadable: None."""
    from datetime import datetime, timezone

    from chalicelib.adapters.webhook import retry_after_s

    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    for year in ("99999", "99999999999", "9" * 40):
        assert retry_after_s(f"Mon, 01 Jan {year} 00:00:00 GMT", now) is None, year


def test_a_job_type_invalidates_no_more_namespaces_than_its_completion_can_write():
    """A completion writes its job, its run, its scope's task record and one item per namespace
    in one DynamoDB transaction, which takes 100 items: rules naming more for a job type are
    refused when loaded, since every completion of that type would be refused by DynamoDB."""
    import pytest
    from pydantic import ValidationError

    from chalicelib.defaults import MAX_NAMESPACES_PER_JOB_TYPE
    from chalicelib.subscribers.cache import load_rules

    assert MAX_NAMESPACES_PER_JOB_TYPE == 100 - 3
    names = [f"ns-{n}" for n in range(MAX_NAMESPACES_PER_JOB_TYPE + 1)]
    assert InvalidationRules.model_validate({"demo.steps": names[:-1]}).namespaces_for("demo.steps") == names[:-1]
    with pytest.raises(ValidationError, match="at most 97"):
        InvalidationRules.model_validate({"demo.steps": names})
    assert all(len(load_rules().namespaces_for(t)) <= MAX_NAMESPACES_PER_JOB_TYPE for t in load_rules().root)


def test_events_that_could_not_be_published_are_logged_with_why(monkeypatch):
    """The stream's retry and the reconciler's replay say where publishing stopped; the line
    says why, with the codes EventBridge gave the entries it refused."""
    from chalicelib.adapters.eventbridge import EventBridgePublisher
    from chalicelib.observability import logger

    class Refusing:
        def put_events(self, Entries):
            return {"FailedEntryCount": len(Entries), "Entries": [
                {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"} for _ in Entries]}

    lines = []
    monkeypatch.setattr(logger, "warning", lambda message, *args, extra=None, **kwargs: lines.append(
        {**(extra or {}), "message": message}))
    assert publish_changes(changes(2), EventBridgePublisher(Refusing(), "bus", sleep=lambda s: None)) == "seq-0"
    (line,) = lines
    assert line["message"] == "events not published" and line["sequence_number"] == "seq-0"
    assert line["unpublished"] == 2
    assert line["error"] == "event_publish_failed: 2 events were refused by EventBridge (ThrottlingException: Rate exceeded)"


@pytest.mark.parametrize("named", [[], ["an-event-of-no-call"]])
def test_a_refusal_that_names_none_of_a_call_s_events_stops_at_the_call_s_first(monkeypatch, named):
    """A publish that fails without naming which of the call's events did not go out (a
    publisher that lists none, or only others) leaves none known to be out: the stream is
    retried from the call's first change and the line counts the whole call as unpublished."""
    from chalicelib.observability import logger

    class Failing:
        def publish(self, events):
            raise EventPublishError("the bus did not answer", unpublished=named)

    lines = []
    monkeypatch.setattr(logger, "warning", lambda message, *args, extra=None, **kwargs: lines.append(
        {**(extra or {}), "message": message}))
    assert publish_changes(changes(3), Failing()) == "seq-0"
    (line,) = lines
    assert (line["sequence_number"], line["unpublished"]) == ("seq-0", len(named) or 3)


def test_a_job_type_given_twice_in_the_rules_file_is_refused_not_half_dropped(tmp_path):
    """JSON keeps the last of two members with one name: the first rule's namespaces would
    never be invalidated, without a word."""
    from chalicelib.subscribers.cache import load_rules

    rules = tmp_path / "rules.json"
    rules.write_text('{"demo.steps": ["steps-summary"], "demo.steps": ["steps-report"]}')
    with pytest.raises(ValueError, match="'demo.steps' given more than once"):
        load_rules(rules)
    rules.write_text('{"demo.steps": ["steps-summary", "steps-report"]}')
    assert load_rules(rules).namespaces_for("demo.steps") == ["steps-summary", "steps-report"]


def test_every_job_type_given_twice_in_the_rules_file_is_named_once_in_name_order():
    """One refusal says all there is to fix, the same on every deploy: each type given twice
    once, in name order, whatever order the file gave them in."""
    from chalicelib.subscribers.cache import parse_rules

    names = ["demo.sleep", "demo.chaos", "demo.steps", "demo.model", "demo.fanout", "demo.outputs"]
    twice = ", ".join(f'"{name}": ["n"], "{name}": ["n"], "{name}": ["n"]' for name in names)
    with pytest.raises(ValueError) as refused:
        parse_rules("{" + twice + "}")
    assert str(refused.value) == ("'demo.chaos', 'demo.fanout', 'demo.model', 'demo.outputs', 'demo.sleep', 'demo.steps' "
                                  "given more than once: write each job type's namespaces in one list")
