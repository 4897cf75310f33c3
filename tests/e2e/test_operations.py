"""Operations, deployed: maintenance tasks, stats from the stream consumer, dead letters,
artifacts and claim-checked data on S3."""
import requests

from jobpipe_client import JobpipeClient
from tests.support.waiting import eventually, last_read


def operator(stack) -> dict:
    return {"Authorization": f"Bearer {stack.token(user='root', roles=['operator'])}", "Content-Type": "application/json"}


def wait_task(stack, task_id: str, timeout_s: float = 60) -> dict:
    path = f"/api/system/maintenance/tasks/{task_id}"
    return eventually(lambda: stack.call("GET", path, headers=operator(stack)).json(),
                      lambda task: task["status"] in ("completed", "failed", "canceled"),
                      timeout_s=timeout_s, every_s=0.5, what=f"maintenance task {task_id} to end")


def test_health_check_task_runs_in_a_worker_and_reports_every_dependency(stack):
    response = stack.call("POST", "/api/system/maintenance/health-check", headers=operator(stack))
    assert response.status_code == 202, response.text
    task = wait_task(stack, response.json()["task_id"])
    assert task["status"] == "completed", task
    result = task["result"]
    assert result["healthy"] is True, result
    assert {"jobs_table", "stats_table", "bucket"} <= set(result["checks"])
    # The deploy turned on the TTL the emulator's CloudFormation left out: the records expire.
    for table, attribute in (("jobs_table", "expires_at"), ("stats_table", "expires_at"),
                             ("idempotency_table", "expiration")):
        assert result["checks"][table]["expiry"] == {"status": "ENABLED", "attribute": attribute}, result
    assert len(result["checks"]["queues"]) == 6
    listed = stack.call("GET", "/api/system/maintenance/tasks", headers=operator(stack)).json()["tasks"]
    assert task["task_id"] in [t["task_id"] for t in listed]


def test_operator_routes_refuse_non_operators(stack):
    for method, path in (("POST", "/api/system/maintenance/cleanup-runs"), ("GET", "/api/system/stats"),
                         ("GET", "/api/system/dlq")):
        response = stack.call(method, path)
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


def test_cleanup_runs_and_temp_files_tasks_complete(stack):
    ids = [stack.call("POST", f"/api/system/maintenance/{name}?max_age_hours=1", headers=operator(stack)).json()["task_id"]
           for name in ("cleanup-runs", "cleanup-temp-files")]
    results = [wait_task(stack, i) for i in ids]
    assert [t["status"] for t in results] == ["completed", "completed"], results
    assert results[0]["result"]["complete"] is True and results[0]["result"]["jobs_deleted"] == 0
    assert results[1]["result"]["objects_deleted"] == 0


def test_a_keyed_task_start_sent_again_answers_the_task_it_made(stack):
    """A start whose answer was lost, sent again under its key: one task, not two."""
    keyed = {**operator(stack), "Idempotency-Key": "e2e-start-1"}
    path = "/api/system/maintenance/log-statistics?window_hours=2"
    first = stack.call("POST", path, headers=keyed)
    assert first.status_code == 202, first.text
    again = stack.call("POST", path, headers=keyed)
    assert again.status_code == 202 and again.json()["task_id"] == first.json()["task_id"], again.text
    other = stack.call("POST", "/api/system/maintenance/log-statistics?window_hours=3", headers=keyed)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict", other.text
    assert wait_task(stack, first.json()["task_id"])["status"] == "completed"
    listed = stack.call("GET", "/api/system/maintenance/tasks", headers=operator(stack)).json()["tasks"]
    assert [t["task_id"] for t in listed].count(first.json()["task_id"]) == 1


