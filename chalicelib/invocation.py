"""The one wrapper every Lambda entry point passes through.

Each invocation starts with a clean log context (keys a previous, warm invocation appended,
such as the API's `tenant`/`user` or a worker's `job_id`, never leak into the next one) and
the function's request id; it runs inside an X-Ray subsegment named after the function; and
when it ends, however it ends, it logs one summary line (`invocation finished`: outcome,
duration, what the caller added such as the API's route and status, and the AWS requests it
sent when counting is on), after writing the metrics it counted (one EMF line per job type,
chalicelib/observability.py). Every invocation leaves at least that line, so an operator can
follow each one; the local emulator also answers an invocation as soon as its log lines stop,
rather than waiting 50 ms for a first line that a silent one never writes.

Event functions (SQS, streams, schedules) are decorated with `@entry_point` under their
Chalice decorator: their Lambda handler is the blueprint's function, so app.py's middleware
never runs there. The API's routes all run in the one API function, whose middleware enters
the same `invocation` scope. tests/unit/test_invocation.py walks the app's handler map so a
new function cannot skip it."""
from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from chalicelib.composition import take_aws_requests
from chalicelib.observability import flush_metrics, logger, tracer

MARKER = "jobpipe_entry_point"  # set on every wrapped function; checked by the unit tests
# An event holding this key (true) only starts the process: the local stack invokes each
# function once with it after deploying (scripts/local_stack.py), so the first real event
# finds the code imported. No AWS event carries it.
WARM_UP = "jobpipe_warm_up"
LOG_MESSAGE = "invocation finished"  # the benchmark reads `aws_requests` from these lines


@contextmanager
def invocation(function_name: str, lambda_context: Any = None) -> Iterator[dict[str, Any]]:
    """One invocation's scope: reset log keys, trace, and at the end, however it ends, its
    metrics written and one summary line. Yields
    a dict whose items the caller wants in that line."""
    logger.clear_state()
    logger.append_keys(function=function_name,
                       function_request_id=getattr(lambda_context, "aws_request_id", None))
    summary: dict[str, Any] = {}
    started = time.perf_counter()
    outcome = "error"
    try:
        with tracer.provider.in_subsegment(f"## {function_name}"):
            yield summary
        outcome = "ok"
    finally:
        flush_metrics()
        fields = {"outcome": outcome, "duration_ms": round((time.perf_counter() - started) * 1000, 1), **summary}
        counts = take_aws_requests()
        if counts is not None:
            fields["aws_requests"] = counts
        logger.info(LOG_MESSAGE, extra=fields)


def is_warm_up(event: Any) -> bool:
    """True for the warm-up event (a Chalice event object or its dict)."""
    raw = event.to_dict() if hasattr(event, "to_dict") else event
    return isinstance(raw, dict) and raw.get(WARM_UP) is True


def entry_point(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Chalice event handler `handler(event)` in `invocation`."""
    name = handler.__name__

    @functools.wraps(handler)
    def run(event: Any, *args: Any, **kwargs: Any) -> Any:
        if is_warm_up(event):
            return {WARM_UP: name}
        with invocation(name, getattr(event, "context", None)):
            return handler(event, *args, **kwargs)

    setattr(run, MARKER, True)
    return run
