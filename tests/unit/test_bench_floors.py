"""The bench's floors for the job run alone: what the design must spend, with and without the
ERP bridge's delivery ledger (ErpReceiverDeduplicates)."""
from __future__ import annotations

from bench.requests_per_job import floors


def total(floor: dict) -> int:
    return sum(n for n, _ in floor.values())


def test_a_ten_second_job_alone_has_a_floor_of_37_requests_on_the_ledger():
    floor = floors(10.3)  # five 2 s progress windows inside the run: 8 status events
    assert floor["JobWorker dynamodb.UpdateItem"][0] == 6
    assert floor["EventPublisher eventbridge.PutEvents"][0] == 8
    assert floor["ErpBridge dynamodb.TransactWriteItems"][0] == floor["ErpBridge dynamodb.BatchWriteItem"][0] == 8
    assert total(floor) == 37


def test_an_erp_that_deduplicates_takes_the_ledger_out_of_the_floor():
    floor = floors(10.3, erp_ledger=False)
    assert not [k for k in floor if k.startswith("ErpBridge ")]
    assert total(floor) == 21


def test_a_reconciler_pass_in_the_lone_jobs_window_is_not_counted_as_the_jobs():
    """The reconciler runs once a minute whatever the jobs: a pass that falls inside the lone
    job's window is reported apart, not added to the job's requests or invocations."""
    from collections import Counter

    from bench.requests_per_job import split_scheduled

    totals = Counter({"JobWorker dynamodb.UpdateItem": 6, "Reconciler dynamodb.Query": 8, "Reconciler sqs.ReceiveMessage": 4})
    invocations = Counter({"JobWorker": 1, "Reconciler": 1})
    own, own_invocations, scheduled = split_scheduled(totals, invocations)
    assert own == Counter({"JobWorker dynamodb.UpdateItem": 6}) and own_invocations == Counter({"JobWorker": 1})
    assert scheduled == {"Reconciler": {"requests": 12, "invocations": 1}}
    assert split_scheduled(Counter({"JobWorker dynamodb.UpdateItem": 6}), Counter({"JobWorker": 1}))[2] == {}
