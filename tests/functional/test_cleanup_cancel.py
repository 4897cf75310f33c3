"""A running clean-up stops at the next page it reads once its cancel is requested, whatever
that page holds: most of the finished-day index it walks is empty days and shards, and a
cancel that waited for a page with jobs on it would often never be seen."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

import botocore.client

from chalicelib import composition
from chalicelib.adapters.dynamodb_items import FINISHED_SHARDS
from chalicelib.adapters.retention import DynamoFinishedJobs
from chalicelib.defaults import CANCEL_POLL_INTERVAL_S, CLEANUP_TTL_SLACK_DAYS, RETENTION_MAX_DAYS
from chalicelib.domain.job import Job, isoformat, new_job_id, utcnow
from chalicelib.domain.status import JobStatus
from tests.functional.conftest import drain, job_items, token

OPERATOR = {"Authorization": f"Bearer {token(user='root', roles=['operator'])}"}


class _CancelsAfterFirstPurge:
    """The clean-up's DynamoDB client: at its first read of the finished-day index after a job
    was purged, the operator cancels the task and a poll interval passes (as the walk of the
    index takes); the clean-up's writes after that are counted."""

    def __init__(self, client, cancel) -> None:
        self._client = client
        self._cancel = cancel
        self.purged = False
        self.canceled = False
        self.index_reads_after_cancel = 0
        self.writes_after_cancel: list[str] = []

    def query(self, **request):
        if request.get("IndexName") == "by_finished_day":
            if self.purged and not self.canceled:
                self._cancel()
                self.canceled = True
            elif self.canceled:
                self.index_reads_after_cancel += 1
        return self._client.query(**request)

    def _write(self, operation: str, request: dict):
        if self.canceled:
            self.writes_after_cancel.append(operation)
        return getattr(self._client, operation)(**request)

    def update_item(self, **request):
        return self._write("update_item", request)

    def batch_write_item(self, **request):
        answer = self._write("batch_write_item", request)
        self.purged = True
        return answer

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_cleanup_canceled_while_it_walks_empty_pages_ends_canceled_deleting_nothing_more(
        app, client, aws, worker_clock, monkeypatch):
    services = composition.container()
    old = Job(id=new_job_id(), type="demo.steps", tenant="acme", user="ann", status=JobStatus.COMPLETED,
              payload={}, created_at=isoformat(utcnow() - timedelta(days=30, hours=1)),
              finished_at=isoformat(utcnow() - timedelta(days=30)))
    services.store.create(old)
    task_id = client.http.post("/api/system/maintenance/cleanup-runs", headers=OPERATOR).json_body["task_id"]

    def cancel() -> None:
        answer = client.http.delete(f"/api/system/maintenance/tasks/{task_id}", headers=OPERATOR)
        assert answer.status_code == 202 and answer.json_body["cancel_requested"] is True, answer.body
        worker_clock.advance(CANCEL_POLL_INTERVAL_S)

    watched = _CancelsAfterFirstPurge(services.client("dynamodb"), cancel)
    monkeypatch.setattr(services, "finished_jobs", DynamoFinishedJobs(watched, services.settings.table_name,
                                                                      services.blobs))
    drain(app, aws)

    assert watched.canceled
    answer = client.http.get(f"/api/system/maintenance/tasks/{task_id}", headers=OPERATOR).json_body
    assert answer["status"] == "canceled", answer
    assert answer["cancel_requested"] is True and answer["result"] is None
    assert job_items(aws, old.id) == []  # purged before the cancel
    # Every day after the job's is empty: the cancel is seen at the next page read, and
    # nothing is written after it.
    assert watched.index_reads_after_cancel <= 1
    assert watched.writes_after_cancel == []


def test_walking_empty_pages_costs_no_more_requests_than_the_index_reads(app, client, aws, worker_clock, monkeypatch):
    """Empty pages are handed to the clean-up for its cancel check, and cost nothing more: one
    Query per day and shard, no progress write for a page with nothing deleted, and no cancel
    read while no poll interval has passed (the worker's clock stands still here)."""
    task_id = client.http.post("/api/system/maintenance/cleanup-runs", headers=OPERATOR).json_body["task_id"]
    requests: Counter = Counter()
    send = botocore.client.BaseClient._make_api_call

    def counted(self, operation, params):
        if self.meta.service_model.service_name == "dynamodb":
            requests[operation] += 1
        return send(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counted)
    drain(app, aws)
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", send)

    answer = client.http.get(f"/api/system/maintenance/tasks/{task_id}", headers=OPERATOR).json_body
    assert answer["status"] == "completed" and answer["result"]["jobs_deleted"] == 0, answer
    # max_age_hours 24: from the oldest day a record can be on to yesterday, every shard
    days = RETENTION_MAX_DAYS + CLEANUP_TTL_SLACK_DAYS
    assert requests["Query"] == days * FINISHED_SHARDS
    # the claim and the attempt's end, nothing a page
    assert requests["TransactWriteItems"] + requests["UpdateItem"] == 2 and requests["GetItem"] == 0, requests
