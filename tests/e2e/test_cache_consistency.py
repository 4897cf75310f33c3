"""Read-your-writes for scope caches on the deployed stack: a cache read made right after a
read shows a job completed never serves the entry stored before the job ran."""
import time
import uuid

COMPLETIONS = 50


def test_no_stale_cache_read_right_after_completed(stack):
    run = uuid.uuid4().hex[:8]
    pending = {}
    for i in range(COMPLETIONS):
        scope = f"ryw-{run}-{i}"
        put = stack.call("PUT", f"/cache/{scope}/steps-summary", json={"stale": True, "i": i})
        assert put.status_code == 200, put.text
        job = stack.submit({"type": "demo.steps", "scope": scope, "payload": {"steps": 1, "step_ms": 0}})
        pending[job["id"]] = scope
    stale, checked = [], 0
    deadline = time.monotonic() + 300
    while pending and time.monotonic() < deadline:
        for job_id, scope in list(pending.items()):
            if stack.job(job_id)["status"] != "completed":
                continue
            read = stack.call("GET", f"/cache/{scope}/steps-summary")  # at once, no waiting for events
            checked += 1
            if read.status_code != 404 or read.json().get("invalidated_by") != job_id:
                stale.append((job_id, read.status_code, read.text[:200]))
            del pending[job_id]
        time.sleep(0.2)
    assert not pending, f"{len(pending)} jobs did not complete in time"
    assert checked == COMPLETIONS and stale == []


def test_every_accepted_scope_is_reachable_and_a_slash_is_refused(stack):
    """A scope with every character submit accepts is one path segment the deployed gateway
    routes to its caches and completions; `runs/42` is refused at submit, as a clear 400, since
    the gateway decodes `%2F` before it routes (a probe of it reaches no route)."""
    scope = f"Run_{uuid.uuid4().hex[:6]}:cfg-9.v2@host"
    put = stack.call("PUT", f"/cache/{scope}/steps-summary", json={"stale": True})
    assert put.status_code == 200, put.text
    job = stack.submit({"type": "demo.steps", "scope": scope, "payload": {"steps": 1, "step_ms": 0}})
    assert stack.wait_terminal(job["id"])["status"] == "completed"
    assert stack.call("GET", f"/cache/{scope}/steps-summary").json()["invalidated_by"] == job["id"]
    tasks = stack.call("GET", f"/scopes/{scope}/tasks").json()
    assert tasks["scope"] == scope and [t["job_id"] for t in tasks["tasks"]] == [job["id"]]
    refused = stack.call("POST", "/jobs", json={"type": "demo.steps", "scope": "runs/42", "payload": {}})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_request", refused.text
    probe = stack.call("GET", "/scopes/runs%2F42/tasks")
    assert 400 <= probe.status_code < 500, probe.text
