"""The job types docs/jobs.md and docs/migrating.md show a job author, run as written: each
page's Python block that registers a type is executed into a fresh registry (in place of
`chalicelib.job_types.catalog.registry`, which the block imports), then a job of that type is
submitted and run by the worker's runner on the in-memory adapters."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.domain.status import JobStatus
from chalicelib.job_types import catalog
from chalicelib.lifecycle import JobLifecycle
from chalicelib.worker.runner import JobRunner

ROOT = Path(__file__).resolve().parents[2]


def registering_block(page: str) -> str:
    """The page's one Python block that registers a job type."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)
    (block,) = [b for b in blocks if "@registry.register(" in b]
    return block


def registered_from(page: str, monkeypatch) -> JobTypeRegistry:
    types = JobTypeRegistry()
    monkeypatch.setattr(catalog, "registry", types)
    exec(compile(registering_block(page), page, "exec"), {"__name__": f"docs_example_{Path(page).stem}"})
    return types


@pytest.mark.parametrize("page, type_, payload, result", [
    ("docs/jobs.md", "reports.build", {"month": "2027-01"}, {"rows": 42}),
    ("docs/migrating.md", "cad.process_model", {"model_id": "m-1"}, {"model": "output.stl", "size": 1024}),
])
def test_a_documented_job_type_registers_and_completes(page, type_, payload, result, store, queue, clock, monkeypatch):
    types = registered_from(page, monkeypatch)
    assert types.names() == [type_]
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type=type_, payload=payload)
    (message,) = queue.drain()
    job = JobRunner(lifecycle, types, progress_interval_s=0).run(message)
    assert (job.status, job.result) == (JobStatus.COMPLETED, result), job.error
