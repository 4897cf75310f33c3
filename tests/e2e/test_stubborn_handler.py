"""A handler that will not stop at its timeout, on the deployed stack: it swallows every
interrupt, so the worker fails its attempt `timeout` and ends its own process before the
lease lapses; the next attempt runs alone and the job completes with one side effect."""
from __future__ import annotations

from chalicelib.job_types.chaos import SIDE_EFFECT_ARTIFACT_PREFIX
from scripts.local_stack import function_log_groups
from tests.support.waiting import eventually


def test_a_handler_that_swallows_every_interrupt_loses_its_process_and_the_next_attempt_runs_alone(stack):
    job = stack.submit({"type": "demo.chaos",
                        "payload": {"steps": 2, "step_ms": 0, "hang_at_step": 1, "hang_swallows": True}})
    final = stack.wait_terminal(job["id"], timeout_s=120)
    assert final["status"] == "completed" and final["attempts"] == 2, final
    runs = stack.call("GET", f"/jobs/{job['id']}/runs").json()["runs"]
    first, second = runs
    assert first["status"] == "failed" and first["error"]["code"] == "timeout", first
    assert "worker process was ended" in first["error"]["message"]
    assert second["status"] == "completed" and second["started_at"] >= first["finished_at"]
    artifacts = stack.call("GET", f"/jobs/{job['id']}/artifacts").json()["artifacts"]
    assert [a["name"][:len(SIDE_EFFECT_ARTIFACT_PREFIX) + 1] for a in artifacts] == [f"{SIDE_EFFECT_ARTIFACT_PREFIX}2"]
    # The process said why it ended, and did end: the first attempt's loop would have gone on
    # for a minute, but the job was done long before.
    group = function_log_groups(stack.session, "jobpipe-e2e")["JobWorker"]
    logs = stack.session.client("logs")
    eventually(lambda: [e["message"] for e in logs.filter_log_events(logGroupName=group)["events"]],
               lambda lines: any("job process_ended" in line and job["id"] in line for line in lines)
               and any("ending the worker process" in line for line in lines),
               timeout_s=15, every_s=0.5, what=f"a process_ended line for {job['id']} in {group}")
