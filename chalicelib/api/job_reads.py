"""What the native and the rq-compatible polling routes share over HTTP: the ids a batch asks
for, and how a job that is not there is answered (the reads: chalicelib/job_reads.py)."""
from __future__ import annotations

from chalicelib.api.errors import InvalidJsonError
from chalicelib.api.http import Call
from chalicelib.api.job_ids import extract_job_ids
from chalicelib.api.requests import MAX_BATCH_IDS
from chalicelib.domain.errors import InvalidRequestError


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
    if len(ids) > MAX_BATCH_IDS:
        raise InvalidRequestError(
            f"{len(ids)} job ids given; at most {MAX_BATCH_IDS} per request",
            details={"limit": MAX_BATCH_IDS},
        )
    return ids


def not_found(job_id: str) -> dict[str, str]:
    return {"id": job_id, "status": "not_found"}
