"""The event path on moto: real stream records of real job writes → publisher → bus rule →
queue → ERP bridge and cache invalidation handlers."""
import json
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from chalicelib import composition
from chalicelib.adapters.memory_events import InMemoryWebhookSender
from chalicelib.ports import WebhookAnswer
from chalicelib.subscribers.erp import ErpBridge, verify
from tests.functional.conftest import LambdaContext, auth, receive_all, sqs_event, token
from tests.functional.test_api import STEPS, run_worker, submit
from tests.support.stream import StreamRecorder


@pytest.fixture
def stream(client, aws):
    """Records of every write the app makes to the jobs table."""
    return StreamRecorder(composition.container().store._ddb, aws["ddb"], "jobs")


def publish_stream(app, stream):
    return app.handler_map["event_publisher"]({"Records": stream.records}, LambdaContext(60))


def test_each_transition_is_published_once_and_a_replayed_stream_reaches_subscribers_once(client, aws, tap, stream):
    job = submit(client, dict(STEPS, scope="proj-1"))
    run_worker(client, aws)
    assert publish_stream(client._app, stream) == {"batchItemFailures": []}
    first = tap()
    status = [e["detail"] for e in first if e["detail-type"] == "job.status.changed"]
    assert [(d["previous_status"], d["status"]) for d in status] == [
        (None, "queued"), ("queued", "running"), ("running", "completed")
    ]
    assert len({d["event_id"] for d in status}) == 3 and {d["job_id"] for d in status} == {job["id"]}
    progress = [e["detail"] for e in first if e["detail-type"] == "job.status.progress"]
    assert progress and all(p["status"] == "running" for p in progress)
    # A replay of the same records (the stream delivers at least once) goes out again with the
    # same event ids; the bus does not deduplicate, the subscribers do.
    assert publish_stream(client._app, stream) == {"batchItemFailures": []}
    replayed = tap()
    assert sorted(e["detail"]["event_id"] for e in replayed) == sorted(e["detail"]["event_id"] for e in first)
    sender = InMemoryWebhookSender()
    composition.container().erp_bridge = ErpBridge(sender, "https://erp.example/hook", "functional-webhook-secret-0123456789abcdef")
    messages = [{"MessageId": str(uuid.uuid4()), "Body": json.dumps(e), "ReceiptHandle": "rh"}
                for e in first + replayed if e["detail-type"] == "job.status.changed"]
    erp = client._app.handler_map["erp_bridge"]
    assert erp(sqs_event(messages), LambdaContext(60)) == {"batchItemFailures": []}
    delivered = [json.loads(body)["event_id"] for _, body, _ in sender.posts]
    assert sorted(delivered) == sorted(d["event_id"] for d in status)  # each transition once


def test_erp_bridge_delivers_once_per_event_and_retries_failures(client, aws, tap, stream):
    sent = []

    class Sender:
        status = 500

        def post(self, url, body, headers, timeout_s=None):
            sent.append((body, headers, self.status))
            return WebhookAnswer(self.status)

    sender = Sender()
    composition.container().erp_bridge = ErpBridge(sender, "https://erp.example/hook", "functional-webhook-secret-0123456789abcdef")
    job = submit(client, STEPS)
    publish_stream(client._app, stream)
    envelopes = [e for e in tap() if e["detail"]["job_id"] == job["id"]]
    messages = [{"MessageId": str(uuid.uuid4()), "Body": json.dumps(e), "ReceiptHandle": "rh"} for e in envelopes]
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:jobs-normal"
    failed = client._app.handler_map["erp_bridge"](sqs_event(messages, queue_arn), LambdaContext(60))
    assert len(failed["batchItemFailures"]) == 1  # the 500 is retried
    sender.status = 200
    assert client._app.handler_map["erp_bridge"](sqs_event(messages, queue_arn), LambdaContext(60)) == {"batchItemFailures": []}
    assert client._app.handler_map["erp_bridge"](sqs_event(messages, queue_arn), LambdaContext(60)) == {"batchItemFailures": []}
    delivered = [(json.loads(body)["event_id"], status) for body, _, status in sent]
    assert [s for _, s in delivered] == [500, 200]  # the third delivery was recognised as done
    body, headers, _ = sent[-1]
    assert verify("functional-webhook-secret-0123456789abcdef", body, headers["X-Jobpipe-Signature"])


