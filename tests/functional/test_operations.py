"""Maintenance tasks, statistics, dead letters, artifacts and claim-checked data, through the
Chalice test client on moto."""
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib import composition, maintenance
from chalicelib.composition import container
from chalicelib.domain.job import Job, Run, isoformat
from chalicelib.domain.status import JobStatus
from tests.functional.conftest import (
    TimingOut, auth, drain, invoke_worker, receive_all, receive_all_peek, sqs_event, times_out, token,
)
from tests.functional.conftest import submit_job as submit


def operator(**extra):
    return {"Authorization": f"Bearer {token(user='root', roles=['operator'])}", "Content-Type": "application/json", **extra}


def tenant_admin(**extra):
    return {"Authorization": f"Bearer {token(user='boss', roles=['admin'])}", "Content-Type": "application/json", **extra}


QUEUE_SETTINGS = {
    "erp-webhook": "JOBPIPE_ERP_WEBHOOK_QUEUE_URL",
    "erp-webhook-dlq": "JOBPIPE_ERP_WEBHOOK_DLQ_URL",
    "stream-failures": "JOBPIPE_STREAM_FAILURE_QUEUE_URL",
    "erp-outbound": "JOBPIPE_ERP_OUTBOUND_QUEUE_URL",
    "cache-invalidation": "JOBPIPE_CACHE_QUEUE_URL",
    "event-delivery-dlq": "JOBPIPE_EVENT_DELIVERY_DLQ_URL",
    "cache-invalidation-dlq": "JOBPIPE_CACHE_DLQ_URL",
}


def stack_queues(aws, monkeypatch, *names: str) -> dict[str, str]:
    """Create each named queue (the subscribers' queues and DLQs, the failure destinations) and
    point its setting at it; returns name -> URL."""
    urls = {name: aws["sqs"].create_queue(QueueName=name)["QueueUrl"] for name in names}
    for name in names:
        monkeypatch.setenv(QUEUE_SETTINGS[name], urls[name])
    composition.use(None)
    return urls


def task(client, task_id):
    response = client.http.get(f"/api/system/maintenance/tasks/{task_id}", headers=operator())
    assert response.status_code == 200, response.body
    return response.json_body


@pytest.mark.parametrize("method, path", [
    ("POST", "/api/system/maintenance/health-check"),
    ("GET", "/api/system/maintenance/tasks"),
    ("GET", "/api/system/stats"),
    ("GET", "/api/system/dlq"),
    ("POST", "/api/system/dlq/redrive"),
])
def test_operator_routes_need_the_operator_role(client, method, path):
    for headers in (auth(), tenant_admin()):
        response = getattr(client.http, method.lower())(path, headers=headers)
        assert response.status_code == 403 and response.json_body["error"]["code"] == "forbidden"
        assert "operator" in response.json_body["error"]["message"]
    assert getattr(client.http, method.lower())(path).status_code == 401


def test_every_system_route_and_only_those_need_the_operator_role(app):
    for path, methods in app.routes.items():
        for method, entry in methods.items():
            expected = "operator" if path.startswith("/api/system/") else None
            assert getattr(entry.view_function, "required_role", None) == expected, (method, path)


def test_maintenance_types_are_not_submittable_or_listed(client):
    response = client.http.post("/jobs", headers=operator(), body=json.dumps({"type": "maintenance.cleanup_runs"}))
    assert response.status_code == 422 and response.json_body["error"]["code"] == "unknown_job_type"
    assert "known types: demo.chaos, demo.fanout, demo.model, demo.outputs, demo.sleep, demo.steps" in response.json_body["error"]["message"]
    types = [t["type"] for t in client.http.get("/job-types", headers=auth()).json_body["job_types"]]
    assert not any(t.startswith("maintenance.") for t in types)


def test_reserved_system_tenant_cannot_be_claimed(client):
    forged = {"Authorization": f"Bearer {token(tenant='_system', roles=['admin', 'operator'])}"}
    assert client.http.get("/jobs", headers=forged).status_code == 401


def test_health_check_task_is_queued_then_run_by_a_worker(client, aws):
    response = client.http.post("/api/system/maintenance/health-check", headers=operator())
    assert response.status_code == 202, response.body
    body = response.json_body
    assert body["status"] == "queued" and body["task_id"] and "health_check" in body["message"]
    assert task(client, body["task_id"])["status"] == "queued"
    drain(client._app, aws)
    done = task(client, body["task_id"])
    assert done["status"] == "completed" and done["finished_at"] and done["error_message"] is None
    result = done["result"]
    assert result["healthy"] is True and result["problems"] == []
    assert result["checks"]["jobs_table"]["ok"] and result["checks"]["bucket"]["ok"]
    assert result["checks"]["jobs_table"]["expiry"] == result["checks"]["stats_table"]["expiry"] == {
        "status": "ENABLED", "attribute": "expires_at"}
    assert result["checks"]["idempotency_table"]["expiry"] == {"status": "ENABLED", "attribute": "expiration"}
    assert {q["name"] for q in result["checks"]["queues"]} == {
        "jobs-high", "jobs-normal", "jobs-low", "jobs-high-dlq", "jobs-normal-dlq", "jobs-low-dlq"}
    listed = client.http.get("/api/system/maintenance/tasks", headers=operator()).json_body["tasks"]
    assert [t["task_id"] for t in listed] == [body["task_id"]]
    # Task records belong to no tenant: the operator's own job listing does not show them.
    assert client.http.get("/jobs", headers=operator()).json_body["jobs"] == []


def test_a_task_status_is_cacheable_until_the_task_changes(client, aws):
    """Polling a task revalidates like polling a job: 304 with no body while unchanged."""
    task_id = client.http.post("/api/system/maintenance/health-check", headers=operator()).json_body["task_id"]
    first = client.http.get(f"/api/system/maintenance/tasks/{task_id}", headers=operator())
    tag = first.headers["ETag"]
    assert tag.startswith('W/"') and first.headers["Cache-Control"] == "private, no-cache"
    again = client.http.get(f"/api/system/maintenance/tasks/{task_id}", headers=operator(**{"If-None-Match": tag}))
    assert again.status_code == 304 and not again.body
    drain(client._app, aws)
    changed = client.http.get(f"/api/system/maintenance/tasks/{task_id}", headers=operator(**{"If-None-Match": tag}))
    assert changed.status_code == 200 and changed.json_body["status"] == "completed" and changed.headers["ETag"] != tag


def test_health_check_reports_a_missing_dependency(client, aws):
    aws["sqs"].delete_queue(QueueUrl=aws["dlq_low_url"])
    task_id = client.http.post("/api/system/maintenance/health-check", headers=operator()).json_body["task_id"]
    drain(client._app, aws)
    result = task(client, task_id)["result"]
    assert result["healthy"] is False and result["problems"] == ["jobs-low-dlq"]


@pytest.mark.parametrize("table, check, attribute", [("stats", "stats_table", "expires_at"),
                                                      ("idempotency", "idempotency_table", "expiration")])
@pytest.mark.parametrize("enabled", [False, True])  # True: on an attribute no record carries
def test_health_check_reports_a_table_whose_records_never_expire(client, aws, table, check, attribute, enabled):
    """A table whose TTL is off (turned off by hand, or made by a tool that left it out), or on
    an attribute the pipeline does not write, keeps every finished job, marker or key for ever:
    retention stops without an error anywhere else, so the health check names it."""
    aws["ddb"].update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": False, "AttributeName": attribute})
    if enabled:
        aws["ddb"].update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})
    task_id = client.http.post("/api/system/maintenance/health-check", headers=operator()).json_body["task_id"]
    drain(client._app, aws)
    result = task(client, task_id)["result"]
    assert result["healthy"] is False and result["problems"] == [check]
    found = result["checks"][check]
    assert found["ok"] is False and found["expiry"]["status"] == ("ENABLED" if enabled else "DISABLED")
    assert found["error"] == f"TTL is not on {attribute}: the table's records never expire"
    assert result["checks"]["jobs_table"]["ok"] is True


def test_bad_task_parameters_are_400_and_unknown_tasks_404(client):
    for query in ("max_age_hours=0", "max_age_hours=abc", "surprise=1"):
        response = client.http.post(f"/api/system/maintenance/cleanup-runs?{query}", headers=operator())
        assert response.status_code == 400 and response.json_body["error"]["code"] == "invalid_request", query
    for task_id in ("00000000-0000-0000-0000-000000000000", "bad$id"):
        response = client.http.get(f"/api/system/maintenance/tasks/{task_id}", headers=operator())
        assert response.status_code == 404 and response.json_body["error"]["code"] == "task_not_found"


def test_a_cleanup_takes_its_age_and_not_the_count_of_runs_continuing_it(client):
    """`follow_up` counts the runs a clean-up chain made (at most 12): the pipeline's own, never
    an operator's, who could otherwise start a run that no run continues."""
    for route in ("cleanup-runs", "cleanup-temp-files"):
        response = client.http.post(f"/api/system/maintenance/{route}?max_age_hours=24&follow_up=12",
                                     headers=operator())
        assert response.status_code == 400, (route, response.body)
        assert response.json_body["error"]["code"] == "invalid_request"
        assert "follow_up" in json.dumps(response.json_body["error"]), response.body
    tasks = client.http.get("/api/system/maintenance/tasks", headers=operator()).json_body["tasks"]
    assert tasks == []


