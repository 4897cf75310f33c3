"""Read-your-writes for scope caches, on moto: a completion invalidates the namespaces its rules
name in its own write, so a cache read made right after a read shows the job completed never
serves an entry stored before the completion, before any event has been processed."""
import json
import re
import uuid

import pytest

from chalicelib import composition
from tests.functional.conftest import LambdaContext, auth, invoke_worker, receive_all, sqs_event
from tests.functional.test_api import run_worker, submit
from tests.functional.test_events import publish_stream, stream  # noqa: F401  (fixtures)
from tests.support.aws_calls import recorded_calls


def put(client, scope, namespace, value, **headers):
    response = client.http.put(f"/cache/{scope}/{namespace}", headers=auth(**headers), body=json.dumps(value))
    assert response.status_code == 200, response.body
    return response.json_body


def read(client, scope, namespace):
    return client.http.get(f"/cache/{scope}/{namespace}", headers=auth())


def test_a_cache_read_right_after_completed_never_serves_an_entry_from_before(client, aws):
    for round_ in range(5):
        put(client, "p-7", "steps-summary", {"round": round_, "stale": True})
        put(client, "p-7", "unrelated", {"round": round_})
        job = submit(client, {"type": "demo.steps", "scope": "p-7", "payload": {"steps": 2, "step_ms": 0}})
        run_worker(client, aws)  # no stream, bus or invalidation function has run
        assert client.http.get(f"/jobs/{job['id']}", headers=auth()).json_body["status"] == "completed"
        miss = read(client, "p-7", "steps-summary")
        assert miss.status_code == 404, miss.body
        assert miss.json_body["invalidated_by"] == job["id"] and miss.json_body["generation"] == round_ + 1
        assert read(client, "p-7", "steps-report").status_code == 404
        assert read(client, "p-7", "unrelated").json_body["value"] == {"round": round_}  # not named by the rules


def test_the_scopes_tasks_show_a_completion_as_soon_as_the_job_reads_completed(client, aws):
    """Dependency checks read `/scopes/{scope}/tasks` after a job completes: its completion is
    there at once, written with the completion (no stream, bus or invalidation function ran)."""
    job = submit(client, {"type": "demo.steps", "scope": "p-10", "payload": {"steps": 1, "step_ms": 0}})
    run_worker(client, aws)
    finished_at = client.http.get(f"/jobs/{job['id']}", headers=auth()).json_body["finished_at"]
    tasks = client.http.get("/scopes/p-10/tasks", headers=auth()).json_body["tasks"]
    assert tasks == [{"type": "demo.steps", "completed_at": finished_at, "job_id": job["id"]}]