def test_cache_is_invalidated_by_completion_only(client, aws, tap, stream):
    for namespace in ("steps-summary", "steps-report", "unrelated"):
        put = client.http.put(f"/cache/proj-9/{namespace}", headers=auth(), body=json.dumps({"n": namespace}))
        assert put.status_code == 200
    job = submit(client, dict(STEPS, scope="proj-9"))
    run_worker(client, aws)
    publish_stream(client._app, stream)
    completed = [e for e in tap() if e["detail-type"] == "job.status.changed" and e["detail"]["status"] == "completed"]
    messages = [{"MessageId": str(uuid.uuid4()), "Body": json.dumps(e), "ReceiptHandle": "rh"} for e in completed]
    handler = client._app.handler_map["cache_invalidation"]
    assert handler(sqs_event(messages), LambdaContext(60)) == {"batchItemFailures": []}
    assert handler(sqs_event(messages), LambdaContext(60)) == {"batchItemFailures": []}  # redelivered
    miss = client.http.get("/cache/proj-9/steps-summary", headers=auth())
    assert miss.status_code == 404 and miss.json_body["status"] == "miss" and miss.json_body["generation"] == 1
    assert client.http.get("/cache/proj-9/steps-report", headers=auth()).status_code == 404
    assert client.http.get("/cache/proj-9/unrelated", headers=auth()).json_body["value"] == {"n": "unrelated"}
    tasks = client.http.get("/scopes/proj-9/tasks", headers=auth()).json_body["tasks"]
    assert [(t["type"], t["job_id"]) for t in tasks] == [("demo.steps", job["id"])]
    # The completion time is the job's own, not when its event reached the stream.
    finished_at = client.http.get(f"/jobs/{job['id']}", headers=auth()).json_body["finished_at"]
    assert tasks[0]["completed_at"] == finished_at == completed[0]["detail"]["finished_at"]
    assert miss.json_body["invalidated_at"] == finished_at
    # Invalidation keeps no delivery records (it is safe to repeat): the redelivery announces
    # again, as the same event (one event id), which consumers drop like any duplicate.
    announcements = [e["detail"] for e in tap() if e["detail-type"] == "cache.invalidated"]
    assert len(announcements) == 2 and len({a["event_id"] for a in announcements}) == 1
    assert announcements[0] == announcements[1] and announcements[0]["namespaces"] == ["steps-summary", "steps-report"]
    stale = client.http.put("/cache/proj-9/steps-summary", headers=auth(**{"If-Match": "0"}), body="[1]")
    assert stale.status_code == 409 and stale.json_body["error"]["code"] == "cache_generation_changed"


def test_cache_routes_refuse_bad_names_and_other_tenants(client, aws):
    assert client.http.put("/cache/proj/ns", headers=auth(), body='{"a": 1}').status_code == 200
    assert client.http.get("/cache/proj/ns", headers=auth("globex")).status_code == 404
    bad = client.http.put("/cache/proj/has%20space", headers=auth(), body="1")
    assert bad.status_code == 400 and bad.json_body["error"]["code"] == "invalid_request"
    assert client.http.put("/cache/proj/ns", headers=auth(), body="{nope").status_code == 400


def test_unpublished_events_fail_the_invocation_so_the_stream_retries_the_batch(client, aws, tap, stream, monkeypatch):
    """The invocation fails, naming the stream record its publishing stopped at, in its error
    and in a warning (what the operator finds a stuck shard by), and the retry goes out."""
    from chalicelib.adapters.memory_events import InMemoryEventPublisher
    from chalicelib.domain.errors import EventPublishError
    from tests.functional.test_erp_delivery import _warnings

    submit(client, STEPS)
    failing = InMemoryEventPublisher()
    failing.fail_next = 1
    composition.container().publisher = failing
    lines = _warnings(monkeypatch)
    with pytest.raises(EventPublishError) as raised:
        publish_stream(client._app, stream)
    first = stream.records[0]["dynamodb"]["SequenceNumber"]
    assert str(raised.value) == f"events from stream record {first} on were not published"
    (said,) = [line for line in lines if line["message"] == "event publishing stopped; the stream will retry the batch"]
    assert said["sequence_number"] == first
    assert publish_stream(client._app, stream) == {"batchItemFailures": []}  # the retry goes out
    assert [e.status for e in failing.published] == ["queued"]


