"""Metrics, deployed: the worker writes its counts once, when the invocation ends, as one EMF
document per job type in its own log group (chalicelib/observability.py), which CloudWatch
turns into the `jobpipe` namespace's metrics."""
from __future__ import annotations

import json

import pytest

from chalicelib.invocation import LOG_MESSAGE
from scripts.local_stack import function_log_groups
from tests.support.waiting import eventually


def invocation_lines(logs, group: str, job_id: str) -> list[str]:
    """The lines of the worker invocation that ran `job_id`, through its summary line: those
    of its log stream from the job's first line on (a process runs one invocation at a time)."""
    events = logs.filter_log_events(logGroupName=group)["events"]
    mine = [e for e in events if job_id in e["message"]]
    if not mine:
        return []
    stream = [e for e in events if e["logStreamName"] == mine[0]["logStreamName"]]
    start = stream.index(mine[0])
    lines = []
    for event in stream[start:]:
        lines.append(event["message"])
        if LOG_MESSAGE in event["message"]:
            return lines
    return []


@pytest.mark.stack
def test_the_worker_writes_one_metric_document_per_job_type_when_its_invocation_ends(stack):
    job = stack.submit({"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0}})
    assert stack.wait_terminal(job["id"])["status"] == "completed"
    group = function_log_groups(stack.session, "jobpipe-e2e")["JobWorker"]
    logs = stack.session.client("logs")
    # lines reach the group after the invocation ends
    lines = eventually(lambda: invocation_lines(logs, group, job["id"]), bool, timeout_s=15, every_s=0.5,
                       what=f"the invocation that ran {job['id']} to end in {group}")
    documents = [json.loads(line) for line in lines if '"_aws"' in line]
    assert len(documents) == 1, lines
    (document,) = documents
    assert document["job_type"] == "demo.steps"
    assert document["service"] == "jobpipe-e2e", "the stack's name: its metrics apart from another stack's"
    (definition,) = document["_aws"]["CloudWatchMetrics"]
    assert definition["Namespace"] == "jobpipe"
    assert "job_type" in definition["Dimensions"][0]
    units = {m["Name"]: m["Unit"] for m in definition["Metrics"]}
    assert units["jobs_completed"] == "Count" and units["job_duration"] == "Seconds", units
    values = document["jobs_completed"]
    assert sum(values if isinstance(values, list) else [values]) >= 1, document  # this job, and batch-mates of its type
    emf = next(i for i, line in enumerate(lines) if '"_aws"' in line)
    assert emf < len(lines) - 1 and LOG_MESSAGE in lines[-1], lines  # written as the invocation ends