def test_a_tenant_job_is_not_a_task(client):
    job = submit(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    response = client.http.get(f"/api/system/maintenance/tasks/{job['id']}", headers=operator())
    assert response.status_code == 404


def test_the_recent_tasks_are_listed_newest_first_a_page_at_a_time(client, aws):
    """Seed 004's `GET /api/system/maintenance/tasks` (list recent tasks): newest first, `limit`
    a page, `next_cursor` the next page's `cursor`, null on the last page."""
    import time

    started = []
    for path in ("health-check", "cleanup-runs", "log-statistics"):
        started.append(client.http.post(f"/api/system/maintenance/{path}", headers=operator()).json_body["task_id"])
        time.sleep(0.002)  # each created a millisecond apart at least: the order is theirs
    first = client.http.get("/api/system/maintenance/tasks?limit=2", headers=operator()).json_body
    assert [t["task_id"] for t in first["tasks"]] == started[:0:-1] and first["next_cursor"]
    assert [t["task_type"] for t in first["tasks"]] == ["log_statistics", "cleanup_runs"]
    second = client.http.get(f"/api/system/maintenance/tasks?limit=2&cursor={first['next_cursor']}",
                             headers=operator()).json_body
    assert [t["task_id"] for t in second["tasks"]] == started[:1] and second["next_cursor"] is None


def test_each_start_route_starts_the_task_it_names(client, aws):
    """A maintenance route starts its own task, never another's: the answer and the task say which."""
    for path, task_type in (("cleanup-runs", "cleanup_runs"), ("health-check", "health_check"),
                            ("cleanup-temp-files", "cleanup_temp_files"), ("log-statistics", "log_statistics")):
        started = client.http.post(f"/api/system/maintenance/{path}", headers=operator()).json_body
        assert started["message"].startswith(f"{task_type} task") and task(client, started["task_id"])["task_type"] == task_type


def test_cancel_a_queued_task(client, aws):
    task_id = client.http.post("/api/system/maintenance/cleanup-runs", headers=operator()).json_body["task_id"]
    response = client.http.delete(f"/api/system/maintenance/tasks/{task_id}", headers=operator())
    assert response.status_code == 202 and response.json_body["status"] == "canceled"
    drain(client._app, aws)
    assert task(client, task_id)["status"] == "canceled"
    again = client.http.delete(f"/api/system/maintenance/tasks/{task_id}", headers=operator())
    assert again.status_code == 409 and again.json_body["error"] == {
        "code": "job_finished", "message": f"task {task_id} is already canceled", "details": {"status": "canceled"}}


def test_a_finished_task_runs_again_as_a_new_task_and_an_unfinished_one_is_refused(client, aws):
    """An operator reruns a task that ended (the health check that found a queue missing, once it
    is back): a new task with the same parameters, `rerun_of` naming the first, which stays as it
    ended. A task not finished is 409 job_not_finished; an unknown task or a tenant's job is 404
    task_not_found; a tenant's token is 403; the same Idempotency-Key answers the same task."""
    first = client.http.post("/api/system/maintenance/cleanup-runs?max_age_hours=48", headers=operator()).json_body
    refused = client.http.post(f"/api/system/maintenance/tasks/{first['task_id']}/rerun", headers=operator())
    assert refused.status_code == 409 and refused.json_body["error"]["code"] == "job_not_finished"
    assert refused.json_body["error"]["message"].startswith(
        f"task {first['task_id']} is queued: only a finished task (completed, failed or canceled) runs again")
    drain(client._app, aws)
    ended = task(client, first["task_id"])
    assert ended["status"] == "completed" and ended["rerun_of"] is None
    keyed = operator(**{"Idempotency-Key": "again-1"})
    response = client.http.post(f"/api/system/maintenance/tasks/{first['task_id']}/rerun", headers=keyed)
    assert response.status_code == 202, response.body
    body = response.json_body
    assert body["status"] == "queued" and body["task_id"] != first["task_id"]
    assert body["rerun_of"] == first["task_id"] and "cleanup_runs" in body["message"]
    again = client.http.post(f"/api/system/maintenance/tasks/{first['task_id']}/rerun", headers=keyed)
    assert again.status_code == 202 and again.json_body["task_id"] == body["task_id"]
    rerun = task(client, body["task_id"])
    assert rerun["task_type"] == "cleanup_runs" and rerun["rerun_of"] == first["task_id"]
    assert rerun["requested_by"] == "root"
    stored = container().store.get(body["task_id"], mark_gone=False)
    assert stored.payload == container().store.get(first["task_id"], mark_gone=False).payload
    assert task(client, first["task_id"]) == ended  # not written
    drain(client._app, aws)
    assert task(client, body["task_id"])["status"] == "completed"
    replayed = client.http.post(f"/api/system/maintenance/tasks/{first['task_id']}/rerun", headers=keyed).json_body
    assert (replayed["task_id"], replayed["status"]) == (body["task_id"], "completed")
    assert replayed["message"] == "cleanup_runs task made by an earlier rerun under this Idempotency-Key: completed"
    job = submit(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    for task_id in (job["id"], "00000000-0000-0000-0000-000000000000", "bad$id"):
        response = client.http.post(f"/api/system/maintenance/tasks/{task_id}/rerun", headers=operator())
        assert response.status_code == 404 and response.json_body["error"]["code"] == "task_not_found"
    for headers in (auth(), tenant_admin()):
        response = client.http.post(f"/api/system/maintenance/tasks/{first['task_id']}/rerun", headers=headers)
        assert response.status_code == 403
    listed = client.http.get("/api/system/maintenance/tasks", headers=operator()).json_body["tasks"]
    assert [t["task_id"] for t in listed] == [body["task_id"], first["task_id"]]


# A task start has no body: the refusal names what a task's request is made of.
TASK_KEY_CONFLICT = ("this Idempotency-Key was already used for a different request (another task, other "
                     "parameters, or a task's rerun where this is a start, or the other way round); send this one "
                     "under a new key")


def test_a_keyed_task_start_repeated_answers_the_task_it_made(client, aws):
    """An operator whose start timed out sends it again under its Idempotency-Key: the same task
    and parameters answer the task the first made, as it is now, and no second task runs; another
    task, other parameters or a rerun under the key are 409 idempotency_conflict, as POST /jobs
    answers a key reused with another body. A tenant's keys are its own: the operator's key on
    POST /jobs makes a job."""
    keyed = operator(**{"Idempotency-Key": "start-1"})
    first = client.http.post("/api/system/maintenance/cleanup-runs?max_age_hours=48", headers=keyed)
    assert first.status_code == 202, first.body
    task_id = first.json_body["task_id"]
    assert first.json_body["status"] == "queued" and first.json_body["message"] == (
        "cleanup_runs task enqueued (low priority)")
    again = client.http.post("/api/system/maintenance/cleanup-runs?max_age_hours=48", headers=keyed)
    assert again.status_code == 202, again.body
    assert again.json_body == {
        "task_id": task_id, "status": "queued",
        "message": "cleanup_runs task made by an earlier start under this Idempotency-Key: queued"}
    for path in ("cleanup-runs?max_age_hours=24", "cleanup-runs", "cleanup-temp-files?max_age_hours=48",
                 "health-check"):
        refused = client.http.post(f"/api/system/maintenance/{path}", headers=keyed)
        assert refused.status_code == 409, (path, refused.body)
        assert refused.json_body["error"] == {"code": "idempotency_conflict", "message": TASK_KEY_CONFLICT}, path
    no_key = client.http.post("/api/system/maintenance/health-check", headers=operator(**{"Idempotency-Key": ""}))
    assert (no_key.status_code, no_key.json_body["error"]["code"]) == (400, "invalid_request")
    listed = client.http.get("/api/system/maintenance/tasks", headers=operator()).json_body["tasks"]
    assert [t["task_id"] for t in listed] == [task_id]
    assert receive_all_peek(aws, "low_url") == 1  # one message: one task to run
    drain(client._app, aws)
    done = client.http.post("/api/system/maintenance/cleanup-runs?max_age_hours=48", headers=keyed)
    assert (done.status_code, done.json_body["task_id"], done.json_body["status"]) == (202, task_id, "completed")
    rerun = client.http.post(f"/api/system/maintenance/tasks/{task_id}/rerun", headers=keyed)
    assert (rerun.status_code, rerun.json_body["error"]) == (
        409, {"code": "idempotency_conflict", "message": TASK_KEY_CONFLICT})
    job = client.http.post("/jobs", headers=auth(**{"Idempotency-Key": "start-1"}),
                           body=json.dumps({"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}))
    assert job.status_code == 202 and job.json_body["id"] != task_id
    assert [t["task_id"] for t in client.http.get("/api/system/maintenance/tasks",
                                                  headers=operator()).json_body["tasks"]] == [task_id]


def test_a_task_is_counted_in_jobs_submitted_when_made_and_not_again_when_replayed(client, aws, monkeypatch):
    """`jobs_submitted` counts tasks as it counts jobs, when made: a start and a rerun count the
    task each makes; a start repeated under its Idempotency-Key answers its task, counted once."""
    from chalicelib.api import maintenance as routes

    counted: list[tuple[str, str]] = []
    monkeypatch.setattr(routes, "count", lambda name, job_type, *args, **kwargs: counted.append((name, job_type)))
    keyed = operator(**{"Idempotency-Key": "start-1"})
    first = client.http.post("/api/system/maintenance/health-check", headers=keyed).json_body
    again = client.http.post("/api/system/maintenance/health-check", headers=keyed).json_body
    assert again["task_id"] == first["task_id"] and counted == [("jobs_submitted", "maintenance.health_check")]
    drain(client._app, aws)
    rerun = client.http.post(f"/api/system/maintenance/tasks/{first['task_id']}/rerun", headers=operator())
    assert rerun.status_code == 202 and counted == [("jobs_submitted", "maintenance.health_check")] * 2


def test_a_keyed_start_sent_again_after_a_deploy_added_an_optional_parameter_answers_its_task(
        client, aws, monkeypatch):
    """The key covers the parameters as the task takes them, its defaults left out, as POST
    /jobs's covers the payload: a start retried across a deploy that gave the task a new
    parameter with a default answers the task it made, not 409 for a default it never sent, and
    so does one spelling out a default the first left out."""
    keyed = operator(**{"Idempotency-Key": "start-across-a-deploy"})
    first = client.http.post("/api/system/maintenance/cleanup-runs", headers=keyed)
    assert first.status_code == 202, first.body

    class WithNewParameter(maintenance.AgeParameters):
        dry_run: bool = False

    monkeypatch.setitem(maintenance.TASK_PARAMETERS, "cleanup_runs", WithNewParameter)
    again = client.http.post("/api/system/maintenance/cleanup-runs", headers=keyed)
    assert (again.status_code, again.json_body["task_id"]) == (202, first.json_body["task_id"]), again.body
    stated = client.http.post("/api/system/maintenance/cleanup-runs?max_age_hours=24", headers=keyed)
    assert (stated.status_code, stated.json_body["task_id"]) == (202, first.json_body["task_id"]), stated.body
    other = client.http.post("/api/system/maintenance/cleanup-runs?max_age_hours=25", headers=keyed)
    assert other.status_code == 409 and other.json_body["error"]["code"] == "idempotency_conflict"
    assert task(client, first.json_body["task_id"])["parameters"] == {"max_age_hours": 24}


def test_a_keyed_replay_of_a_purged_task_speaks_of_the_task(client, aws):
    """A key kept after the clean-up removed the task it made: 410 job_purged, worded of the task
    the operator started (its id, and that the key makes no other task), for a start and a rerun."""
    keyed = operator(**{"Idempotency-Key": "purged-1"})
    started = client.http.post("/api/system/maintenance/health-check", headers=keyed).json_body["task_id"]
    original = client.http.post("/api/system/maintenance/health-check", headers=operator()).json_body["task_id"]
    drain(client._app, aws)
    again = client.http.post(f"/api/system/maintenance/tasks/{original}/rerun",
                             headers=operator(**{"Idempotency-Key": "purged-2"})).json_body["task_id"]
    drain(client._app, aws)
    for task_id in (started, again):
        container().finished_jobs.purge(task_id)  # what the clean-up does to a task past its age
    for path, key, task_id in (("health-check", "purged-1", started), (f"tasks/{original}/rerun", "purged-2", again)):
        response = client.http.post(f"/api/system/maintenance/{path}", headers=operator(**{"Idempotency-Key": key}))
        assert response.status_code == 410, (path, response.body)
        error = response.json_body["error"]
        assert error["code"] == "job_purged" and error["details"]["job_id"] == task_id
        assert error["message"].startswith(
            f"task {task_id}, made with this Idempotency-Key, has finished and been removed; "
            "the key makes no other task until "), error["message"]


def test_a_keyed_task_rerun_repeated_after_the_first_task_was_removed_answers_the_task_it_made(client, aws):
    """As POST /jobs/{id}/rerun: a keyed rerun repeated while its key is kept answers the task it
    made even once the clean-up removed the task it ran again (404 task_not_found before: the
    operator, repeating a rerun whose answer was lost, would start a second one under a new key).
    Without the key, under another key, or another removed task's rerun under it: 404."""
    first, other = (client.http.post("/api/system/maintenance/health-check", headers=operator()).json_body["task_id"]
                    for _ in range(2))
    drain(client._app, aws)
    keyed = operator(**{"Idempotency-Key": "gone-1"})
    made = client.http.post(f"/api/system/maintenance/tasks/{first}/rerun", headers=keyed).json_body["task_id"]
    drain(client._app, aws)
    for task_id in (first, other):
        container().finished_jobs.purge(task_id)  # what the clean-up does to a task past its age
    again = client.http.post(f"/api/system/maintenance/tasks/{first}/rerun", headers=keyed)
    assert again.status_code == 202, again.body
    assert again.json_body == {
        "task_id": made, "status": "completed", "rerun_of": first,
        "message": "health_check task made by an earlier rerun under this Idempotency-Key: completed"}
    for task_id, headers in ((first, operator()), (first, operator(**{"Idempotency-Key": "gone-2"})),
                             (other, keyed)):
        response = client.http.post(f"/api/system/maintenance/tasks/{task_id}/rerun", headers=headers)
        assert response.status_code == 404, response.body
        assert response.json_body["error"] == {"code": "task_not_found", "message": f"task {task_id} not found"}
    listed = client.http.get("/api/system/maintenance/tasks", headers=operator()).json_body["tasks"]
    assert [t["task_id"] for t in listed] == [made]


def test_a_task_shows_what_it_was_started_with_and_when_it_started(client, aws):
    """The task view says what an operator needs to tell tasks apart before their result: the
    parameters it was started with (what a keyed start compares, what a rerun starts with), how
    many attempts it may take, who started it and when, when it started running (how long a
    running task has run) and how far it has come."""
    from chalicelib.ports import JobMessage

    cleanup = client.http.post("/api/system/maintenance/cleanup-runs?max_age_hours=48", headers=operator()).json_body
    health = client.http.post("/api/system/maintenance/health-check", headers=operator()).json_body
    shown = task(client, cleanup["task_id"])
    assert (shown["parameters"], shown["max_attempts"], shown["started_at"]) == ({"max_age_hours": 48}, 3, None)
    assert task(client, health["task_id"])["parameters"] == {}
    running = container().lifecycle.claim(JobMessage(cleanup["task_id"], 1)).job
    shown = task(client, cleanup["task_id"])
    assert shown["status"] == "running" and shown["started_at"] == running.started_at is not None
    assert (shown["requested_by"], shown["created_at"]) == ("root", running.created_at)
    assert shown["progress"] == running.progress.model_dump(mode="json")
    listed = client.http.get("/api/system/maintenance/tasks", headers=operator()).json_body["tasks"]
    assert [(t["task_id"], t["parameters"]) for t in listed] == [
        (health["task_id"], {}), (cleanup["task_id"], {"max_age_hours": 48})]


def test_a_task_removed_while_its_cancel_or_rerun_is_answered_is_task_not_found(client, aws, monkeypatch):
    """The clean-up may remove a finished task between the route's read of it and the cancel's or
    the rerun's: the refusal is the route's own 404 task_not_found, not a job's job_not_found."""
    task_ids = [client.http.post("/api/system/maintenance/health-check", headers=operator()).json_body["task_id"]
                for _ in range(2)]
    drain(client._app, aws)
    lifecycle = container().lifecycle
    read = lifecycle.get

    def read_then_removed(tenant, job_id, **kwargs):  # the clean-up's purge lands just after the read
        job = read(tenant, job_id, **kwargs)
        monkeypatch.setattr(lifecycle, "get", read)
        container().finished_jobs.purge(job_id)
        return job

    for method, path in (("delete", f"tasks/{task_ids[0]}"), ("post", f"tasks/{task_ids[1]}/rerun")):
        monkeypatch.setattr(lifecycle, "get", read_then_removed)
        task_id = path.split("/")[1]
        response = getattr(client.http, method)(f"/api/system/maintenance/{path}", headers=operator())
        assert response.status_code == 404, response.body
        assert response.json_body["error"] == {"code": "task_not_found", "message": f"task {task_id} not found"}


def test_a_tasks_attempts_are_shown_each_with_its_error(client, aws, monkeypatch):
    """The task view shows its last attempt's error only, and none once a retrying task is
    canceled; why each attempt failed is at GET .../tasks/{task_id}/runs, as a job's at
    GET /jobs/{id}/runs (which refuses a task: it is no tenant's job)."""
    from chalicelib.domain.errors import StoreUnavailableError

    blobs = container().blobs
    for i in range(10):
        _old_finished_job(container().store, 200 + i, f"00000000-0000-0000-0000-0000000004{i:02d}")

    def delete(keys):
        raise StoreUnavailableError("could not delete 1 objects")

    monkeypatch.setattr(blobs, "delete", delete)
    task_id = client.http.post("/api/system/maintenance/cleanup-runs", headers=operator()).json_body["task_id"]
    invoke_worker(client._app, sqs_event(receive_all(aws, "low_url"), "arn:aws:sqs:us-east-1:123456789012:jobs-low"),
                  function="job_worker_low")
    retrying = task(client, task_id)
    assert (retrying["status"], retrying["attempts"], retrying["error_code"]) == ("retrying", 1, "store_unavailable")
    assert retrying["error_message"].startswith("clean-up stopped: 10 purges failed one after another")
    canceled = client.http.delete(f"/api/system/maintenance/tasks/{task_id}", headers=operator()).json_body
    assert canceled["status"] == "canceled" and canceled["error_message"] is None
    response = client.http.get(f"/api/system/maintenance/tasks/{task_id}/runs", headers=operator())
    assert response.status_code == 200, response.body
    assert response.json_body["task_id"] == task_id
    [run] = response.json_body["runs"]
    assert (run["attempt"], run["status"], run["error"]["code"]) == (1, "failed", "store_unavailable")
    assert run["error"]["message"].startswith("clean-up stopped: 10 purges failed one after another")
    for task_ref in ("00000000-0000-0000-0000-000000000000", "bad$id"):
        missing = client.http.get(f"/api/system/maintenance/tasks/{task_ref}/runs", headers=operator())
        assert (missing.status_code, missing.json_body["error"]["code"]) == (404, "task_not_found")
    assert client.http.get(f"/api/system/maintenance/tasks/{task_id}/runs", headers=tenant_admin()).status_code == 403
    assert client.http.get(f"/jobs/{task_id}/runs", headers=operator()).status_code == 404


def _old_finished_job(store, hours_ago: float, job_id: str) -> None:
    finished = datetime.now(timezone.utc) - timedelta(hours=hours_ago)
    job = Job(id=job_id, type="demo.steps", tenant="acme", user="ann", status=JobStatus.COMPLETED,
              created_at=isoformat(finished - timedelta(minutes=1)), finished_at=isoformat(finished),
              payload={"steps": 1, "step_ms": 0}, version=3, attempts=1)
    store.create(job)
    store._ddb.transact_write_items(TransactItems=[store._run_write(
        Run(job_id=job_id, attempt=1, status=JobStatus.COMPLETED, started_at=job.created_at))])
    container().artifacts.put(job_id, "note.txt", b"inline", "text/plain")
    container().artifacts.put(job_id, "big.bin", b"\0" * 10, "application/octet-stream")


def test_cleanup_runs_deletes_old_finished_jobs_with_runs_artifacts_and_objects(client, aws):
    store = container().store
    old = [f"00000000-0000-0000-0000-0000000000{i:02d}" for i in range(12)]
    for i, job_id in enumerate(old):
        _old_finished_job(store, 30 + i * 7, job_id)  # spread over several days
    _old_finished_job(store, 2, "00000000-0000-0000-0000-0000000000aa")
    live = submit(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    response = client.http.post("/api/system/maintenance/cleanup-runs?max_age_hours=24", headers=operator())
    drain(client._app, aws)
    result = task(client, response.json_body["task_id"])["result"]
    assert result["jobs_deleted"] == 12 and result["items_deleted"] == 12 * 4 and result["complete"]
    remaining = {i["pk"]["S"] for i in aws["ddb"].scan(TableName="jobs")["Items"]}
    assert not any(f"JOB#{j}" in remaining for j in old)
    assert "JOB#00000000-0000-0000-0000-0000000000aa" in remaining and f"JOB#{live['id']}" in remaining
    keys = [o["Key"] for o in aws["s3"].list_objects_v2(Bucket="jobs-bucket").get("Contents", [])]
    assert keys == ["jobs/00000000-0000-0000-0000-0000000000aa/artifacts/big.bin"]


def test_a_job_whose_objects_cannot_be_deleted_does_not_stop_the_cleanup_of_the_others(client, aws, monkeypatch):
    """The index is read oldest first: a job whose purge fails on every run (an object the
    bucket refuses) used to fail the task at the same place, three attempts then
    store_unavailable, and no job behind it was ever deleted."""
    from chalicelib.domain.errors import StoreUnavailableError

    store, blobs = container().store, container().blobs
    ids = [f"00000000-0000-0000-0000-0000000003{i:02d}" for i in range(4)]
    for i, job_id in enumerate(ids):
        _old_finished_job(store, 200 - i * 24, job_id)  # ids[0] the oldest
    real_delete = blobs.delete

    def delete(keys):
        if any(ids[0] in key for key in keys):
            raise StoreUnavailableError("could not delete 1 objects", details=[{"key": keys[0], "code": "AccessDenied"}])
        return real_delete(keys)

    monkeypatch.setattr(blobs, "delete", delete)
    response = client.http.post("/api/system/maintenance/cleanup-runs?max_age_hours=24", headers=operator())
    drain(client._app, aws)
    shown = task(client, response.json_body["task_id"])
    assert shown["status"] == "completed" and shown["attempts"] == 1, shown
    assert shown["result"]["jobs_deleted"] == 3 and shown["result"]["jobs_failed"] == 1
    assert [f["job_id"] for f in shown["result"]["failures"]] == [ids[0]]
    remaining = {i["pk"]["S"][len("JOB#"):] for i in aws["ddb"].scan(TableName="jobs")["Items"]}
    assert ids[0] in remaining and not remaining & set(ids[1:])


def test_a_lowered_retention_still_cleans_up_the_jobs_kept_under_the_earlier_one(client, aws):
    """Records written while RetentionDays was 30 keep their 30-day TTL after it is lowered to the
    default 7: the task must delete a job that finished 20 days ago, as operations.md promises
    ("jobs that finished more than max_age_hours ago"), whether the schedule or an operator asks."""
    store, services = container().store, container()
    for job_id in ("00000000-0000-0000-0000-000000000401", "00000000-0000-0000-0000-000000000402"):
        _old_finished_job(store, 20 * 24, job_id)
    scheduled = services.maintenance.cleanup_runs(services.settings.retention_days * 24)
    assert scheduled["jobs_deleted"] == 2, scheduled
    _old_finished_job(store, 20 * 24, "00000000-0000-0000-0000-000000000403")
    assert services.maintenance.cleanup_runs(24)["jobs_deleted"] == 1
    remaining = {i["pk"]["S"] for i in aws["ddb"].scan(TableName="jobs")["Items"]}
    assert not any(pk.endswith("00000000000040" + n) for pk in remaining for n in "123")


def purges_a_run(monkeypatch, purges: int) -> None:
    """Each clean-up run has time for `purges` purges: once it made them, none is left for its
    next page or job, and it ends `complete: false`, continued by a follow-up run."""
    from chalicelib.job_types import maintenance as maintenance_types

    real_control = maintenance_types._control
    finished = container().finished_jobs
    purged = []
    real_purge = finished.purge
    monkeypatch.setattr(finished, "purge", lambda job_id: purged.append(job_id) or real_purge(job_id))

    def limited(ctx):
        control, before = real_control(ctx), len(purged)
        control.remaining_ms = lambda: 10**6 if len(purged) - before < purges else 0
        return control

    monkeypatch.setattr(maintenance_types, "_control", limited)


def test_a_cleanup_that_runs_out_of_time_is_continued_at_once_until_it_is_done(client, aws, monkeypatch):
    """A run that stops with `complete: false` used to leave the rest for the next day's
    schedule, while TTL took records and orphaned their objects: it enqueues the run continuing
    it, and that one the next, until the jobs are gone."""
    store = container().store
    ids = [f"00000000-0000-0000-0000-0000000005{i:02d}" for i in range(5)]
    for i, job_id in enumerate(ids):
        _old_finished_job(store, 30 + i, job_id)
    purges_a_run(monkeypatch, 2)
    response = client.http.post("/api/system/maintenance/cleanup-runs?max_age_hours=24", headers=operator())
    drain(client._app, aws)
    first = task(client, response.json_body["task_id"])
    assert first["result"]["complete"] is False and first["result"]["jobs_deleted"] == 2
    second = task(client, first["result"]["continued_by"])
    assert second["status"] == "completed" and second["requested_by"] == "root"
    assert second["result"]["follow_up"] == 1 and second["result"]["jobs_deleted"] == 2
    third = task(client, second["result"]["continued_by"])
    assert third["result"] == {**third["result"], "follow_up": 2, "jobs_deleted": 1, "complete": True}
    assert "continued_by" not in third["result"]
    remaining = {i["pk"]["S"][len("JOB#"):] for i in aws["ddb"].scan(TableName="jobs")["Items"]}
    assert not remaining & set(ids)
    # A rerun of a run that continued others starts a chain of its own: counted from 0, so it
    # may be continued as often as any clean-up, not only as often as the third run had left.
    again = client.http.post(f"/api/system/maintenance/tasks/{third['task_id']}/rerun", headers=operator())
    assert again.status_code == 202, again.body
    drain(client._app, aws)
    rerun = task(client, again.json_body["task_id"])
    assert rerun["rerun_of"] == third["task_id"] and rerun["result"]["follow_up"] == 0


def test_a_finished_cleanup_refuses_its_cancel_naming_the_run_that_continues_it(client, aws, monkeypatch):
    """An operator stopping a clean-up that ran out of time and was continued cancels the run it
    started: that run is over (409 job_finished), and the refusal names the run deleting on
    (`continued_by`), the one to cancel; canceling that one stops the chain."""
    for i in range(3):
        _old_finished_job(container().store, 30 + i, f"00000000-0000-0000-0000-0000000006{i:02d}")
    purges_a_run(monkeypatch, 1)
    task_id = client.http.post("/api/system/maintenance/cleanup-runs", headers=operator()).json_body["task_id"]
    invoke_worker(client._app, sqs_event(receive_all(aws, "low_url"), "arn:aws:sqs:us-east-1:123456789012:jobs-low"),
                  function="job_worker_low")
    first = task(client, task_id)
    assert first["status"] == "completed" and first["result"]["complete"] is False, first
    follow_up = first["result"]["continued_by"]
    refused = client.http.delete(f"/api/system/maintenance/tasks/{task_id}", headers=operator())
    assert refused.status_code == 409
    assert refused.json_body["error"] == {
        "code": "job_finished",
        "message": f"task {task_id} is already completed; the clean-up was continued by task {follow_up}: "
                   "cancel that one (or the run continuing it) to stop it",
        "details": {"status": "completed", "continued_by": follow_up}}
    stopped = client.http.delete(f"/api/system/maintenance/tasks/{follow_up}", headers=operator())
    assert (stopped.status_code, stopped.json_body["status"]) == (202, "canceled")


def test_inline_mode_runs_the_task_in_the_request(client, aws, monkeypatch):
    monkeypatch.setenv("USE_TASK_QUEUE", "false")
    from chalicelib import composition

    composition.use(None)
    aws["s3"].put_object(Bucket="jobs-bucket", Key="tmp/scratch-1", Body=b"x")
    response = client.http.post("/api/system/maintenance/cleanup-temp-files?max_age_hours=1", headers=operator())
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["status"] == "completed" and body["task_id"] is None
    assert body["result"]["objects_deleted"] == 0  # the object is newer than an hour
    assert receive_all(aws, "low_url") == []


def test_inline_mode_reruns_a_task_queued_before_in_the_request(client, aws, monkeypatch):
    """A task stored while tasks were queued, rerun after USE_TASK_QUEUE=false: it runs inline
    with its parameters, as a task started then would."""
    task_id = client.http.post("/api/system/maintenance/cleanup-temp-files?max_age_hours=1",
                               headers=operator()).json_body["task_id"]
    drain(client._app, aws)
    monkeypatch.setenv("USE_TASK_QUEUE", "false")
    composition.use(None)
    response = client.http.post(f"/api/system/maintenance/tasks/{task_id}/rerun", headers=operator())
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["status"] == "completed" and body["task_id"] is None and "objects_deleted" in body["result"]
    assert "cleanup_temp_files ran inline" in body["message"]
    assert receive_all(aws, "low_url") == []


def test_inline_mode_refuses_to_rerun_an_unfinished_task_or_to_take_a_key(client, aws, monkeypatch):
    """Inline, a rerun ran without the queued path's checks: a task still queued ran again beside
    its queued copy, and a key (even one that is no key) was taken, though nothing is kept to
    answer its repeat with: the same key twice ran the task twice."""
    queued_id = client.http.post("/api/system/maintenance/cleanup-temp-files", headers=operator()).json_body["task_id"]
    finished_id = client.http.post("/api/system/maintenance/health-check", headers=operator()).json_body["task_id"]
    drain(client._app, aws)  # both run to their end: the first is enqueued again below
    queued_id = client.http.post(f"/api/system/maintenance/tasks/{queued_id}/rerun",
                                 headers=operator()).json_body["task_id"]
    monkeypatch.setenv("USE_TASK_QUEUE", "false")
    composition.use(None)
    response = client.http.post(f"/api/system/maintenance/tasks/{queued_id}/rerun", headers=operator())
    assert (response.status_code, response.json_body["error"]["code"]) == (409, "job_not_finished")
    for key in ("k1", "x" * 400):
        response = client.http.post(f"/api/system/maintenance/tasks/{finished_id}/rerun",
                                    headers=operator(**{"Idempotency-Key": key}))
        assert (response.status_code, response.json_body["error"]["code"]) == (400, "invalid_request"), key
        assert "USE_TASK_QUEUE=false" in response.json_body["error"]["message"]
        aws["s3"].put_object(Bucket="jobs-bucket", Key="tmp/old", Body=b"x")
        response = client.http.post("/api/system/maintenance/cleanup-temp-files?max_age_hours=1",
                                    headers=operator(**{"Idempotency-Key": key}))
        assert (response.status_code, response.json_body["error"]["code"]) == (400, "invalid_request"), key
        assert "USE_TASK_QUEUE=false" in response.json_body["error"]["message"]
    assert client.http.post(f"/api/system/maintenance/tasks/{finished_id}/rerun", headers=operator()).status_code == 200


def _feed_stream(app, aws):
    """Deliver the jobs table's stream records, as moto recorded them, to the stream consumer."""
    from moto.dynamodb.models import dynamodb_backends

    table = dynamodb_backends["123456789012"]["us-east-1"].get_table("jobs")
    records = [r.to_json() for r in table.stream_shard.items]
    for record in records:  # moto keeps a datetime where the stream carries epoch seconds
        created = record["dynamodb"].get("ApproximateCreationDateTime")
        if hasattr(created, "timestamp"):
            record["dynamodb"]["ApproximateCreationDateTime"] = created.timestamp()
    event = json.loads(json.dumps({"Records": records}, default=str))
    app.handler_map["event_publisher"](event, None)
    return event


def test_stats_come_from_counters_kept_by_the_stream_consumer(client, aws, worker_clock):
    for _ in range(3):
        submit(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    bad = submit(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0, "fail_at": 1, "fail_mode": "fatal"}})
    waiting = submit(client, {"type": "demo.steps", "priority": "low", "payload": {"steps": 1, "step_ms": 0}})
    invoke_worker(client._app, sqs_event(receive_all(aws, "jobs_url")))  # the low job stays queued
    event = _feed_stream(client._app, aws)
    # A redelivered batch changes nothing.
    client._app.handler_map["event_publisher"](event, None)
    aws["sqs"].send_message(QueueUrl=aws["low_url"], MessageBody=json.dumps({"job_id": waiting["id"], "attempt": 1}))
    stats = client.http.get("/api/system/stats?window_hours=2", headers=operator()).json_body
    assert stats["jobs_by_status"]["completed"] == 3 and stats["jobs_by_status"]["failed"] == 1
    assert stats["jobs_by_status"]["queued"] == 1
    assert stats["events"]["submitted"] == 5 and stats["events"]["completed"] == 3
    assert stats["events"]["failed"] == 1 and stats["events"]["started"] == 4
    assert stats["failure_rate"] == 0.25
    assert stats["by_type"]["demo.steps"]["completed"] == 3
    assert stats["completion_time_s"]["samples"] == 3 and stats["completion_time_s"]["p50"] is not None
    assert stats["queues"]["low"]["visible"] == 2  # the submission and the extra message
    assert stats["queues"]["normal"]["dead_lettered"] == 1
    bad_window = client.http.get("/api/system/stats?window_hours=0", headers=operator())
    assert bad_window.status_code == 400


def test_the_statistics_count_the_events_of_the_window_asked_for_and_say_which(client, aws):
    """`window_hours` is the window the events are counted over, and the answer says it and when
    it was read: an hour past the window is left out, one inside it counted; past
    MAX_STATS_WINDOW_HOURS is 400."""
    from chalicelib.defaults import MAX_STATS_WINDOW_HOURS
    from chalicelib.domain.job import parse_time, utcnow
    from chalicelib.domain.stats import StatDelta, hours_back

    three_hours_ago = hours_back(utcnow(), 4)[-1]
    container().stats.record_batch([StatDelta("old-job#1", hour=three_hours_ago, events={"submitted": 1})])
    for window, submitted in ((2, 0), (5, 1)):
        asked = utcnow()
        stats = client.http.get(f"/api/system/stats?window_hours={window}", headers=operator()).json_body
        assert (stats["window_hours"], stats["events"]["submitted"]) == (window, submitted)
        assert asked <= parse_time(stats["as_of"]) <= utcnow()
        assert "unavailable" not in stats  # every queue and table answered: nothing to name
    too_long = client.http.get(f"/api/system/stats?window_hours={MAX_STATS_WINDOW_HOURS + 1}", headers=operator())
    assert too_long.status_code == 400


def test_a_dead_letter_says_how_often_its_job_was_tried_not_how_often_it_was_looked_at(client, aws):
    """SQS counts each peek of a DLQ as a receive, and the reconciler peeks the jobs DLQs every
    pass: a letter's receive count climbed by one a minute and said nothing of the job's tries.
    A letter shows its job's attempts (from the job's record) and the message's own attempt."""
    from tests.functional.conftest import LambdaContext

    job = submit(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0, "fail_at": 1, "fail_mode": "fatal"}})
    drain(client._app, aws)
    scheduled = {"version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events",
                 "account": "123456789012", "time": "2026-11-30T12:00:00Z", "region": "us-east-1",
                 "resources": [], "detail": {}}
    for _ in range(3):  # three passes, three peeks of every jobs DLQ
        client._app.handler_map["reconciler"](scheduled, LambdaContext(120))
    for _ in range(2):
        (letter,) = client.http.get("/api/system/dlq?priority=normal", headers=operator()).json_body["dead_letters"]["normal"]
        assert "receive_count" not in letter
        assert letter["body"]["attempt"] == 1
        assert (letter["job"]["attempts"], letter["job"]["max_attempts"]) == (1, job["max_attempts"])


def test_dead_letters_are_shown_without_being_taken_and_redriven(client, aws):
    job = submit(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0, "fail_at": 1, "fail_mode": "fatal"}})
    drain(client._app, aws)
    for _ in range(2):  # looking twice finds the same message: peeking leaves it there
        shown = client.http.get("/api/system/dlq?priority=normal", headers=operator()).json_body["dead_letters"]
        (letter,) = shown["normal"]
        assert letter["body"]["job_id"] == job["id"] and letter["body"]["reason"]["code"] == "demo_failure"
        assert letter["job"] == {"id": job["id"], "tenant": "acme", "type": "demo.steps", "status": "failed",
                                 "attempts": 1, "max_attempts": job["max_attempts"]}
    moved = client.http.post("/api/system/dlq/redrive", headers=operator()).json_body["redriven"]
    assert moved["normal"] == {"moved": 1, "failed": 0} and moved["high"] == {"moved": 0, "failed": 0}
    assert client.http.get("/api/system/dlq", headers=operator()).json_body["dead_letters"]["normal"] == []
    (back,) = receive_all(aws, "jobs_url")
    assert json.loads(back["Body"])["job_id"] == job["id"]
    bad = client.http.get("/api/system/dlq?priority=urgent", headers=operator())
    assert bad.status_code == 400


def test_a_chaos_run_leaves_one_side_effect_per_run_past_its_last_step(client, aws):
    job = submit(client, {"type": "demo.chaos", "payload": {"steps": 2, "step_ms": 0}})
    drain(client._app, aws)
    listed = client.http.get(f"/jobs/{job['id']}/artifacts", headers=auth()).json_body["artifacts"]
    (effect,) = listed
    assert effect["name"].startswith("side-effect-1-") and effect["location"] == "inline"


def test_artifacts_small_inline_large_in_s3(client, aws):
    job = submit(client, {"type": "demo.outputs", "payload": {"artifact_bytes": 200_000}})
    drain(client._app, aws)
    listed = client.http.get(f"/jobs/{job['id']}/artifacts", headers=auth()).json_body["artifacts"]
    assert {a["name"]: (a["location"], a["size"]) for a in listed} == {
        "data.bin": ("s3", 200_000), "numbers.json": ("inline", len('{"payload_pad_bytes":0}')), "summary.txt": ("inline", len(f"job {job['id']} attempt 1\n"))}
    text = client.http.get(f"/jobs/{job['id']}/artifacts/summary.txt", headers=auth())
    assert text.status_code == 200 and text.body.decode() == f"job {job['id']} attempt 1\n"
    assert text.headers["Content-Type"].startswith("text/plain")
    numbers = client.http.get(f"/jobs/{job['id']}/artifacts/numbers.json", headers=auth())
    assert numbers.json_body == {"payload_pad_bytes": 0}
    binary = client.http.get(f"/jobs/{job['id']}/artifacts/data.bin", headers=auth()).json_body
    assert binary["location"] == "s3" and binary["url"].startswith("https://") and binary["expires_in"] == 300
    stored = aws["s3"].get_object(Bucket="jobs-bucket", Key=f"jobs/{job['id']}/artifacts/0001/data.bin")["Body"].read()
    assert stored[:3] == b"\x00\x01\x02" and len(stored) == 200_000
    for path, code in ((f"/jobs/{job['id']}/artifacts/nope", "artifact_not_found"),
                       (f"/jobs/{job['id']}/artifacts/..%2Fx", "artifact_not_found")):
        response = client.http.get(path, headers=auth())
        assert response.status_code == 404 and response.json_body["error"]["code"] == code
    assert client.http.get(f"/jobs/{job['id']}/artifacts", headers=auth("globex")).status_code == 404
    assert set(listed[0]) == {"name", "content_type", "size", "created_at", "location"}
    assert parse_qs(urlsplit(binary["url"]).query)["X-Amz-Expires"] == [str(binary["expires_in"])]


def test_an_empty_text_artifact_downloads_as_an_empty_body(client, aws):
    job = submit(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    container().artifacts.put(job["id"], "empty.txt", b"", "text/plain")
    empty = client.http.get(f"/jobs/{job['id']}/artifacts/empty.txt", headers=auth())
    assert (empty.status_code, empty.body, empty.headers["Content-Type"]) == (200, b"", "text/plain")


def test_an_inline_artifact_stored_before_its_checks_downloads_under_no_header_it_names(client, aws):
    """An item written before content types were checked and only UTF-8 text kept inline: its
    content type, no media type, is never sent as a header, and its bytes come back as the
    UTF-8 text they are served as (U+FFFD where they are not UTF-8), not as a 400 or a 500."""
    from chalicelib.adapters.dynamodb_items import artifact_key

    job = submit(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    aws["ddb"].put_item(TableName="jobs", Item={
        **artifact_key(job["id"], "old.txt"), "name": {"S": "old.txt"}, "size": {"N": "4"},
        "content_type": {"S": "text/plain\r\nX-Injected: 1"}, "created_at": {"S": "2025-01-01T00:00:00.000Z"},
        "data": {"B": "René".encode("iso-8859-1")}})
    old = client.http.get(f"/jobs/{job['id']}/artifacts/old.txt", headers=auth())
    assert (old.status_code, old.headers["Content-Type"]) == (200, "text/plain; charset=utf-8"), old.body
    assert "X-Injected" not in old.headers and old.body.decode() == "Ren\ufffd"


def test_an_id_no_job_can_have_is_a_job_not_found_showing_the_id_cut(client, aws):
    """Refused before any read: an id longer than any job's is no key to look up, and the
    refusal shows it cut, not the kilobytes sent."""
    from chalicelib.domain.job import shown_id

    job_id = "x" * 3000
    for path in (f"/jobs/{job_id}/artifacts", f"/jobs/{job_id}/artifacts/out.txt"):
        response = client.http.get(path, headers=auth())
        assert response.status_code == 404, path
        assert response.json_body["error"]["code"] == "job_not_found"
        assert response.json_body["error"]["message"] == f"job {shown_id(job_id)} not found"


def test_large_payload_and_result_are_claim_checked_in_s3(client, aws):
    pad = "p" * 300_000
    job = submit(client, {"type": "demo.outputs", "payload": {"result_bytes": 450_000, "pad": pad}})
    assert job["payload"]["pad"] == pad
    drain(client._app, aws)
    done = client.http.get(f"/jobs/{job['id']}", headers=auth()).json_body
    assert done["status"] == "completed" and done["payload"]["pad"] == pad
    assert done["result"] == {"text": "r" * 450_000, "pad_bytes": 300_000}
    item = aws["ddb"].get_item(TableName="jobs", Key={"pk": {"S": f"JOB#{job['id']}"}, "sk": {"S": "JOB"}})["Item"]
    assert "payload_json" not in item and "result_json" not in item
    assert item["payload_ref"]["M"]["key"]["S"] == f"jobs/{job['id']}/payload.json"
    listed = client.http.get("/jobs", headers=auth()).json_body["jobs"]
    assert listed[0]["payload"] == {"claim_check": {"bytes": int(item["payload_ref"]["M"]["bytes"]["N"])}}


def test_every_dead_letter_queue_is_shown_and_the_subscribers_are_redriven(client, aws, monkeypatch):
    """The subscribers' DLQs and the failure destinations show beside the jobs DLQs; a
    subscriber's DLQ is redriven to its queue, a stream failure description cannot be (the
    reconciler replays those)."""
    sqs = aws["sqs"]
    urls = stack_queues(aws, monkeypatch, "erp-webhook", "erp-webhook-dlq", "stream-failures")
    sqs.send_message(QueueUrl=urls["erp-webhook-dlq"], MessageBody=json.dumps({"detail": {"event_id": "e1"}}))
    sqs.send_message(QueueUrl=urls["stream-failures"], MessageBody=json.dumps({"DDBStreamBatchInfo": {}}))
    shown = client.http.get("/api/system/dlq", headers=operator()).json_body["dead_letters"]
    assert set(shown) == {"high", "normal", "low", "erp_webhook", "stream_failure"}
    assert [m["body"] for m in shown["erp_webhook"]] == [{"detail": {"event_id": "e1"}}]
    stats = client.http.get("/api/system/stats", headers=operator()).json_body
    assert stats["dead_letter_queues"]["erp_webhook"] == 1 and stats["dead_letter_queues"]["stream_failure"] == 1
    refused = client.http.post("/api/system/dlq/redrive?queue=stream_failure", headers=operator())
    assert refused.status_code == 409 and refused.json_body["error"]["code"] == "not_redrivable"
    moved = client.http.post("/api/system/dlq/redrive", headers=operator()).json_body["redriven"]
    assert moved["erp_webhook"] == {"moved": 1, "failed": 0} and "stream_failure" not in moved
    assert receive_all({**aws, "q": urls["erp-webhook"]}, "q")[0]["Body"] == json.dumps({"detail": {"event_id": "e1"}})
    both = client.http.get("/api/system/dlq?priority=high&queue=erp_webhook", headers=operator())
    assert both.status_code == 400 and both.json_body["error"]["code"] == "invalid_request"
    unknown = client.http.get("/api/system/dlq?queue=nope", headers=operator())
    assert unknown.status_code == 400 and unknown.json_body["error"]["code"] == "invalid_request"


def test_a_subscribers_letter_that_is_no_event_stays_on_its_dead_letter_queue(client, aws, monkeypatch):
    """A body no subscriber can take (hand-made, another system's) is left where it is, as a
    jobs DLQ leaves a body no worker can take: sent back, it failed each delivery for 100 receives
    (about ten hours of the subscriber's invocations) before it was parked there again."""
    sqs = aws["sqs"]
    urls = stack_queues(aws, monkeypatch, "erp-webhook", "erp-webhook-dlq", "cache-invalidation",
                        "cache-invalidation-dlq")
    event = json.dumps({"detail-type": "job.status.changed", "detail": {"event_id": "e1"}})
    for dlq in ("erp-webhook-dlq", "cache-invalidation-dlq"):
        for body in (event, "hand-made, no event", json.dumps({"detail": {"no": "event_id"}})):
            sqs.send_message(QueueUrl=urls[dlq], MessageBody=body)
    moved = client.http.post("/api/system/dlq/redrive", headers=operator()).json_body["redriven"]
    assert moved["erp_webhook"] == moved["cache_invalidation"] == {"moved": 1, "failed": 2}
    for queue in ("erp-webhook", "cache-invalidation"):
        assert [m["Body"] for m in receive_all({**aws, "q": urls[queue]}, "q")] == [event], queue
    left = client.http.get("/api/system/dlq", headers=operator()).json_body["total"]
    assert left["erp_webhook"] == left["cache_invalidation"] == 2


def test_a_parked_event_names_the_job_its_detail_is_about(client, aws, monkeypatch):
    """An event a subscriber parked (or the bus could not deliver) is the bus's envelope: the
    listing shows the job its `detail` names, as it does for a job message; an envelope that
    is not jobpipe's, or names no job, shows none."""
    sqs = aws["sqs"]
    urls = stack_queues(aws, monkeypatch, "erp-webhook", "erp-webhook-dlq")
    job = submit(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    ours = {"version": "0", "id": "e-1", "detail-type": "job.status.changed", "source": "jobpipe",
            "detail": {"event_id": "e-1", "event_type": "job.status.changed", "job_id": job["id"], "status": "queued"}}
    theirs = {**ours, "source": "someone.else"}
    for body in (ours, theirs, {"source": "jobpipe", "detail": "no object"}):
        sqs.send_message(QueueUrl=urls["erp-webhook-dlq"], MessageBody=json.dumps(body))
    shown = client.http.get("/api/system/dlq?queue=erp_webhook", headers=operator()).json_body["dead_letters"]
    assert [m["job"] and m["job"]["id"] for m in shown["erp_webhook"]] == [job["id"], None, None]
    assert shown["erp_webhook"][0]["job"]["tenant"] == "acme"


def test_an_event_the_bus_could_not_deliver_goes_back_to_the_queue_it_was_for(client, aws, monkeypatch):
    """EventBridge dead-letters an event it could not deliver within the target's retry policy,
    naming the target (TARGET_ARN); a redrive sends it there, and leaves what names no queue
    of this stack to an operator."""
    sqs = aws["sqs"]
    urls = stack_queues(aws, monkeypatch, "erp-webhook", "erp-outbound", "cache-invalidation", "event-delivery-dlq")

    def undelivered(event_id: str, target: str) -> None:
        attributes = {name: {"DataType": "String", "StringValue": value} for name, value in {
            "RULE_ARN": "arn:aws:events:us-east-1:123456789012:rule/job-events/erp", "TARGET_ARN": target,
            "ERROR_CODE": "SDK_CLIENT_ERROR", "EXHAUSTED_RETRY_CONDITION": "MaximumEventAgeInSeconds"}.items()}
        sqs.send_message(QueueUrl=urls["event-delivery-dlq"], MessageAttributes=attributes,
                         MessageBody=json.dumps({"detail-type": "job.status.changed", "detail": {"event_id": event_id}}))

    undelivered("e1", "arn:aws:sqs:us-east-1:123456789012:erp-webhook")
    undelivered("e2", "arn:aws:sqs:us-east-1:123456789012:cache-invalidation")
    undelivered("e3", "arn:aws:sqs:us-east-1:123456789012:somebody-elses-queue")
    shown = client.http.get("/api/system/dlq?queue=event_delivery", headers=operator()).json_body["dead_letters"]
    assert sorted(m["body"]["detail"]["event_id"] for m in shown["event_delivery"]) == ["e1", "e2", "e3"]
    assert {m["body"]["detail"]["event_id"]: m["reason"] for m in shown["event_delivery"]}["e1"] == (
        "EventBridge could not deliver it to arn:aws:sqs:us-east-1:123456789012:erp-webhook: SDK_CLIENT_ERROR")
    moved = client.http.post("/api/system/dlq/redrive?queue=event_delivery", headers=operator()).json_body
    assert moved["redriven"]["event_delivery"] == {"moved": 2, "failed": 1}

    def ids(name: str) -> list[str]:
        return [json.loads(m["Body"])["detail"]["event_id"] for m in receive_all({**aws, "q": urls[name]}, "q")]

    assert (ids("erp-webhook"), ids("cache-invalidation"), ids("erp-outbound")) == (["e1"], ["e2"], [])
    stats = client.http.get("/api/system/stats", headers=operator()).json_body
    assert stats["dead_letter_queues"]["event_delivery"] == 1, "the one that names no queue of this stack stays"


def test_a_queue_or_table_thattimes_out_is_503_not_500_on_the_operator_routes(client, aws, monkeypatch):
    """A timeout or lost connection is the same outage as a refusal: 503 with its code."""
    operations = container().queue_operations
    with monkeypatch.context() as patched:
        patched.setattr(operations, "_sqs", TimingOut(operations._sqs, "get_queue_attributes", "receive_message"))
        for method, path in (("get", "/api/system/dlq"),
                             ("post", "/api/system/dlq/redrive"), ("post", "/api/system/dlq/redrive?priority=low")):
            response = getattr(client.http, method)(path, headers=operator())
            assert response.status_code == 503, (path, response.body)
            assert response.json_body["error"]["code"] == "dlq_unavailable", path
    stats, log = container().stats, container().reconciler_log
    with monkeypatch.context() as patched:  # nothing at all can be read
        patched.setattr(operations, "_sqs", TimingOut(operations._sqs, "get_queue_attributes"))
        patched.setattr(stats, "_ddb", TimingOut(stats._ddb, "get_item", "batch_get_item"))
        patched.setattr(log, "_ddb", TimingOut(log._ddb, "get_item"))
        response = client.http.get("/api/system/stats", headers=operator())
        assert response.status_code == 503 and response.json_body["error"]["code"] == "store_unavailable"
    monkeypatch.setenv("USE_TASK_QUEUE", "false")  # the clean-ups answer in the request
    composition.use(None)
    finished, blobs = container().finished_jobs, container().blobs
    monkeypatch.setattr(finished, "_ddb", TimingOut(finished._ddb, "query"))
    monkeypatch.setattr(blobs, "_s3", TimingOut(blobs._s3, "list_objects_v2"))
    for path in ("cleanup-runs", "cleanup-temp-files"):
        response = client.http.post(f"/api/system/maintenance/{path}", headers=operator())
        assert response.status_code == 503, (path, response.body)
        assert response.json_body["error"]["code"] == "store_unavailable", path


def test_the_statistics_answer_with_the_job_counts_while_no_queue_answers(client, aws, monkeypatch):
    """SQS down is when the operator most needs the job counts: the statistics answer 200 with
    the counters and the reconciler's record, every queue named under `unavailable`; the
    counters' table down leaves the queue depths shown, the counters named."""
    submit(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    _feed_stream(client._app, aws)
    operations, stats = container().queue_operations, container().stats
    with monkeypatch.context() as patched:
        patched.setattr(operations, "_sqs", TimingOut(operations._sqs, "get_queue_attributes"))
        response = client.http.get("/api/system/stats", headers=operator())
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["jobs_by_status"]["queued"] == 1 and body["events"]["submitted"] == 1
    assert "reconciler" in body and body["queues"] == {} and body["dead_letter_queues"] == {}
    assert {section: set(names) for section, names in body["unavailable"].items()} == {
        "queues": {"high", "normal", "low"}, "dead_letter_queues": {"high", "normal", "low"}}
    assert body["unavailable"]["queues"]["normal"] == {
        "code": "dlq_unavailable", "message": "could not read the normal queue"}

    with monkeypatch.context() as patched:
        patched.setattr(stats, "_ddb", TimingOut(stats._ddb, "get_item", "batch_get_item"))
        response = client.http.get("/api/system/stats", headers=operator())
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["queues"]["normal"]["visible"] == 1 and "jobs_by_status" not in body and "reconciler" in body
    assert body["unavailable"] == {"counters": {"code": "store_unavailable", "message": "could not read job statistics"}}


def test_a_queue_thattimes_out_is_a_problem_the_health_check_reports(client, aws, monkeypatch):
    """One unreachable queue is a finding, like a deleted one: the other checks still run."""
    operations = container().queue_operations
    real = operations._sqs.get_queue_attributes

    def low_dlqtimes_out(**request):
        if request["QueueUrl"] == aws["dlq_low_url"]:
            times_out()
        return real(**request)

    monkeypatch.setattr(operations._sqs, "get_queue_attributes", low_dlqtimes_out)
    task_id = client.http.post("/api/system/maintenance/health-check", headers=operator()).json_body["task_id"]
    drain(client._app, aws)
    done = task(client, task_id)
    assert done["status"] == "completed", done
    assert done["result"]["healthy"] is False and done["result"]["problems"] == ["jobs-low-dlq"]
    (low_dlq,) = [q for q in done["result"]["checks"]["queues"] if q["name"] == "jobs-low-dlq"]
    assert low_dlq["ok"] is False and "ReadTimeoutError" in low_dlq["error"]


def test_a_message_no_worker_can_take_stays_on_its_jobs_dead_letter_queue(client, aws):
    """A hand-made or foreign body (not JSON, no job id, an id no job can have) sent back to a
    jobs queue would only fail ten more deliveries and come back: a redrive leaves it where it
    is (counted in `failed`), moves the job messages beside it, and the listing still shows it."""
    job = submit(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0, "fail_at": 1, "fail_mode": "fatal"}})
    drain(client._app, aws)
    foreign = ["not json at all", json.dumps([1, 2]), json.dumps({"job_id": 5}), json.dumps({"job_id": "x" * 3000})]
    for body in foreign:
        aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=body)
    store = container().store
    real = store._ddb.batch_get_item

    def batch_get_item(**request):  # DynamoDB refuses a partition key over 2048 bytes
        keys = [k["pk"]["S"] for table in request["RequestItems"].values() for k in table["Keys"]]
        if any(len(k.encode()) > 2048 for k in keys):
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "ValidationException", "Message": "key too large"}}, "BatchGetItem")
        return real(**request)

    store._ddb.batch_get_item = batch_get_item
    try:
        shown = client.http.get("/api/system/dlq?priority=normal", headers=operator())
    finally:
        del store._ddb.batch_get_item
    assert shown.status_code == 200, shown.body
    letters = shown.json_body["dead_letters"]["normal"]
    assert len(letters) == 5 and [m["job"] for m in letters if m["job"]] == [
        {"id": job["id"], "tenant": "acme", "type": "demo.steps", "status": "failed", "attempts": 1,
         "max_attempts": job["max_attempts"]}]
    moved = client.http.post("/api/system/dlq/redrive?priority=normal", headers=operator()).json_body
    assert moved["redriven"]["normal"] == {"moved": 1, "failed": 4}
    assert [json.loads(m["Body"])["job_id"] for m in receive_all(aws, "jobs_url")] == [job["id"]]
    stats = client.http.get("/api/system/stats", headers=operator()).json_body
    assert stats["dead_letter_queues"]["normal"] == 4, "the foreign messages stay"