def test_a_handler_that_reports_its_start_at_zero_publishes_each_milestone_once(client, aws, tap, stream):
    """demo.model calls start_job (a write at 0 %, step `started`) before its first progress:
    the ERP sees 0 % with the `running` transition and not again, then only real moves."""
    job = submit(client, {"type": "demo.model", "payload": {"step_ms": 0}})
    run_worker(client, aws)
    assert publish_stream(client._app, stream) == {"batchItemFailures": []}
    events = [e["detail"] for e in tap() if e["detail"]["job_id"] == job["id"]]
    assert [(d["previous_status"], d["status"]) for d in events if d["event_type"] == "job.status.changed"] == [
        (None, "queued"), ("queued", "running"), ("running", "completed")]
    progress = [d for d in events if d["event_type"] == "job.status.progress"]
    assert all(d["progress"] > d["previous_progress"] for d in progress), progress
    assert len(stream.records) > len(events)  # the start write was there, and published nothing


@contextmanager
def registered(name: str, handler):
    """`handler` a job type named `name` (an empty payload, one attempt, 30 s) in the block."""
    from pydantic import BaseModel

    from chalicelib.job_types import registry

    class Empty(BaseModel):
        pass

    registry.register(name, Empty, max_attempts=1, timeout_s=30)(handler)
    try:
        yield name
    finally:
        registry._types.pop(name)


@pytest.fixture
def failing_at_75():
    """Seed 002's failure: reports at 10 and 30, then fail_job(..., progress_percent=75)."""
    from chalicelib.worker.helpers import fail_job, progress

    def fail_at_75(ctx, payload):
        progress(ctx, 10, "loading", force=True)
        progress(ctx, 30, "processing", force=True)
        fail_job(ctx, "ERR_001", "Something went wrong", progress_percent=75)

    with registered("test.fail_at_75", fail_at_75) as name:
        yield name


def test_a_failure_with_its_percent_is_one_write_and_one_event(client, aws, tap, stream, failing_at_75):
    """The percent fail_job records went out as its own `running` progress event (step
    `failed`) before the `failed` one, whose previous_progress was then 75 already."""
    job = submit(client, {"type": failing_at_75, "payload": {}})
    run_worker(client, aws)
    assert publish_stream(client._app, stream) == {"batchItemFailures": []}
    events = [e["detail"] for e in tap() if e["detail"]["job_id"] == job["id"]]
    assert [(d["previous_status"], d["status"], d["previous_progress"], d["progress"]) for d in events] == [
        (None, "queued", None, 0), ("queued", "running", 0, 0), ("running", "running", 0, 10),
        ("running", "running", 10, 30), ("running", "failed", 30, 75)]
    assert events[-1]["error"]["code"] == "ERR_001"
    shown = client.http.get(f"/jobs/{job['id']}", headers=auth()).json_body
    assert (shown["status"], shown["progress"]["percent"], shown["progress"]["step"]) == ("failed", 75, "failed")
    assert shown["progress"]["updated_at"] is not None  # written now, as every report is


@pytest.fixture
def reporting_30_45_48():
    """Reports 30, 45 and 48, each written at once, then completes."""
    from chalicelib.worker.helpers import progress

    def report(ctx, payload):
        for percent in (30, 45, 48):
            progress(ctx, percent, force=True)
        return {"ok": True}

    with registered("test.report_30_45_48", report) as name:
        yield name


def _writes_progress_at(percent: float):
    def matches(request: dict) -> bool:
        values = request.get("ExpressionAttributeValues", {})
        return ":progress" in values and float(values.get(":percent", {}).get("N", "nan")) == percent
    return matches


