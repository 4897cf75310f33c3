"""What the emulator and the functions logged while one test ran, for that test's failure report.

The e2e tier's emulator writes its own lines (a function process started, a throttle, an
invocation that timed out) to one log file for the whole session, and puts the functions' own
lines (START, their JSON log lines, REPORT) in CloudWatch Logs, a group per function. When a test
fails, what both say between its setup and its failure is what the stack was doing. The file
lives in pytest's temporary directory, of which only the last three runs are kept, and CI keeps
none; the log groups go with the emulator: so the failure report carries those lines itself."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from botocore.config import Config

# Enough to show a stalled request's invocations without burying the assertion.
MAX_LINES = 200
MAX_LINE_CHARS = 600


def size(path: Path) -> int:
    """Where the log ends now (0 when there is none yet)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def written_since(path: Path, offset: int, max_lines: int = MAX_LINES, max_line_chars: int = MAX_LINE_CHARS) -> str:
    """The log's lines from byte `offset` on: the last `max_lines` of them, each cut to
    `max_line_chars`, with a first line saying how many were left out. Empty when nothing was
    written or the file is gone."""
    try:
        with path.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return _tail(lines, max_lines, max_line_chars, f" of {path}")


def function_lines_since(session: Any, start_ms: int, max_lines: int = MAX_LINES,
                         max_line_chars: int = MAX_LINE_CHARS) -> str:
    """Every function's CloudWatch Logs lines from `start_ms` (epoch milliseconds) on, of every
    stack in the emulator, in time order, each as `[stack/function] message` (its group's name
    without `/aws/lambda/`): the last `max_lines` of them, each cut to `max_line_chars`. The
    stack may be what failed, so each request is bounded (2 s to connect, 5 s to answer, no
    retries) and a failure to read is one line saying so."""
    logs = session.client("logs", config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}))
    lines: list[tuple[int, str]] = []
    try:
        for page in logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix="/aws/lambda/"):
            for group in page["logGroups"]:
                name = group["logGroupName"]
                short = name.removeprefix("/aws/lambda/")
                for events in logs.get_paginator("filter_log_events").paginate(logGroupName=name, startTime=start_ms):
                    lines += [(event["timestamp"], f"[{short}] {event['message'].rstrip()}")
                              for event in events["events"]]
    except Exception as exc:  # noqa: BLE001 - the report says what it could not read, whatever it was
        lines.append((2**63, f"(the functions' logs could not be read: {exc})"))
    lines.sort(key=lambda line: line[0])
    return _tail([text for _, text in lines], max_lines, max_line_chars)


def _tail(lines: list[str], max_lines: int, max_line_chars: int, of: str = "") -> str:
    """The last `max_lines` of `lines`, each cut to `max_line_chars`, after a first line saying
    how many earlier ones (`of` where) were left out, when any were."""
    shown = [line if len(line) <= max_line_chars else line[:max_line_chars] + " …" for line in lines[-max_lines:]]
    left_out = len(lines) - len(shown)
    return "\n".join(([f"({left_out} earlier lines{of} left out)"] if left_out else []) + shown)
