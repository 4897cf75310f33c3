"""The polling reads (chalicelib/job_reads.py) on the in-memory job store: a job tree is read for
one tenant, up to MAX_TREE_JOBS jobs, and says whether it is whole."""
from __future__ import annotations

from chalicelib.defaults import MAX_TREE_JOBS
from chalicelib.domain.job import Job
from chalicelib.domain.status import JobStatus
from chalicelib.job_reads import JobReads

DONE = {"status": JobStatus.COMPLETED, "created_at": "2026-01-01T00:00:00.000Z",
        "started_at": "2026-01-01T00:00:01.000Z", "finished_at": "2026-01-01T00:00:02.000Z"}


def _parent(store, children: int, tenant: str = "acme") -> Job:
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(1, children + 1)]
    for child_id in ids:
        store.create(Job(id=child_id, type="demo.steps", tenant=tenant, user="ann", **DONE))
    parent = Job(id="00000000-0000-4000-9000-000000000000", type="demo.fanout", tenant=tenant, user="ann",
                 children=ids, **DONE)
    store.create(parent)
    return parent


def test_a_tree_of_exactly_the_most_jobs_is_whole(store):
    tree, whole = JobReads(store).tree("acme", [_parent(store, MAX_TREE_JOBS)])
    assert len(tree) == MAX_TREE_JOBS and whole


def test_a_tree_past_the_most_jobs_is_read_up_to_it_and_not_whole(store):
    tree, whole = JobReads(store).tree("acme", [_parent(store, MAX_TREE_JOBS + 1)])
    assert len(tree) == MAX_TREE_JOBS and not whole


def test_another_tenants_tree_reads_as_nothing(store):
    parent = _parent(store, 3)
    assert JobReads(store).tree("globex", [parent]) == ({}, True)
    assert JobReads(store).visible_jobs("globex", [parent.id, "nope"]) == [(parent.id, None), ("nope", None)]
    assert JobReads(store).visible_job("globex", parent.id) is None
    assert JobReads(store).visible_job("acme", parent.id).id == parent.id
