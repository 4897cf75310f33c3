"""Polling routes compatible with rq-engine (`/api/jobstatus`, `/api/jobinfo`), so its clients
poll jobpipe unchanged. Same auth and tenant isolation as the rest of the API; an unknown or
foreign id is `{"id", "status": "not_found"}`; every answer carries an ETag."""
from __future__ import annotations

from typing import Any, Optional

from chalice import Blueprint, Response

from chalicelib.api.errors import MisconfiguredError, json_response
from chalicelib.api.etag import conditional_response, job_etag
from chalicelib.api.http import Call
from chalicelib.api.polling import batch_job_ids, fitted_tree, not_found
from chalicelib.api.routing import router
from chalicelib.api.rq_vocabulary import job_info, job_status
from chalicelib.composition import container
from chalicelib.defaults import JOBINFO_MAX_LEVELS
from chalicelib.domain.job import utcnow

rq_api = Blueprint(__name__)


def rq_internal_error(exc: Exception) -> Response:
    """rq-engine's 500 shape. The trace names the exception's type only: its text can hold
    stored values or an AWS refusal's ARNs (account, role, table), and frames, file paths and
    locals are not for API clients either; all of it is in the function's log."""
    return _rq_500("internal error while reading jobs", type(exc).__name__)


def rq_misconfigured() -> Response:
    """A misconfigured API function (its log names the setting) in rq-engine's 500 shape."""
    error = MisconfiguredError()
    return _rq_500(f"{error.code}: {error}", type(error).__name__)


def _rq_500(error: str, kind: str) -> Response:
    return json_response({"Success": False, "Error": error, "StackTrace": [f"{kind} (details in the API's log)"]}, 500)


route = router(rq_api, internal_error=rq_internal_error, misconfigured=rq_misconfigured)


def _one(call: Call, kind: str, job_id: str, describe, shows: tuple[str, ...],
         levels: Optional[int] = None, *, nests: bool) -> Response:
    """One job with its descendants (a parent's status follows its children; `levels`: only
    those the answer nests), tagged by the versions of every job read; of its claim-checked
    fields, those the answer `shows` are read. An answer that `nests` its descendants' infos
    shows those that fit it (fitted_tree); one that does not (jobstatus) counts every job read."""
    reads = container().reads
    job = reads.visible_job(call.user.tenant, job_id, fetch=shows)
    if job is None:
        return conditional_response(call.header("if-none-match"), job_etag(kind, [(job_id, None)]), not_found(job_id))
    tree, whole = reads.tree(call.user.tenant, [job], levels=levels) if job.children else ({}, True)
    members = [(job_id, job), *sorted(tree.items())]
    if nests:
        shown, tree = fitted_tree([job], tree)
        job = shown[job.id]
    return conditional_response(call.header("if-none-match"), job_etag(kind, members),
                                describe(job, utcnow(), tree, whole=whole))


@route("/api/jobstatus/{job_id}", methods=["GET"])
def rq_job_status(call: Call, job_id: str) -> Any:
    return _one(call, "rq.jobstatus", job_id, job_status, shows=(), nests=False)


@route("/api/jobinfo/{job_id}", methods=["GET"])
def rq_job_info(call: Call, job_id: str) -> Any:
    return _one(call, "rq.jobinfo", job_id, job_info, shows=("result",), levels=JOBINFO_MAX_LEVELS, nests=True)


@route("/api/jobinfo", methods=["POST"])
def rq_job_info_batch(call: Call) -> Any:
    # rq-engine answers a request naming no job, or a body that is not JSON, with no jobs.
    ids = batch_job_ids(call, none_is_empty=True)
    if not ids:  # tagged as every rq answer is: a poller with nothing to watch gets 304s
        return conditional_response(call.header("if-none-match"), job_etag("rq.jobinfo.batch", []),
                                    {"jobs": {}, "job_ids": []})
    reads = container().reads
    pairs = reads.visible_jobs(call.user.tenant, ids)
    roots = [job for _, job in pairs if job is not None]
    tree, _ = reads.tree(call.user.tenant, roots, levels=JOBINFO_MAX_LEVELS)  # a jobinfo's status is the job's own
    shown, nested = fitted_tree(roots, tree)
    now = utcnow()
    body = {
        "jobs": {job_id: job_info(shown[job.id], now, nested) if job else not_found(job_id) for job_id, job in pairs},
        "job_ids": ids,
    }
    tagged = [*pairs, *sorted(tree.items())]
    return conditional_response(call.header("if-none-match"), job_etag("rq.jobinfo.batch", tagged), body)