def test_canceling_a_running_task_says_the_cancel_was_taken(client, aws):
    """A running task stops at its next page or progress report: until then its record says
    the cancel is pending, in the DELETE's answer and in every poll."""
    from chalicelib.ports import JobMessage

    task_id = client.http.post("/api/system/maintenance/cleanup-runs", headers=operator()).json_body["task_id"]
    assert task(client, task_id)["cancel_requested"] is False
    claim = container().lifecycle.claim(JobMessage(task_id, 1))
    assert claim.job.status.value == "running"
    response = client.http.delete(f"/api/system/maintenance/tasks/{task_id}", headers=operator())
    assert response.status_code == 202
    assert response.json_body["status"] == "running" and response.json_body["cancel_requested"] is True
    assert task(client, task_id)["cancel_requested"] is True
    listed = client.http.get("/api/system/maintenance/tasks", headers=operator()).json_body["tasks"]
    assert [(t["task_id"], t["cancel_requested"]) for t in listed] == [(task_id, True)]


def a_letter_on_two_dead_letter_queues_and_the_erps_gone(client, aws, monkeypatch):
    """A failed job's letter on the normal DLQ, an event's on cache invalidation's, and the ERP
    webhook's DLQ deleted (a queue that does not answer): the stack's queues and the job."""
    urls = stack_queues(aws, monkeypatch, "erp-webhook", "erp-webhook-dlq", "cache-invalidation", "cache-invalidation-dlq")
    job = submit(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0, "fail_at": 1, "fail_mode": "fatal"}})
    drain(client._app, aws)
    aws["sqs"].send_message(QueueUrl=urls["cache-invalidation-dlq"], MessageBody=json.dumps({"detail": {"event_id": "e1"}}))
    aws["sqs"].delete_queue(QueueUrl=urls["erp-webhook-dlq"])
    return urls, job


