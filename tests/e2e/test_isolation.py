"""Tenant isolation on the deployed API: every route, called with another tenant's token on
the owner's ids, answers as if they did not exist, and changes nothing of the owner's."""
from __future__ import annotations

import json
import uuid

import pytest

from app import app as chalice_app
from tests.support.waiting import eventually

PUBLIC = {("/health", "GET"), ("/openapi.json", "GET"), ("/dashboard", "GET"), ("/job-types", "GET")}


def not_found_error(response):
    return response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"


def rq_not_found(response):
    return response.status_code == 200 and response.json()["status"] == "not_found"


def forbidden(response):
    """Operator routes need the operator role, which a tenant's token does not carry."""
    return response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


def all_not_found(response):
    jobs = response.json()["jobs"]
    return response.status_code == 200 and jobs and all(j["status"] == "not_found" for j in jobs.values())


@pytest.fixture(scope="module")
def world(stack):
    owner, intruder = f"owner-{uuid.uuid4().hex[:8]}", f"intruder-{uuid.uuid4().hex[:8]}"
    scope, namespace = f"proj-{uuid.uuid4().hex[:6]}", "steps-summary"
    done = stack.submit({"type": "demo.steps", "scope": scope, "payload": {"steps": 2, "step_ms": 50}}, tenant=owner)
    stack.wait_terminal(done["id"], tenant=owner)
    # The completion reaches the scope's tasks through the event bus: wait, so the owner's view
    # the tests compare before and after is settled.
    eventually(lambda: stack.call("GET", f"/scopes/{scope}/tasks", owner).json()["tasks"], bool,
               timeout_s=60, every_s=0.5, what="the completion to reach the scope's tasks")
    running = stack.submit({"type": "demo.steps", "payload": {"steps": 40, "step_ms": 250}}, tenant=owner)
    stack.wait_for(running["id"], lambda j: j["status"] == "running", tenant=owner)
    assert stack.call("PUT", f"/cache/{scope}/{namespace}", owner, json={"secret": owner}).status_code == 200
    return {"owner": owner, "intruder": intruder, "scope": scope, "namespace": namespace,
            "done": done["id"], "running": running["id"]}


def owner_view(stack, w):
    owner = w["owner"]
    return {
        "jobs": sorted(j["id"] for j in stack.call("GET", "/jobs?limit=100", owner).json()["jobs"]),
        "cache": stack.call("GET", f"/cache/{w['scope']}/{w['namespace']}", owner).json().get("value"),
        "tasks": stack.call("GET", f"/scopes/{w['scope']}/tasks", owner).json()["tasks"],
        "done": stack.job(w["done"], owner)["version"],
    }