def test_a_failed_job_or_a_job_without_scope_invalidates_nothing(client, aws):
    put(client, "p-8", "steps-summary", {"kept": True})
    submit(client, {"type": "demo.steps", "scope": "p-8",
                    "payload": {"steps": 1, "step_ms": 0, "fail_at": 1, "fail_mode": "fatal"}})
    submit(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    run_worker(client, aws)
    hit = read(client, "p-8", "steps-summary")
    assert hit.status_code == 200 and hit.json_body["value"] == {"kept": True}


def test_a_value_stored_while_a_fan_out_runs_is_invalidated_by_its_children_that_complete(client, aws):
    """A fan-out's parent completes once it has spawned its children, before their work exists:
    a reader that recomputes then reads partial state. The children inherit the parent's scope,
    and each child's completion invalidates what its own type's rules name (docs/events.md), so
    the value stored in between is a miss once the last child completes."""
    parent = submit(client, {"type": "demo.fanout", "scope": "p-11",
                             "payload": {"children": 2, "steps": 1, "step_ms": 0}})
    invoke_worker(client._app, sqs_event(receive_all(aws)))  # the parent alone: its children are queued
    assert client.http.get(f"/jobs/{parent['id']}", headers=auth()).json_body["status"] == "completed"
    partial = read(client, "p-11", "steps-summary").json_body
    put(client, "p-11", "steps-summary", {"children_done": 0}, **{"If-Match": str(partial["generation"])})
    run_worker(client, aws)
    children = client.http.get(f"/jobs/{parent['id']}", headers=auth()).json_body["children"]
    views = [client.http.get(f"/jobs/{child}", headers=auth()).json_body for child in children]
    assert [(v["status"], v["scope"]) for v in views] == [("completed", "p-11")] * 2
    miss = read(client, "p-11", "steps-summary")
    assert miss.status_code == 404 and miss.json_body["generation"] == partial["generation"] + 2
    assert miss.json_body["invalidated_by"] in children


def test_the_event_path_still_announces_and_does_not_invalidate_twice(client, aws, tap, stream):
    put(client, "p-9", "steps-summary", {"stale": True})
    job = submit(client, {"type": "demo.steps", "scope": "p-9", "payload": {"steps": 1, "step_ms": 0}})
    run_worker(client, aws)
    miss = read(client, "p-9", "steps-summary").json_body
    assert miss["generation"] == 1
    fresh = put(client, "p-9", "steps-summary", {"fresh": True}, **{"If-Match": str(miss["generation"])})
    assert fresh["generation"] == 1
    # The event path runs later: it records the task, announces cache.invalidated, and leaves
    # the value stored after the completion alone (the completion already invalidated).
    publish_stream(client._app, stream)
    completed = [e for e in tap() if e["detail-type"] == "job.status.changed" and e["detail"]["status"] == "completed"]
    messages = [{"MessageId": str(uuid.uuid4()), "Body": json.dumps(e), "ReceiptHandle": "rh"} for e in completed]
    handler = client._app.handler_map["cache_invalidation"]
    assert handler(sqs_event(messages), LambdaContext(60)) == {"batchItemFailures": []}
    hit = read(client, "p-9", "steps-summary")
    assert hit.status_code == 200 and hit.json_body["value"] == {"fresh": True} and hit.json_body["generation"] == 1
    announced = [e["detail"] for e in tap() if e["detail-type"] == "cache.invalidated"]
    assert [(a["job_id"], a["namespaces"]) for a in announced] == [(job["id"], ["steps-summary", "steps-report"])]
    tasks = client.http.get("/scopes/p-9/tasks", headers=auth()).json_body["tasks"]
    assert [(t["type"], t["job_id"]) for t in tasks] == [("demo.steps", job["id"])]


def test_every_scope_a_submit_accepts_is_reachable_by_the_scope_routes(client, aws):
    """A scope is one path segment of /cache/{scope}/{namespace} and /scopes/{scope}/tasks: a
    name submit accepts, with every character it allows, reaches its caches and completions."""
    scope = "Run_42:cfg-9.v2@host"
    put(client, scope, "steps-summary", {"stale": True})
    job = submit(client, {"type": "demo.steps", "scope": scope, "payload": {"steps": 1, "step_ms": 0}})
    run_worker(client, aws)
    assert read(client, scope, "steps-summary").json_body["invalidated_by"] == job["id"]
    tasks = client.http.get(f"/scopes/{scope}/tasks", headers=auth()).json_body
    assert tasks["scope"] == scope and [t["job_id"] for t in tasks["tasks"]] == [job["id"]]


def test_a_scope_route_names_why_a_slash_is_refused(client):
    response = client.http.get("/scopes/runs%2F42/tasks", headers=auth())
    assert response.status_code == 400, response.body
    error = response.json_body["error"]
    assert error["code"] == "invalid_request" and "no /" in error["message"]


@pytest.mark.parametrize("method, path, refused", [
    ("PUT", "/cache/bad!name/ns", "scope"), ("PUT", "/cache/p-1/bad!name", "namespace"),
    ("GET", "/cache/bad!name/ns", "scope"), ("GET", "/cache/p-1/bad!name", "namespace"),
    ("GET", "/scopes/bad!name/tasks", "scope"),
])
def test_each_scope_route_refuses_a_bad_name_saying_which_part_it_is(client, aws, method, path, refused):
    """A scope or namespace no job could name is a 400 whose details name the part, never a
    value stored (or read) under it."""
    response = client.http.request(method, path, headers=auth(), body=b"[1]" if method == "PUT" else b"")
    assert response.status_code == 400, response.body
    error = response.json_body["error"]
    assert error["code"] == "invalid_request" and error["details"] == {refused: "bad!name"}
    assert error["message"].startswith(f"{refused} must be")
    assert aws["ddb"].scan(TableName="jobs")["Items"] == []


def _documented_answers(route: str) -> list[set[str]]:
    """The key sets docs/events.md's Scope caches table gives `route`'s answers, in row order."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    (row,) = [line for line in doc.splitlines() if line.startswith(f"| `{route}` |")]
    return [set(re.findall(r'(?<!: )"([a-z_]+)"', answer)) for answer in re.findall(r"`(\{.*?\})`", row)]


def test_the_scope_routes_answer_the_keys_the_docs_list(client, aws):
    """docs/events.md lists each scope route's answer, key by key: a client reading the table
    finds every key the route sends and none it does not."""
    stored = put(client, "p-12", "steps-summary", {"v": 1})
    hit = read(client, "p-12", "steps-summary").json_body
    job = submit(client, {"type": "demo.steps", "scope": "p-12", "payload": {"steps": 1, "step_ms": 0}})
    run_worker(client, aws)
    miss = read(client, "p-12", "steps-summary").json_body
    assert miss["invalidated_by"] == job["id"]
    tasks = client.http.get("/scopes/p-12/tasks", headers=auth()).json_body
    refused = client.http.put("/cache/p-12/steps-summary", headers=auth(**{"If-Match": "0"}), body="2")
    assert refused.status_code == 409 and refused.json_body["error"]["details"] == {"generation": 1, "if_match": 0}
    assert _documented_answers("PUT /cache/{scope}/{namespace}") == [set(stored), set(refused.json_body["error"]["details"])]
    assert _documented_answers("GET /cache/{scope}/{namespace}") == [set(hit), set(miss)]
    assert _documented_answers("GET /scopes/{scope}/tasks") == [set(tasks), set(tasks["tasks"][0])]


def test_a_start_invalidates_nothing_and_a_value_stored_while_the_job_runs_is_invalidated(client, aws, monkeypatch):
    """Seed 001: invalidation happens at job completion, not at enqueue or start. While the
    scoped job runs, its namespaces still hit (the value stored before it and one stored during
    it); its completion turns both into a miss."""
    import dataclasses

    from chalicelib.composition import container

    put(client, "p-13", "steps-summary", {"before": True})
    seen = {}
    registry = container().registry
    steps = registry.get("demo.steps")

    def observe(ctx, payload):  # what a controller reading the cache sees while the job runs
        before = read(client, "p-13", "steps-summary")
        seen["before"] = (before.status_code, before.json_body.get("value"))
        stored = put(client, "p-13", "steps-summary", {"during": True},
                     **{"If-Match": str(before.json_body["generation"])})
        seen["during"] = (read(client, "p-13", "steps-summary").status_code, stored["generation"])
        return steps.handler(ctx, payload)

    monkeypatch.setitem(registry._types, "demo.steps", dataclasses.replace(steps, handler=observe))
    job = submit(client, {"type": "demo.steps", "scope": "p-13", "payload": {"steps": 1, "step_ms": 0}})
    assert read(client, "p-13", "steps-summary").json_body["value"] == {"before": True}  # enqueued: still a hit
    run_worker(client, aws)
    assert seen == {"before": (200, {"before": True}), "during": (200, 0)}
    miss = read(client, "p-13", "steps-summary")
    assert miss.status_code == 404 and miss.json_body["invalidated_by"] == job["id"]
    assert miss.json_body["generation"] == 1


def test_cache_and_task_reads_are_strongly_consistent(client, aws):
    """A cache read or a scope's tasks read right after a completion must see what its write
    did (the generation it bumped, the completion it recorded): each is a strongly consistent
    read, which an eventually consistent one, answered by a replica behind, would not be."""
    put(client, "p-11", "steps-summary", {"rows": 1})
    calls = recorded_calls(composition.container().cache_store._ddb)
    assert read(client, "p-11", "steps-summary").status_code == 200
    assert client.http.get("/scopes/p-11/tasks", headers=auth()).status_code == 200
    assert [(name, params.get("ConsistentRead")) for name, params in calls] == [("GetItem", True), ("Query", True)]