def test_a_dead_letter_queue_that_cannot_be_redriven_does_not_hold_back_the_others(client, aws, monkeypatch):
    """Redriving every queue goes on past one that does not answer: the answer says what moved
    and which queue was unavailable, instead of a 503 that hides the moves already made and
    never reaches the queues after it."""
    urls, job = a_letter_on_two_dead_letter_queues_and_the_erps_gone(client, aws, monkeypatch)
    response = client.http.post("/api/system/dlq/redrive", headers=operator())
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["redriven"]["normal"] == {"moved": 1, "failed": 0}
    assert body["redriven"]["cache_invalidation"] == {"moved": 1, "failed": 0}
    assert "erp_webhook" not in body["redriven"]
    assert body["unavailable"]["erp_webhook"]["code"] == "dlq_unavailable"
    assert [json.loads(m["Body"])["job_id"] for m in receive_all(aws, "jobs_url")] == [job["id"]]
    assert len(receive_all({**aws, "q": urls["cache-invalidation"]}, "q")) == 1
    only = client.http.post("/api/system/dlq/redrive?queue=erp_webhook", headers=operator())
    assert only.status_code == 503 and only.json_body["error"]["code"] == "dlq_unavailable"


def test_a_dead_letter_queue_that_does_not_answer_leaves_the_others_readable(client, aws, monkeypatch):
    """In an incident the operator reads what can be read: the statistics and the dead letters of
    every queue answer for the queues that answer, and name the ones that did not under
    `unavailable` (as redriving every queue does); a named queue that does not answer is 503."""
    urls, job = a_letter_on_two_dead_letter_queues_and_the_erps_gone(client, aws, monkeypatch)

    stats = client.http.get("/api/system/stats", headers=operator())
    assert stats.status_code == 200, stats.body
    body = stats.json_body
    assert body["dead_letter_queues"] == {"high": 0, "normal": 1, "low": 0, "cache_invalidation": 1}
    assert set(body["queues"]) == {"high", "normal", "low"} and body["queues"]["normal"]["dead_lettered"] == 1
    assert body["unavailable"] == {"dead_letter_queues": {"erp_webhook": {
        "code": "dlq_unavailable", "message": "could not read the erp_webhook dead-letter queue"}}}
    assert "jobs_by_status" in body and "reconciler" in body

    letters = client.http.get("/api/system/dlq", headers=operator())
    assert letters.status_code == 200, letters.body
    body = letters.json_body
    assert [m["job"]["id"] for m in body["dead_letters"]["normal"]] == [job["id"]]
    assert [m["body"] for m in body["dead_letters"]["cache_invalidation"]] == [{"detail": {"event_id": "e1"}}]
    assert "erp_webhook" not in body["dead_letters"]
    assert body["unavailable"] == {"erp_webhook": {
        "code": "dlq_unavailable", "message": "could not read the erp_webhook dead-letter queue"}}

    for path in ("/api/system/dlq?queue=erp_webhook", "/api/system/dlq/redrive?queue=erp_webhook"):
        only = client.http.request("POST" if "redrive" in path else "GET", path, headers=operator())
        assert only.status_code == 503 and only.json_body["error"]["code"] == "dlq_unavailable", path


