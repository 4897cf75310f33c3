"""Read a deployed function's structured log lines back from CloudWatch Logs."""
from __future__ import annotations

import json
from typing import Any, Iterator


def log_group(session: Any, stack_name: str, function: str) -> str:
    """The log group of `function` (the template's logical name, e.g. JobWorker) in `stack_name`."""
    prefix = f"{stack_name}-{function}-"
    for page in session.client("lambda").get_paginator("list_functions").paginate():
        for entry in page["Functions"]:
            if entry["FunctionName"].startswith(prefix):
                return f"/aws/lambda/{entry['FunctionName']}"
    raise LookupError(f"no function {function} in stack {stack_name}")


def json_lines(session: Any, group: str, message: str) -> Iterator[dict[str, Any]]:
    """Every JSON log line of `group` whose `message` is `message`."""
    logs = session.client("logs")
    kwargs: dict[str, Any] = {"logGroupName": group}
    while True:
        page = logs.filter_log_events(**kwargs)
        for event in page.get("events", []):
            text = event["message"]
            if message in text and text.lstrip().startswith("{"):
                line = json.loads(text)
                if line.get("message") == message:
                    yield line
        if not page.get("nextToken"):
            return
        kwargs["nextToken"] = page["nextToken"]
