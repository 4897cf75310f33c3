"""A running clean-up stops at the next page it reads once its cancel is requested, whatever
that page holds: most of the finished-day index it walks is empty days and shards, and a
cancel that waited for a page with jobs on it would often never be seen."""
from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import botocore.client

from chalicelib import composition
from chalicelib.adapters.clocks import ManualClock
from chalicelib.adapters.dynamodb_items import FINISHED_SHARDS
from chalicelib.adapters.retention import DynamoFinishedJobs
from chalicelib.adapters.s3 import S3BlobStore
from chalicelib.defaults import CANCEL_POLL_INTERVAL_S, CLEANUP_TTL_SLACK_DAYS, RETENTION_MAX_DAYS
from chalicelib.domain.job import Job, isoformat, new_job_id, utcnow
from chalicelib.domain.status import JobStatus
from chalicelib.maintenance import MaintenanceTasks
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


class _ListingCancels:
    """The temporary files' clean-up's S3 client: when it reads the listing's second page the
    operator cancels the task and a poll interval passes; its deletes after that are counted."""

    def __init__(self, client, cancel) -> None:
        self._client = client
        self._cancel = cancel
        self.pages_read = 0
        self.canceled = False
        self.deletes_after_cancel = 0

    def get_paginator(self, operation):
        listing = self._client.get_paginator(operation)
        watcher = self

        class _Paginator:
            def paginate(self, **request):
                for page in listing.paginate(**request):
                    watcher.pages_read += 1
                    if watcher.pages_read == 2:
                        watcher._cancel()
                        watcher.canceled = True
                    yield page

        return _Paginator()

    def delete_objects(self, **request):
        if self.canceled:
            self.deletes_after_cancel += 1
        return self._client.delete_objects(**request)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_temp_file_cleanup_canceled_while_its_listing_holds_nothing_old_ends_canceled(
        app, client, aws, worker_clock, monkeypatch):
    """Page one of the listing holds old objects (deleted), page two only recent ones: the cancel
    made while page two is read is seen after it, although it holds nothing to delete."""
    services = composition.container()
    old = [f"tmp/a-{n}" for n in range(5)]  # listed first (key order)
    for key in old:
        aws["s3"].put_object(Bucket="jobs-bucket", Key=key, Body=b"1")
    # S3 keeps a second's precision: the cutoff falls between the two writes, a second from each
    between = utcnow() + timedelta(seconds=1)
    time.sleep(2.1)
    recent = [f"tmp/b-{n:04d}" for n in range(1005)]  # page one's other 995, and page two
    for key in recent:
        aws["s3"].put_object(Bucket="jobs-bucket", Key=key, Body=b"1")
    task_id = client.http.post("/api/system/maintenance/cleanup-temp-files?max_age_hours=1",
                               headers=OPERATOR).json_body["task_id"]

    def cancel() -> None:
        answer = client.http.delete(f"/api/system/maintenance/tasks/{task_id}", headers=OPERATOR)
        assert answer.status_code == 202 and answer.json_body["cancel_requested"] is True, answer.body
        worker_clock.advance(CANCEL_POLL_INTERVAL_S)

    watched = _ListingCancels(services.client("s3"), cancel)
    tasks = MaintenanceTasks(finished=services.finished_jobs, stats=services.stats, queues=services.queue_operations,
                             blobs=S3BlobStore(watched, services.settings.bucket_name), probes={},
                             clock=lambda: between + timedelta(hours=1))
    monkeypatch.setattr(services, "maintenance", tasks)
    drain(app, aws)

    assert watched.canceled and watched.pages_read == 2
    answer = client.http.get(f"/api/system/maintenance/tasks/{task_id}", headers=OPERATOR).json_body
    assert answer["status"] == "canceled", answer
    assert answer["cancel_requested"] is True and answer["result"] is None
    listed = aws["s3"].list_objects_v2(Bucket="jobs-bucket", Prefix="tmp/")
    assert [o["Key"] for o in listed["Contents"]][:1] == ["tmp/b-0000"]  # the old ones went before the cancel
    assert listed["KeyCount"] == 1000 and listed["IsTruncated"]  # the recent ones all kept
    assert watched.deletes_after_cancel == 0


def test_a_cleanup_canceled_as_it_runs_out_of_time_ends_canceled_and_is_not_continued(
        app, client, aws, monkeypatch):
    """The cancel comes while the run's last page is purged, and the run then runs out of time:
    its last progress report falls in the deployed 2 s window (not written, so it does not see
    the cancel) and no poll interval has passed. A run that stops incomplete enqueues the one
    continuing it; one whose cancel was requested ends canceled instead and starts no other."""
    from chalicelib.job_types import maintenance as maintenance_types
    from tests.functional.test_operations import _old_finished_job

    monkeypatch.setenv("PROGRESS_MIN_INTERVAL_S", "2")
    composition.use(None)
    services = composition.container()
    monkeypatch.setattr(services, "clock", ManualClock(start=500.0))
    old = [f"00000000-0000-0000-0000-0000000006{i:02d}" for i in range(3)]
    for i, job_id in enumerate(old):
        _old_finished_job(services.store, 30 + i, job_id)
    purged: list[str] = []
    real_purge = services.finished_jobs.purge
    monkeypatch.setattr(services.finished_jobs, "purge", lambda job_id: purged.append(job_id) or real_purge(job_id))
    real_control = maintenance_types._control

    def out_of_time_after_one_purge_and_canceled(ctx):
        control = real_control(ctx)

        def remaining_ms() -> int:
            if not purged:
                return 10**6
            answer = client.http.delete(f"/api/system/maintenance/tasks/{ctx.job_id}", headers=OPERATOR)
            assert answer.status_code in (202, 409), answer.body
            return 0

        control.remaining_ms = remaining_ms
        return control

    monkeypatch.setattr(maintenance_types, "_control", out_of_time_after_one_purge_and_canceled)
    task_id = client.http.post("/api/system/maintenance/cleanup-runs", headers=OPERATOR).json_body["task_id"]
    drain(app, aws)

    answer = client.http.get(f"/api/system/maintenance/tasks/{task_id}", headers=OPERATOR).json_body
    assert answer["status"] == "canceled" and answer["cancel_requested"] is True, answer
    assert answer["progress"]["message"].startswith("deleted 1 jobs; ")  # what it did before it stopped
    tasks = client.http.get("/api/system/maintenance/tasks", headers=OPERATOR).json_body["tasks"]
    assert [t["task_id"] for t in tasks] == [task_id]  # nothing continues it
    assert len(purged) == 1 and len([job_id for job_id in old if job_items(aws, job_id)]) == 2
