"""Status reads shared by the native and the rq-compatible polling routes.

Polling is the most frequent request, so each costs one read: a GetItem (eventually
consistent) per job polled, one BatchGetItem per batch. A job such a read does not find is read
again, strongly consistent, before it is answered not found: a job submitted a moment ago may
not be on the replica the first read asked yet, and a client that polls right after its submit
(`jobpipe submit --watch`, an rq poller that stops at not_found) must not be told it does not
exist. Misses alone pay the second read. Another tenant's job is answered exactly like a missing
one, and costs the same reads."""
from __future__ import annotations

from typing import Collection, Optional

from chalicelib.defaults import BATCH_GET_MAX, MAX_TREE_JOBS, MAX_TREE_READS
from chalicelib.domain.job import Job, child_job_id, is_plausible_job_id
from chalicelib.ports import CLAIM_CHECKED, JobStore


class JobReads:
    def __init__(self, store: JobStore) -> None:
        self._store = store

    def visible_jobs(self, tenant: str, ids: list[str]) -> list[tuple[str, Optional[Job]]]:
        """(id, job) in the order of `ids`; None where the job is missing or another tenant's."""
        found = self._visible_many(tenant, [i for i in ids if is_plausible_job_id(i)])
        return [(job_id, found.get(job_id)) for job_id in ids]

    def visible_job(self, tenant: str, job_id: str, *, fetch: Collection[str] = CLAIM_CHECKED) -> Optional[Job]:
        """The tenant's job by an eventually consistent read (a miss read again consistently),
        or None; `fetch` as for JobStore.get (the claim-checked fields the answer shows whole),
        an object of them that is gone read as empty and named in the job's `gone`."""
        if not is_plausible_job_id(job_id):
            return None
        for consistent in (False, True):
            job = self._store.get(job_id, consistent=consistent, tenant=tenant, fetch=fetch, mark_gone=True)
            if job is not None:
                return job
        return None

    def _visible_many(self, tenant: str, ids: list[str]) -> dict[str, Job]:
        """The tenant's jobs of `ids` by id: one eventually consistent batch read, the ids it did
        not find (another tenant's among them) read again consistently. The store drops another
        tenant's items before it reads them into jobs."""
        found = self._store.get_many(ids, tenant=tenant)
        missed = [i for i in dict.fromkeys(ids) if i not in found]
        if missed:
            found.update(self._store.get_many(missed, consistent=True, tenant=tenant))
        return found

    def tree(self, tenant: str, roots: list[Job], *, levels: Optional[int] = None) -> tuple[dict[str, Job], bool]:
        """The descendants of `roots` by id (the tenant's only), level by level, at most
        MAX_TREE_JOBS jobs in at most MAX_TREE_READS BatchGetItems and, given `levels`, that many
        levels below the roots; and whether that is all of them (False: some were left unread,
        which is not the same as gone). The next links of a chain (a job its parent lists alone)
        are read ahead with a level (`_read_ahead`); only a job its parent lists joins the tree."""
        tree: dict[str, Job] = {}
        read: dict[str, Job] = {}  # every job read so far, those read ahead included
        reads = _Reads()
        level = [c for root in roots for c in root.children]
        links = {root.children[0] for root in roots if len(root.children) == 1}  # a chain's, maybe
        depth = 0
        while level:
            if levels is not None and depth == levels:
                return tree, all(c in tree for c in level)
            depth += 1
            wanted = [i for i in dict.fromkeys(level) if i not in tree]
            room = MAX_TREE_JOBS - len(tree)
            listed = wanted[:room]
            unread = [i for i in listed if i not in read]
            if unread:
                deeper = None if levels is None else levels - depth
                if not self._read_level(tenant, unread, links, room - len(unread), deeper, read, reads):
                    return tree, False  # out of reads: a status resting on part of the tree, said so
            fresh = [read[i] for i in listed if i in read]
            tree.update((j.id, j) for j in fresh)
            if len(wanted) > room:
                return tree, False  # a status resting on part of the tree: the caller says so
            level = [c for j in fresh for c in j.children]
            links = {j.children[0] for j in fresh if len(j.children) == 1}
        return tree, True

    def _read_level(self, tenant: str, unread: list[str], links: set[str], room: int, deeper: Optional[int],
                    read: dict[str, Job], reads: _Reads) -> bool:
        """Read the listed jobs `unread` into `read`, the next links of those that are `links` of
        a chain read ahead in the same BatchGetItem (`_read_ahead`: at most `room` jobs, `deeper`
        levels). A listed job missed is read again consistently (as `_visible_many`), a guess
        missed is not (no job lists it). False when the reads left would not do."""
        ahead = _read_ahead([i for i in unread if i in links], len(unread), reads.ahead, room, deeper)
        if not reads.spend(_batches(len(unread) + len(ahead))):
            return False
        found = self._store.get_many([*unread, *ahead], tenant=tenant)
        missed = [i for i in unread if i not in found]
        if missed:
            if not reads.spend(_batches(len(missed))):
                return False
            found.update(self._store.get_many(missed, consistent=True, tenant=tenant))
        reads.guessed(ahead, found)
        read.update(found)
        return True


class _Reads:
    """The BatchGetItems a tree read spends (MAX_TREE_READS), and how many links of each chain it
    reads ahead of a level: one, doubled while every guess is there, back to one when one is not."""

    def __init__(self) -> None:
        self.spent = 0
        self.ahead = 1

    def spend(self, batches: int) -> bool:
        if self.spent + batches > MAX_TREE_READS:
            return False
        self.spent += batches
        return True

    def guessed(self, ahead: list[str], found: dict[str, Job]) -> None:
        if ahead:
            self.ahead = min(2 * self.ahead, BATCH_GET_MAX) if all(i in found for i in ahead) else 1


def _batches(keys: int) -> int:
    return -(-keys // BATCH_GET_MAX)


def _read_ahead(links: list[str], level: int, ahead: int, room: int, deeper: Optional[int]) -> list[str]:
    """The ids the chain links `links` (each the only child its parent lists, in a level of
    `level` jobs to read) would name as their chains' next links: each one's first child made
    by its first attempt, that child's, and so on (child_job_id: how ctx.spawn names a child),
    `ahead` a link, within the rest of the level's BatchGetItem, `room` jobs and `deeper` levels
    (None: any). A fan-out's children are no links: its level is read with no guess beside it."""
    if not links:
        return []
    spare = min(BATCH_GET_MAX - level % BATCH_GET_MAX if level % BATCH_GET_MAX else 0, room)
    per_link = min(ahead, spare // len(links), *(() if deeper is None else (deeper,)))
    guesses = []
    for job_id in links if per_link > 0 else ():
        for _ in range(per_link):
            job_id = child_job_id(job_id, 1, 1)
            guesses.append(job_id)
    return guesses
