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


class LaggingStore:
    """The in-memory store behind a replica that has not yet seen `lagging`: an eventually
    consistent read misses them, a consistent one finds them. Records each read's kind."""

    def __init__(self, store, lagging: set[str]) -> None:
        self._store, self._lagging, self.reads = store, lagging, []

    def get(self, job_id, *, consistent=True, **kwargs):
        self.reads.append(("get", consistent))
        return None if job_id in self._lagging and not consistent else self._store.get(job_id, **kwargs)

    def get_many(self, job_ids, *, consistent=False, **kwargs):
        job_ids = list(job_ids)
        self.reads.append(("get_many", consistent, tuple(job_ids)))
        return {i: j for i, j in self._store.get_many(job_ids, **kwargs).items() if consistent or i not in self._lagging}


def test_a_job_the_replica_has_not_seen_yet_is_found_by_a_consistent_read(store):
    """A job submitted a moment ago and polled at once: not found by the cheap read, found by
    the consistent one asked for the misses alone, one poll or a batch or a tree."""
    parent = _parent(store, 2)
    fresh, seen = parent.children
    lagging = LaggingStore(store, {parent.id, fresh})
    reads = JobReads(lagging)
    assert reads.visible_job("acme", parent.id).id == parent.id
    assert lagging.reads == [("get", False), ("get", True)]
    lagging.reads.clear()
    assert [(i, job.id) for i, job in reads.visible_jobs("acme", [fresh, seen])] == [(fresh, fresh), (seen, seen)]
    assert lagging.reads == [("get_many", False, (fresh, seen)), ("get_many", True, (fresh,))]
    assert set(reads.tree("acme", [parent])[0]) == {fresh, seen}
    # Another tenant's job costs the same reads as a missing one, and is not shown.
    lagging.reads.clear()
    assert reads.visible_job("globex", seen) is None and lagging.reads == [("get", False), ("get", True)]
    assert reads.visible_jobs("globex", [seen]) == [(seen, None)]


def test_a_poll_that_finds_its_jobs_reads_once(store):
    parent = _parent(store, 2)
    lagging = LaggingStore(store, set())
    reads = JobReads(lagging)
    reads.visible_job("acme", parent.id)
    reads.visible_jobs("acme", parent.children)
    assert lagging.reads == [("get", False), ("get_many", False, tuple(parent.children))]