def test_a_jobs_queue_that_does_not_answer_is_named_and_its_dead_letter_queue_still_counted(client, aws, monkeypatch):
    """The jobs queue and its dead-letter queue are read on their own: one that does not answer
    leaves the other's numbers in the statistics (`dead_lettered` is null when only its DLQ
    could not be read)."""
    operations = container().queue_operations
    real = operations._sqs.get_queue_attributes

    def some_time_out(**request):
        if request["QueueUrl"] in (aws["jobs_url"], aws["dlq_low_url"]):
            times_out()
        return real(**request)

    monkeypatch.setattr(operations._sqs, "get_queue_attributes", some_time_out)
    body = client.http.get("/api/system/stats", headers=operator()).json_body
    assert set(body["queues"]) == {"high", "low"}
    assert body["queues"]["low"]["dead_lettered"] is None and body["queues"]["high"]["dead_lettered"] == 0
    assert set(body["dead_letter_queues"]) == {"high", "normal"}
    assert {section: set(names) for section, names in body["unavailable"].items()} == {
        "queues": {"normal"}, "dead_letter_queues": {"low"}}
    assert body["unavailable"]["queues"]["normal"]["code"] == "dlq_unavailable"


def _logged(monkeypatch) -> list[dict]:
    """The warnings, errors and logged exceptions from here on, with the cause an exception
    line carries (its traceback shows the chain: `exc_info`)."""
    import sys

    from chalicelib.observability import logger

    lines: list[dict] = []
    for level in ("warning", "error", "exception"):
        def log(message, *args, extra=None, _level=level, exc_info=None, **kwargs):
            raised = exc_info if isinstance(exc_info, BaseException) else \
                sys.exc_info()[1] if _level == "exception" or exc_info else None
            lines.append({**(extra or {}), "message": message, "level": _level,
                          "cause": repr(raised.__cause__) if raised is not None else None})
        monkeypatch.setattr(logger, level, log)
    return lines


