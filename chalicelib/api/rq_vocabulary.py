"""jobpipe jobs described in RQ's vocabulary, the shape rq-engine's polling clients parse.

Status mapping (RQ has no "retrying"): an attempt that failed and waits for its redelivery is
not executing, so it reads as `queued`, the state RQ gives a job waiting for a worker; it only
becomes `failed` when no attempt is left, as an RQ job would.
"""
from __future__ import annotations

from datetime import datetime
from typing import AbstractSet, Any, Mapping, Optional

from chalicelib.defaults import JOBINFO_MAX_LEVELS
from chalicelib.domain.job import Job
from chalicelib.domain.status import JobStatus

RQ_STATUS: dict[JobStatus, str] = {
    JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "started",
    JobStatus.RETRYING: "queued",
    JobStatus.COMPLETED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELED: "canceled",
}


def _parse(moment: Optional[str]) -> Optional[datetime]:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")) if moment else None


def elapsed_s(started_at: Optional[str], ended_at: Optional[str], now: datetime) -> Optional[float]:
    """Seconds from `started_at` to `ended_at` (to `now` while not ended); None before a start."""
    started = _parse(started_at)
    if started is None:
        return None
    ended = _parse(ended_at) or now
    return round(max(0.0, (ended - started).total_seconds()), 3)


def exc_info(job: Job) -> Optional[str]:
    """RQ carries a traceback here; jobpipe's error is a stable code and a message."""
    return f"{job.error.code}: {job.error.message}" if job.error is not None else None


def description(job: Job) -> str:
    """Like RQ's call description: the job type, with its scope as the argument when set."""
    return f"{job.type}({job.scope})" if job.scope else job.type


# A tree's status: the first of these any member has, in this order; all finished -> finished.
# rq-engine's order is failed, stopped, canceled, started, queued, deferred, scheduled; jobpipe
# has no stopped, deferred or scheduled job.
_TREE_PRECEDENCE = ("failed", "canceled", "started", "queued")


def tree_status(statuses: list[str]) -> str:
    """Aggregate RQ statuses the way rq-engine does for a job and its children: any failed ->
    failed, else any canceled -> canceled, else any started -> started, else any queued ->
    queued, else (all finished) finished."""
    for status in _TREE_PRECEDENCE:
        if status in statuses:
            return status
    return "finished"


def _status(job: Job, now: datetime, tree: dict[str, Job], *, whole: bool = True) -> dict[str, Any]:
    """The job's id, run id and start, with the status and end of the job and every descendant
    in `tree` (rq-engine's jobstatus); `elapsed_s` from that start to that end (or now). A tree
    not read `whole` never reads finished and has no end: its unread members may still run."""
    members = [job, *_descendants(job, tree)]
    ended = [m.finished_at for m in members] if whole else [None]
    status = tree_status([RQ_STATUS[m.status] for m in members])
    if not whole and status == "finished":
        status = "started"
    ended_at = max(ended) if all(ended) else None  # only once every member has ended
    return {"id": job.id, "runid": job.scope, "status": status, "started_at": job.started_at, "ended_at": ended_at,
            "elapsed_s": elapsed_s(job.started_at, ended_at, now)}


def _descendants(job: Job, tree: dict[str, Job]) -> list[Job]:
    found, stack, seen = [], list(job.children), {job.id}
    while stack:
        child_id = stack.pop(0)
        child = tree.get(child_id)
        if child is None or child_id in seen:
            continue
        seen.add(child_id)
        found.append(child)
        stack.extend(child.children)
    return found


def nests(child_id: str, tree: Mapping[str, Job], levels: int, path: AbstractSet[str]) -> bool:
    """Whether a jobinfo answer shows the child `child_id` nested in its parent: `tree` holds
    it, the parent has `levels` left below it (JOBINFO_MAX_LEVELS below the job asked for: a
    chain of jobs each spawning the next nests a level each), and it is not on the `path` from
    the job asked for to its parent (stored records that name an ancestor end the nesting)."""
    return levels > 0 and child_id in tree and child_id not in path


def job_status(job: Job, now: datetime, tree: Optional[dict[str, Job]] = None, *,
               whole: bool = True) -> dict[str, Any]:
    """`GET /api/jobstatus/{id}`: the light answer a poller checks for a terminal status. With
    `tree` (the job's descendants by id) the status, times and elapsed cover the whole tree;
    `whole=False`: `tree` is part of it (a larger tree than is read), never read as finished."""
    return _status(job, now, tree or {}, whole=whole)


def job_info(job: Job, now: datetime, tree: Optional[dict[str, Job]] = None, *,
             whole: bool = True, levels: int = JOBINFO_MAX_LEVELS, above: frozenset[str] = frozenset()) -> dict[str, Any]:
    """`GET /api/jobinfo/{id}`: the job's own status plus result, error, description, progress,
    and its children as rq-engine nests them: by launch order (`"0"`, `"1"`, ...), each a list of
    child infos, None for a child `tree` does not hold (gone, another tenant's, or past the
    jobs read) or that `nests` leaves out (deeper than `levels`, or the job itself or one
    `above` it). Its status is the job's own, so `whole` changes nothing (one call for both)."""
    tree = tree or {}
    own = _status(job, now, {})
    path = above | {job.id}
    return {
        **own,
        "result": job.result,
        "exc_info": exc_info(job),
        "description": description(job),
        "type": job.type,
        "attempts": job.attempts,
        "progress": job.progress.model_dump(mode="json"),
        "children": {
            str(order): [job_info(tree[c], now, tree, levels=levels - 1, above=path) if nests(c, tree, levels, path)
                         else None]
            for order, c in enumerate(job.children)
        },
    }
