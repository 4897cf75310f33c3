"""The polling reads (chalicelib/job_reads.py) on the in-memory job store: a job tree is read for
one tenant, up to MAX_TREE_JOBS jobs, and says whether it is whole."""
from __future__ import annotations

import pytest

from chalicelib.api.rq_vocabulary import job_status
from chalicelib.defaults import BATCH_GET_MAX, JOBINFO_MAX_LEVELS, MAX_TREE_JOBS, MAX_TREE_READS
from chalicelib.domain.job import Job, child_job_id, utcnow
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


class CountingStore:
    """The in-memory store, counting the BatchGetItems its get_many calls would send."""

    def __init__(self, store) -> None:
        self._store, self.batches, self.keys = store, 0, 0

    def get_many(self, job_ids, **kwargs):
        job_ids = list(dict.fromkeys(job_ids))
        self.batches += -(-len(job_ids) // BATCH_GET_MAX)
        self.keys += len(job_ids)
        return self._store.get_many(job_ids, **kwargs)


def _chain(store, links: int, *, named=lambda parent, n: child_job_id(parent, 1, 1), last=JobStatus.RUNNING,
           root: str = "00000000-0000-4000-9000-000000000000") -> Job:
    """The `root` of a chain of `links` jobs after it, each continued as the next, named by
    `named` (as ctx.spawn names a child, by default); all completed but the last."""
    ids = [root]
    for n in range(links):
        ids.append(named(ids[-1], n))
    for n, job_id in enumerate(reversed(ids)):
        done = DONE if n else {**DONE, "status": last, "finished_at": None}
        store.create(Job(id=job_id, type="demo.steps", tenant="acme", user="ann", children=ids[len(ids) - n:][:1],
                         **done))
    return store.get(ids[0], mark_gone=False)


def test_a_chain_as_spawn_names_it_is_read_a_hundred_links_a_batch(store):
    counted = CountingStore(store)
    tree, whole = JobReads(counted).tree("acme", [_chain(store, MAX_TREE_JOBS)])
    assert len(tree) == MAX_TREE_JOBS and whole
    assert counted.batches <= MAX_TREE_JOBS // BATCH_GET_MAX + 10 and counted.keys <= MAX_TREE_JOBS + BATCH_GET_MAX


def test_a_chain_is_read_ahead_no_deeper_than_the_levels_asked_for(store):
    counted = CountingStore(store)
    tree, whole = JobReads(counted).tree("acme", [_chain(store, 200)], levels=JOBINFO_MAX_LEVELS)
    assert len(tree) == JOBINFO_MAX_LEVELS and not whole and counted.keys == JOBINFO_MAX_LEVELS


def test_a_fan_out_is_read_without_guesses(store):
    counted = CountingStore(store)
    JobReads(counted).tree("acme", [_parent(store, 3)])
    assert counted.keys == 3


def test_a_chain_no_guess_names_stops_at_the_most_reads_and_is_not_whole(store):
    """A link made by a retried attempt is read only once its parent is, a BatchGetItem a level:
    past MAX_TREE_READS of them the tree is not whole, so jobstatus never answers it finished."""
    counted = CountingStore(store)
    root = _chain(store, MAX_TREE_READS + 5, named=lambda parent, n: child_job_id(parent, 2, 1), last=JobStatus.COMPLETED)
    tree, whole = JobReads(counted).tree("acme", [root])
    assert not whole and counted.batches == MAX_TREE_READS and len(tree) < MAX_TREE_READS + 5
    assert job_status(root, utcnow(), tree, whole=whole)["status"] == "started"


def test_chains_side_by_side_are_each_read_ahead(store):
    """A parent that starts a few chains (a job per region, each continued again and again):
    the links of each are read ahead beside the others'."""
    chains = [_chain(store, 1_000, root=f"00000000-0000-4000-8000-{k:012d}") for k in range(4)]
    parent = Job(id="00000000-0000-4000-7000-000000000000", type="demo.fanout", tenant="acme", user="ann",
                 children=[c.id for c in chains], **DONE)
    counted = CountingStore(store)
    tree, whole = JobReads(counted).tree("acme", [parent])
    assert whole and len(tree) == 4 * 1_001 and counted.batches <= 4 * 1_000 // BATCH_GET_MAX + 20


def test_an_id_no_job_can_have_is_answered_missing_without_a_read(store):
    """An id that cannot exist (too long, or with characters no id has) is answered not found
    at once: it never reaches the table, whose key it could not even be."""
    lagging = LaggingStore(store, set())
    reads = JobReads(lagging)
    for job_id in ("x" * 1_000, "a job", "j\n"):
        assert reads.visible_job("acme", job_id) is None
    assert reads.visible_jobs("acme", ["x" * 1_000]) == [("x" * 1_000, None)]
    assert [r for r in lagging.reads if r[0] == "get" or r[2]] == []


def test_a_tree_of_levels_past_the_most_jobs_is_read_up_to_it_and_not_whole(store):
    """The bound is on the whole tree, not on each level: two children listing 3,000 each."""
    children = []
    for k in range(2):
        ids = [f"00000000-0000-4000-{8 + k}000-{i:012d}" for i in range(3_000)]
        for i in ids:
            store.create(Job(id=i, type="demo.steps", tenant="acme", user="ann", **DONE))
        children.append(f"00000000-0000-4000-a000-{k:012d}")
        store.create(Job(id=children[-1], type="demo.fanout", tenant="acme", user="ann", children=ids, **DONE))
    root = Job(id="00000000-0000-4000-b000-000000000000", type="demo.fanout", tenant="acme", user="ann",
               children=children, **DONE)
    tree, whole = JobReads(store).tree("acme", [root])
    assert len(tree) == MAX_TREE_JOBS and not whole


def test_a_chain_with_a_link_no_guess_names_is_still_read_ahead_after_it(store):
    """A link made by a retried attempt is a guess that misses; the links after it, named as
    spawn names them, are read ahead again, so a long chain is still read whole."""
    retried_at = set(range(3, 300, 7))
    root = _chain(store, MAX_TREE_JOBS - 1,
                  named=lambda parent, n: child_job_id(parent, 2 if n in retried_at else 1, 1))
    counted = CountingStore(store)
    tree, whole = JobReads(counted).tree("acme", [root])
    assert len(tree) == MAX_TREE_JOBS - 1 and whole
    assert counted.batches < MAX_TREE_READS // 4


def test_a_fan_out_before_chains_starts_their_read_ahead_at_one_link(store):
    """Read-ahead grows only with guesses that were there: a level read without guesses (a
    fan-out's children) leaves it at one link, so the chains below it, each a single link here,
    cost one guess each, not two."""
    def job(job_id: str, children: list[str]) -> None:
        store.create(Job(id=job_id, type="demo.steps", tenant="acme", user="ann", children=children, **DONE))

    root = "00000000-0000-4000-9000-000000000000"
    fanned = [f"00000000-0000-4000-8000-{i:012d}" for i in (1, 2)]
    links = [child_job_id(parent, 1, 1) for parent in fanned]
    for parent, link in zip(fanned, links):
        job(link, [])
        job(parent, [link])
    job(root, fanned)
    counted = CountingStore(store)
    tree, whole = JobReads(counted).tree("acme", [store.get(root, mark_gone=False)])
    assert set(tree) == {*fanned, *links} and whole
    assert counted.keys == len(fanned) + 2 * len(links)  # each link read, and one guess of its child


def test_a_tree_cut_at_its_levels_is_whole_only_when_every_job_below_it_was_read(store):
    """Cut at `levels`, the tree is whole only if every job the last level lists is one it
    read already (a record listing a job read above, edited by hand): one of them read is not
    enough, or the status would rest on a job never read and not say so."""
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(1, 4)]
    a, b, c = ids
    for job_id, children in ((a, [b, c]), (b, []), (c, [])):
        store.create(Job(id=job_id, type="demo.steps", tenant="acme", user="ann", children=children, **DONE))
    root = Job(id="00000000-0000-4000-9000-000000000000", type="demo.fanout", tenant="acme", user="ann",
               children=[a, b], **DONE)
    assert JobReads(store).tree("acme", [root], levels=1) == ({a: store.get(a, mark_gone=False),
                                                               b: store.get(b, mark_gone=False)}, False)
    assert JobReads(store).tree("acme", [root], levels=2)[1]