def test_a_queue_or_table_that_does_not_answer_an_operator_route_is_in_the_log_with_its_cause(client, aws, monkeypatch):
    """The answer says which queue or table did not answer; the API's log says why (the
    refusal or timeout under it), whether the route answered 503 or named it under
    `unavailable`."""
    operations, stats = container().queue_operations, container().stats
    lines = _logged(monkeypatch)
    with monkeypatch.context() as patched:
        patched.setattr(operations, "_sqs", TimingOut(operations._sqs, "get_queue_attributes", "receive_message"))
        assert client.http.get("/api/system/dlq", headers=operator()).status_code == 503
        (line,) = [entry for entry in lines if entry["message"] == "dependency failure"]
        assert line["path"] == "/api/system/dlq" and "ReadTimeoutError" in line["cause"]
        lines.clear()
        body = client.http.get("/api/system/stats", headers=operator()).json_body
        assert set(body["unavailable"]) == {"queues", "dead_letter_queues"}
    said = {(entry["section"], entry["queue"]) for entry in lines if entry["message"] == "operator route read around an outage"}
    assert said == {(section, p) for section in ("queues", "dead_letter_queues") for p in ("high", "normal", "low")}
    assert all("ReadTimeoutError" in entry["cause"] for entry in lines if entry["message"] != "dependency failure")
    lines.clear()
    with monkeypatch.context() as patched:
        patched.setattr(stats, "_ddb", TimingOut(stats._ddb, "get_item", "batch_get_item"))
        assert "counters" in client.http.get("/api/system/stats", headers=operator()).json_body["unavailable"]
    (line,) = lines
    assert (line["section"], line["level"]) == ("counters", "warning") and "ReadTimeoutError" in line["cause"]