def test_a_progress_write_whose_answers_were_all_lost_is_announced_once_and_nothing_finer(
        client, aws, tap, stream, reporting_30_45_48):
    """The write of 45 % landed, announced (15 points past the event at 30), and every answer to it
    was lost: the worker keeps the report and goes on. Its next write, 48 %, was still measured
    from the event at 30 the worker last read, and went out as a `job.status.progress` of 3
    points (45 -> 48, no milestone), finer progress than docs/events.md publishes."""
    from tests.functional.test_lost_answers import AnswersLost

    job = submit(client, {"type": reporting_30_45_48, "payload": {}})
    store = composition.container().store
    store._ddb = AnswersLost(store._ddb, "update_item", all_lost=True, only=_writes_progress_at(45))
    run_worker(client, aws)
    store._ddb = store._ddb._client
    assert publish_stream(client._app, stream) == {"batchItemFailures": []}
    events = [e["detail"] for e in tap() if e["detail"]["job_id"] == job["id"]]
    assert [(d["status"], d["previous_progress"], d["progress"]) for d in events] == [
        ("queued", None, 0), ("running", 0, 0), ("running", 0, 30), ("running", 30, 45), ("completed", 48, 100)]


def _template_rule_queues(aws, rules: tuple[str, ...]) -> dict[str, str]:
    """Each of the template's `rules`, its pattern as deployed, on the bus with a queue of its own."""
    template = json.loads((Path(__file__).resolve().parents[2] / "infra" / "resources.json").read_text())["Resources"]
    urls = {}
    for rule in rules:
        url = aws["sqs"].create_queue(QueueName=f"rule-{rule}")["QueueUrl"]
        arn = aws["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        aws["events"].put_rule(Name=rule, EventBusName="job-events",
                               EventPattern=json.dumps(template[rule]["Properties"]["EventPattern"]))
        aws["events"].put_targets(Rule=rule, EventBusName="job-events", Targets=[{"Id": rule, "Arn": arn}])
        urls[rule] = url
    return urls


def test_the_erp_rules_take_every_tenants_job_events_and_none_of_the_systems_tasks(client, aws, tap, stream):
    """Maintenance tasks (tenant _system: hourly health checks and statistics, daily clean-ups)
    are the system's housekeeping: their events are no ERP's business, and each would cost a
    webhook POST and its delivery records. The rules leave them out, so no consumer sees them."""
    urls = _template_rule_queues(aws, ("ErpOutboundRule", "ErpWebhookRule"))
    job = submit(client, STEPS)
    operator = {"Authorization": f"Bearer {token(roles=['operator'])}"}
    task = client.http.post("/api/system/maintenance/health-check", headers=operator).json_body["task_id"]
    run_worker(client, aws)
    assert publish_stream(client._app, stream) == {"batchItemFailures": []}
    for rule, url in urls.items():
        delivered = [json.loads(m["Body"])["detail"] for m in receive_all({**aws, rule: url}, rule)]
        assert {d["job_id"] for d in delivered} == {job["id"]}, rule
        assert [d["status"] for d in delivered if d["event_type"] == "job.status.changed"] == \
            ["queued", "running", "completed"], rule
    # the task ran, and its events went out to the bus, on no ERP rule's target
    assert client.http.get(f"/api/system/maintenance/tasks/{task}", headers=operator).json_body["status"] == "completed"
    assert {e["detail"]["tenant"] for e in tap()} == {"acme", "_system"}


def test_whole_percents_travel_as_json_integers(client, aws, tap, stream):
    """Seed 002 writes `"progress": 50` and `"percent": 50`: a reader decoding them into an
    integer (Go's encoding/json, Rust's serde_json) refuses `50.0`."""
    job = submit(client, STEPS)
    run_worker(client, aws)
    assert publish_stream(client._app, stream) == {"batchItemFailures": []}
    raw = client.http.get(f"/jobs/{job['id']}", headers=auth()).body.decode()
    assert '"percent":100,' in raw and '"percent":100.0' not in raw
    # The OpenAPI document still says `number` (an integer is one), not a union of the two, from
    # 0 to 100: a client generated from it checks a job's percent against those bounds.
    schemas = client.http.get("/openapi.json").json_body["components"]["schemas"]
    percent = schemas["Progress"]["properties"]["percent"]
    assert (percent["type"], percent["minimum"], percent["maximum"]) == ("number", 0, 100)
    assert "anyOf" not in percent
    details = [json.dumps(e["detail"]) for e in tap() if e["detail"]["job_id"] == job["id"]]
    assert details and not any(".0," in d or ".0}" in d for d in details), details


