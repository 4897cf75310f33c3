"""A progress report within its own bounds that does not fit the job's record beside a large
inline payload is refused as the report's fault (progress_rejected), not as a store outage."""
from __future__ import annotations

import boto3
import pytest

from chalicelib.adapters.dynamodb import DynamoJobStore
from chalicelib.domain.errors import ProgressRejectedError
from chalicelib.domain.job import Job, Progress
from chalicelib.domain.status import JobStatus
from chalicelib.ports import ChangeSet


def test_a_report_that_would_overflow_the_record_is_refused_as_such(aws):
    store = DynamoJobStore(boto3.client("dynamodb"), "jobs", inline_limit=400_000)
    job = Job(id="00000000-0000-4000-8000-000000000001", type="demo.steps", tenant="acme", user="ann",
              payload={"pad": "p" * 250_000}, created_at="2026-01-01T00:00:00.000Z")
    store.create(job)
    running = store.apply(job, JobStatus.QUEUED, ChangeSet({"status": JobStatus.RUNNING, "attempts": 1}))
    store.record_progress(job.id, 1, Progress(percent=10, message="fits"))
    with pytest.raises(ProgressRejectedError, match="does not fit its record"):
        store.record_progress(job.id, 1, Progress(percent=20, message="m" * 200_000))
    assert store.get(job.id, mark_gone=False).progress.message == "fits" and running.status == JobStatus.RUNNING