def test_a_refusal_of_the_request_itself_is_answered_not_logged_as_a_dependency_failure(client, aws, monkeypatch):
    """A 4xx (a missing job, a bad body, a tenant on a system route) is the caller's: answered
    with its code, and nothing in the log an operator would search for outages."""
    lines = _logged(monkeypatch)
    refusals = [client.http.get("/jobs/00000000-0000-0000-0000-000000000000", headers=auth()),
                client.http.post("/jobs", headers=auth(), body="[1]"),
                client.http.get("/api/system/dlq", headers=tenant_admin())]
    assert [r.status_code for r in refusals] == [404, 400, 403]
    assert lines == []


def test_an_unexpected_error_is_a_500_saying_it_was_logged_and_it_is(client, aws, monkeypatch):
    """The answer holds no detail of the error; the log holds the error and the route it
    happened on, as the answer promises."""
    lines = _logged(monkeypatch)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug") from KeyError("under it")

    monkeypatch.setattr(container().reads, "visible_job", broken)
    response = client.http.get("/jobs/00000000-0000-0000-0000-000000000000", headers=auth())
    assert (response.status_code, response.json_body["error"]["code"]) == (500, "internal_error")
    assert "logged" in response.json_body["error"]["message"] and "a bug" not in response.body.decode()
    assert [(line["message"], line["level"], line["path"], line["cause"]) for line in lines] \
        == [("unhandled error", "exception", "/jobs/{job_id}", repr(KeyError("under it")))]


