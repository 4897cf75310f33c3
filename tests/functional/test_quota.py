"""Admission at submit through the API on moto: the stats recorder counts each tenant's
unfinished jobs from the stream, and POST /jobs over the bound is 429 with Retry-After."""
import json
import time

from chalicelib import composition
from chalicelib.defaults import QUOTA_RECHECK_S
from tests.functional.conftest import auth
from tests.functional.test_operations import _feed_stream

STEPS = {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}


def post(client, tenant="acme", **headers):
    return client.http.post("/jobs", headers=auth(tenant, **headers), body=json.dumps(STEPS))


def test_a_tenant_over_its_unfinished_jobs_is_refused_until_one_finishes(client, aws, monkeypatch):
    monkeypatch.setenv("JOBPIPE_TENANT_MAX_UNFINISHED_JOBS", "2")
    composition.use(None)
    first = [post(client) for _ in range(2)]
    assert [r.status_code for r in first] == [202, 202]
    _feed_stream(client._app, aws)
    for response in (post(client), post(client, **{"Idempotency-Key": "k-1"})):
        assert response.status_code == 429, response.body
        assert response.json_body["error"]["code"] == "quota_exceeded"
        assert int(response.headers["Retry-After"]) > 0
    assert post(client, tenant="other").status_code == 202  # another tenant is not held back
    listed = client.http.get("/jobs", headers=auth()).json_body["jobs"]
    assert len(listed) == 2  # the refused submissions wrote nothing
    canceled = client.http.delete(f"/jobs/{first[0].json_body['id']}", headers=auth())
    assert canceled.status_code in (200, 202), canceled.body
    _feed_stream(client._app, aws)
    time.sleep(QUOTA_RECHECK_S + 0.1)  # the refusal's count of the index stands that long
    assert post(client, **{"Idempotency-Key": "k-1"}).status_code == 202


def test_a_counter_left_high_by_a_lost_stream_batch_does_not_refuse_a_tenant_below_its_bound(client, aws, monkeypatch):
    """The counter saw jobs start and never end (their stream batch went to StreamFailureQueue):
    the status index, counted before refusing, admits the tenant."""
    monkeypatch.setenv("JOBPIPE_TENANT_MAX_UNFINISHED_JOBS", "2")
    composition.use(None)
    first = [post(client) for _ in range(2)]
    _feed_stream(client._app, aws)
    assert post(client).status_code == 429
    for response in first:
        client.http.delete(f"/jobs/{response.json_body['id']}", headers=auth())  # never fed to the counter
    time.sleep(QUOTA_RECHECK_S + 0.1)  # the refusal's count stands that long
    accepted = post(client)
    assert accepted.status_code == 202, accepted.body
