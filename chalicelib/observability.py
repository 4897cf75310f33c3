"""Structured logs, metrics (EMF) and X-Ray traces through Powertools, shared by every function.

Metrics are counted during an invocation and written when it ends (`flush_metrics`, called by
the invocation wrapper and before the process ends, nowhere else): one EMF document per job
type holding every value of every metric it counted, rather than a log line per value."""
from __future__ import annotations

import numbers
import os
import sys
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.exceptions import MetricValueError

from chalicelib.domain.job import Job

NAMESPACE = "jobpipe"

logger = Logger()  # service name from POWERTOOLS_SERVICE_NAME, distinct from the Chalice app name


class _UntracedProvider:
    @contextmanager
    def in_subsegment(self, name: str, **kwargs: Any) -> Iterator[None]:
        yield None


class UntracedTracer:
    """What the code calls on Powertools' Tracer (`capture_method`, `provider.in_subsegment`),
    doing nothing. Used where Powertools would disable tracing anyway: building a Tracer still
    imports aws_xray_sdk, whose recorder is built at import (a third of `import app`, ~0.5 s
    on the development machine), in every local function process and test."""

    provider = _UntracedProvider()

    def capture_method(self, method: Optional[Callable] = None, **kwargs: Any) -> Any:
        return method if method is not None else (lambda wrapped: wrapped)


def build_tracer() -> Any:
    """Powertools' Tracer where it traces (in Lambda, unless POWERTOOLS_TRACE_DISABLED or SAM/
    Chalice local); an UntracedTracer elsewhere. The rule is Powertools' own (pinned 3.37)."""
    if Tracer._is_tracer_disabled():
        return UntracedTracer()
    return Tracer()


# Traces the worker's record handler and the event publisher as subsegments, and patches
# boto3 so every AWS call shows in X-Ray (functions run with Tracing: Active).
tracer = build_tracer()


# What this invocation counted, per job type: (name, unit, value) in the order counted. A lock,
# because a worker's timers count from threads of their own.
_counted: dict[str, list[tuple[str, Any, float]]] = {}
_counted_lock = threading.Lock()


def count(name: str, job_type: str, value: float = 1, unit: str = MetricUnit.Count) -> None:
    """Count `value` of metric `name` with the job type as its dimension; written when the
    invocation ends. Raises MetricValueError for a value that is not a number."""
    if not isinstance(value, numbers.Number):
        raise MetricValueError(f"{value!r} is not a valid number for metric {name}")
    with _counted_lock:
        _counted.setdefault(job_type, []).append((name, unit, float(value)))


def flush_metrics() -> None:
    """Write what was counted since the last flush: per job type one EMF document, each metric
    with the list of its values (CloudWatch sums and counts them as it did one line a value).
    Powertools starts another document when a metric reaches EMF's 100 values or a document 100
    metrics. Never raises: a job type whose metrics cannot be written is logged as an error."""
    with _counted_lock:
        counted = dict(_counted)
        _counted.clear()
    for job_type, values in counted.items():
        try:
            metrics = EphemeralMetrics(namespace=NAMESPACE)
            metrics.add_dimension(name="job_type", value=job_type)
            for name, unit, value in values:
                metrics.add_metric(name=name, unit=unit, value=value)
            if metrics.metric_set:  # empty when the last value filled a document already written
                metrics.flush_metrics()
        except Exception:  # noqa: BLE001 - metrics must not fail the invocation that counted them
            logger.exception("metrics not written", extra={"job_type": job_type, "values": len(values)})


def job_event(event: str, job: Job, extra: dict[str, Any]) -> None:
    """Log a worker event with the job's keys and count it per job type: at WARNING level when
    `extra` carries a `warning` (an error the outcome did not take, as one raised after
    complete_job), else at INFO."""
    log = logger.warning if "warning" in extra else logger.info
    log(
        f"job {event}",
        extra={
            "job_id": job.id,
            "tenant": job.tenant,
            "attempt": job.attempts,
            "job_type": job.type,
            "status": job.status.value,
            **extra,
        },
    )
    count(f"jobs_{event}", job.type)
    if "duration_s" in extra:
        count("job_duration", job.type, float(extra["duration_s"]), MetricUnit.Seconds)


def end_process() -> None:
    """End this function's process at once, its log lines written: the invocation fails and
    Lambda starts a fresh process for the next one. For a handler that would not stop."""
    logger.error("ending the worker process: a handler went on past its timeout")
    flush_metrics()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
