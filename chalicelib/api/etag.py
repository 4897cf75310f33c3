"""Entity tags for status reads, so a poll of jobs that have not changed is a 304 with no body.

A tag is derived from the (job id, version) pairs an answer shows and the claim-checked fields of
each found gone: every write to a job bumps its version, and an object that vanishes (which no
write records) changes what the answer shows, so the tag changes exactly when the answer does
(a 304 never hides a result turned null). Tags are weak (`W/`) because a running
job's derived fields (`elapsed_s`) move without a write; the answer is equivalent, not identical.
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterable, Optional

from chalice import Response

from chalicelib.api.errors import json_response
from chalicelib.domain.job import Job

# Bump when the shape of an answer changes, so tags issued before a deploy stop matching.
_FORMAT = "2"  # 2: rq answers nest children by launch order and carry runid
# Clients may keep the answer but must revalidate it; `private` because it depends on the token.
CACHE_CONTROL = "private, no-cache"


def job_etag(kind: str, jobs: Iterable[tuple[str, Optional[Job]]]) -> str:
    """The weak tag of an answer of `kind` showing these jobs in this order; None for an id
    answered as not found (unknown and foreign ids tag alike, so the tag leaks nothing). A
    job's `gone` fields are tagged too; none gone tags as before they were."""
    digest = hashlib.sha256(f"{_FORMAT}:{kind}".encode())
    for job_id, job in jobs:
        # A single-id path may hand over a lone surrogate (answered not found): kept distinct.
        digest.update(f"\0{job_id}\0{job.version if job is not None else '-'}".encode("utf-8", "surrogatepass"))
        if job is not None and job.gone:
            digest.update(f"\0gone:{','.join(sorted(job.gone))}".encode())
    return f'W/"{digest.hexdigest()[:32]}"'


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag[:2] in ("W/", "w/") else tag


def matches(if_none_match: Optional[str], etag: str) -> bool:
    """True when `If-None-Match` lists `etag` (weak comparison, RFC 9110 13.1.2) or is `*`."""
    if not if_none_match:
        return False
    wanted = _opaque(etag)
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or (candidate and _opaque(candidate) == wanted):
            return True
    return False


def conditional_response(if_none_match: Optional[str], etag: str, body: Any) -> Response:
    """304 with no body when the client already holds `etag`, else `body` with the tag."""
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if matches(if_none_match, etag):
        return Response(body="", status_code=304, headers=headers)
    return json_response(body, headers=headers)