@pytest.fixture
def window_clock(aws, monkeypatch):
    """The deployed progress window (2 s) on a ManualClock in the container, set before the
    container's first use."""
    from chalicelib.adapters.clocks import ManualClock

    monkeypatch.setenv("PROGRESS_MIN_INTERVAL_S", "2")
    manual = ManualClock(start=500.0)
    monkeypatch.setattr(composition.container(), "clock", manual)
    return manual


def test_a_failure_whose_handler_goes_on_past_the_window_is_still_one_event(window_clock, client, aws, tap, stream):
    """A report at 40 waits for its window when fail_job(..., progress_percent=80) is called; the
    handler catches the FatalJobError and tidies up for longer than the window. The failure's
    report (80 %, step `failed`) goes out once, with the failure: not first as a `running` job's
    progress when the window's timer fires."""
    from chalicelib.domain.errors import FatalJobError
    from chalicelib.worker.helpers import fail_job, progress

    def fail_then_tidy_up(ctx, payload):
        progress(ctx, 30, "loading", force=True)
        progress(ctx, 40, "processing")  # in the window: its timer is armed
        try:
            fail_job(ctx, "ERR_001", "Something went wrong", progress_percent=80)
        except FatalJobError:
            window_clock.advance(3)  # tidying up, past the window's end

    with registered("test.fail_then_tidy_up", fail_then_tidy_up) as name:
        job = submit(client, {"type": name, "payload": {}})
        run_worker(client, aws)
    assert publish_stream(client._app, stream) == {"batchItemFailures": []}
    events = [e["detail"] for e in tap() if e["detail"]["job_id"] == job["id"]]
    assert [(d["previous_status"], d["status"], d["previous_progress"], d["progress"], d["step"]) for d in events] == [
        (None, "queued", None, 0, None), ("queued", "running", 0, 0, "started"),
        ("running", "running", 0, 30, "loading"), ("running", "failed", 30, 80, "failed")]


def test_a_percent_past_either_end_is_shown_clamped_and_a_fall_below_is_refused(client, aws, tap, stream):
    """Seed 002: values are clamped to 0-100 and progress never decreases, with a clear error. A
    handler's 150 is 100 where users meet it: GET /jobs/{id} while it runs, its event and
    `ctx.progress_percent`; its -5 then is 0, a decrease refused naming both percents, while a
    -5 at the start (0 already) is taken as 0."""
    from chalicelib.domain.errors import ProgressRejectedError
    from chalicelib.worker.helpers import progress

    seen = []

    def past_the_ends(ctx, payload):
        progress(ctx, -5, "below", force=True)
        seen.append(client.http.get(f"/jobs/{ctx.job_id}", headers=auth()).json_body["progress"]["percent"])
        progress(ctx, 150, "over", "past the end", force=True)
        seen.append((ctx.progress_percent,
                     client.http.get(f"/jobs/{ctx.job_id}", headers=auth()).json_body["progress"]["percent"]))
        with pytest.raises(ProgressRejectedError) as refused:
            progress(ctx, -5, "back", force=True)
        seen.append((refused.value.code, str(refused.value)))
        return {"ok": True}

    with registered("test.past_the_ends", past_the_ends) as name:
        job = submit(client, {"type": name, "payload": {}})
        run_worker(client, aws)
    assert seen == [0, (100, 100), ("progress_rejected", "progress cannot decrease from 100 to 0")]
    assert client.http.get(f"/jobs/{job['id']}", headers=auth()).json_body["status"] == "completed"
    assert publish_stream(client._app, stream) == {"batchItemFailures": []}
    events = [e["detail"] for e in tap() if e["detail"]["job_id"] == job["id"]]
    assert [(d["status"], d["previous_progress"], d["progress"], d["step"]) for d in events] == [
        ("queued", None, 0, None), ("running", 0, 0, "started"), ("running", 0, 100, "over"),
        ("completed", 100, 100, "completed")]


