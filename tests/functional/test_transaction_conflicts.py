"""A transaction DynamoDB cancels because another request was writing one of its items at that
moment (TransactionConflict): nothing was written, and trying it again is how it lands. Two jobs
of one scope completing together both write the scope's records; a cancel request can reach a
job in the very moment its attempt finishes."""
from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib import composition
from chalicelib.defaults import OUTCOME_RETRY_MAX_WAIT_S, OUTCOME_RETRY_PATIENCE_S
from chalicelib.domain.errors import StoreUnavailableError
from tests.functional.conftest import auth, get_job, invoke_worker, receive_all, sqs_event

SCOPED = {"type": "demo.steps", "scope": "p-7", "payload": {"steps": 2, "step_ms": 0}}


class Conflicting:
    """A DynamoDB client whose first `conflicts` TransactWriteItems are cancelled as DynamoDB
    cancels one that met a concurrent write (nothing written)."""

    def __init__(self, client: Any, conflicts: int) -> None:
        self._client = client
        self.left = conflicts

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._client, name)
        if name != "transact_write_items":
            return real

        def conflicting(**kwargs: Any) -> Any:
            if self.left:
                self.left -= 1
                reasons = [{"Code": "None"}] * (len(kwargs["TransactItems"]) - 1) + [{"Code": "TransactionConflict"}]
                raise ClientError({"Error": {"Code": "TransactionCanceledException",
                                             "Message": "Transaction cancelled [None, TransactionConflict]"},
                                   "CancellationReasons": reasons}, "TransactWriteItems")
            return real(**kwargs)

        return conflicting


def test_a_completion_that_met_a_concurrent_write_lands_on_its_next_try(app, client, aws):
    """The completion's transaction (the job, its run record, the scope's invalidations) was
    cancelled by another job's completion in the same scope: it is tried again and the job
    completes in this delivery. It was a store outage to the worker: the message came back, waited
    out the lease, and the attempt that had done its work ended `worker_lost` and ran again."""
    job_id = client.http.post("/jobs", headers=auth(), body=json.dumps(SCOPED)).json_body["id"]
    store = composition.container().store
    store._ddb = conflicting = Conflicting(store._ddb, conflicts=2)

    assert invoke_worker(app, sqs_event(receive_all(aws))) == {"batchItemFailures": []}

    assert conflicting.left == 0
    job = get_job(client, job_id)
    assert (job["status"], job["attempts"], job["error"]) == ("completed", 1, None)
    runs = client.http.get(f"/jobs/{job_id}/runs", headers=auth()).json_body["runs"]
    assert [r["status"] for r in runs] == ["completed"]


def test_a_completion_that_keeps_meeting_concurrent_writes_is_a_store_outage(app, client, aws, worker_clock):
    """Past its tries the conflict is what it is, a store that cannot take the write now: the
    completion is written again while the worker's patience lasts (its waits on the worker's
    clock, which each wait moves), then the delivery fails and comes back, nothing half-written."""
    job_id = client.http.post("/jobs", headers=auth(), body=json.dumps(SCOPED)).json_body["id"]
    store = composition.container().store
    store._ddb = Conflicting(store._ddb, conflicts=99)

    failures = invoke_worker(app, sqs_event(receive_all(aws)))["batchItemFailures"]

    assert len(failures) == 1
    assert OUTCOME_RETRY_PATIENCE_S - OUTCOME_RETRY_MAX_WAIT_S < worker_clock.monotonic() <= OUTCOME_RETRY_PATIENCE_S
    store._ddb = store._ddb._client
    job = get_job(client, job_id)
    assert job["status"] == "running"
    assert client.http.get(f"/jobs/{job_id}/runs", headers=auth()).json_body["runs"][0]["status"] == "running"


def test_a_stream_batch_whose_count_met_another_shards_count_is_counted_on_its_next_try(app, client, aws):
    """Every change-stream invocation adds its batch to the same counter items (STATUS, the
    hour's, the tenant's) in one transaction; a table with more than one stream shard runs one
    invocation per shard at once, and two of those transactions meeting on STATUS cancel one
    (TransactionConflict). It was a store outage: the whole batch failed before any event went
    out, and the stream delivered it again (bisected, up to 20 times)."""
    from chalicelib.domain.job import parse_time
    from chalicelib.domain.stats import delta_for
    from chalicelib.domain.status import JobStatus
    from tests.functional.test_api import STEPS, submit

    job = composition.container().store.get(submit(client, STEPS)["id"], mark_gone=False)
    stats = composition.container().stats
    stats._ddb = conflicting = Conflicting(stats._ddb, conflicts=1)

    assert stats.record_batch([delta_for(None, job, parse_time(job.created_at))]) == 1

    assert conflicting.left == 0
    assert stats.status_counts()["queued"] == 1
    stats._ddb = Conflicting(stats._ddb._client, conflicts=99)  # past its tries: a store outage, as before
    with pytest.raises(StoreUnavailableError):
        stats.record_batch([delta_for(job, job.model_copy(update={"version": job.version + 1, "status": JobStatus.RUNNING}),
                                      parse_time(job.created_at))])
    assert stats.status_counts() == {"queued": 1}
