"""Structured logs, metrics (EMF) and X-Ray traces through Powertools, shared by every function."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

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


def count(name: str, job_type: str, value: float = 1, unit: str = MetricUnit.Count) -> None:
    """Emit one EMF metric with the job type as its dimension (written to the log at once)."""
    with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="job_type", value=job_type)


def job_event(event: str, job: Job, extra: dict[str, Any]) -> None:
    """Log a worker event with the job's keys and count it per job type."""
    logger.info(
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
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
