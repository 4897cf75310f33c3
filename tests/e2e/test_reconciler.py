"""Nothing stays stuck, nothing vanishes, on the deployed stack: the scheduled reconciler sends
lost messages again, retries the attempt of a worker that died once its lease has expired,
fails dead-lettered jobs, replays a stream batch the event publisher gave up on and deletes a
parked record an operator gave up while it was hidden; long
schedules are held and cancelable; a redirecting ERP gets the event once with its body; an
oversized event goes out clipped.

The scenarios are set up together and waited for together: the reconciler runs once a minute
(EventBridge's shortest rate), and the suite allows two periods."""
from __future__ import annotations

import copy
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from chalicelib.adapters.dynamodb_items import job_key
from chalicelib.adapters.dynamodb_stream import as_delivered
from chalicelib.adapters.sqs_stream_failures import parked_body
from chalicelib.defaults import REPLAY_RETRY_BASE_S
from scripts.local_stack import stack_functions
from tests.support.stream import on_failure_record, read_stream
from tests.support.waiting import eventually

PERIOD_S = 60
STEPS = {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0}}
BIG_MESSAGE = 300_000  # characters: the event would exceed PutEvents' 256 KB unclipped


@pytest.fixture(scope="module")
def scenarios(stack):
    sqs = stack.session.client("sqs")
    out = {}
    # Lost messages: two delayed jobs whose queue is purged before they are delivered.
    out["purged"] = [stack.submit({**STEPS, "delay_seconds": 15})["id"] for _ in range(2)]
    sqs.purge_queue(QueueUrl=stack.outputs["JobsQueueUrl"])
    out["purged_at"] = time.monotonic()
    # A job message moved to the DLQ by hand: the job is held, its message parked on the DLQ.
    held_for_dlq = stack.submit({**STEPS, "delay_seconds": 7200})
    sqs.send_message(QueueUrl=stack.outputs["JobsDeadLetterQueueUrl"],
                     MessageBody=json.dumps({"job_id": held_for_dlq["id"], "attempt": 1}))
    out["dead_lettered"] = held_for_dlq["id"]
    # A job an hour ahead.
    out["hour_ahead"] = stack.submit({**STEPS, "delay_seconds": 3600})
    # An ERP that answers 302 before 200, and an event too large for PutEvents unclipped.
    redirected = stack.submit({**STEPS, "delay_seconds": 2})
    stack.webhook.redirect_first_for_jobs.add(redirected["id"])
    out["redirected"] = redirected["id"]
    out["big"] = stack.submit({"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0,
                                                                 "message_chars": BIG_MESSAGE}})["id"]
    # A worker process that dies in its first attempt: nothing re-hides the claimed message for
    # the lease, so the reconciler is what brings the job back once the lease has expired.
    out["crashed"] = stack.submit({"type": "demo.chaos", "payload": {"steps": 2, "step_ms": 0, "crash_at_step": 1}})
    out["crashed_at"] = time.monotonic()
    # A stream batch the event publisher gave up on, described on StreamFailureQueue as the
    # mapping's on-failure destination does: here the job's creation, whose event goes out too.
    replayed = stack.submit(STEPS)
    arn, shard, sequences = _stream_records_of(stack, replayed["id"])
    sqs.send_message(QueueUrl=stack.outputs["StreamFailureQueueUrl"],
                     MessageBody=on_failure_record(arn, shard, sequences[0], sequences[-1], len(sequences)))
    out["replayed"], out["replayed_at"] = replayed["id"], time.monotonic()
    return out


def _stream_records_of(stack, job_id: str) -> tuple[str, str, list[str]]:
    """The jobs table's stream, its shard, and the sequence numbers of `job_id`'s writes on it."""
    arn, shard, records = read_stream(stack.session.client("dynamodb"), stack.session.client("dynamodbstreams"),
                                      stack.outputs["JobsTableName"])
    key = job_key(job_id)
    sequences = [r["dynamodb"]["SequenceNumber"] for r in records if r["dynamodb"]["Keys"] == key]
    assert sequences, f"no write of {job_id} on the stream"
    return arn, shard, sequences


