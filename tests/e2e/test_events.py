"""Status events on the deployed stack: one per transition, to the bus, the ERP webhook and the
cache invalidation consumer."""
import json
import time
import uuid
from collections import Counter

import pytest

from chalicelib.adapters.dynamodb_items import job_key
from tests.support.bus_tap import BusTap
from tests.support.waiting import last_read

TERMINAL = {"completed", "failed", "canceled"}


@pytest.fixture(scope="module")
def bus_tap(stack):
    """An extra rule on the bus delivering every jobpipe event to a test queue: its `drain`."""
    return BusTap(stack.session, stack.outputs["JobEventsBusName"]).drain


def status_events(seen, job_id):
    return [e["detail"] for e in seen if e["detail-type"] == "job.status.changed" and e["detail"]["job_id"] == job_id]


def test_one_status_event_per_transition_reaches_the_bus(stack, bus_tap):
    jobs = [stack.submit({"type": "demo.steps", "payload": {"steps": 4, "step_ms": 300}}) for _ in range(3)]
    failing = stack.submit({"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0, "fail_at": 1}})
    for job in jobs + [failing]:
        stack.wait_terminal(job["id"], timeout_s=90)
    ids = [j["id"] for j in jobs + [failing]]

    def complete(seen):
        return all(any(d["status"] in TERMINAL for d in status_events(seen, i)) for i in ids)

    seen = bus_tap(complete, timeout_s=60)
    time.sleep(2)  # anything duplicated would arrive right behind
    seen = bus_tap(lambda s: False, timeout_s=1)
    for job in jobs:
        transitions = [(d["previous_status"], d["status"]) for d in status_events(seen, job["id"])]
        assert sorted(transitions, key=str) == sorted(
            [(None, "queued"), ("queued", "running"), ("running", "completed")], key=str
        ), transitions
    failed = [(d["previous_status"], d["status"]) for d in status_events(seen, failing["id"])]
    assert Counter(failed) == Counter(
        [(None, "queued"), ("queued", "running"), ("running", "retrying"), ("retrying", "running"),
         ("running", "retrying"), ("retrying", "running"), ("running", "failed")]
    ), failed
    ids_seen = [e["detail"]["event_id"] for e in seen if e["detail"].get("job_id") in ids]
    assert len(ids_seen) == len(set(ids_seen))
    completed = next(d for d in status_events(seen, jobs[0]["id"]) if d["status"] == "completed")
    assert completed["progress"] == 100 and completed["previous_progress"] is not None
    assert completed["tenant"] == "acme" and completed["type"] == "demo.steps" and completed["version"] > 1


def test_erp_webhook_receives_each_transition_once_signed_even_after_a_500(stack):
    job = stack.submit({"type": "demo.steps", "payload": {"steps": 3, "step_ms": 100}})
    stack.webhook.fail_first_for_jobs.add(job["id"])
    stack.wait_terminal(job["id"])
    last_read(lambda: stack.webhook.accepted(job["id"]), lambda accepted: len(accepted) >= 3, timeout_s=60, every_s=0.5)
    time.sleep(3)  # a duplicate delivery would show up here
    accepted = stack.webhook.accepted(job["id"])
    statuses = sorted(d["detail"]["status"] for d in accepted)
    assert statuses == ["completed", "queued", "running"], statuses
    assert all(d["signature_valid"] for d in stack.webhook.all_for(job["id"]))
    assert all(d["event_id_header"] == d["detail"]["event_id"] for d in accepted)
    failures = [d for d in stack.webhook.all_for(job["id"]) if d["status"] == 500]
    assert {d["detail"]["event_id"] for d in failures} == {d["detail"]["event_id"] for d in accepted}


def test_completion_invalidates_exactly_the_named_namespaces_of_its_scope(stack, bus_tap):
    scope = f"project-{uuid.uuid4().hex[:8]}"
    other_scope = f"project-{uuid.uuid4().hex[:8]}"
    job = stack.submit({"type": "demo.steps", "scope": scope, "payload": {"steps": 6, "step_ms": 400}})
    stack.wait_for(job["id"], lambda j: j["status"] == "running")
    for where, namespace in ((scope, "steps-summary"), (scope, "steps-report"), (scope, "unrelated"),
                             (other_scope, "steps-summary")):
        put = stack.call("PUT", f"/cache/{where}/{namespace}", json={"rows": [1, 2, 3]})
        assert put.status_code == 200, put.text
    # running is not completion: nothing is invalidated yet
    assert stack.call("GET", f"/cache/{scope}/steps-summary").status_code == 200
    stack.wait_terminal(job["id"])
    miss = last_read(lambda: stack.call("GET", f"/cache/{scope}/steps-summary"), lambda read: read.status_code == 404,
                     timeout_s=30, every_s=0.3)
    assert miss.status_code == 404 and miss.json()["status"] == "miss"
    assert miss.json()["invalidated_by"] == job["id"]
    assert stack.call("GET", f"/cache/{scope}/steps-report").status_code == 404
    assert stack.call("GET", f"/cache/{scope}/unrelated").json()["value"] == {"rows": [1, 2, 3]}
    assert stack.call("GET", f"/cache/{other_scope}/steps-summary").status_code == 200
    assert stack.call("GET", f"/cache/{scope}/steps-summary", tenant="globex").status_code == 404
    # The completion's own write invalidated the namespaces; the task list is the consumer's, a moment later.
    tasks = last_read(lambda: stack.call("GET", f"/scopes/{scope}/tasks").json()["tasks"], bool,
                      timeout_s=30, every_s=0.3)
    assert [(t["type"], t["job_id"]) for t in tasks] == [("demo.steps", job["id"])]
    seen = bus_tap(lambda s: any(e["detail-type"] == "cache.invalidated" and e["detail"]["job_id"] == job["id"] for e in s))
    (announcement,) = [e["detail"] for e in seen if e["detail-type"] == "cache.invalidated" and e["detail"]["job_id"] == job["id"]]
    assert announcement["scope"] == scope and sorted(announcement["namespaces"]) == ["steps-report", "steps-summary"]
    # readers recompute after a miss and store again
    again = stack.call("PUT", f"/cache/{scope}/steps-summary", json={"rows": [4]},
                       headers={**stack.headers(), "If-Match": str(miss.json()["generation"])})
    assert again.status_code == 200
    assert stack.call("GET", f"/cache/{scope}/steps-summary").json()["value"] == {"rows": [4]}


def test_progress_read_over_the_api_never_goes_back_within_an_attempt(stack):
    """What a client polling GET /jobs/<id> sees while a job runs, fails, retries from 0 and
    fails for good. (The store's refusal of a write below the stored percent is a JobStore
    contract, checked on both adapters in tests/contract.)"""
    job = stack.submit({"type": "demo.steps", "payload": {"steps": 6, "step_ms": 250, "fail_at": 5}})
    samples = []
    current = stack.job(job["id"])
    deadline = time.monotonic() + 90
    while current["status"] not in TERMINAL:
        assert time.monotonic() < deadline, current
        samples.append((current["attempts"], current["progress"]["percent"]))
        time.sleep(0.1)
        current = stack.job(job["id"])
    assert current["status"] == "failed" and current["attempts"] == 3, current
    by_attempt: dict[int, list[float]] = {}
    for attempt, percent in samples:
        by_attempt.setdefault(attempt, []).append(percent)
    assert all(seq == sorted(seq) for seq in by_attempt.values()), by_attempt
    # every attempt got to step 4 of 6 before failing at step 5, and the next started from 0
    reached = {attempt: max(seq) for attempt, seq in by_attempt.items() if attempt}
    assert len(reached) >= 2 and all(percent <= 100 * 4 / 6 + 0.01 for percent in reached.values()), reached
    assert any(max(by_attempt[a]) > min(by_attempt[a + 1]) for a in reached if a + 1 in by_attempt), by_attempt


def _take_parked(stack, job_id: str, timeout_s: float) -> dict:
    """The record of `job_id` parked on StreamFailureQueue, received and deleted (a reconciler
    pass that took it first hides it for a minute: looked for again until it shows)."""
    sqs, url = stack.session.client("sqs"), stack.outputs["StreamFailureQueueUrl"]
    deadline = time.monotonic() + timeout_s
    while True:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                           VisibilityTimeout=5).get("Messages", []):
            body = json.loads(message["Body"])
            if body.get("job_id") == job_id:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                return body
        assert time.monotonic() < deadline, f"no record of {job_id} parked on StreamFailureQueue"


def test_a_job_record_edited_by_hand_is_parked_and_the_events_behind_it_still_go_out(stack, bus_tap):
    """A status this version does not know (an item edited by hand, a newer version's met in a
    rollback): its stream record is parked whole, and the stream goes on; before, its batch
    failed every delivery and held every later event back."""
    tenant = "edited-by-hand"  # a tenant of its own: the item stays unreadable to listings
    edited = stack.submit({"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}, tenant=tenant)
    stack.wait_terminal(edited["id"], tenant=tenant)
    stack.session.client("dynamodb").update_item(
        TableName=stack.outputs["JobsTableName"], Key=job_key(edited["id"]), UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": "paused"}})
    after = stack.submit({"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    seen = bus_tap(lambda s: any(d["status"] == "completed" for d in status_events(s, after["id"])), timeout_s=60)
    assert "completed" in [d["status"] for d in status_events(seen, after["id"])], "the stream is held up"
    body = _take_parked(stack, edited["id"], timeout_s=150)
    assert body["parked_stream_record"]["dynamodb"]["NewImage"]["status"] == {"S": "paused"}
