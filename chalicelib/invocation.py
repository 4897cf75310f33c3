"""The one wrapper every Lambda entry point passes through.

Each invocation starts with a clean log context (keys a previous, warm invocation appended,
such as the API's `tenant`/`user` or a worker's `job_id`, never leak into the next one) and
the function's request id; it runs inside an X-Ray subsegment named after the function; and
when it ends, however it ends, the AWS requests it sent are logged (when counting is on).

Event functions (SQS, streams, schedules) are decorated with `@entry_point` under their
Chalice decorator: their Lambda handler is the blueprint's function, so app.py's middleware
never runs there. The API's routes all run in the one API function, whose middleware enters
the same `invocation` scope. tests/unit/test_invocation.py walks the app's handler map so a
new function cannot skip it."""
from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from chalicelib.composition import report_aws_requests
from chalicelib.observability import logger, tracer

MARKER = "jobpipe_entry_point"  # set on every wrapped function; checked by the unit tests


@contextmanager
def invocation(function_name: str, lambda_context: Any = None) -> Iterator[None]:
    """One invocation's scope: reset log keys, trace, report AWS requests at the end."""
    logger.clear_state()
    logger.append_keys(function=function_name,
                       function_request_id=getattr(lambda_context, "aws_request_id", None))
    try:
        with tracer.provider.in_subsegment(f"## {function_name}"):
            yield
    finally:
        report_aws_requests()


def entry_point(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Chalice event handler `handler(event)` in `invocation`."""
    name = handler.__name__

    @functools.wraps(handler)
    def run(event: Any, *args: Any, **kwargs: Any) -> Any:
        with invocation(name, getattr(event, "context", None)):
            return handler(event, *args, **kwargs)

    setattr(run, MARKER, True)
    return run
