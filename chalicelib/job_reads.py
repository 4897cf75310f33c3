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

from chalicelib.defaults import MAX_TREE_JOBS
from chalicelib.domain.job import Job, is_plausible_job_id
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
        """The descendants of `roots` by id (the tenant's only), level by level (a BatchGetItem
        per 100), at most MAX_TREE_JOBS jobs and, given `levels`, that many levels below the
        roots; and whether that is all of them (False: some were left unread, which is not the
        same as gone)."""
        tree: dict[str, Job] = {}
        level = [c for root in roots for c in root.children]
        depth = 0
        while level:
            if levels is not None and depth == levels:
                return tree, all(c in tree for c in level)
            depth += 1
            wanted = [i for i in dict.fromkeys(level) if i not in tree]
            room = MAX_TREE_JOBS - len(tree)
            found = self._visible_many(tenant, wanted[:room])
            fresh = [j for j in found.values() if j.id not in tree]
            tree.update((j.id, j) for j in fresh)
            if len(wanted) > room:
                return tree, False  # a status resting on part of the tree: the caller says so
            level = [c for j in fresh for c in j.children]
        return tree, True
