"""A deploy over a running pipeline: what earlier versions wrote (job items, stream records)
is read, run and announced as they meant it. Each older shape is built here as that version
wrote it, from the history of the code (git log -S '<field>')."""
from __future__ import annotations

import json
from typing import Any, Optional

import pytest
from pydantic import ValidationError

from chalicelib.adapters.dynamodb_items import attribute_value, item_to_job, item_to_run, job_to_item
from chalicelib.adapters.dynamodb_stream import job_change
from chalicelib.domain.job import Job, JobErrorInfo, Progress, Run
from chalicelib.domain.status import JobStatus
from chalicelib.events.changes import events_for_change

T = "2026-01-01T00:00:00.000Z"


def _running(version: int, percent: float) -> Job:
    return Job(id="job-1", type="demo.steps", tenant="acme", user="ann", created_at=T, version=version,
               status=JobStatus.RUNNING, attempts=1, progress=Progress(percent=percent, step="s", message="m"))


def _without(item: dict[str, Any], *names: str) -> dict[str, Any]:
    """An item as a version that did not write `names` left it."""
    return {k: v for k, v in item.items() if k not in names}


def _stream_record(old: Optional[dict[str, Any]], new: Optional[dict[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {"Keys": {"pk": {"S": "JOB#job-1"}, "sk": {"S": "JOB"}}, "SequenceNumber": "1",
                            "ApproximateCreationDateTime": 1767225600, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    if old:
        data["OldImage"] = old
    if new:
        data["NewImage"] = new
    return {"eventName": "MODIFY", "dynamodb": data}


def test_a_milestone_written_by_a_worker_that_kept_no_event_percent_is_announced():
    """A worker of a version before `event_percent` (a2504e0) finishes its attempt under the old
    code while the stream function already runs the new one: its writes carry no mark, and
    their milestones (25 %, 50 %, a 10-point move) are published as that version decided them,
    from the write before. They were dropped: neither image moved a mark it did not have."""
    writes = [_without(job_to_item(_running(v, p)), "event_percent")
              for v, p in ((3, 0.0), (4, 12.0), (5, 20.0), (6, 26.0), (7, 30.0))]
    published = []
    for old, new in zip(writes, writes[1:]):
        change = job_change(_stream_record(old, new))
        published += [(e.event_type, e.previous_progress, e.progress)
                      for e in events_for_change(change.old, change.new, change.timestamp)]
    assert published == [("job.status.progress", 0.0, 12.0), ("job.status.progress", 20.0, 26.0)]


def test_an_attempt_claimed_by_a_version_that_keeps_no_mark_is_announced_despite_an_earlier_attempts(
        lifecycle, store):
    """Attempt 1 ran under this version and its last event carried 80 %; attempt 2 was claimed
    by a version that keeps no mark (a rolled-back one, or a worker of the version before still
    finishing its batch), whose claim leaves the record's mark as it was. That mark is attempt
    1's: attempt 2's writes are announced as that version decided, from the write before (30,
    then 60 and 90 %). Taken for attempt 2's mark, it never moved, and none of them reached the
    ERP, against docs/operations.md's promise for attempts an earlier version runs."""
    from chalicelib.ports import ChangeSet, JobMessage

    job = lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload={"steps": 1, "step_ms": 0})
    running = lifecycle.report_progress(lifecycle.claim(JobMessage(job.id, 1)).job, 80)
    lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="attempt 1 broke"), retryable=True)
    retrying = store.get(job.id, mark_gone=False)
    # That version's claim: no mark of its own, so the record keeps attempt 1's.
    claimed = store.apply(retrying, JobStatus.RETRYING, ChangeSet(
        {"status": JobStatus.RUNNING, "attempts": 2, "progress": Progress(percent=0, step="started")}))
    assert claimed.event_percent == 80
    published, old = [], claimed
    for percent in (30, 60, 90):  # that version writes progress without announcing
        new = store.record_progress(job.id, 2, Progress(percent=percent))
        published += [(e.previous_progress, e.progress) for e in events_for_change(old, new, T)]
        old = new
    assert published == [(0, 30), (30, 60), (60, 90)]


def test_a_rolled_back_version_reads_what_a_newer_one_wrote():
    """CloudFormation rolls a failed update back by itself: the code then reading the tables is
    older than some items in them. A job, its progress, its error and a run carrying attributes
    this version does not know read as this version knows them, on GET and on the stream,
    instead of failing every read of the job (a 500, a worker's delivery failing)."""
    job = _running(7, 40.0).model_copy(update={"error": JobErrorInfo(code="timeout", message="late")})
    item = job_to_item(job)
    newer = {**item, "lease_owner": attribute_value("w-1"),
             "progress": {"M": {**item["progress"]["M"], "eta_s": attribute_value(12)}},
             "error": {"M": {**item["error"]["M"], "retryable": attribute_value(True)}}}
    assert item_to_job(newer) == job
    assert job_change(_stream_record(item, newer)).new == job

    run = {"pk": attribute_value("JOB#job-1"), "sk": attribute_value("RUN#0001"), "job_id": attribute_value("job-1"),
           "attempt": attribute_value(1), "status": attribute_value("failed"), "started_at": attribute_value(T),
           "error": attribute_value({"code": "timeout", "message": "late", "retryable": True}),
           "host": attribute_value("w-1")}
    read = item_to_run(run)
    assert (read.status, read.started_at, read.error) == (JobStatus.FAILED, T, JobErrorInfo(code="timeout", message="late"))


def test_progress_details_an_earlier_version_kept_as_a_map_read_back_as_reported():
    """Before 158979b a report's details were kept as a DynamoDB map, numbers as Decimals. Such
    an item still reads back as the handler reported them: an integer as an integer and a
    fraction as a fraction, in a list or a nested object too, as the job's answer shows them."""
    reported = {"rows": 3, "ratio": 0.5, "pages": [1, 2.5], "last": {"row": 7}}
    item = job_to_item(_running(3, 40.0))
    older = {**item, "progress": {"M": {**item["progress"]["M"], "details": attribute_value(reported)}}}
    answered = json.loads(item_to_job(older).model_dump_json())["progress"]["details"]
    assert json.dumps(answered, sort_keys=True) == json.dumps(reported, sort_keys=True)


@pytest.mark.parametrize("model, fields", [
    (Job, {"id": "job-1", "type": "demo.steps", "tenant": "acme", "user": "ann", "created_at": T}),
    (Progress, {}),
    (JobErrorInfo, {"code": "timeout", "message": "late"}),
    (Run, {"job_id": "job-1", "attempt": 1, "status": "failed"}),
], ids=["job", "progress", "error", "run"])
def test_this_version_writes_no_field_it_does_not_have(model, fields):
    """The complement of reading what a newer version wrote: a job, its progress, its error and a
    run are built by this version's own models, which refuse a field they do not have, so a
    misnamed one is an error where it is made, not a value dropped without a word or stored
    beside the record's own where no version reads it."""
    model.model_validate(fields)
    with pytest.raises(ValidationError, match="extra"):
        model.model_validate({**fields, "lease_owner": "w-1"})

