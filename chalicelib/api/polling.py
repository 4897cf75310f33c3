"""What the native and the rq-compatible polling routes share over HTTP: the ids a batch asks
for, and how a job that is not there is answered (the reads: chalicelib/job_reads.py)."""
from __future__ import annotations

import json
from collections import Counter
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

from chalicelib.api.errors import InvalidJsonError
from chalicelib.api.http import Call
from chalicelib.api.job_ids import extract_job_ids
from chalicelib.api.rq_vocabulary import nests
from chalicelib.defaults import JOBINFO_MAX_LEVELS, MAX_ANSWER_BYTES, MAX_BATCH_IDS, MAX_JOB_ID_CHARS
from chalicelib.domain.errors import InvalidRequestError
from chalicelib.domain.events import clip
from chalicelib.domain.job import Job, answer_bytes, shown_id
from chalicelib.domain.text import unicode_text

# What the jobs of one answer may take together (answer_bytes): MAX_ANSWER_BYTES less room for
# the rest of it (the ids, not-found entries, the frame).
ANSWER_JOBS_BYTES = MAX_ANSWER_BYTES - 64 * 1024


def batch_job_ids(call: Call, *, none_is_empty: bool = False) -> list[str]:
    """The ids a batch request asks for, in request order. Raises InvalidRequestError when
    there are none (unless `none_is_empty`: then an empty list, also for a body that is not
    JSON) or more than MAX_BATCH_IDS, InvalidJsonError for an unreadable body."""
    try:
        ids = extract_job_ids(call.raw_body, call.request.query_params)
    except InvalidJsonError:
        if none_is_empty:
            return []
        raise
    if not ids:
        if none_is_empty:
            return []
        raise InvalidRequestError('no job ids given; send {"job_ids": ["..."]}')
    return checked_batch_ids(ids)


def checked_batch_ids(ids: list[str]) -> list[str]:
    """`ids`, a batch's, or InvalidRequestError for more than MAX_BATCH_IDS of them or one past
    MAX_JOB_ID_CHARS."""
    if len(ids) > MAX_BATCH_IDS:
        raise InvalidRequestError(
            f"{len(ids)} job ids given; at most {MAX_BATCH_IDS} per request",
            details={"limit": MAX_BATCH_IDS},
        )
    overlong = next((i for i in ids if len(i) > MAX_JOB_ID_CHARS), None)
    if overlong is not None:  # the answer echoes each id three times: no such id is answered
        raise InvalidRequestError(
            f"a job id is {len(overlong)} characters; job ids have at most {MAX_JOB_ID_CHARS}",
            details={"job_id": overlong[:MAX_JOB_ID_CHARS] + "…", "limit": MAX_JOB_ID_CHARS},
        )
    return ids


def not_found(job_id: str) -> dict[str, str]:
    """rq-engine's answer for an unknown or foreign id. An id past MAX_JOB_ID_CHARS (no job has
    one; only a single-id path can carry it) is shown cut to that length, with an ellipsis; a
    lone surrogate (a path's JSON can carry one) as U+FFFD."""
    return {"id": unicode_text(shown_id(job_id)), "status": "not_found"}


def fitted(appearances: Iterable[Job], budget: int = ANSWER_JOBS_BYTES) -> dict[str, Job]:
    """Each job of an answer (by id) as the answer shows it: whole while the jobs, in the order
    and as often as they appear in it, fit `budget` together; past that point short (`short`),
    so a batch of jobs with large inline payloads or results still fits what Lambda returns."""
    return _fitted(appearances, budget, Job.public)[0]


def _fitted(appearances: Iterable[Job], budget: int,
            measured: Callable[[Job], Any]) -> tuple[dict[str, Job], dict[str, int]]:
    """`fitted`, with the bytes of each job as shown, `measured(job)` being what of a job the
    answer shows."""
    shown: dict[str, Job] = {}
    sizes: dict[str, int] = {}
    spent = 0
    for job in appearances:
        if job.id not in shown:
            size = answer_bytes(measured(job))
            if spent + size > budget:
                job = short(job)
                size = answer_bytes(measured(job))
            shown[job.id], sizes[job.id] = job, size
        spent += sizes[job.id]
    return shown, sizes


def fitted_batch(jobs: Sequence[Job], budget: int = ANSWER_JOBS_BYTES) -> dict[str, Job]:
    """`fitted` for POST /jobs/status, whose jobs may list their children (a fan-out's 2,000
    ids take 90 KB: a hundred such parents would pass 6 MB even short): a job whose short form
    does not fit either is shown `bare`, without them. Each job of `jobs` (as often as it is
    asked for) is first counted bare, the least the answer can take, then, in order, shown as
    much as the rest of the budget lets it: whole, short or bare. So the answer passes the
    budget only if its bare jobs alone would, which a hundred jobs cannot. A batch whose jobs
    all fit whole (the usual poll) is sized once, whole, as before."""
    times = Counter(job.id for job in jobs)
    whole = {job.id: (job, answer_bytes(job.public())) for job in jobs}
    if sum(size * times[job_id] for job_id, (_, size) in whole.items()) <= budget:
        return {job_id: job for job_id, (job, _) in whole.items()}
    forms: dict[str, list[tuple[Job, int]]] = {}
    for job_id, (job, size) in whole.items():
        shortened = short(job)
        kinds = [shortened] + ([bare(shortened)] if job.children else [])
        forms[job_id] = [(job, size)] + [(form, answer_bytes(shown_job(job, form))) for form in kinds]
    spent = sum(sizes[-1][1] * times[job_id] for job_id, sizes in forms.items())
    shown: dict[str, Job] = {}
    for job_id, sizes in forms.items():
        least = sizes[-1][1]
        form, size = next((f, n) for f, n in sizes if n == least or spent + (n - least) * times[job_id] <= budget)
        shown[job_id] = form
        spent += (size - least) * times[job_id]
    return shown


