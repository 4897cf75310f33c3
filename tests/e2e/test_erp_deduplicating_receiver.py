"""An ERP that deduplicates on X-Jobpipe-Event-Id, deployed: with ErpReceiverDeduplicates=true
(a third stack, `jobpipe-erp-dedup`, in the same emulator) the bridge delivers every status
event of a job, a refused delivery comes back with the same id, and no delivery record is
written to the idempotency table."""
from __future__ import annotations

import pytest

from tests.e2e.conftest import WEBHOOK_SECRET, deploy_stack
from tests.e2e.test_least_privilege import function_environments
from tests.support.waiting import last_read
from tests.support.webhook_receiver import WebhookReceiver

DEDUP_STACK = "jobpipe-erp-dedup"


@pytest.fixture(scope="module")
def dedup_stack(stack):
    webhook = WebhookReceiver(WEBHOOK_SECRET).start()
    try:
        yield deploy_stack(DEDUP_STACK, stack.session, stack.log, webhook, ErpReceiverDeduplicates="true")
    finally:
        webhook.stop()


def test_every_event_reaches_a_deduplicating_erp_without_a_delivery_ledger(dedup_stack):
    stack = dedup_stack
    assert function_environments(stack, DEDUP_STACK)["ErpBridge"]["ERP_RECEIVER_DEDUPLICATES"] == "true"
    job = stack.submit({"type": "demo.steps", "payload": {"steps": 4, "step_ms": 0}})
    stack.webhook.fail_first_for_jobs.add(job["id"])  # each event's first delivery is answered 500
    assert stack.wait_terminal(job["id"])["status"] == "completed"
    stack.wait_for_webhook(job["id"], "completed", timeout_s=90)

    # What was refused comes back, under the same id: each after its own retry wait, so the
    # completed event's second delivery may land before an earlier event's.
    def read():
        deliveries = stack.webhook.all_for(job["id"])
        accepted = stack.webhook.accepted(job["id"])
        refused = {d["detail"]["event_id"] for d in deliveries if d["status"] == 500}
        return deliveries, accepted, refused, {d["detail"]["event_id"] for d in accepted}
    deliveries, accepted, refused, taken = last_read(read, lambda r: bool(r[2]) and r[2] <= r[3],
                                                     timeout_s=90, every_s=0.5)
    assert refused and refused <= taken, f"refused and never taken: {refused - taken}"
    assert all(d["event_id_header"] == d["detail"]["event_id"] and d["signature_valid"] for d in deliveries)
    statuses = [d["detail"]["status"] for d in accepted if d["detail"]["event_type"] == "job.status.changed"]
    assert {"queued", "running", "completed"} <= set(statuses)

    table = stack.outputs["IdempotencyTableName"]
    records = stack.session.client("dynamodb").scan(
        TableName=table, FilterExpression="begins_with(id, :p)",
        ExpressionAttributeValues={":p": {"S": "DELIVERY#erp_bridge#"}},
    )["Items"]
    assert records == []
