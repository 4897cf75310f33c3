"""A job partly removed (a purge cut off midway, an object gone, a key that outlived its job):
every route answers what is true of it, a clear 4xx or the job, never a 5xx or a 410 for a
job the clean-up is removing."""
from __future__ import annotations

import json

import pytest

from chalicelib import composition
from chalicelib.adapters.retention import DynamoFinishedJobs
from chalicelib.domain.errors import StoreUnavailableError
from tests.functional.conftest import auth, drain

OUTPUTS = {"type": "demo.outputs", "payload": {"artifact_bytes": 70 * 1024, "result_bytes": 70 * 1024}}


def _items(aws, job_id: str) -> list[dict]:
    return aws["ddb"].query(TableName="jobs", KeyConditionExpression="pk = :pk",
                            ExpressionAttributeValues={":pk": {"S": f"JOB#{job_id}"}})["Items"]


def _objects(aws, job_id: str) -> list[str]:
    listed = aws["s3"].list_objects_v2(Bucket="jobs-bucket", Prefix=f"jobs/{job_id}/")
    return [o["Key"] for o in listed.get("Contents", [])]


class _ItemsKept:
    """The stack's DynamoDB client, whose batch writes are refused: a purge cut off after the
    job's objects went, before its items did."""

    def __init__(self, client) -> None:
        self._client = client

    def batch_write_item(self, **request):
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "cut off"}}, "BatchWriteItem")

    def __getattr__(self, name):
        return getattr(self._client, name)


def _finished_job(client, app, aws, headers=None) -> str:
    response = client.http.post("/jobs", headers=headers or auth(), body=json.dumps(OUTPUTS))
    assert response.status_code == 202, response.body
    drain(app, aws)
    return response.json_body["id"]


def _purge_cut_off(job_id: str) -> None:
    services = composition.container()
    cut_off = DynamoFinishedJobs(_ItemsKept(services.finished_jobs._ddb), services.finished_jobs._table,
                                 services.blobs)
    with pytest.raises(StoreUnavailableError):
        cut_off.purge(job_id)


def test_a_job_whose_purge_was_cut_off_is_not_found_on_every_route_until_a_repeat_ends_it(app, client, aws):
    job_id = _finished_job(client, app, aws)
    assert len(_objects(aws, job_id)) == 2  # its result and its artifact
    _purge_cut_off(job_id)
    assert _objects(aws, job_id) == [] and any(i["sk"]["S"] == "JOB" for i in _items(aws, job_id))

    for method, path in (("get", f"/jobs/{job_id}"), ("delete", f"/jobs/{job_id}"),
                         ("get", f"/jobs/{job_id}/runs"), ("get", f"/jobs/{job_id}/artifacts")):
        answer = getattr(client.http, method)(path, headers=auth())
        assert answer.status_code == 404 and answer.json_body["error"]["code"] == "job_not_found", (path, answer.body)
    for path in (f"/api/jobinfo/{job_id}", f"/api/jobstatus/{job_id}"):
        answer = client.http.get(path, headers=auth())
        assert answer.status_code == 200 and answer.json_body == {"id": job_id, "status": "not_found"}, path
    batch = client.http.post("/jobs/status", headers=auth(), body=json.dumps({"job_ids": [job_id]}))
    assert batch.json_body["jobs"][job_id] == {"id": job_id, "status": "not_found"}
    assert client.http.get("/jobs", headers=auth()).json_body["jobs"] == []

    composition.container().finished_jobs.purge(job_id)  # the clean-up's next run finds it and ends it
    assert _items(aws, job_id) == [] and _objects(aws, job_id) == []


def test_cancelling_a_finished_job_whose_result_object_is_gone_is_409_job_finished(app, client, aws):
    """The cancel decides on the record: a finished job is 409 whatever became of its objects."""
    job_id = _finished_job(client, app, aws)
    aws["s3"].delete_object(Bucket="jobs-bucket", Key=f"jobs/{job_id}/result-0001.json")
    answer = client.http.delete(f"/jobs/{job_id}", headers=auth())
    assert answer.status_code == 409, answer.body
    assert answer.json_body["error"] == {"code": "job_finished", "message": f"job {job_id} is already completed",
                                         "details": {"status": "completed"}}
