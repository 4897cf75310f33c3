"""The tracer: Powertools' where it traces, a stand-in without aws_xray_sdk elsewhere."""
from chalicelib import observability
from chalicelib.observability import UntracedTracer, build_tracer


class _TracingTracer:
    """Stands in for Powertools' Tracer class when Powertools would trace (a real one would
    patch botocore in the test process)."""

    @staticmethod
    def _is_tracer_disabled():
        return False


def test_outside_lambda_or_when_disabled_the_tracer_is_the_stand_in(monkeypatch):
    monkeypatch.delenv("LAMBDA_TASK_ROOT", raising=False)
    assert isinstance(build_tracer(), UntracedTracer)
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    assert isinstance(build_tracer(), UntracedTracer)


def test_where_powertools_traces_the_tracer_is_powertools(monkeypatch):
    monkeypatch.setattr(observability, "Tracer", _TracingTracer)
    assert isinstance(build_tracer(), _TracingTracer)


def test_the_stand_in_keeps_the_calls_the_code_makes():
    tracer = UntracedTracer()

    class Runner:
        @tracer.capture_method
        def __call__(self, value):
            return value * 2

    @tracer.capture_method(capture_response=False)
    def publish(value):
        return value + 1

    assert Runner()(2) == 4 and publish(1) == 2
    with tracer.provider.in_subsegment("## job_worker") as subsegment:
        assert subsegment is None