def test_stats_count_what_the_pipeline_did(stack):
    ids = [stack.submit({"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})["id"] for _ in range(3)]
    assert all(stack.wait_terminal(i)["status"] == "completed" for i in ids)
    # the stream consumer runs behind the writes
    stats = last_read(lambda: stack.call("GET", "/api/system/stats", headers=operator(stack)).json(),
                      lambda read: read["events"]["completed"] >= 3, timeout_s=30, every_s=0.5)
    assert stats["events"]["completed"] >= 3 and stats["events"]["submitted"] >= 3
    assert stats["jobs_by_status"]["completed"] >= 3
    assert stats["completion_time_s"]["p50"] is not None and stats["completion_time_s"]["p95"] is not None
    assert set(stats["queues"]) == {"high", "normal", "low"}
    assert set(stats["queues"]["low"]) == {"visible", "in_flight", "delayed", "dead_lettered"}
    log = stack.call("POST", "/api/system/maintenance/log-statistics?window_hours=1", headers=operator(stack)).json()
    logged = wait_task(stack, log["task_id"])
    assert logged["status"] == "completed" and logged["result"]["events"]["completed"] >= 3


def test_dead_lettered_job_is_shown_then_redriven(stack):
    job = stack.submit({"type": "demo.steps", "priority": "low",
                        "payload": {"steps": 1, "step_ms": 0, "fail_at": 1, "fail_mode": "fatal"}})
    assert stack.wait_terminal(job["id"])["status"] == "failed"
    # The job is written failed owing its letter, then the letter is parked: it shows soon after.
    def mine_parked() -> list[dict]:
        letters = stack.call("GET", "/api/system/dlq?priority=low&limit=100", headers=operator(stack)).json()["dead_letters"]["low"]
        return [m for m in letters if m["body"].get("job_id") == job["id"]]
    mine = last_read(mine_parked, bool, timeout_s=30, every_s=0.2)
    assert mine and mine[0]["job"]["status"] == "failed"
    moved = stack.call("POST", "/api/system/dlq/redrive?priority=low&limit=100", headers=operator(stack)).json()
    assert moved["redriven"]["low"]["moved"] >= 1 and moved["redriven"]["low"]["failed"] == 0
    after = stack.call("GET", "/api/system/dlq?priority=low&limit=100", headers=operator(stack)).json()["dead_letters"]["low"]
    assert job["id"] not in [m["body"].get("job_id") for m in after]
    # The worker acknowledges the redriven message of a job that already failed.
    assert stack.job(job["id"])["status"] == "failed"


def test_artifacts_and_large_data_go_through_s3(stack):
    pad = "p" * 200_000
    job = stack.submit({"type": "demo.outputs", "payload": {"artifact_bytes": 300_000, "result_bytes": 150_000, "pad": pad}})
    done = stack.wait_terminal(job["id"])
    assert done["status"] == "completed", done
    assert done["payload"]["pad"] == pad and done["result"]["text"] == "r" * 150_000
    listed = stack.call("GET", f"/jobs/{job['id']}/artifacts").json()["artifacts"]
    assert {a["name"]: a["location"] for a in listed} == {"data.bin": "s3", "numbers.json": "inline", "summary.txt": "inline"}
    summary = stack.call("GET", f"/jobs/{job['id']}/artifacts/summary.txt")
    assert summary.status_code == 200 and summary.text == f"job {job['id']} attempt 1\n"
    link = stack.call("GET", f"/jobs/{job['id']}/artifacts/data.bin").json()
    data = requests.get(link["url"], timeout=30)
    assert data.status_code == 200 and len(data.content) == 300_000 and data.content[:4] == bytes([0, 1, 2, 3])
    # the Python client does the same: every page of the listing, inline bytes and S3's alike
    client = JobpipeClient(stack.api_url, stack.token(), timeout=30)
    assert [a["name"] for a in client.artifacts(job["id"])] == [
        "data.bin", "numbers.json", "summary.txt"]
    assert client.artifact(job["id"], "data.bin") == data.content
    assert client.artifact(job["id"], "summary.txt") == summary.content
    s3 = stack.session.client("s3")
    bucket = stack.outputs["JobsBucketName"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"jobs/{job['id']}/")["Contents"]}
    # the result and the artifact are keyed by the attempt that wrote them
    assert keys == {f"jobs/{job['id']}/{k}" for k in ("payload.json", "result-0001.json", "artifacts/0001/data.bin")}
