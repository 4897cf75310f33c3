"""A finished job's record, runs, artifacts and S3 objects go together: the scheduled clean-up
(`cleanup_runs`, daily, `max_age_hours = RetentionDays × 24`) deletes them all, and DynamoDB's TTL
on `expires_at` only backs it up. TTL deletes an expired item at any moment after its time, and
it deletes records only: a job whose record TTL removed before the clean-up's turn is never
found again (the clean-up finds jobs through their records), and its objects stay for
`BlobRetentionDays` (400) instead of `RetentionDays`."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from chalicelib import composition
from chalicelib.maintenance import MaintenanceTasks
from tests.functional.conftest import auth, drain, job_items, job_objects

OUTPUTS = {"type": "demo.outputs", "payload": {"artifact_bytes": 70 * 1024, "result_bytes": 70 * 1024}}


def test_the_scheduled_cleanup_reaches_a_finished_job_before_ttl_may_take_its_record(app, client, aws):
    response = client.http.post("/jobs", headers=auth(), body=json.dumps(OUTPUTS))
    job_id = response.json_body["id"]
    drain(app, aws)
    [job] = [i for i in job_items(aws, job_id) if i["sk"]["S"] == "JOB"]
    assert job["status"]["S"] == "completed" and len(job_objects(aws, job_id)) == 2  # result and artifact in S3
    finished = datetime.fromisoformat(job["finished_at"]["S"].replace("Z", "+00:00"))
    expires = datetime.fromtimestamp(int(job["expires_at"]["N"]), timezone.utc)
    # Its runs and artifacts expire after it (a day), so TTL never leaves a record whose parts are gone.
    parts = [i for i in job_items(aws, job_id) if i["sk"]["S"] != "JOB"]
    assert {i["sk"]["S"].split("#")[0] for i in parts} >= {"RUN", "ART"}, [i["sk"]["S"] for i in parts]
    assert all(int(i["expires_at"]["N"]) > int(job["expires_at"]["N"]) for i in parts), parts
    services = composition.container()
    days = services.settings.retention_days

    # Every firing of the daily schedule (03:15) from the job's finish until TTL may delete its record.
    firing = finished.replace(hour=3, minute=15, second=0, microsecond=0)
    while firing < expires:
        MaintenanceTasks(finished=services.finished_jobs, stats=services.stats, queues=services.queue_operations,
                         blobs=services.blobs, probes={},
                         clock=lambda at=firing: at).cleanup_runs(days * 24)
        firing += timedelta(days=1)

    assert job_objects(aws, job_id) == []
    assert job_items(aws, job_id) == []
    assert expires >= finished + timedelta(days=days)  # kept its retention