def test_progress_events_go_out_at_each_milestone_and_each_move_of_ten_points_only(client, aws, tap, stream):
    """Seed 002's rule, as subscribers receive it: a `job.status.progress` event when a write
    reaches 25/50/75/100 % or moves 10 points past the attempt's last event, none for a finer
    move; the 0 % milestone rides on the `queued` and `running` transitions."""
    from chalicelib.worker.helpers import progress

    def reports(ctx, payload):
        for percent in (5, 20, 24, 25, 30, 34, 35, 49, 50, 59):
            progress(ctx, percent, force=True)
        return {"ok": True}

    with registered("test.milestones", reports) as name:
        job = submit(client, {"type": name, "payload": {}})
        run_worker(client, aws)
    assert publish_stream(client._app, stream) == {"batchItemFailures": []}
    events = [e for e in tap() if e["detail"]["job_id"] == job["id"]]
    assert [(e["detail-type"], e["detail"]["previous_progress"], e["detail"]["progress"]) for e in events] == [
        ("job.status.changed", None, 0), ("job.status.changed", 0, 0),
        ("job.status.progress", 0, 20),  # 5 was no event: 5 points, no milestone
        ("job.status.progress", 20, 25),  # a milestone, 5 points on
        ("job.status.progress", 25, 35),  # 10 points: 30 and 34 were finer
        ("job.status.progress", 35, 49),
        ("job.status.progress", 49, 50),  # a milestone, 1 point on
        ("job.status.changed", 59, 100),  # 59 was no event; the completion carries 100
    ]


def test_the_erp_webhook_body_carries_the_seeds_event_fields_with_their_types(client, aws, tap, stream):
    """Seed 002's event payload, as the ERP receives it: the body POSTed is the event's detail,
    with every field of the seed's example (event_id, event_type, timestamp, job_id, status,
    progress, attempt, previous_status, previous_progress, step, message) of the seed's JSON
    type, `job_id` a string (docs/migrating.md), and jobpipe's own fields beside them."""
    from datetime import datetime

    from chalicelib.worker.helpers import progress

    def halfway(ctx, payload):
        progress(ctx, 50, "processing", "Processing data", force=True)
        return {"ok": True}

    with registered("test.halfway", halfway) as name:
        job = submit(client, {"type": name, "payload": {}})
        run_worker(client, aws)
    assert publish_stream(client._app, stream) == {"batchItemFailures": []}
    sender = InMemoryWebhookSender()
    composition.container().erp_bridge = ErpBridge(sender, "https://erp.example/hook", "functional-webhook-secret-0123456789abcdef")
    messages = [{"MessageId": str(uuid.uuid4()), "Body": json.dumps(e), "ReceiptHandle": "rh"} for e in tap()]
    assert client._app.handler_map["erp_bridge"](sqs_event(messages), LambdaContext(60)) == {"batchItemFailures": []}
    bodies = [json.loads(body) for _, body, _ in sender.posts]
    (running,) = [b for b in bodies if b["status"] == "running" and b["event_type"] == "job.status.progress"]
    assert {k: running[k] for k in ("event_type", "job_id", "status", "progress", "attempt", "previous_status",
                                    "previous_progress", "step", "message")} == {
        "event_type": "job.status.progress", "job_id": job["id"], "status": "running", "progress": 50,
        "attempt": 1, "previous_status": "running", "previous_progress": 0, "step": "processing",
        "message": "Processing data"}
    assert [(b["previous_status"], b["status"]) for b in bodies if b["event_type"] == "job.status.changed"] == [
        (None, "queued"), ("queued", "running"), ("running", "completed")]
    seed_types = {"event_id": str, "event_type": str, "timestamp": str, "job_id": str, "status": str,
                  "progress": int, "attempt": int}
    for body in bodies:
        assert {name: type(body[name]) for name in seed_types} == seed_types, body
        assert str(uuid.UUID(body["event_id"])) == body["event_id"]
        assert body["timestamp"].endswith("Z") and datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
        assert {"previous_status", "previous_progress", "step", "message"} <= set(body)
        assert (body["tenant"], body["type"]) == ("acme", name)
