"""rq-engine compatible polling and ETag revalidation through the deployed gateway."""
from tests.support.waiting import last_read

FAST = {"type": "demo.steps", "payload": {"steps": 3, "step_ms": 0}}


def poll_rq_status(stack, job_id, timeout_s=60):
    return last_read(lambda: stack.call("GET", f"/api/jobstatus/{job_id}").json(),
                     lambda status: status["status"] in ("finished", "failed", "canceled"),
                     timeout_s=timeout_s, every_s=0.3)


def test_rq_clients_poll_a_job_to_finished(stack):
    job = stack.submit(FAST)
    status = poll_rq_status(stack, job["id"])
    assert status["status"] == "finished" and status["ended_at"] and status["elapsed_s"] >= 0
    info = stack.call("GET", f"/api/jobinfo/{job['id']}").json()
    assert info["result"] == {"steps": 3, "attempt": 1} and info["exc_info"] is None
    assert info["description"] == "demo.steps" and info["children"] == {}
    batch = stack.call("POST", "/api/jobinfo", json={"job_ids": ["nope", job["id"]]}).json()
    assert batch["job_ids"] == ["nope", job["id"]]
    assert batch["jobs"]["nope"] == {"id": "nope", "status": "not_found"}
    assert batch["jobs"][job["id"]]["status"] == "finished"
    foreign = stack.call("GET", f"/api/jobinfo/{job['id']}", tenant="globex").json()
    assert foreign == {"id": job["id"], "status": "not_found"}


def test_failed_job_exc_info(stack):
    job = stack.submit({"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0, "fail_at": 1, "fail_mode": "fatal"}})
    status = poll_rq_status(stack, job["id"])
    assert status["status"] == "failed"
    info = stack.call("GET", f"/api/jobinfo/{job['id']}").json()
    assert info["exc_info"].startswith("demo_failure: ")


def test_unchanged_jobs_revalidate_to_304_through_the_gateway(stack):
    job = stack.submit(FAST)
    stack.wait_terminal(job["id"])
    for method, path, body in (
        ("GET", f"/jobs/{job['id']}", None),
        ("POST", "/jobs/status", {"job_ids": [job["id"]]}),
        ("GET", f"/api/jobinfo/{job['id']}", None),
        ("POST", "/api/jobinfo", [job["id"]]),
    ):
        first = stack.call(method, path, json=body)
        tag = first.headers["ETag"]
        assert first.status_code == 200 and tag.startswith('W/"'), path
        again = stack.call(method, path, json=body, headers=stack.headers(**{"If-None-Match": tag}))
        assert again.status_code == 304 and again.content == b"", path
        stale = stack.call(method, path, json=body, headers=stack.headers(**{"If-None-Match": 'W/"old"'}))
        assert stale.status_code == 200 and stale.headers["ETag"] == tag, path


def test_child_jobs_make_a_tree_whose_status_follows_the_children(stack):
    parent = stack.submit({"type": "demo.fanout", "scope": "tree-1", "payload": {"children": 3, "steps": 3, "step_ms": 200}})
    done = stack.wait_terminal(parent["id"])
    assert done["status"] == "completed" and len(done["children"]) == 3
    assert done["result"] == {"children": done["children"]}
    children = [stack.job(c) for c in done["children"]]
    assert all(c["parent_id"] == parent["id"] and c["scope"] == "tree-1" for c in children)
    tree = stack.call("GET", f"/api/jobstatus/{parent['id']}").json()
    assert tree["status"] in ("queued", "started", "finished")
    for child in children:
        stack.wait_terminal(child["id"])
    tree = stack.call("GET", f"/api/jobstatus/{parent['id']}").json()
    assert tree["status"] == "finished" and tree["ended_at"] == max(stack.job(c)["finished_at"] for c in done["children"])
    info = stack.call("GET", f"/api/jobinfo/{parent['id']}").json()
    assert list(info["children"]) == [str(i) for i in range(3)]  # rq-engine: by launch order, lists
    assert [c["id"] for group in info["children"].values() for c in group] == done["children"]


def test_a_failed_child_fails_the_tree(stack):
    parent = stack.submit({"type": "demo.fanout", "payload": {"children": 2, "steps": 1, "step_ms": 0, "fail_child": 2}})
    done = stack.wait_terminal(parent["id"])
    for child in done["children"]:
        stack.wait_terminal(child)
    tree = stack.call("GET", f"/api/jobstatus/{parent['id']}").json()
    assert tree["status"] == "failed"
