"""A listing's pages and their cursors, alike in both job stores. `fill_page` decides what a page
of a job listing shows and where the next starts; each store only reads its index. A cursor is
carried by clients as JSON, base64url, opaque to them: both job stores and both artifact stores
write theirs here and read them back through `read_cursor`, which turns anything a client could
send (not base64, not JSON, nested a thousand deep, megabytes long) into one 400."""
from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Callable, Optional, Sequence, TypeVar

from chalicelib.adapters.dynamodb_items import status_key, tenant_partition, type_partition
from chalicelib.defaults import FILTERED_LISTING_READS, MAX_CURSOR_CHARS
from chalicelib.domain.errors import InvalidRequestError
from chalicelib.domain.job import Job, answer_spent, is_plausible_job_id
from chalicelib.ports import JobQuery


# A place in an index's order: where a read goes on after, what a cursor names.
Position = TypeVar("Position")
# An index read: up to a page of entries after a position (None: from the start), each (its
# position, its job or None when it is not to be shown), and the position the listing goes on
# after, None when nothing follows them.
IndexRead = Callable[[Optional[Position]], tuple[Sequence[tuple[Position, Optional[Job]]], Optional[Position]]]

# A job's creation time as records hold it (domain.job.isoformat: 2026-01-31T09:00:00.000Z),
# read leniently (no fraction, an offset), never more than a time.
_CREATED_AT = re.compile(r"\d{4}-\d{2}-\d{2}T[\d:.]{5,20}(?:Z|[+-]\d{2}:\d{2})")


def check_position(created_at: Any, job_id: Any) -> tuple[str, str]:
    """(created_at, job_id) when they are a position a job of a listing could hold: a time as
    records hold it and a plausible job id. Raises ValueError otherwise (a cursor made by hand:
    DynamoDB refuses a start key past its key limits, or not UTF-8, as a malformed request)."""
    if not (isinstance(created_at, str) and _CREATED_AT.fullmatch(created_at)):
        raise ValueError("cursor names no creation time")
    if not (isinstance(job_id, str) and is_plausible_job_id(job_id)):
        raise ValueError("cursor names no job id")
    return created_at, job_id


def write_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def read_cursor(cursor: str, shape: Callable[[Any], Any]) -> Any:
    """`shape(value)` of the cursor's JSON value: it returns what the store needs and raises
    ValueError (or TypeError) for a value that is not one of its cursors for this listing.
    Every refusal is InvalidRequestError with the same message."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError(f"cursor is longer than {MAX_CURSOR_CHARS} characters")
        return shape(json.loads(base64.urlsafe_b64decode(cursor.encode())))
    except (ValueError, TypeError, RecursionError, binascii.Error, UnicodeError) as exc:
        raise InvalidRequestError(
            "cursor is not valid for this listing; start again without it",
            details={"cursor": cursor[:200]},
        ) from exc


def listed_index(query: JobQuery) -> tuple[Optional[str], str]:
    """(the index a query lists: "status", "type", or None for the tenant's; its partition).
    With both filters the status index is read and the type kept (see `fill_page`)."""
    if query.status:
        return "status", status_key(query.tenant, query.status.value)
    if query.type:
        return "type", type_partition(query.tenant, query.type)
    return None, tenant_partition(query.tenant)


def fill_page(query: JobQuery, read_after: IndexRead[Position],
              start: Optional[Position]) -> tuple[list[Job], Optional[Position]]:
    """(the page's jobs, the position the next page starts after, None when the listing ends
    with this page), reading the index with `read_after` from `start` (a cursor's position).
    A page holds at most `query.limit` jobs and ends before the job that would pass its
    `answer_bytes` (its first job is always taken). With both filters, jobs of other types are
    passed over, reading on until the page is full or FILTERED_LISTING_READS reads were made:
    a page may then be short, even empty, with a cursor to the rest."""
    wanted = query.type if query.status and query.type else None
    jobs: list[Job] = []
    spent, shown = 0, None  # the answer's bytes so far; the position of the page's last job
    after = start
    for _ in range(FILTERED_LISTING_READS if wanted else 1):
        entries, after = read_after(after)
        for n, (position, job) in enumerate(entries, 1):
            if job is None or (wanted and job.type != wanted):
                continue
            total = answer_spent(spent, job.public(), query.answer_bytes, first=not jobs)
            if total is None:  # the answer is full: go on from the last job
                return jobs, shown
            spent, shown = total, position
            jobs.append(job)
            if len(jobs) == query.limit and wanted:  # full: the next page starts after this job
                return jobs, position if n < len(entries) or after is not None else None
        if after is None:
            return jobs, None
    return jobs, after
