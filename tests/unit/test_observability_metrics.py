"""Metrics are counted during an invocation and written when it ends: one EMF document per job
type, each metric's values a list (chalicelib/observability.py, chalicelib/invocation.py).

Each test reads stdout as Powertools prints it and parses the EMF JSON."""
import json
import os
import pathlib
import re
from collections import defaultdict

import pytest

from chalicelib import composition, observability
from chalicelib.domain.job import Job, JobStatus
from chalicelib.invocation import entry_point, invocation

ROOT = pathlib.Path(__file__).parents[2]


@pytest.fixture(autouse=True)
def _fresh(monkeypatch, capsys):
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "jobpipe-pipeline")
    monkeypatch.setattr(composition, "_container", None)  # no request counting
    observability.flush_metrics()  # whatever an earlier test counted outside an invocation
    capsys.readouterr()


def _documents(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if '"_aws"' in line]


def _sums(documents: list[dict]) -> dict[tuple[str, str], float]:
    """(job type, metric name) → the sum CloudWatch computes from these documents."""
    sums: dict[tuple[str, str], float] = defaultdict(float)
    for document in documents:
        for definition in document["_aws"]["CloudWatchMetrics"]:
            for metric in definition["Metrics"]:
                value = document[metric["Name"]]
                sums[(document["job_type"], metric["Name"])] += sum(value) if isinstance(value, list) else value
    return dict(sums)


def _job(number: int, job_type: str, status: JobStatus) -> Job:
    return Job(id=f"job-{number}", type=job_type, tenant="acme", user="alice", status=status, attempts=1,
               created_at="2026-12-01T00:00:00+00:00")


class _Context:
    aws_request_id = "req-1"


class _Event:
    context = _Context()


def test_a_batch_of_ten_jobs_of_two_types_writes_one_document_per_type(capsys):
    types = ["demo.steps"] * 6 + ["demo.sleep"] * 4
    seen_during: list[str] = []

    @entry_point
    def job_worker(event):
        for number, job_type in enumerate(types):
            observability.job_event("started", _job(number, job_type, JobStatus.RUNNING), {})
            observability.job_event("completed", _job(number, job_type, JobStatus.COMPLETED),
                                    {"duration_s": 0.25 * (number + 1)})
        seen_during.append(capsys.readouterr().out)

    job_worker(_Event())
    documents = _documents(capsys.readouterr().out)

    assert _documents(seen_during[0]) == []  # nothing written while the invocation runs
    assert len(documents) == 2
    assert {document["job_type"] for document in documents} == {"demo.steps", "demo.sleep"}
    # What the three lines a job used to write add up to, per job type.
    assert _sums(documents) == {
        ("demo.steps", "jobs_started"): 6, ("demo.steps", "jobs_completed"): 6,
        ("demo.steps", "job_duration"): 0.25 * (1 + 2 + 3 + 4 + 5 + 6),
        ("demo.sleep", "jobs_started"): 4, ("demo.sleep", "jobs_completed"): 4,
        ("demo.sleep", "job_duration"): 0.25 * (7 + 8 + 9 + 10),
    }
    for document in documents:
        (definition,) = document["_aws"]["CloudWatchMetrics"]
        assert definition["Namespace"] == "jobpipe"
        assert definition["Dimensions"] == [["job_type", "service"]] and document["service"] == "jobpipe-pipeline"
        units = {metric["Name"]: metric["Unit"] for metric in definition["Metrics"]}
        assert units == {"jobs_started": "Count", "jobs_completed": "Count", "job_duration": "Seconds"}
        # CloudWatch counts the samples of a list as it counted the lines: one a job.
        assert all(len(document[name]) == types.count(document["job_type"]) for name in units)


def test_a_failed_invocation_still_writes_what_it_counted(capsys):
    @entry_point
    def job_worker(event):
        observability.count("jobs_started", "demo.steps")
        raise RuntimeError("the batch failed")

    with pytest.raises(RuntimeError):
        job_worker(_Event())
    (document,) = _documents(capsys.readouterr().out)
    assert document["job_type"] == "demo.steps" and document["jobs_started"] == [1.0]


def test_the_api_scope_writes_at_its_end_too(capsys):
    with invocation("api_handler", None):
        observability.count("jobs_submitted", "demo.steps")
        observability.count("jobs_submitted", "demo.steps")
        assert _documents(capsys.readouterr().out) == []
    (document,) = _documents(capsys.readouterr().out)
    assert document["jobs_submitted"] == [1.0, 1.0]


def test_an_invocation_that_counted_nothing_writes_no_metric_line(capsys):
    with invocation("api_handler", None):
        pass
    assert _documents(capsys.readouterr().out) == []


