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


def _metrics_paragraph() -> str:
    import pathlib

    text = (pathlib.Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    start = text.index("**Metrics.**")
    return text[start:text.index("\n\n", start)]


def test_the_metrics_carry_the_dimensions_operations_md_names(monkeypatch, capsys):
    """A CloudWatch metric is found by its whole set of dimensions: an alarm written on
    `job_type` alone, when the metric also carries `service`, reads no data and never fires."""
    import json

    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "jobpipe-production")  # the template's ${AWS::StackName}
    capsys.readouterr()
    observability.count("jobs_failed", "demo.steps")
    observability.flush_metrics()  # as the invocation wrapper does when the invocation ends
    (emitted,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (metric,) = emitted["_aws"]["CloudWatchMetrics"]
    assert metric["Namespace"] == "jobpipe" and [m["Name"] for m in metric["Metrics"]] == ["jobs_failed"]
    (dimensions,) = metric["Dimensions"]
    paragraph = _metrics_paragraph()
    for name in dimensions:
        assert f"`{name}`" in paragraph, name
    assert emitted["service"] == "jobpipe-production"
    assert "`service` (the functions' `POWERTOOLS_SERVICE_NAME`: the stack's name" in " ".join(paragraph.split())


def test_operations_md_names_every_metric_a_worker_or_the_reconciler_emits():
    """The events a runner observes are counted as `jobs_<event>`, a failure by the status it
    left (`failed`, `retried`, `canceled`); the reconciler's pass counts each outcome as
    `reconciler_<outcome>`."""
    import inspect
    import re

    from chalicelib.events import replay
    from chalicelib.lifecycle import ReconcileOutcome
    from chalicelib.worker import outcome, runner

    source = inspect.getsource(runner) + inspect.getsource(outcome)
    observed = set(re.findall(r'_observe\("(\w+)"', source)) | {"failed", "retried", "canceled"}
    paragraph = _metrics_paragraph()
    for event in observed:
        assert f"`jobs_{event}`" in paragraph, event
    for outcome in ReconcileOutcome:
        if outcome is not ReconcileOutcome.SKIPPED:
            assert f"`{outcome.value}`" in paragraph, outcome.value
    for name in ("jobs_submitted", "job_duration", "reconciler_<outcome>", "errors", "raced", "out_of_time"):
        assert f"`{name}`" in paragraph, name
    for name in (replay.REPLAYED, replay.UNREADABLE, replay.DROPPED):  # what a pass counts of StreamFailureQueue
        assert f"`{name}`" in paragraph, name