# (path, method) -> (request body or None, what the intruder must see)
EXPECTED = {
    ("/jobs/{job_id}", "GET"): (None, not_found_error),
    ("/jobs/{job_id}", "DELETE"): (None, not_found_error),
    ("/jobs/{job_id}/runs", "GET"): (None, not_found_error),
    ("/jobs/{job_id}/rerun", "POST"): (None, not_found_error),
    ("/api/jobstatus/{job_id}", "GET"): (None, rq_not_found),
    ("/api/jobinfo/{job_id}", "GET"): (None, rq_not_found),
    ("/jobs/status", "POST"): ("ids", all_not_found),
    ("/api/jobinfo", "POST"): ("ids", all_not_found),
    ("/jobs", "GET"): (None, lambda r: r.status_code == 200 and r.json()["jobs"] == []),
    ("/jobs", "POST"): ({"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}, lambda r: r.status_code == 202),
    ("/cache/{scope}/{namespace}", "GET"): (None, lambda r: r.status_code == 404 and "value" not in r.json()),
    ("/cache/{scope}/{namespace}", "PUT"): ({"secret": "intruder"}, lambda r: r.status_code == 200),
    ("/scopes/{scope}/tasks", "GET"): (None, lambda r: r.status_code == 200 and r.json()["tasks"] == []),
    ("/jobs/{job_id}/artifacts", "GET"): (None, not_found_error),
    ("/jobs/{job_id}/artifacts/{name}", "GET"): (None, not_found_error),
    **{route: (None, forbidden) for route in (
        ("/api/system/stats", "GET"),
        ("/api/system/dlq", "GET"),
        ("/api/system/dlq/redrive", "POST"),
        ("/api/system/dlq/letters/{message_id}", "DELETE"),
        ("/api/system/maintenance/cleanup-runs", "POST"),
        ("/api/system/maintenance/health-check", "POST"),
        ("/api/system/maintenance/cleanup-temp-files", "POST"),
        ("/api/system/maintenance/log-statistics", "POST"),
        ("/api/system/maintenance/tasks", "GET"),
        ("/api/system/maintenance/tasks/{task_id}", "GET"),
        ("/api/system/maintenance/tasks/{task_id}", "DELETE"),
        ("/api/system/maintenance/tasks/{task_id}/runs", "GET"),
        ("/api/system/maintenance/tasks/{task_id}/rerun", "POST"),
    )},
}


def test_every_route_is_covered():
    routes = {(path, method) for path, methods in chalice_app.routes.items() for method in methods}
    assert routes == set(EXPECTED) | PUBLIC


@pytest.mark.parametrize("path, method", sorted(EXPECTED))
def test_another_tenant_sees_nothing_and_changes_nothing(stack, world, path, method):
    before = owner_view(stack, world)
    job_id = world["done"] if method != "DELETE" else world["running"]
    url = path.format(job_id=job_id, task_id=job_id, message_id=job_id, name="summary.txt", scope=world["scope"],
                      namespace=world["namespace"])
    body, check = EXPECTED[(path, method)]
    if body == "ids":
        body = {"job_ids": [world["done"], world["running"]]}
    response = stack.call(method, url, world["intruder"], json=body)
    assert check(response), (response.status_code, response.text[:300])
    assert world["owner"] not in response.text  # ids may be echoed back, the owner's data never
    after = owner_view(stack, world)
    assert after == before
    running = stack.job(world["running"], world["owner"])
    assert not running["cancel_requested"] and running["status"] != "canceled"


def test_public_routes_answer_the_same_to_every_tenant(stack, world):
    for path, method in sorted(PUBLIC):
        mine = stack.call(method, path, world["owner"])
        theirs = stack.call(method, path, world["intruder"])
        assert mine.status_code == theirs.status_code == 200, path
        assert mine.content == theirs.content, path


SYSTEM_ROUTES = sorted(route for route in EXPECTED if route[0].startswith("/api/system/"))


def test_every_system_route_is_listed_as_forbidden_to_tenants():
    assert SYSTEM_ROUTES and all(EXPECTED[route][1] is forbidden for route in SYSTEM_ROUTES)


def role_headers(stack, tenant: str, roles: list[str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token(tenant, user='boss', roles=roles)}",
            "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def task_ids(stack):
    """Two maintenance tasks to read and cancel: a finished health check and a queued clean-up."""
    operator = role_headers(stack, "ops", ["operator"])
    done = stack.call("POST", "/api/system/maintenance/health-check", headers=operator).json()["task_id"]
    eventually(lambda: stack.call("GET", f"/api/system/maintenance/tasks/{done}", headers=operator).json()["status"],
               lambda status: status == "completed", timeout_s=60, every_s=0.5,
               what=f"health check task {done} to complete")
    return {"GET": done}


@pytest.mark.parametrize("path, method", SYSTEM_ROUTES)
def test_a_tenant_admin_is_refused_every_system_route_and_an_operator_is_served(stack, world, task_ids, path, method):
    operator = role_headers(stack, "ops", ["operator"])
    task_id = task_ids["GET"]
    if method == "DELETE":  # a fresh task to cancel
        task_id = stack.call("POST", "/api/system/maintenance/cleanup-temp-files", headers=operator).json()["task_id"]
    if "{message_id}" in path:  # a hand-made letter of its own to delete, on a DLQ no other test reads
        letter = stack.session.client("sqs").send_message(QueueUrl=stack.outputs["JobsDeadLetterQueueHighUrl"],
                                                          MessageBody=json.dumps({"note": "hand-made"}))
        url = path.format(message_id=letter["MessageId"]) + "?priority=high"
    else:
        url = path.format(task_id=task_id)
    admin = stack.call(method, url, headers=role_headers(stack, world["owner"], ["admin"]))
    assert forbidden(admin), (admin.status_code, admin.text[:300])
    served = stack.call(method, url, headers=operator)
    finished = served.status_code == 409 and served.json()["error"]["code"] == "job_finished"  # ran before the cancel
    assert 200 <= served.status_code < 300 or (method == "DELETE" and finished), (served.status_code, served.text[:300])


def test_a_tenant_admin_keeps_its_rights_inside_its_tenant_only(stack, world):
    own = role_headers(stack, world["owner"], ["admin"])
    listed = stack.call("GET", "/jobs?limit=100", headers=own)
    assert listed.status_code == 200 and world["done"] in [j["id"] for j in listed.json()["jobs"]]
    foreign = role_headers(stack, world["intruder"], ["admin"])
    assert not_found_error(stack.call("GET", f"/jobs/{world['done']}", headers=foreign))