def test_a_dead_workers_attempt_shows_running_then_is_retried_after_its_lease(stack, scenarios):
    job = scenarios["crashed"]
    running = stack.wait_for(job["id"], lambda j: j["status"] == "running", timeout_s=30)
    # The dead attempt has no run record yet (written when an attempt ends): the job shows it.
    (run,) = stack.call("GET", f"/jobs/{job['id']}/runs").json()["runs"]
    assert (run["attempt"], run["status"], run["started_at"]) == (1, "running", running["started_at"]), run
    lease_s = 3 + 30  # demo.chaos's timeout + the lease grace
    left = lease_s + 2 * PERIOD_S + 20 - (time.monotonic() - scenarios["crashed_at"])
    done = stack.wait_terminal(job["id"], timeout_s=max(left, 1))
    assert done["status"] == "completed" and done["attempts"] == 2, done
    runs = stack.call("GET", f"/jobs/{job['id']}/runs").json()["runs"]
    assert [(r["attempt"], r["status"], (r["error"] or {}).get("code")) for r in runs] == [
        (1, "failed", "worker_lost"), (2, "completed", None)], runs
    assert runs[0]["started_at"] == run["started_at"] and runs[1]["started_at"] > runs[0]["finished_at"]


def test_purged_jobs_complete_within_two_reconciler_periods(stack, scenarios):
    for job_id in scenarios["purged"]:
        left = 15 + 5 + 2 * PERIOD_S + 20 - (time.monotonic() - scenarios["purged_at"])
        job = stack.wait_terminal(job_id, timeout_s=max(left, 1))
        assert job["status"] == "completed", job
    stats = stack.call("GET", "/api/system/stats", headers=stack.operator_headers()).json()
    assert stats["reconciler"]["totals"].get("redispatched", 0) >= 2, stats["reconciler"]


def test_a_message_moved_to_the_dlq_fails_its_job(stack, scenarios):
    job = stack.wait_terminal(scenarios["dead_lettered"], timeout_s=2 * PERIOD_S + 20)
    assert job["status"] == "failed" and job["error"]["code"] == "dead_lettered", job
    stack.wait_for_webhook(job["id"], "failed", timeout_s=60)  # its event reaches the subscribers


def test_a_job_an_hour_ahead_is_queued_with_not_before_and_can_be_canceled(stack, scenarios):
    submitted = scenarios["hour_ahead"]
    job = stack.job(submitted["id"])
    assert job["status"] == "queued"
    not_before = datetime.fromisoformat(job["not_before"].replace("Z", "+00:00"))
    created = datetime.fromisoformat(job["created_at"].replace("Z", "+00:00"))
    assert not_before - created == timedelta(seconds=3600)
    assert not_before > datetime.now(timezone.utc) + timedelta(minutes=50)
    canceled = stack.call("DELETE", f"/jobs/{job['id']}")
    assert canceled.status_code == 202 and canceled.json()["status"] == "canceled"


def test_an_erp_answering_302_gets_the_event_once_with_its_body(stack, scenarios):
    job_id = scenarios["redirected"]
    stack.wait_terminal(job_id, timeout_s=60)
    deliveries = stack.wait_for_webhook(job_id, "completed", timeout_s=2 * PERIOD_S)
    by_event = {}
    for d in stack.webhook.all_for(job_id):
        by_event.setdefault(d["detail"]["event_id"], []).append(d["status"])
    assert by_event and all(statuses[0] == 302 and statuses.count(200) == 1 for statuses in by_event.values()), by_event
    assert all(d["signature_valid"] and d["detail"]["job_id"] == job_id for d in deliveries)
    assert stack.webhook.followed_redirects == 0


def test_an_oversized_event_goes_out_clipped_and_the_stream_moves_on(stack, scenarios):
    job = stack.wait_terminal(scenarios["big"], timeout_s=60)
    assert job["status"] == "completed" and len(job["progress"]["message"]) == BIG_MESSAGE
    (completed,) = [d["detail"] for d in stack.wait_for_webhook(job["id"], "completed", timeout_s=60)
                    if d["detail"]["status"] == "completed"]
    assert 1000 < len(completed["message"]) <= 2048 and completed["message"].endswith("…")
    after = stack.submit(STEPS)  # a later write on the same stream is published too
    stack.wait_terminal(after["id"], timeout_s=60)
    stack.wait_for_webhook(after["id"], "completed", timeout_s=60)


