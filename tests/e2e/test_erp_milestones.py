"""Milestone progress at the ERP: a job's milestone events (`job.status.progress`) reach the
ERP webhook and the `erp-outbound` queue once each, with seed 002's fields, in the
EventBridge envelope docs/events.md documents."""
import json
import time

from chalicelib.defaults import PROGRESS_SIGNIFICANT_JUMP
from chalicelib.domain.progress import MILESTONES
from tests.support.waiting import last_read

SEED_FIELDS = ("event_id", "event_type", "timestamp", "job_id", "status", "progress", "attempt",
               "previous_status", "previous_progress", "step", "message")
ENVELOPE = ("version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail")


def _outbound(stack, job_id, until, timeout_s=60):
    """The erp-outbound messages of `job_id` (bodies), read and deleted; others are left."""
    sqs, url = stack.session.client("sqs"), stack.outputs["ErpOutboundQueueUrl"]
    mine: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while not until(mine) and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                           VisibilityTimeout=1).get("Messages", []):
            body = json.loads(message["Body"])
            if body.get("detail", {}).get("job_id") == job_id:
                mine.append(body)
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return mine


def _is_milestone(previous, current):
    return current - previous >= PROGRESS_SIGNIFICANT_JUMP or any(previous < m <= current for m in MILESTONES)


def test_milestones_reach_the_erp_webhook_and_erp_outbound_once_each(stack):
    # 20 steps of 300 ms: progress is written about every 2 s (PROGRESS_MIN_INTERVAL_S), so
    # the run crosses at least two milestones between its start and its completion.
    job = stack.submit({"type": "demo.steps", "payload": {"steps": 20, "step_ms": 300}})
    assert stack.wait_terminal(job["id"], timeout_s=90)["status"] == "completed"

    def finished(bodies):
        return any(b["detail"].get("status") == "completed" for b in bodies)

    outbound = _outbound(stack, job["id"], finished)
    time.sleep(2)  # a duplicate would arrive right behind
    outbound += _outbound(stack, job["id"], lambda bodies: False, timeout_s=2)

    milestones = [b for b in outbound if b["detail-type"] == "job.status.progress"]
    assert len(milestones) >= 2, [(b["detail-type"], b["detail"]["progress"]) for b in outbound]
    for body in outbound:
        assert set(ENVELOPE) <= set(body) and body["source"] == "jobpipe"
        assert body["detail-type"] == body["detail"]["event_type"]
    ids = [b["detail"]["event_id"] for b in outbound]
    assert len(ids) == len(set(ids)), "an event reached erp-outbound twice"

    details = sorted((b["detail"] for b in milestones), key=lambda d: d["version"])
    for detail in details:
        assert all(field in detail for field in SEED_FIELDS), detail
        assert detail["status"] == detail["previous_status"] == "running"
        assert _is_milestone(detail["previous_progress"], detail["progress"]), detail
    assert [d["progress"] for d in details] == sorted({d["progress"] for d in details})

    last_read(lambda: set(stack.webhook.accepted_counts()), lambda accepted: set(ids) <= accepted,
              timeout_s=60, every_s=0.5)
    time.sleep(2)
    accepted = stack.webhook.accepted_counts()
    assert {i: accepted[i] for i in ids} == {i: 1 for i in ids}
    delivered = {d["detail"]["event_id"]: d for d in stack.webhook.accepted(job["id"])}
    for detail in details:
        assert delivered[detail["event_id"]]["detail"] == detail  # the webhook body is the event's detail
        assert delivered[detail["event_id"]]["signature_valid"]