def bare(job: Job) -> Job:
    """`job` without its children: shown_job says how many its record lists (`children_cut`);
    GET /jobs/{id} shows them."""
    return job.model_copy(update={"children": []})


def shown_job(job: Job, shown: Job) -> dict[str, Any]:
    """`shown` (what fitted_batch made of `job`) as the answer gives it: its `public()`, with
    `children_cut`, the number of children its record lists, when they were left out."""
    answer = shown.public()
    if len(shown.children) < len(job.children):
        answer["children_cut"] = len(job.children)
    return answer


def short(job: Job) -> Job:
    """`job` with its payload, result and progress details as the claim-check placeholder (as a
    listing shows one kept in S3: GET /jobs/{id} has them whole) and its progress message cut
    to what events carry."""
    progress = job.progress.model_copy(update={"message": clip(job.progress.message),
                                               "details": claim_check_placeholder(job.progress.details)})
    return job.model_copy(update={"payload": claim_check_placeholder(job.payload),
                                  "result": claim_check_placeholder(job.result), "progress": progress})


def claim_check_placeholder(value: Any) -> Any:
    """`value` as a listing or batch shows a value it does not carry: `{"claim_check": {"bytes":
    n}}`, n its compact JSON's size; None and a placeholder already are returned as they are."""
    if value is None or (isinstance(value, Mapping) and set(value) == {"claim_check"}):
        return value
    return {"claim_check": {"bytes": len(json.dumps(value, separators=(",", ":")).encode())}}


def fitted_tree(roots: Sequence[Job], tree: Mapping[str, Job],
                budget: int = ANSWER_JOBS_BYTES) -> tuple[dict[str, Job], dict[str, Job]]:
    """`fitted` for a jobinfo answer: (each job by id as it is shown, the descendants in `tree`
    as they are shown nested), the jobs taken in the order the answer nests them (`nests`: at
    most JOBINFO_MAX_LEVELS deep) and measured as it shows them (a result, never a payload). A
    tree holds up to MAX_TREE_JOBS, each with its error's text even short: the descendants that
    would take the answer past `budget` even short are left out of the nesting, shown `None` as
    a child past the jobs read is (a root is always shown)."""
    shown, sizes = _fitted(in_answer_order(roots, tree), budget, _shown_by_jobinfo)
    kept: set[str] = set()
    left_out: set[str] = set()
    spent = 0

    def enters(job: Job, root: bool) -> bool:
        nonlocal spent
        if not root and job.id in left_out:
            return False
        if not root and job.id not in kept and spent + sizes[job.id] > budget:
            left_out.add(job.id)
            return False
        kept.add(job.id)
        spent += sizes[job.id]
        return True

    for _ in _walk(roots, tree, enters):
        pass
    return shown, {i: shown.get(i, j) for i, j in tree.items() if i not in left_out}


def _shown_by_jobinfo(job: Job) -> dict[str, Any]:
    """What of `job` a jobinfo answer shows, as far as its size goes: all but its payload."""
    return job.model_copy(update={"payload": {}}).public()


def in_answer_order(roots: Iterable[Job], tree: Mapping[str, Job]) -> Iterator[Job]:
    """The jobs of a jobinfo answer as it nests them (`nests`): each root, then its descendants
    that `tree` holds, depth first, in launch order."""
    return _walk(roots, tree, lambda job, root: True)


def _walk(roots: Iterable[Job], tree: Mapping[str, Job], enters: Callable[[Job, bool], bool]) -> Iterator[Job]:
    """`in_answer_order`, without the descendants `enters(job, False)` refuses and theirs
    (`enters(root, True)` is asked too, and a root yielded whatever it answers)."""
    for root in roots:
        enters(root, True)
        yield root
        stack = [_nested(root, tree, JOBINFO_MAX_LEVELS, frozenset())]
        while stack:
            child_id, levels, path = next(stack[-1], (None, 0, frozenset()))
            if child_id is None:
                stack.pop()
            elif enters(tree[child_id], False):
                yield tree[child_id]
                stack.append(_nested(tree[child_id], tree, levels, path))


def _nested(job: Job, tree: Mapping[str, Job], levels: int,
            above: frozenset[str]) -> Iterator[tuple[Optional[str], int, frozenset[str]]]:
    """The children of `job` a jobinfo answer nests (`nests`), in launch order, each with the
    levels left below it and the path down to it."""
    path = above | {job.id}
    return ((c, levels - 1, path) for c in job.children if nests(c, tree, levels, path))
