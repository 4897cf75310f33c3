"""Job routes. Each view parses the request, calls a service of the composition root and shapes
the answer: a submit, a rerun and a cancel go through the lifecycle (a submit and a rerun under
the tenant's quota, counted in `jobs_submitted` when made), and so do a job's read and the job
behind its runs; a batch poll goes through the polling reads (`JobReads`); the listing and a
job's runs are read from the job store, and the job types from the registry."""
from __future__ import annotations

from typing import Any, Callable, Optional

from chalice import Blueprint

from chalicelib.api.etag import conditional_response, job_etag
from chalicelib.api.http import Call, asks_nothing, validate
from chalicelib.api.job_types import listed_job_types
from chalicelib.api.polling import batch_job_ids, fitted_batch, not_found, shown_job
from chalicelib.api.requests import ListJobsQuery, RerunJobRequest, SubmitJobRequest
from chalicelib.api.routing import router
from chalicelib.composition import container
from chalicelib.domain.errors import JobNotFoundError
from chalicelib.domain.job import Job, is_plausible_job_id, new_job_id, shown_id
from chalicelib.observability import count
from chalicelib.ports import JobQuery

api = Blueprint(__name__)


route = router(api)
Admit = Callable[[str], None]  # the tenant's quota: returns, or raises QuotaExceededError


def _job_id(job_id: str) -> str:
    if not is_plausible_job_id(job_id):
        raise JobNotFoundError(f"job {shown_id(job_id)} not found")
    return job_id


@route("/health", methods=["GET"], auth=False)
def health(call: Call) -> Any:
    return {"status": "ok", "service": "jobpipe"}


@route("/openapi.json", methods=["GET"], auth=False)
def openapi(call: Call) -> Any:
    from chalicelib.api.openapi import openapi_document  # built on first request, not at cold start

    return openapi_document()


@route("/job-types", methods=["GET"])
def job_types(call: Call) -> Any:
    return listed_job_types(container().registry)


def _submitted(make: Callable[[str, Optional[Admit]], Job]) -> Any:
    """The answer to a submit or a rerun: 202 with the job `make(new_id, admit)` returns (the
    lifecycle's submit or rerun of a job with id `new_id`, admitted by the tenant's quota through
    `admit`, None when the stack sets no bound). Counted in `jobs_submitted` only when it is
    `new_id`'s: a keyed replay answers the key's first job instead, counted when it was made."""
    quota = container().quota
    made = new_job_id()
    job = make(made, quota.admit if quota is not None else None)
    if job.id == made:
        count("jobs_submitted", job.type)
    return job.public(), 202


@route("/jobs", methods=["POST"], query=())
def submit_job(call: Call) -> Any:
    request = call.model(SubmitJobRequest)
    services = container()
    services.registry.get_public(request.type)  # built-in types run only through their own routes
    return _submitted(lambda made, admit: services.lifecycle.submit(
        tenant=call.user.tenant,
        user=call.user.user,
        idempotency_key=call.header("idempotency-key"),
        admit=admit,
        job_id=made,
        **request.model_dump(),
    ))


@route("/jobs/{job_id}/rerun", methods=["POST"], query=())
def rerun_job(call: Call, job_id: str) -> Any:
    """A finished job run again as a new job (`rerun_of` names it), answered as POST /jobs
    answers; the body, optional, says when it starts. The original is not written."""
    request = RerunJobRequest() if asks_nothing(call.raw_body) else call.model(RerunJobRequest)
    services = container()
    return _submitted(lambda made, admit: services.lifecycle.rerun(
        tenant=call.user.tenant,
        user=call.user.user,
        job_id=_job_id(job_id),
        new_id=made,
        idempotency_key=call.header("idempotency-key"),
        admit=admit,
        **request.model_dump(),
    ))


@route("/jobs", methods=["GET"])
def list_jobs(call: Call) -> Any:
    params = validate(ListJobsQuery, call.query())
    page = container().store.list_jobs(
        JobQuery(
            tenant=call.user.tenant,
            status=params.status,
            type=params.type,
            limit=params.limit,
            cursor=params.cursor,
        )
    )
    # Tagged like a status read, and by where the listing goes on: a re-read of an unchanged page
    # (the dashboard's every 10 s) is a 304 with no body.
    tag = job_etag(f"jobs.list:{page.cursor or ''}", [(j.id, j) for j in page.jobs])
    return conditional_response(call.header("if-none-match"), tag,
                                {"jobs": [j.public() for j in page.jobs], "next_cursor": page.cursor})


@route("/jobs/status", methods=["POST"])
def job_status_batch(call: Call) -> Any:
    ids = batch_job_ids(call)
    pairs = container().reads.visible_jobs(call.user.tenant, ids)
    shown = fitted_batch([job for _, job in pairs if job is not None])
    body = {
        "jobs": {job_id: shown_job(job, shown[job.id]) if job else not_found(job_id) for job_id, job in pairs},
        "job_ids": ids,
    }
    return conditional_response(call.header("if-none-match"), job_etag("jobs.status", pairs), body)


@route("/jobs/{job_id}", methods=["GET"])
def get_job(call: Call, job_id: str) -> Any:
    job = container().reads.visible_job(call.user.tenant, _job_id(job_id))
    if job is None:
        raise JobNotFoundError(f"job {job_id} not found")
    return conditional_response(call.header("if-none-match"), job_etag("job", [(job.id, job)]), job.public())


@route("/jobs/{job_id}", methods=["DELETE"], query=(), body=False)
def cancel_job(call: Call, job_id: str) -> Any:
    return container().lifecycle.cancel(call.user.tenant, _job_id(job_id)).public(), 202


@route("/jobs/{job_id}/runs", methods=["GET"])
def job_runs(call: Call, job_id: str) -> Any:
    services = container()
    job = services.lifecycle.get(call.user.tenant, _job_id(job_id), fetch=())  # runs show no payload or result
    return {"job_id": job.id, "runs": [r.model_dump(mode="json") for r in job.runs(services.store.runs(job.id))]}