def test_a_tree_cut_where_every_job_below_was_read_above_is_whole(store):
    """The last level lists only a job the tree already holds: nothing below the cut is unread."""
    a, b = (f"00000000-0000-4000-8000-{i:012d}" for i in (1, 2))
    store.create(Job(id=a, type="demo.steps", tenant="acme", user="ann", children=[b], **DONE))
    store.create(Job(id=b, type="demo.steps", tenant="acme", user="ann", **DONE))
    root = Job(id="00000000-0000-4000-9000-000000000000", type="demo.fanout", tenant="acme", user="ann",
               children=[a, b], **DONE)
    assert JobReads(store).tree("acme", [root], levels=1) == ({a: store.get(a, mark_gone=False),
                                                               b: store.get(b, mark_gone=False)}, True)


def test_a_tree_of_no_levels_below_its_roots_reads_no_job_and_is_not_whole(store):
    counted = CountingStore(store)
    assert JobReads(counted).tree("acme", [_parent(store, 2)], levels=0) == ({}, False)
    assert counted.keys == 0


def test_a_job_two_parents_list_counts_once_toward_the_most_jobs(store):
    """Two parents of one level listing the same children: the tree holds each once, and a
    tree of exactly MAX_TREE_JOBS jobs so made is whole."""
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(MAX_TREE_JOBS - 2)]
    for i in ids:
        store.create(Job(id=i, type="demo.steps", tenant="acme", user="ann", **DONE))
    parents = [f"00000000-0000-4000-a000-{k:012d}" for k in range(2)]
    for p in parents:
        store.create(Job(id=p, type="demo.fanout", tenant="acme", user="ann", children=ids, **DONE))
    root = Job(id="00000000-0000-4000-b000-000000000000", type="demo.fanout", tenant="acme", user="ann",
               children=parents, **DONE)
    tree, whole = JobReads(store).tree("acme", [root])
    assert len(tree) == MAX_TREE_JOBS and whole


