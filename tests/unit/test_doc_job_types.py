"""The job types docs/jobs.md and docs/migrating.md show a job author, run as written: each
page's Python block that registers a type is executed into a fresh registry (in place of
`chalicelib.job_types.catalog.registry`, which the block imports), then a job of that type is
submitted and run by the worker's runner on the in-memory adapters; and the test docs/jobs.md
shows for it passes."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from chalicelib.adapters.clocks import SystemClock
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.domain.status import JobStatus
from chalicelib.job_types import catalog
from chalicelib.lifecycle import JobLifecycle
from chalicelib.worker.runner import JobRunner

ROOT = Path(__file__).resolve().parents[2]


def python_block(page: str, holding: str) -> str:
    """The page's one Python block that holds `holding`."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)
    (block,) = [b for b in blocks if holding in b]
    return block


def registering_block(page: str, type_: str = "") -> str:
    """The page's one Python block that registers a job type (`type_`, when the page has more)."""
    return python_block(page, f'@registry.register("{type_}' if type_ else "@registry.register(")


def registered_from(page: str, monkeypatch, type_: str = "") -> JobTypeRegistry:
    types = JobTypeRegistry()
    monkeypatch.setattr(catalog, "registry", types)
    # dont_inherit: run as a module of its own would, without this file's `from __future__` imports
    exec(compile(registering_block(page, type_), page, "exec", dont_inherit=True),
         {"__name__": f"docs_example_{Path(page).stem}"})
    return types


@pytest.mark.parametrize("page, type_, payload, result", [
    ("docs/jobs.md", "reports.build", {"month": "2027-01"}, {"rows": 42}),
    ("docs/migrating.md", "cad.process_model", {"model_id": "m-1"}, {"model": "output.stl", "size": 1024}),
    ("docs/migrating.md", "tech_rfp_analysis",
     {"package_id": "proj-12345", "user_name": "John Doe", "metadata": {"country_code": "USA"}},
     {"package_id": "proj-12345", "score": 0.87}),
])
def test_a_documented_job_type_registers_and_completes(page, type_, payload, result, store, queue, clock, monkeypatch):
    types = registered_from(page, monkeypatch, type_)
    assert types.names() == [type_]
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type=type_, payload=payload)
    (message,) = queue.drain()
    job = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0).run(message)
    assert (job.status, job.result) == (JobStatus.COMPLETED, result), job.error


def test_the_test_docs_jobs_md_shows_for_its_job_type_passes(store, queue, clock, monkeypatch):
    """The test a job author copies from docs/jobs.md, run against the page's own type: the
    deployment's registry (`build_registry`) is the fresh one the page's type registered in."""
    import chalicelib.job_types

    types = registered_from("docs/jobs.md", monkeypatch)
    monkeypatch.setattr(chalicelib.job_types, "registry", types)
    scope = {"__name__": "docs_example_test_reports"}
    exec(compile(python_block("docs/jobs.md", "def test_"), "docs/jobs.md", "exec"), scope)
    (test,) = [f for name, f in scope.items() if name.startswith("test_")]
    test(store, queue, clock)


def test_the_ctx_signatures_jobs_md_gives_are_the_contexts():
    """jobs.md showed `ctx.spawn(type, payload, priority=None, scope=None)`, whose priority and
    scope are keyword-only: `ctx.spawn("reports.build", payload, "high")` was a TypeError."""
    import inspect

    from chalicelib.worker.context import JobContext

    text = (ROOT / "docs/jobs.md").read_text()
    shown = {m.group(1): m.group(2) for m in re.finditer(r"`ctx\.(progress|artifact|spawn)\(([^`]*)\)`", text)}
    assert set(shown) == {"progress", "artifact", "spawn"}
    for method, params in shown.items():
        written, keyword_only = [], False
        for param in list(inspect.signature(getattr(JobContext, method)).parameters.values())[1:]:
            if param.kind is param.KEYWORD_ONLY and not keyword_only:
                written.append("*")
                keyword_only = True
            default = "" if param.default is param.empty else f"={param.default!r}"
            written.append(param.name + default)
        assert params == ", ".join(written), method


def test_docs_jobs_md_shows_each_demo_type_with_every_field_of_its_payload():
    """docs/jobs.md writes each demo type as `demo.x` (`{field, field?, …}`): the fields are
    those its payload model takes, none missing and none it does not know."""
    from chalicelib.job_types import demo_registry

    page = (ROOT / "docs" / "jobs.md").read_text()
    for job_type in map(demo_registry.get, demo_registry.names()):
        shown = re.search(rf"`{re.escape(job_type.name)}` \(`\{{(.*?)\}}`", page, re.S)
        assert shown, f"docs/jobs.md does not show {job_type.name}'s payload"
        fields = {name.strip().rstrip("?") for name in shown.group(1).split(",")}
        assert fields == set(job_type.payload_model.model_fields), job_type.name
