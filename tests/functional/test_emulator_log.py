"""A failing e2e test's report carries the functions' log lines written while it ran, read from
CloudWatch Logs as the emulator keeps them (tests/support/emulator_log.py), here on moto."""
from __future__ import annotations

import time

import boto3

from tests.support import emulator_log


# CloudWatch Logs takes events of the last 14 days only: times are counted from a minute ago.
BASE_MS = int(time.time() * 1000) - 60_000


def put(logs, group: str, *events: tuple[int, str]) -> None:
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    logs.put_log_events(logGroupName=group, logStreamName="s",
                        logEvents=[{"timestamp": BASE_MS + t, "message": m} for t, m in events])


def test_every_stacks_functions_lines_since_the_test_began_in_time_order(aws):
    session = boto3.session.Session()
    logs = session.client("logs")
    put(logs, "/aws/lambda/jobpipe-e2e/APIHandler", (1_000, "before the test"), (2_000, "START api"), (4_000, "END api\n"))
    put(logs, "/aws/lambda/jobpipe-faults/JobWorker", (3_000, "Task timed out after 30.00 seconds"))
    put(logs, "/other/group", (3_500, "not a function's"))
    assert emulator_log.function_lines_since(session, BASE_MS + 2_000).splitlines() == [
        "[jobpipe-e2e/APIHandler] START api",
        "[jobpipe-faults/JobWorker] Task timed out after 30.00 seconds",
        "[jobpipe-e2e/APIHandler] END api",
    ]


def test_only_the_last_lines_are_kept_and_the_report_says_how_many_were_left_out(aws):
    session = boto3.session.Session()
    put(session.client("logs"), "/aws/lambda/jobpipe-e2e/APIHandler", *[(1_000 + i, f"line {i}") for i in range(30)])
    lines = emulator_log.function_lines_since(session, BASE_MS, max_lines=10).splitlines()
    assert lines[0] == "(20 earlier lines left out)"
    assert lines[1:] == [f"[jobpipe-e2e/APIHandler] line {i}" for i in range(20, 30)]


def test_logs_that_cannot_be_read_are_one_line_saying_so(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    lines = emulator_log.function_lines_since(boto3.session.Session(), 0)
    assert lines.startswith("(the functions' logs could not be read: ") and "\n" not in lines