@pytest.mark.timeout(30)
def test_a_record_that_lists_a_job_read_above_it_ends_the_tree(store):
    """A record edited by hand may list itself among its children: a job the tree holds is
    not read or walked again, so the read ends, whole, rather than walking the loop until the
    function's time is up."""
    looped = "00000000-0000-4000-8000-000000000001"
    store.create(Job(id=looped, type="demo.steps", tenant="acme", user="ann", children=[looped], **DONE))
    root = Job(id="00000000-0000-4000-9000-000000000000", type="demo.fanout", tenant="acme", user="ann",
               children=[looped], **DONE)
    assert JobReads(store).tree("acme", [root]) == ({looped: store.get(looped, mark_gone=False)}, True)


def test_a_chain_past_the_most_jobs_reads_no_job_past_them(store):
    """Read-ahead guesses within the room the tree has left: a chain longer than MAX_TREE_JOBS
    is read up to them, every key read one the tree could hold, none past the bound."""
    counted = CountingStore(store)
    tree, whole = JobReads(counted).tree("acme", [_chain(store, MAX_TREE_JOBS + 1)])
    assert len(tree) == MAX_TREE_JOBS and not whole
    assert counted.keys == MAX_TREE_JOBS


def test_a_trees_consistent_rereads_count_toward_its_most_reads(store):
    """A replica that has seen the chain's first link and none after it: every later level's
    read misses and is read again consistently, and those reads count toward MAX_TREE_READS as
    the first ones do. The read stops at the bound, the level whose re-read it has no read left
    for unread and the tree not whole, rather than spending past the bound."""
    root = _chain(store, MAX_TREE_READS)
    ids, link = [], root.id
    for _ in range(MAX_TREE_READS):
        link = child_job_id(link, 1, 1)
        ids.append(link)
    lagging = LaggingStore(store, set(ids[1:]))
    tree, whole = JobReads(lagging).tree("acme", [root])
    assert sum(-(-len(read[2]) // BATCH_GET_MAX) for read in lagging.reads) == MAX_TREE_READS
    assert len(tree) == MAX_TREE_READS // 2 and not whole


def test_a_roots_only_child_is_read_ahead_from_the_first_level(store):
    """A root listing one child is a chain's start too: its child's next link is guessed in the
    first BatchGetItem, so a chain of two links (a job and its one continuation, the usual
    retried-by-spawn case) costs one read, not one a level."""
    counted = CountingStore(store)
    tree, whole = JobReads(counted).tree("acme", [_chain(store, 2)])
    assert len(tree) == 2 and whole and counted.batches == 1


def test_a_chain_beside_one_no_guess_names_costs_one_missed_guess_a_link(store):
    """Two chains side by side, one named as spawn names links and one by retried attempts: a
    level whose guesses did not all hit reads the next one link ahead again, so the second
    chain costs one missed guess a link, and the first chain's hits do not double the guesses
    the second one wastes."""
    named = _chain(store, 30, root="00000000-0000-4000-8000-000000000001")
    retried = _chain(store, 30, root="00000000-0000-4000-8000-000000000002",
                     named=lambda parent, n: child_job_id(parent, 2, 1))
    root = Job(id="00000000-0000-4000-9000-000000000000", type="demo.fanout", tenant="acme", user="ann",
               children=[named.id, retried.id], **DONE)
    counted = CountingStore(store)
    tree, whole = JobReads(counted).tree("acme", [root])
    assert len(tree) == 62 and whole
    assert counted.keys - len(tree) == 30


def test_a_short_chain_is_read_ahead_a_few_links_not_a_whole_batch(store):
    """Read-ahead starts at one link and doubles while its guesses are there: a chain of three
    links guesses a link or two past what it holds, not a BatchGetItem's worth of keys."""
    counted = CountingStore(store)
    tree, whole = JobReads(counted).tree("acme", [_chain(store, 3)])
    assert len(tree) == 3 and whole and counted.keys < 2 * len(tree)


def test_a_level_that_fills_its_batches_is_read_without_guesses(store):
    """Guesses only take the room a level's last BatchGetItem has left: a hundred chains
    beside each other, whose links fill one BatchGetItem exactly, are read a level a read,
    not with a second read of guesses beside it."""
    starts = []
    for i in range(BATCH_GET_MAX):
        starts.append(_chain(store, 1, root=f"00000000-0000-4000-8000-{i:012d}").id)
    root = Job(id="00000000-0000-4000-9000-000000000000", type="demo.fanout", tenant="acme", user="ann",
               children=starts, **DONE)
    counted = CountingStore(store)
    tree, whole = JobReads(counted).tree("acme", [root])
    assert len(tree) == 2 * BATCH_GET_MAX and whole and counted.batches == 2


@pytest.mark.parametrize("chains, batches", [(BATCH_GET_MAX - 5, 2), (5, 2)])
def test_a_levels_guesses_share_the_room_its_last_batch_has_left(store, chains, batches):
    """Ninety-five chains side by side leave five keys in their level's BatchGetItem: too few
    for a link each, so none is guessed (not a second BatchGetItem of guesses, here all missed:
    each chain ends there); five chains leave room for a link each, guessed in the same one."""
    starts = [_chain(store, 1, root=f"00000000-0000-4000-8000-{i:012d}").id for i in range(chains)]
    root = Job(id="00000000-0000-4000-9000-000000000000", type="demo.fanout", tenant="acme", user="ann",
               children=starts, **DONE)
    counted = CountingStore(store)
    tree, whole = JobReads(counted).tree("acme", [root])
    assert len(tree) == 2 * chains and whole and counted.batches == batches


def test_a_polled_job_fetches_the_claim_checked_fields_asked_for_and_shows_the_others_as_placeholders():
    """A status answer that shows no payload does not fetch the payload's object back."""
    from chalicelib.adapters.memory_blobs import InMemoryBlobStore
    from chalicelib.adapters.memory_jobs import InMemoryJobStore

    store = InMemoryJobStore(blobs=InMemoryBlobStore(), inline_limit=16)
    job_id = "00000000-0000-4000-8000-000000000001"
    store.create(Job(id=job_id, type="demo.steps", tenant="acme", user="ann", payload={"text": "x" * 64}, **DONE))
    reads = JobReads(store)
    assert reads.visible_job("acme", job_id).payload == {"text": "x" * 64}
    assert reads.visible_job("acme", job_id, fetch=()).payload == {"claim_check": {"bytes": 75}}