def test_ending_the_process_writes_the_metrics_first(monkeypatch, capsys):
    written_before_exit: list[str] = []

    def exit_now(code):
        written_before_exit.append(capsys.readouterr().out)
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", exit_now)
    observability.count("jobs_started", "demo.steps")
    observability.job_event("process_ended", _job(1, "demo.steps", JobStatus.RUNNING), {"reason": "timeout"})
    with pytest.raises(SystemExit) as ended:
        observability.end_process()
    assert ended.value.code == 1, "the invocation fails: Lambda starts a fresh process for the next one"
    (document,) = _documents(written_before_exit[0])
    assert document["jobs_started"] == [1.0] and document["jobs_process_ended"] == [1.0]


def test_more_than_a_hundred_values_or_metrics_are_split_into_documents(capsys):
    with invocation("job_worker", None):
        for number in range(250):
            observability.count("job_duration", "demo.steps", number, "Seconds")
        for number in range(150):
            observability.count(f"reconciler_outcome_{number}", "_all", 1)
    documents = _documents(capsys.readouterr().out)

    for document in documents:
        (definition,) = document["_aws"]["CloudWatchMetrics"]
        assert len(definition["Metrics"]) <= 100
        assert all(not isinstance(document[m["Name"]], list) or len(document[m["Name"]]) <= 100
                   for m in definition["Metrics"])
    steps = [document for document in documents if document["job_type"] == "demo.steps"]
    assert len(steps) == 3 and _sums(steps) == {("demo.steps", "job_duration"): sum(range(250))}
    every = [document for document in documents if document["job_type"] == "_all"]
    assert len(every) == 2
    assert _sums(every) == {("_all", f"reconciler_outcome_{number}"): 1 for number in range(150)}


def test_a_value_that_is_not_a_number_is_refused_where_it_is_counted():
    from aws_lambda_powertools.metrics.exceptions import MetricValueError

    with pytest.raises(MetricValueError):
        observability.count("jobs_started", "demo.steps", "1")


def test_only_the_invocation_wrapper_and_the_process_end_write_metrics():
    """Every function's metrics go through the one flush: no other module writes EMF itself."""
    writers = []
    for path in sorted((ROOT / "chalicelib").rglob("*.py")):
        text = path.read_text()
        if re.search(r"single_metric|EphemeralMetrics|\bMetrics\(|flush_metrics\(", text):
            writers.append(path.relative_to(ROOT).as_posix())
    assert writers == ["chalicelib/invocation.py", "chalicelib/observability.py"]
    assert "flush_metrics()" in (ROOT / "chalicelib" / "invocation.py").read_text()


def test_metrics_that_cannot_be_written_do_not_fail_the_invocation_or_the_other_job_types(capsys, log_lines):
    @entry_point
    def job_worker(event):
        observability.count("jobs_started", "demo.steps", 1, "Parsecs")  # no EMF unit
        observability.count("jobs_started", "demo.sleep")
        return "done"

    assert job_worker(_Event()) == "done"
    (document,) = _documents(capsys.readouterr().out)
    assert document["job_type"] == "demo.sleep" and document["jobs_started"] == [1.0]
    (said,) = [line for line in log_lines() if line["message"] == "metrics not written"]
    assert (said["level"], said["job_type"], said["values"]) == ("ERROR", "demo.steps", 1)
    assert "Parsecs" in said["exception"], "the line says why, for the operator who reads it"


def test_a_hundred_values_are_one_document_and_no_empty_one(capsys, recwarn):
    """A metric's 100th value fills a document, which Powertools writes then: the flush at the
    invocation's end has nothing left for that job type and writes nothing (an empty document
    would be a warning on every such invocation), not a second document."""
    with invocation("job_worker", None):
        for number in range(100):
            observability.count("job_duration", "demo.steps", number, "Seconds")
    (document,) = _documents(capsys.readouterr().out)
    assert len(document["job_duration"]) == 100
    assert [str(w.message) for w in recwarn] == []


@pytest.mark.parametrize("extra, level", [({"duration_s": 1.5}, "INFO"),
                                          ({"warning": "ValueError after complete_job"}, "WARNING")])
def test_a_job_event_is_one_line_naming_the_job_and_what_was_said(log_lines, extra, level):
    """`job completed` and its kind are what an operator searches for: the line carries the
    job's id, tenant, attempt, type and status beside what the event said, at WARNING when it
    carries a warning."""
    observability.job_event("completed", _job(7, "demo.steps", JobStatus.COMPLETED), extra)
    (line,) = log_lines()
    assert line["message"] == "job completed" and line["level"] == level
    assert {key: line[key] for key in ("job_id", "tenant", "attempt", "job_type", "status", *extra)} == {
        "job_id": "job-7", "tenant": "acme", "attempt": 1, "job_type": "demo.steps", "status": "completed", **extra}