def test_a_dead_letter_listing_that_read_around_the_jobs_table_says_why_in_the_log(client, aws, monkeypatch):
    """The jobs table not answering leaves the letters listed with `jobs_unavailable`; the
    API's log says why, as for a queue the listing read around: an operator seeing every
    letter's job null finds the timeout under it, not only the answer's short code."""
    job = submit(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=json.dumps({"job_id": job["id"], "attempt": 1}))
    store = container().store
    lines = _logged(monkeypatch)
    with monkeypatch.context() as patched:
        patched.setattr(store, "_ddb", TimingOut(store._ddb, "batch_get_item"))
        body = client.http.get("/api/system/dlq?priority=normal", headers=operator()).json_body
    assert body["jobs_unavailable"]["code"] == "store_unavailable" and body["dead_letters"]["normal"][0]["job"] is None
    (line,) = [entry for entry in lines if entry["message"] == "operator route read around an outage"]
    assert (line["section"], line["queue"]) == ("jobs", None) and "ReadTimeoutError" in line["cause"]


def test_a_dead_letter_count_that_did_not_answer_says_why_in_the_log(client, aws, monkeypatch):
    """A queue whose letters were read and whose count then did not answer is shown with its
    letters and `total` null; the API's log names the queue and the timeout under it."""
    for n in range(2):
        aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=json.dumps({"note": f"hand-made {n}"}))
    operations = container().queue_operations
    lines = _logged(monkeypatch)
    with monkeypatch.context() as patched:
        patched.setattr(operations, "_sqs", TimingOut(operations._sqs, "get_queue_attributes"))
        body = client.http.get("/api/system/dlq?priority=normal", headers=operator()).json_body
    assert len(body["dead_letters"]["normal"]) == 2 and body["total"] == {"normal": None}
    (line,) = [entry for entry in lines if entry["message"] == "operator route read around an outage"]
    assert (line["section"], line["queue"]) == ("dead_letter_queues", "normal") and "ReadTimeoutError" in line["cause"]


def test_a_redrive_of_every_queue_that_did_not_answer_says_why_in_the_log(client, aws, monkeypatch):
    """A redrive of every queue names each queue that did not answer; the API's log names each
    with the timeout under it, as a listing's does."""
    operations = container().queue_operations
    lines = _logged(monkeypatch)
    with monkeypatch.context() as patched:
        patched.setattr(operations, "_sqs", TimingOut(operations._sqs, "receive_message"))
        refused = client.http.post("/api/system/dlq/redrive", headers=operator())
    first = operations.dead_letter_queues()[0]  # none answered: the first one's error is the answer
    assert refused.status_code == 503 and refused.json_body["error"]["details"]["queue"] == first, refused.body
    said = [entry for entry in lines if entry["message"] == "operator route read around an outage"]
    assert {(entry["section"], entry["queue"]) for entry in said} == {
        ("dead_letter_queues", name) for name in operations.dead_letter_queues()}
    assert all("ReadTimeoutError" in entry["cause"] for entry in said)
