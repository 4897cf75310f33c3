"""Status reads shared by the native and the rq-compatible polling routes.

Polling is the most frequent request, so each costs one read: a GetItem (eventually
consistent) per job polled, one BatchGetItem per batch. Another tenant's job is answered
exactly like a missing one."""
from __future__ import annotations

from typing import Optional

from chalicelib.api.http import Call
from chalicelib.api.job_ids import extract_job_ids, is_plausible_job_id
from chalicelib.api.requests import MAX_BATCH_IDS
from chalicelib.composition import container
from chalicelib.domain.errors import InvalidRequestError, JobNotFoundError
from chalicelib.domain.job import Job


def batch_job_ids(call: Call) -> list[str]:
    """The ids a batch request asks for, in request order. Raises InvalidRequestError when
    there are none or more than MAX_BATCH_IDS, InvalidJsonError for an unreadable body."""
    ids = extract_job_ids(call.raw_body, call.request.query_params)
    if not ids:
        raise InvalidRequestError('no job ids given; send {"job_ids": ["..."]}')
    if len(ids) > MAX_BATCH_IDS:
        raise InvalidRequestError(
            f"{len(ids)} job ids given; at most {MAX_BATCH_IDS} per request",
            details={"limit": MAX_BATCH_IDS},
        )
    return ids


def visible_jobs(tenant: str, ids: list[str]) -> list[tuple[str, Optional[Job]]]:
    """(id, job) in the order of `ids`; None where the job is missing or another tenant's."""
    found = container().store.get_many([i for i in ids if is_plausible_job_id(i)])
    pairs: list[tuple[str, Optional[Job]]] = []
    for job_id in ids:
        job = found.get(job_id)
        pairs.append((job_id, job if job is not None and job.tenant == tenant else None))
    return pairs


def visible_job(tenant: str, job_id: str) -> Optional[Job]:
    """The tenant's job by an eventually consistent read, or None."""
    if not is_plausible_job_id(job_id):
        return None
    try:
        return container().lifecycle.get(tenant, job_id, consistent=False)
    except JobNotFoundError:
        return None


def not_found(job_id: str) -> dict[str, str]:
    return {"id": job_id, "status": "not_found"}


MAX_TREE_JOBS = 500


def load_tree(tenant: str, roots: list[Job]) -> dict[str, Job]:
    """The descendants of `roots` by id (the tenant's only), one BatchGetItem per level, at
    most MAX_TREE_JOBS jobs."""
    tree: dict[str, Job] = {}
    level = [c for root in roots for c in root.children]
    while level and len(tree) < MAX_TREE_JOBS:
        wanted = [i for i in dict.fromkeys(level) if i not in tree][: MAX_TREE_JOBS - len(tree)]
        found = container().store.get_many(wanted)
        fresh = [j for j in found.values() if j.tenant == tenant and j.id not in tree]
        tree.update((j.id, j) for j in fresh)
        level = [c for j in fresh for c in j.children]
    return tree
