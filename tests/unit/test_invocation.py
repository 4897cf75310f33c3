"""The one wrapper every Lambda function passes through (chalicelib/invocation.py)."""

import pytest

from chalicelib import composition
from chalicelib.invocation import LOG_MESSAGE, MARKER, entry_point, invocation
from chalicelib.observability import logger


def _event_functions(app):
    """Every function of the app that is not a route of the API function: the handler map,
    minus the views (which all run in the API function behind its middleware)."""
    views = {entry.view_name for methods in app.routes.values() for entry in methods.values()}
    return {name: handler for name, handler in app.handler_map.items() if name not in views}


def test_every_function_of_the_app_passes_through_the_wrapper():
    from app import app, observe

    functions = _event_functions(app)
    # The stream, queue and schedule mappings the template deploys are exactly these.
    assert {source.name for source in app.event_sources} <= set(functions)
    assert functions, "the app has no event functions?"
    unwrapped = [name for name, handler in functions.items() if not getattr(getattr(handler, "func", handler), MARKER, False)]
    assert unwrapped == [], (f"{unwrapped} skip the wrapper: decorate each with @entry_point "
                             "(chalicelib/invocation.py) under its Chalice decorator")
    assert (observe, "http") in app.middleware_handlers


class _Counter:
    """A container counting AWS requests: every invocation takes its counts once."""

    def __init__(self):
        self.takes = 0

    def take_aws_requests(self):
        self.takes += 1
        return {"dynamodb.GetItem": 1}


@pytest.fixture
def counted(monkeypatch):
    counter = _Counter()
    monkeypatch.setattr(composition, "_container", counter)
    return counter


class _Context:
    aws_request_id = "req-2"


class _Event:
    context = _Context()


def test_a_warm_invocation_does_not_log_the_previous_callers_keys(counted, log_lines):
    logger.append_keys(tenant="acme", user="alice", job_id="j-1")  # left by an earlier invocation

    @entry_point
    def handler(event):
        logger.info("work")
        return "done"

    assert handler(_Event()) == "done"
    lines = log_lines()
    assert [line["message"] for line in lines] == ["work", LOG_MESSAGE]
    for line in lines:
        assert "tenant" not in line and "user" not in line and "job_id" not in line
        assert line["function"] == "handler" and line["function_request_id"] == "req-2"
    assert counted.takes == 1


def test_every_invocation_ends_with_one_summary_line_even_a_silent_one(counted, log_lines):
    @entry_point
    def handler(event):
        return "done"

    handler(_Event())
    (summary,) = log_lines()
    assert summary["message"] == LOG_MESSAGE and summary["outcome"] == "ok"
    assert summary["duration_ms"] >= 0 and summary["aws_requests"] == {"dynamodb.GetItem": 1}


def test_the_summary_line_says_the_invocation_failed_and_still_has_its_requests(counted, log_lines):
    @entry_point
    def handler(event):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        handler(_Event())
    (summary,) = log_lines()
    assert summary["outcome"] == "error" and summary["aws_requests"] == {"dynamodb.GetItem": 1}
    assert counted.takes == 1


def test_without_counting_the_summary_line_has_no_request_counts(monkeypatch, log_lines):
    monkeypatch.setattr(composition, "_container", None)  # no container: nothing counted
    with invocation("api_handler", None) as summary:
        summary["status"] = 200
    (line,) = log_lines()
    assert line["status"] == 200 and "aws_requests" not in line


def test_the_api_scope_resets_keys_too(counted, log_lines):
    logger.append_keys(tenant="acme")
    with invocation("api_handler", None):
        logger.info("request")
    assert all("tenant" not in line for line in log_lines())
    assert counted.takes == 1


def test_each_invocation_is_traced_in_a_subsegment_named_after_its_function(counted, monkeypatch):
    from contextlib import contextmanager

    from chalicelib.observability import tracer

    opened = []

    @contextmanager
    def in_subsegment(name, **kwargs):
        opened.append(name)
        yield None

    monkeypatch.setattr(tracer.provider, "in_subsegment", in_subsegment)

    @entry_point
    def job_worker(event):
        return "done"

    job_worker(_Event())
    with invocation("api_handler", None):
        pass
    assert opened == ["## job_worker", "## api_handler"]


def test_the_summary_line_gives_the_duration_in_milliseconds_to_a_tenth(counted, monkeypatch, log_lines):
    from types import SimpleNamespace

    from chalicelib import invocation as invocation_module

    readings = iter([100.0, 100.01234])  # the invocation's start, then its end
    monkeypatch.setattr(invocation_module, "time", SimpleNamespace(perf_counter=lambda: next(readings)))
    with invocation("api_handler", None):
        pass
    (line,) = log_lines()
    assert line["duration_ms"] == 12.3


def test_an_invocation_that_sent_no_aws_request_while_counting_says_so(monkeypatch, log_lines):
    """Counting on and nothing sent: the line says none ({}), so the benchmark reads a zero,
    not a line it cannot count."""

    class NothingSent:
        def take_aws_requests(self):
            return {}

    monkeypatch.setattr(composition, "_container", NothingSent())
    with invocation("api_handler", None):
        pass
    (line,) = log_lines()
    assert line["aws_requests"] == {}


def test_a_wrapped_handler_is_called_with_what_its_function_is_given(counted):
    @entry_point
    def handler(event, context, *, retry=False):
        return context, retry

    assert handler(_Event(), "lambda-context", retry=True) == ("lambda-context", True)