def test_a_stream_batch_the_publisher_gave_up_on_is_replayed_and_reaches_the_erp_once(stack, scenarios):
    sqs = stack.session.client("sqs")
    url = stack.outputs["StreamFailureQueueUrl"]
    deadline = scenarios["replayed_at"] + 2 * PERIOD_S + 20
    while True:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        if sum(int(v) for v in attributes.values()) == 0:
            break
        assert time.monotonic() < deadline, f"the description is still on StreamFailureQueue: {attributes}"
        time.sleep(2)
    stats = stack.call("GET", "/api/system/stats", headers=stack.operator_headers()).json()
    assert stats["reconciler"]["totals"].get("stream_batch_replayed", 0) >= 1, stats["reconciler"]
    # Published again with the same id; the ERP bridge's ledger delivers each event once.
    accepted = stack.wait_for_webhook(scenarios["replayed"], "completed", timeout_s=60)
    ids = [d["detail"]["event_id"] for d in accepted]
    assert len(ids) == len(set(ids)) and [d["detail"]["status"] for d in accepted].count("queued") == 1, accepted


def run_pass(stack) -> bool:
    """One reconciler pass, invoked as its schedule invokes it; True once it answered."""
    function = stack_functions(stack.session, "jobpipe-e2e")["Reconciler"]
    event = {"version": "0", "id": "e2e", "detail-type": "Scheduled Event", "source": "aws.events",
             "account": "000000000000", "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "region": "us-east-1", "resources": [], "detail": {}}
    try:
        answer = stack.session.client("lambda").invoke(FunctionName=function, Payload=json.dumps(event).encode())
    except ClientError as exc:  # its concurrency taken by the scheduled pass: that pass takes what is due
        if exc.response["Error"]["Code"] != "TooManyRequestsException":
            raise
        return True
    assert "FunctionError" not in answer, answer["Payload"].read()[:500]
    return True


def test_a_parked_record_the_reconciler_holds_hidden_is_deleted_at_its_next_take(stack):
    """An operator gives up a parked stream record (an item edited into a status no version
    reads) while the reconciler holds it hidden between its tries: SQS cannot hand it out to be
    deleted, so the delete is kept (202) and the reconciler's next take deletes it unpublished."""
    sqs, ddb = stack.session.client("sqs"), stack.session.client("dynamodb")
    job = stack.submit(STEPS)
    _, _, records = read_stream(ddb, stack.session.client("dynamodbstreams"), stack.outputs["JobsTableName"])
    record = as_delivered(copy.deepcopy(next(r for r in records if r["dynamodb"]["Keys"] == job_key(job["id"]))))
    record["dynamodb"]["NewImage"]["status"] = {"S": "paused"}
    parked = sqs.send_message(QueueUrl=stack.outputs["StreamFailureQueueUrl"],
                              MessageBody=parked_body(record))["MessageId"]
    entry = {"TableName": stack.outputs["StatsTableName"], "Key": {"pk": {"S": f"PARKED#{parked}"}},
             "ConsistentRead": True}
    # A pass run now rather than at the schedule's next minute (overlapping passes are safe): its
    # take writes the record's entry, then hides the record for a minute after its failed try.
    eventually(lambda: run_pass(stack) and ddb.get_item(**entry).get("Item"), lambda item: item is not None,
               timeout_s=PERIOD_S + 20, every_s=2, what="the reconciler to take the parked record")
    path = f"/api/system/dlq/letters/{parked}?queue=stream_failure"
    response = stack.call("DELETE", path, headers=stack.operator_headers())
    assert response.status_code == 202, response.text
    assert response.json() == {"drop_requested": parked, "queue": "stream_failure"}
    time.sleep(REPLAY_RETRY_BASE_S - 5)  # hidden until then: no pass can take it sooner
    eventually(lambda: run_pass(stack) and ddb.get_item(**entry)["Item"], lambda item: "removed_at" in item,
               timeout_s=PERIOD_S + 20, every_s=3, what="the reconciler to delete the dropped record")
    stats = stack.call("GET", "/api/system/stats", headers=stack.operator_headers()).json()
    assert stats["reconciler"]["totals"].get("stream_record_dropped", 0) >= 1, stats["reconciler"]
    again = stack.call("DELETE", path, headers=stack.operator_headers())
    assert again.status_code == 404 and again.json()["error"]["code"] == "letter_not_found", again.text
